"""Authentication posture of the configured probes, for the Basic-auth cut-over.

`m365_smtp_probe_info{tenant,probe,target,kind,mode}` names each probe's kind and mode (alerts
leave session probes out of "can send");
`m365_smtp_probe_auth_info{tenant,probe,target,mechanism}` says how every sending probe
authenticates (Basic `login`/`plain`, `xoauth2`, `graph_app` for Graph sendMail, `none` for
direct send); `m365_smtp_basic_auth_accepted{tenant}` is the last verdict of the tenant's
`basic_auth_check` probes (absent until one could tell). All label values come from the
configuration, never from a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.basic_auth import basic_auth_verdict
from m365_smtp_exporter.smtp.result import ProbeResult

BASIC_MECHANISMS = frozenset({"login", "plain"})


def auth_mechanism(config: ProbeConfig) -> str:
    if config.kind == "graph_sendmail":
        return "graph_app"
    return config.auth.mechanism


class AuthPosture:
    """Configured probes' mechanisms and the Basic-auth checks' verdicts, per tenant."""

    def __init__(self) -> None:
        self._probes: dict[str, ProbeConfig] = {}
        self._verdicts: dict[str, dict[str, bool]] = {}  # tenant -> check probe -> accepted

    def configure(self, probes: Sequence[ProbeConfig]) -> None:
        """The probes this exporter runs now (forget removed ones and their verdicts)."""
        self._probes = {probe.name: probe for probe in probes}
        checks = {p.name for p in probes if p.kind == "basic_auth_check"}
        for verdicts in self._verdicts.values():
            for name in [name for name in verdicts if name not in checks]:
                del verdicts[name]

    def observe(self, config: ProbeConfig, result: ProbeResult) -> None:
        self._probes.setdefault(config.name, config)
        if config.kind != "basic_auth_check":
            return
        verdict = basic_auth_verdict(result)
        if verdict is not None:
            self._verdicts.setdefault(config.tenant or "", {})[config.name] = verdict

    def collect(self) -> Iterable[Metric]:
        kinds = GaugeMetricFamily(
            "m365_smtp_probe_info",
            "Each probe's kind and mode (session probes send no mail).",
            labels=["tenant", "probe", "target", "kind", "mode"],
        )
        for probe in sorted(self._probes.values(), key=lambda p: p.name):
            kinds.add_metric(
                [probe.tenant or "", probe.name, probe.target, probe.kind, probe.mode], 1
            )
        yield kinds
        info = GaugeMetricFamily(
            "m365_smtp_probe_auth_info",
            "How each sending probe authenticates (login/plain are Basic auth).",
            labels=["tenant", "probe", "target", "mechanism"],
        )
        for probe in sorted(self._probes.values(), key=lambda p: p.name):
            if probe.kind == "basic_auth_check":
                continue  # the check uses Basic on purpose; it is reported below
            info.add_metric(
                [probe.tenant or "", probe.name, probe.target, auth_mechanism(probe)], 1
            )
        yield info
        accepted = GaugeMetricFamily(
            "m365_smtp_basic_auth_accepted",
            "1 while the tenant still accepts Basic SMTP AUTH, 0 once it answers 5.7.30.",
            labels=["tenant"],
        )
        for tenant, verdicts in sorted(self._verdicts.items()):
            if verdicts:
                accepted.add_metric([tenant], 1.0 if any(verdicts.values()) else 0.0)
        yield accepted

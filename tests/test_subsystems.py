"""The composition root: subsystems plug in by one line, facts travel on the event bus."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from m365_smtp_exporter.app import SUBSYSTEMS, Exporter, ReloadError
from m365_smtp_exporter.config import Config, parse_config
from m365_smtp_exporter.events import EventBus, ProbeFinished, TraceRowsArrived
from m365_smtp_exporter.exposition import Chunk, Collect
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.scheduler import JobSpec
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.subsystem import Change, Context, SubsystemError
from tests.support.prom import value

CONFIG = """
tenants:
  contoso:
    tenant_id: t
    client_id: c
    accepted_domains: [contoso.com]
probes:
  - name: p1
    host: 127.0.0.1
    port: 1
    tenant: contoso
    auth: {mechanism: none}
    mail_from: probe@contoso.com
    rcpt_to: [a@outside.example, b@outside.example]
    interval: 1h
"""


class Widgets:
    """A capability added from outside: its own chunk, job and config check."""

    name = "widgets"

    def __init__(self, context: Context) -> None:
        self.seen: list[ProbeFinished] = []
        self.applied: list[Config] = []
        self.refuse = False
        self.chunk = Chunk("widgets", self._collect)
        self.chunks: Sequence[Chunk] = (self.chunk,)
        self.live: Sequence[Collect] = ()
        context.bus.subscribe(ProbeFinished, self.seen.append)

    def _collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("widgets_probes_seen", "Probes seen.", value=len(self.seen))

    async def sync(self, config: Config) -> Change:
        if self.refuse:
            raise SubsystemError(["widgets.colour: no such colour"])

        async def commit() -> None:
            self.applied.append(config)

        return Change(commit)

    def jobs(self) -> list[JobSpec]:
        async def job() -> bool:
            return True

        return [JobSpec("widgets", job, 60.0, 0.0)]

    async def close(self) -> None:
        return None


async def fake_probe(probe: object, **_: object) -> ProbeResult:
    return ProbeResult(
        probe="p1",
        target="127.0.0.1:1",
        started_at=time.time(),
        success=True,
        duration=0.5,
        message_id="<m1@contoso.com>",
        recipients_accepted=2,
    )


async def test_one_line_adds_a_capability_and_events_reach_every_subscriber() -> None:
    widgets: list[Widgets] = []

    def factory(context: Context) -> Widgets:
        widgets.append(Widgets(context))
        return widgets[-1]

    exporter = Exporter(
        parse_config(CONFIG, env={}),
        listen_address="127.0.0.1:0",
        probe_runner=fake_probe,
        subsystems=(*SUBSYSTEMS, factory),
    )
    await exporter.start()
    try:
        added = widgets[0]
        assert len(added.applied) == 1
        assert exporter.scheduler.next_run_at("widgets") is not None
        probe = exporter.config.probes[0]
        await exporter.run_probe(probe)
        assert [event.result.message_id for event in added.seen] == ["<m1@contoso.com>"]
        # the tenants subsystem heard it too: the probe's own send counts at once
        services = exporter.tenants["contoso"]
        services.refresh_quota()
        text = exporter.exposition.render().decode()
        assert value(text, "widgets_probes_seen") == 1
        assert value(text, "m365_quota_probe_recipients", sender="probe@contoso.com") == 2
        # a subsystem refusing the next config keeps every subsystem on the old one
        added.refuse = True
        with pytest.raises(ReloadError, match=r"widgets\.colour"):
            await exporter._apply(parse_config(CONFIG.replace("1h", "2h"), env={}))
        assert len(added.applied) == 1
        assert exporter.subsystem(type(added)) is added
    finally:
        await exporter.stop()


def test_a_failing_handler_does_not_stop_the_others() -> None:
    bus = EventBus()
    got: list[str] = []

    def broken(event: TraceRowsArrived) -> None:
        raise RuntimeError("bug")

    bus.subscribe(TraceRowsArrived, broken)
    bus.subscribe(TraceRowsArrived, lambda event: got.append(event.tenant))
    records: list[TraceRecord] = []
    bus.publish(TraceRowsArrived("contoso", records))
    bus.publish(object())  # nobody listens: nothing happens
    assert got == ["contoso"]

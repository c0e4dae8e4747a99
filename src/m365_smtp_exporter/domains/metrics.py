"""Metric families of the domain posture checks (a `MetricSource` body).

A verdict family has a series for a domain once its check has completed at least once;
`m365_domain_check_success` says whether the latest attempt completed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from m365_smtp_exporter.domains.status import Check, DomainStatus

NO_ALL = "none"  # qualifier label when the record has no `all` term


def domain_metrics(statuses: Iterable[DomainStatus]) -> Iterator[Metric]:
    spf_valid = _gauge("spf_valid", "Whether the domain has exactly one valid SPF record.")
    spf_lookups = _gauge(
        "spf_lookups",
        "DNS-querying SPF terms (include, a, mx, ptr, exists, redirect) counted through "
        "nested records; over 10 is a permerror.",
    )
    spf_void = _gauge(
        "spf_void_lookups", "SPF lookups answered NXDOMAIN or empty; over 2 is a permerror."
    )
    spf_microsoft = _gauge(
        "spf_includes_microsoft",
        "Whether the SPF record reaches include:spf.protection.outlook.com.",
    )
    spf_all = _gauge(
        "spf_all_qualifier_info",
        "Result of the SPF record's `all` term (pass, fail, softfail, neutral; none without); "
        "absent unless the domain has exactly one SPF record.",
        ["qualifier"],
    )
    dkim_enabled = _gauge(
        "dkim_enabled",
        "Whether the DKIM selector is published (CNAME or key) and its key is not revoked.",
        ["selector"],
    )
    dkim_cname = _gauge(
        "dkim_cname_info", "Target of the DKIM selector's CNAME.", ["selector", "target"]
    )
    dmarc_policy = _gauge(
        "dmarc_policy_info",
        "DMARC policy of the domain (none, quarantine, reject, missing or invalid).",
        ["policy"],
    )
    dmarc_pct = _gauge("dmarc_pct", "Percentage of mail the DMARC policy applies to.")
    success = _gauge(
        "check_success",
        "Whether the last check's DNS lookups succeeded (0 keeps the previous verdict).",
        ["check"],
    )
    last_check = _gauge(
        "last_check_timestamp_seconds", "Unix time the domain's checks last finished."
    )
    for status in sorted(statuses, key=lambda s: s.domain):
        domain = status.domain
        for check in Check:
            success.add_metric([domain, check.value], float(status.success.get(check, False)))
        last_check.add_metric([domain], status.checked_at)
        if (spf := status.spf) is not None:
            spf_valid.add_metric([domain], float(spf.valid))
            spf_lookups.add_metric([domain], float(spf.lookups))
            spf_void.add_metric([domain], float(spf.void_lookups))
            spf_microsoft.add_metric([domain], float(spf.includes_microsoft))
            if len(spf.records) == 1:
                qualifier = spf.all_qualifier.value if spf.all_qualifier else NO_ALL
                spf_all.add_metric([domain, qualifier], 1.0)
        for key in status.dkim or ():
            dkim_enabled.add_metric([domain, key.selector], float(key.enabled))
            if key.cname_target is not None:
                dkim_cname.add_metric([domain, key.selector, key.cname_target], 1.0)
        if (dmarc := status.dmarc) is not None:
            dmarc_policy.add_metric([domain, dmarc.policy.value], 1.0)
            if dmarc.pct is not None:
                dmarc_pct.add_metric([domain], float(dmarc.pct))
    yield from (
        spf_valid,
        spf_lookups,
        spf_void,
        spf_microsoft,
        spf_all,
        dkim_enabled,
        dkim_cname,
        dmarc_policy,
        dmarc_pct,
        success,
        last_check,
    )


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"m365_domain_{name}", documentation, labels=["domain", *labels])

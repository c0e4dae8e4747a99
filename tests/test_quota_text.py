"""The quota families written as text equal what prometheus_client renders from the same data."""

from __future__ import annotations

import time

from pydantic import SecretStr

from m365_smtp_exporter.config import QuotaConfig, TenantConfig
from m365_smtp_exporter.exposition import TEXT, Format, encode
from m365_smtp_exporter.quota import QuotaRow
from m365_smtp_exporter.quota.metrics import quota_metrics
from m365_smtp_exporter.quota.tenant import TenantQuota
from m365_smtp_exporter.quota_text import quota_text
from tests.support.prom import promtool_check_metrics

OPENMETRICS = Format.negotiate("application/openmetrics-text;version=1.0.0")


def tenant(name: str, *, hashed: bool, clock: list[float] | None = None) -> TenantQuota:
    config = TenantConfig(
        tenant_id="t",
        client_id="c",
        accepted_domains=["contoso.com"],
        quota=QuotaConfig(
            top_senders=20,
            hash_senders=hashed,
            hash_salt=SecretStr("salt") if hashed else None,
        ),
    )
    clock = clock if clock is not None else [time.time()]
    now = clock[0]
    quota = TenantQuota(name, config, ["probe@contoso.com"], clock=lambda: clock[0])
    senders = ["a@contoso.com", 'odd"quote\\back@contoso.com', "b@contoso.com"]
    quota.add_rows(
        QuotaRow(
            sender=senders[i % 3],
            recipient=f"r{i}@outside.example",
            message_id=f"<m{i}@contoso.com>",
            received_at=now - i * 60.0,
            status="delivered",
        )
        for i in range(40)
    )
    quota.record_probe_send("probe@contoso.com", "<p1@contoso.com>", ["x@outside.example"], now)
    quota.refresh()
    return quota


def test_quota_text_equals_prometheus_client_in_both_formats() -> None:
    tenants = [tenant("contoso", hashed=False), tenant("fabrikam", hashed=True)]
    assert tenants[0].figures and tenants[0].probe_recipients
    text = quota_text(tenants)
    for fmt in (TEXT, OPENMETRICS):
        assert text == encode(quota_metrics(lambda: tenants)(), fmt)
    assert promtool_check_metrics(text) == ""


def test_no_tenants_still_declares_the_families() -> None:
    assert quota_text([]) == encode(quota_metrics(lambda: [])(), TEXT)


def test_later_renders_reuse_unchanged_lines_and_rewrite_changed_ones() -> None:
    """Lines are kept per figure between renders: after new rows, a refresh and the clock
    moving on, the text still equals prometheus_client's rendering of the new figures."""
    clock = [time.time()]
    quota = tenant("contoso", hashed=False, clock=clock)
    first = quota_text([quota])
    clock[0] = later = clock[0] + 120.0
    quota.add_rows(
        [QuotaRow("a@contoso.com", "new@outside.example", "<n1@contoso.com>", later, "delivered")]
    )
    quota.refresh()
    second = quota_text([quota])
    assert second != first
    assert second == encode(quota_metrics(lambda: [quota])(), TEXT)
    assert quota_text([quota]) == second

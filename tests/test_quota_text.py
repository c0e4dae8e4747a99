"""The quota families written as text equal what prometheus_client renders from the same data."""

from __future__ import annotations

import random
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


def test_renders_through_senders_coming_changing_and_going_equal_prometheus_client() -> None:
    """Hundreds of senders (many blocks): after each batch of new rows (new senders, busier
    ones) and clock moves (senders expiring), the text equals prometheus_client's."""
    rng = random.Random(5)
    clock = [time.time()]
    config = TenantConfig(
        tenant_id="t",
        client_id="c",
        accepted_domains=["contoso.com"],
        quota=QuotaConfig(top_senders=250),
    )
    quota = TenantQuota("contoso", config, clock=lambda: clock[0])
    for step in range(12):
        clock[0] += rng.choice([1.0, 60.0, 3_600.0, 40_000.0])
        quota.add_rows(
            QuotaRow(
                f"u{rng.randrange(400)}@contoso.com",
                f"r{n}@outside.example",
                f"<m{step}.{n}@contoso.com>",
                clock[0] - rng.uniform(0, 80_000),
                "delivered",
            )
            for n in range(rng.choice([1, 20, 300]))
        )
        quota.refresh()
        assert quota_text([quota]) == encode(quota_metrics(lambda: [quota])(), TEXT), step

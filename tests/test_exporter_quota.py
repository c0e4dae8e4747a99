"""Exporter + emulator: trace pulls rebuild each sender's quota, and Microsoft's 554 5.2.0
starts where the exporter says the headroom ends."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from m365_emulator.service import Emulator
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.world import (
    CONTOSO_CLIENT_ID,
    CONTOSO_TENANT_ID,
    DEMO_PASSWORD,
    default_world,
)
from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import parse_config
from m365_smtp_exporter.graph.trace import DEFAULT_END_MARGIN
from m365_smtp_exporter.quota import LimitName
from tests.support.clock import ManualClock
from tests.support.prom import promtool_check_metrics, value
from tests.support.trace import add_rows, trace_row

BATCH = 500
END_MARGIN = DEFAULT_END_MARGIN
# a full exporter against the emulator, and a campaign of 10,000 recipients sent over SMTP
pytestmark = pytest.mark.slow


@pytest.fixture
def clock() -> ManualClock:
    # Emulator and exporter share one clock that starts at real time (the tokens the emulator
    # signs must also be valid for the token library's own clock) and moves when a test says.
    return ManualClock(time.time())


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[Emulator]:
    # no trace lag: rows are visible at once, so one pull after the sends sees them all
    running = Emulator(
        delivery=DeliveryBehaviour(delay_seconds=0.0, trace_lag_seconds=0.0), clock=clock
    )
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def exporter(
    emulator: Emulator, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Exporter]:
    secret = next(t for t in default_world().tenants if t.name == "contoso").client_secret
    (tmp_path / "secret").write_text(secret.get_secret_value())
    config = parse_config(
        f"""
tenants:
  contoso:
    tenant_id: {CONTOSO_TENANT_ID}
    client_id: {CONTOSO_CLIENT_ID}
    client_secret_file: {tmp_path / "secret"}
    authority: {emulator.http_url}
    graph_base_url: {emulator.graph_base_url}
    ca_file: {emulator.ca_file}
    accepted_domains: [contoso.com]
    trace: {{interval: 1h, overlap: 15m, lookback: 1h}}
    quota: {{licenses: 25, senders: [campaign@contoso.com]}}
probes:
  - name: submission
    tenant: contoso
    host: 127.0.0.1
    port: {emulator.smtp_port}
    ca_file: {emulator.ca_file}
    auth: {{mechanism: xoauth2, username: probe@contoso.com}}
    mail_from: probe@contoso.com
    rcpt_to: [probe-inbox@contoso.com]
    interval: 1h
    timeout: 10s
""",
        env={},
    )
    running = Exporter(config, listen_address="127.0.0.1:0", clock=clock)
    await running.start()
    yield running
    await running.stop()


async def send_campaign_until_rejected(emulator: Emulator) -> tuple[int, str]:
    """Send batches of 500 external recipients as campaign@ until Exchange refuses one."""
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    accepted = 0
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=emulator.smtp_port, tls_context=context, start_tls=True
    ) as client:
        await client.login("campaign@contoso.com", DEMO_PASSWORD)
        for batch in range(40):
            recipients = [f"c{batch}-{i}@customers.example" for i in range(BATCH)]
            try:
                await client.sendmail(
                    "campaign@contoso.com", recipients, b"Subject: offer\r\n\r\nx"
                )
            except aiosmtplib.SMTPResponseException as exc:
                return accepted, f"{exc.code} {exc.message}"
            accepted += BATCH
    raise AssertionError("the emulator never enforced the daily recipient limit")


async def test_quota_headroom_matches_where_microsoft_starts_refusing(
    emulator: Emulator, exporter: Exporter, clock: ManualClock
) -> None:
    services = exporter.tenants["contoso"]
    # the exporter's own probe counts against its sender once, not again from trace
    result = await exporter.run_probe(exporter.config.probes[0])
    assert result.success, result.detail

    accepted, refusal = await send_campaign_until_rejected(emulator)
    assert refusal.startswith("554 5.2.0") and "SubmissionQuotaExceeded" in refusal

    past_the_pull_end_margin(clock)
    assert await services.pull_trace()
    snapshot = services.quota.engine.snapshot()
    campaign = snapshot.figure("campaign@contoso.com", LimitName.RECIPIENTS_PER_DAY)
    # Microsoft refused the batch that did not fit in what the exporter showed as left
    assert campaign.used == accepted
    assert campaign.remaining < BATCH
    assert campaign.utilization == pytest.approx(1.0, abs=BATCH / 10_000)
    # one recipient per probe run (the scheduled first run and the one above)
    probe_runs = exporter.store.probes["submission"].results["success"]
    probe = snapshot.figure("probe@contoso.com", LimitName.RECIPIENTS_PER_DAY)
    assert probe.used == probe_runs >= 1

    # the same figures come out of /metrics, with trace and Graph figures alongside
    text = exporter.exposition.render().decode()
    labels = {"tenant": "contoso", "sender": "campaign@contoso.com"}
    assert value(text, "m365_quota_used", limit="recipients_per_day", **labels) == accepted
    assert value(text, "m365_quota_remaining", limit="recipients_per_day", **labels) == (
        10_000 - accepted
    )
    outbound = value(
        text,
        "m365_trace_messages_total",
        tenant="contoso",
        status="delivered",
        direction="outbound",
    )
    assert outbound == accepted
    assert value(text, "m365_trace_pull_success", tenant="contoso") == 1
    assert (value(text, "m365_graph_budget_remaining", tenant="contoso") or 0) < 50
    assert promtool_check_metrics(text.encode()) == ""

    # a second pull over the same window counts nothing twice
    assert await services.pull_trace()
    again = services.quota.engine.snapshot()
    assert again.figure("campaign@contoso.com", LimitName.RECIPIENTS_PER_DAY).used == accepted
    text = exporter.exposition.render().decode()
    assert (
        value(
            text,
            "m365_trace_messages_total",
            tenant="contoso",
            status="delivered",
            direction="outbound",
        )
        == outbound
    )


async def test_graph_faults_are_counted_and_the_pull_catches_up(
    emulator: Emulator, exporter: Exporter, clock: ManualClock
) -> None:
    from m365_emulator.graph.faults import EndpointKind, GraphFault

    services = exporter.tenants["contoso"]
    assert await services.pull_trace()
    await send_some_mail(emulator, 3)
    past_the_pull_end_margin(clock)
    for fault in (GraphFault.UNAVAILABLE, GraphFault.MALFORMED_JSON, GraphFault.EXPIRED_TOKEN):
        emulator.graph_faults.inject(fault, count=10, endpoint=EndpointKind.TRACE)
        assert not await services.pull_trace()
        emulator.graph_faults.reset()
    assert await services.pull_trace()
    text = exporter.exposition.render().decode()
    assert (
        value(
            text,
            "m365_trace_messages_total",
            tenant="contoso",
            status="delivered",
            direction="internal",
        )
        == 3 + exporter.store.probes["submission"].results["success"]  # + the probe's own mails
    )
    for outcome in ("unavailable", "malformed", "auth"):
        assert (value(text, "m365_trace_pulls_total", tenant="contoso", outcome=outcome) or 0) >= 1
    assert value(text, "m365_trace_pull_success", tenant="contoso") == 1


def past_the_pull_end_margin(clock: ManualClock) -> None:
    # A pull reads up to a few seconds before now (a clock slightly ahead of Microsoft's
    # must never ask for the future) and whole seconds: let the rows just written fall
    # inside its window.
    clock.advance(END_MARGIN + 1.5)


async def send_some_mail(emulator: Emulator, count: int) -> None:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=emulator.smtp_port, tls_context=context, start_tls=True
    ) as client:
        await client.login("user001@contoso.com", DEMO_PASSWORD)
        for i in range(count):
            await client.sendmail("user001@contoso.com", [f"user{i + 2:03d}@contoso.com"], b"x")
    await asyncio.sleep(0)


async def test_system_senders_are_left_out_of_quota_and_counted_apart(
    emulator: Emulator, exporter: Exporter
) -> None:
    now = emulator.state.clock()
    system = {
        "": "null_sender",
        "<>": "null_sender",
        "postmaster@contoso.com": "postmaster",
        "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com": "exchange_system",
    }
    rows = [
        trace_row(now - 60 - i, sender=sender, recipient=f"someone{i}@example.net")
        for i, sender in enumerate(system)
    ]
    rows.append(trace_row(now - 30, sender="user001@contoso.com", recipient="a@example.net"))
    add_rows(emulator.state, rows)
    services = exporter.tenants["contoso"]

    assert await services.pull_trace()

    external = services.quota.engine.snapshot().figure("", LimitName.EXTERNAL_RECIPIENTS_PER_DAY)
    assert external.used == 1  # user001's recipient only
    text = exporter.exposition.render().decode()
    for reason, count in {"null_sender": 2, "postmaster": 1, "exchange_system": 1}.items():
        assert value(text, "m365_quota_excluded_rows_total", tenant="contoso", reason=reason) == (
            count
        )
    assert (
        value(
            text, "m365_quota_limit_enforced", tenant="contoso", limit="external_recipients_per_day"
        )
        == 1
    )
    assert "postmaster@contoso.com" not in text and "microsoftexchange" not in text
    assert promtool_check_metrics(text.encode()) == ""

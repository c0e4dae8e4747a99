"""How far the exporter's per-sender figure over-counts mail sent to a distribution list,
measured end to end: SMTP into the emulator, Graph message trace out, the exporter's pull
and quota engine. Microsoft counts the list as one recipient (the emulator's ledger is its
figure); trace lists the list (`expanded`) and every member, and the exporter counts rows.
See docs/quota-accuracy.md."""

from __future__ import annotations

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
    DistributionListConfig,
    default_world,
)
from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import parse_config
from m365_smtp_exporter.graph.trace import DEFAULT_END_MARGIN
from m365_smtp_exporter.quota import LimitName
from tests.support.clock import ManualClock

SENDER = "user001@contoso.com"
LIST = "customers@contoso.com"
MEMBERS = 200


@pytest.fixture
def clock() -> ManualClock:
    # Emulator and exporter share one clock that starts at real time (the emulator's tokens
    # must also be valid for the token library's own clock) and moves when the test says.
    return ManualClock(time.time())


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[Emulator]:
    members = [f"customer{n:03d}@customers.example" for n in range(MEMBERS)]
    world = default_world()
    world.distribution_lists.append(
        DistributionListConfig(address=LIST, tenant="contoso", members=members)
    )
    running = Emulator(
        world, delivery=DeliveryBehaviour(delay_seconds=0.0, trace_lag_seconds=0.0), clock=clock
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
    quota: {{licenses: 25, senders: [{SENDER}]}}
""",
        env={},
    )
    running = Exporter(config, listen_address="127.0.0.1:0", clock=clock)
    await running.start()
    yield running
    await running.stop()


async def send(emulator: Emulator, recipients: list[str], count: int) -> None:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=emulator.smtp_port, tls_context=context, start_tls=True
    ) as client:
        await client.login(SENDER, DEMO_PASSWORD)
        for n in range(count):
            await client.sendmail(SENDER, recipients, f"Subject: news {n}\r\n\r\nx".encode())


async def exporter_figure(exporter: Exporter, clock: ManualClock) -> int:
    """The sender's recipients_per_day after one pull that reaches past every row sent (a
    pull reads up to a few seconds before now, in whole seconds)."""
    services = exporter.tenants["contoso"]
    clock.advance(DEFAULT_END_MARGIN + 1.5)
    assert await services.pull_trace()
    figure = services.quota.engine.snapshot().figure(SENDER, LimitName.RECIPIENTS_PER_DAY)
    return int(figure.used)


async def test_list_mail_is_over_counted_by_its_member_count(
    emulator: Emulator, exporter: Exporter, clock: ManualClock
) -> None:
    messages = 3
    await send(emulator, [LIST, "probe-inbox@contoso.com"], messages)
    microsoft = emulator.smtp.ledger.recipients_last_day(SENDER)
    rows = [row for row in emulator.state.all_trace_rows() if row.sender == SENDER]
    counted = await exporter_figure(exporter, clock)

    assert microsoft == messages * 2  # the list and the direct recipient
    assert len(rows) == messages * (1 + MEMBERS + 1)  # expanded row, members, direct
    # the over-count is exactly the members: each list costs 1 + 200 instead of 1
    assert counted == len(rows)
    assert counted - microsoft == messages * MEMBERS
    # the tenant external limit does count members: there the rows are right
    assert emulator.smtp.ledger.external_recipients_last_day("contoso") == messages * MEMBERS

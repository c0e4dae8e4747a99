"""The traffic generator: a day of backfilled history and live mail through the SMTP emulator."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiosmtplib
import pytest

from m365_emulator.smtp.delivery import EXTERNAL_TO_IP
from m365_emulator.smtp.ledger import SendingLedger
from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.state import EmulatorState, TraceRow
from m365_emulator.traffic.backfill import BackfillVolumes, backfill
from m365_emulator.traffic.generator import BusyHolds, TrafficGenerator
from m365_emulator.traffic.model import (
    BUSY_MAILBOX,
    CAMPAIGN_SENDER,
    FLAT_CURVE,
    DailyCurve,
    TrafficProfile,
    profile_for_world,
)
from m365_emulator.world import default_world
from tests.support.clock import ManualClock
from tests.support.poll import eventually
from tests.support.smtp_emulator import logged_in

DAY = 86_400.0
PROFILE = TrafficProfile()


def is_contoso(address: str) -> bool:
    return address.endswith("@contoso.com")


def day_of_rows(state: EmulatorState, now: float) -> list[TraceRow]:
    return state.trace_rows("contoso", now - DAY, now)


# the traffic model


def test_the_demo_world_has_the_named_senders() -> None:
    profile = profile_for_world(default_world())
    assert profile.senders == PROFILE.senders
    assert (profile.campaign_sender, profile.busy_mailbox) == (CAMPAIGN_SENDER, BUSY_MAILBOX)
    assert BUSY_MAILBOX in profile.senders


def test_daily_curve_is_busy_in_office_hours_and_quiet_at_night_and_weekends() -> None:
    wednesday_midnight = 1_768_953_600.0  # 2026-01-21 00:00 UTC
    curve = DailyCurve()
    office, night = curve.weight(wednesday_midnight + 10.5 * 3600), curve.weight(wednesday_midnight)
    saturday_office = curve.weight(wednesday_midnight + 3 * DAY + 10.5 * 3600)
    berlin = DailyCurve(utc_offset_hours=1.0)
    assert office == pytest.approx(1.0)
    assert night < 0.1 * office
    assert saturday_office == pytest.approx(curve.weekend_factor * office)
    assert berlin.weight(wednesday_midnight + 9.5 * 3600) == pytest.approx(office)


# backfill


@pytest.fixture
def ledger(state: EmulatorState) -> SendingLedger:
    return SendingLedger(state)


async def test_backfill_writes_a_day_of_visible_history(
    state: EmulatorState, ledger: SendingLedger, clock: ManualClock
) -> None:
    summary = backfill(state, ledger, PROFILE, now=clock(), rng=random.Random(1))
    rows = day_of_rows(state, clock())  # visible rows only
    statuses = Counter(row.status for row in rows)
    inbound = [r for r in rows if not is_contoso(r.sender) and r.to_ip == ""]
    outbound = [r for r in rows if is_contoso(r.sender) and not is_contoso(r.recipient)]
    internal = [r for r in rows if is_contoso(r.sender) and is_contoso(r.recipient)]
    assert len(rows) == summary.rows == len(state.all_trace_rows())
    assert 30_000 <= len(rows) <= 60_000
    assert len({row.id for row in rows}) == len(rows)
    assert all(clock() - DAY < row.received_at <= clock() for row in rows)
    assert statuses == summary.statuses
    assert set(statuses) == {"delivered", "failed", "filteredAsSpam", "quarantined"}
    assert statuses["delivered"] > 0.9 * len(rows)
    assert len(inbound) == summary.inbound_rows > 5_000
    assert len(outbound) == summary.external_recipients > 5_000
    assert all(row.to_ip == EXTERNAL_TO_IP for row in outbound)
    assert len(internal) > 5_000
    assert all(row.to_ip == "" for row in internal)
    assert len(inbound) + len(outbound) + len(internal) == len(rows)


async def test_backfill_follows_the_daily_curve(
    state: EmulatorState, ledger: SendingLedger, clock: ManualClock
) -> None:
    backfill(state, ledger, PROFILE, now=clock(), rng=random.Random(2))
    by_hour = Counter(int(row.received_at % DAY // 3600) for row in day_of_rows(state, clock()))
    office = sum(by_hour[hour] for hour in range(9, 12)) / 3
    night = sum(by_hour[hour] for hour in range(1, 4)) / 3
    assert office > 5 * night > 0


async def test_backfill_leaves_the_campaign_just_short_of_its_limit(
    state: EmulatorState, ledger: SendingLedger, clock: ManualClock
) -> None:
    summary = backfill(state, ledger, PROFILE, now=clock(), rng=random.Random(3))
    campaign = [r for r in day_of_rows(state, clock()) if r.sender == CAMPAIGN_SENDER]
    per_message = Counter(row.message_id for row in campaign)
    assert 8_500 <= len(campaign) <= 9_500
    assert len(campaign) == summary.campaign_recipients
    assert ledger.recipients_last_day(CAMPAIGN_SENDER) == len(campaign)
    assert max(per_message.values()) == 500
    assert not any(is_contoso(row.recipient) for row in campaign)


async def test_ledger_agrees_with_the_rows(
    state: EmulatorState, ledger: SendingLedger, clock: ManualClock
) -> None:
    backfill(state, ledger, PROFILE, now=clock(), rng=random.Random(4))
    rows = day_of_rows(state, clock())
    sent = Counter(row.sender for row in rows if is_contoso(row.sender))
    external = sum(1 for r in rows if is_contoso(r.sender) and not is_contoso(r.recipient))
    inbound_senders = {row.sender for row in rows if not is_contoso(row.sender)}
    assert len(sent) > 150
    assert {sender: ledger.recipients_last_day(sender) for sender in sent} == sent
    assert ledger.external_recipients_last_day("contoso") == external
    assert external < state.tenants["contoso"].terrl
    assert all(ledger.recipients_last_day(sender) == 0 for sender in inbound_senders)


async def test_backfill_volumes_and_tenant_external_limit_are_respected(
    state: EmulatorState, ledger: SendingLedger, clock: ManualClock
) -> None:
    state.tenants["contoso"].external_recipient_limit = 2_000
    volumes = BackfillVolumes(
        ordinary_messages=300,
        inbound_messages=200,
        external_share=0.5,
        campaign_recipients_min=5_000,
        campaign_recipients_max=5_000,
    )
    summary = backfill(
        state, ledger, PROFILE, now=clock(), hours=6, rng=random.Random(5), volumes=volumes
    )
    rows = state.all_trace_rows()
    campaign = sum(1 for row in rows if row.sender == CAMPAIGN_SENDER)
    assert summary.messages == len({row.message_id for row in rows})
    assert summary.messages == 300 + 200 + 4  # 1,700 campaign recipients in batches of 500
    assert campaign == summary.campaign_recipients == 1_700  # 85 % of 2,000
    assert ledger.external_recipients_last_day("contoso") == 1_700
    assert all(clock() - 6 * 3600 < row.received_at <= clock() for row in rows)


# live traffic


@pytest.fixture
async def make_generator(
    state: EmulatorState, emulator: SmtpEmulator
) -> AsyncIterator[Callable[..., TrafficGenerator]]:
    made: list[TrafficGenerator] = []

    def make(**options: Any) -> TrafficGenerator:
        settings: dict[str, Any] = {
            "rng": random.Random(7),
            "rate_per_minute": 0.0,
            "campaign_rate_per_minute": 0.0,
            "busy": None,
            "curve": FLAT_CURVE,
            "timeout": 10.0,
        } | options
        generator = TrafficGenerator(
            state, emulator.host, emulator.port, emulator.ca_file, **settings
        )
        made.append(generator)
        return generator

    yield make
    for generator in made:
        await generator.stop()


async def test_live_mail_arrives_as_trace_rows(
    make_generator: Callable[..., TrafficGenerator],
    emulator: SmtpEmulator,
    state: EmulatorState,
    clock: ManualClock,
) -> None:
    generator = make_generator(rate_per_minute=900.0)
    await generator.start()
    await eventually(lambda: generator.stats.messages["ordinary"] >= 8)
    await generator.stop()
    stats = generator.stats
    clock.advance(301)  # past the trace lag
    rows = [r for r in day_of_rows(state, clock()) if r.sender in PROFILE.senders]
    assert len(rows) == stats.recipients["ordinary"] >= 8
    assert len({row.message_id for row in rows}) == stats.messages["ordinary"]
    assert stats.replies == Counter({"250 2.0.0": stats.messages["ordinary"]})
    assert emulator.replies["235 2.7.0"] == stats.messages["ordinary"]  # one login each
    assert BUSY_MAILBOX not in {row.sender for row in rows}
    assert not generator.running


async def test_campaign_runs_into_its_daily_quota_and_keeps_trying(
    make_generator: Callable[..., TrafficGenerator],
    emulator: SmtpEmulator,
    state: EmulatorState,
    clock: ManualClock,
) -> None:
    prefill = BackfillVolumes(
        ordinary_messages=0,
        inbound_messages=0,
        campaign_recipients_min=9_000,
        campaign_recipients_max=9_000,
    )
    backfill(state, emulator.ledger, PROFILE, now=clock(), rng=random.Random(8), volumes=prefill)
    generator = make_generator(campaign_rate_per_minute=6_000.0, campaign_retry_seconds=0.05)
    await generator.start()
    # 1,000 recipients over SMTP first: a generous deadline for a busy machine
    await eventually(lambda: generator.stats.replies["554 5.2.0"] >= 3, timeout=30.0)
    assert generator.running
    await generator.stop()
    stats = generator.stats
    assert stats.messages["campaign"] == 2  # 9,000 + 2 * 500 = 10,000
    assert stats.recipients["campaign"] == 1_000
    assert emulator.ledger.recipients_last_day(CAMPAIGN_SENDER) == 10_000
    assert emulator.replies["554 5.2.0"] == stats.replies["554 5.2.0"]
    assert set(stats.replies) == {"250 2.0.0", "554 5.2.0"}


async def test_busy_mailbox_holds_every_slot_until_stopped(
    make_generator: Callable[..., TrafficGenerator], emulator: SmtpEmulator
) -> None:
    generator = make_generator(busy=BusyHolds(every_seconds=0.05, hold_seconds=60.0))
    await generator.start()
    await eventually(lambda: generator.holding)
    probe = await logged_in(emulator, BUSY_MAILBOX)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await probe.mail(BUSY_MAILBOX)
    await asyncio.wait_for(generator.stop(), 10.0)  # does not sit out the 60 s hold
    after_stop = await probe.mail(BUSY_MAILBOX)
    await probe.quit()
    assert (refused.value.code, refused.value.message) == (
        432,
        "4.3.2 Concurrent connections limit exceeded",
    )
    assert after_stop.code == 250
    assert generator.stats.messages["busy"] == 3
    assert not generator.holding


async def test_smtp_failures_are_counted_and_never_stop_the_generator(
    make_generator: Callable[..., TrafficGenerator], emulator: SmtpEmulator
) -> None:
    wrong = dict.fromkeys(PROFILE.senders, "not-the-password")
    generator = make_generator(rate_per_minute=900.0, passwords=wrong)
    await generator.start()
    await eventually(lambda: generator.stats.replies["535 5.7.3"] >= 3)
    await emulator.set_outage("refuse")
    errors_before = generator.stats.errors.total()
    await eventually(lambda: generator.stats.errors.total() >= errors_before + 3)
    assert generator.running
    await generator.stop()
    await generator.stop()  # a second stop is harmless
    assert generator.stats.messages.total() == 0
    assert set(generator.stats.replies) == {"535 5.7.3"}
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("traffic-")]


async def test_stop_cancels_a_send_stuck_on_a_silent_server(
    make_generator: Callable[..., TrafficGenerator], emulator: SmtpEmulator
) -> None:
    await emulator.set_outage("blackhole")  # accepts connections, never greets
    generator = make_generator(rate_per_minute=6_000.0, stop_grace_seconds=0.2, timeout=60.0)
    await generator.start()
    await eventually(lambda: emulator.faults.injected["blackhole"] >= 1)
    await asyncio.wait_for(generator.stop(), 10.0)  # does not wait out the 60 s timeout
    assert not generator.running
    assert generator.stats.messages.total() == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("traffic-")]

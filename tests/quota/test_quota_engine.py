"""QuotaEngine against hand-computed figures.

T0 is 2026-01-01T00:00:00Z, a minute boundary, so bucket B0 = bucket_of(T0) starts at T0
and a row in bucket B leaves the 24 h window at (B + 1441) * 60, i.e. T0 + 86,460 for B0.
"""

from __future__ import annotations

import random

import pytest

from m365_smtp_exporter.quota import (
    TENANT_SENDER,
    LimitName,
    QuotaEngine,
    QuotaLimits,
    QuotaRow,
    QuotaSnapshot,
    RowFields,
)
from tests.support.clock import ManualClock

T0 = 1_767_225_600.0
OURS = frozenset({"contoso.com", "fabrikam.com"})
A = "a@contoso.com"
B = "b@fabrikam.com"


def rows(
    sender: str, recipients: list[str], at: float, message_id: str, status: str = "delivered"
) -> list[QuotaRow]:
    return [QuotaRow(sender, r, message_id, at, status) for r in recipients]


def external(n: int, tag: str = "x") -> list[str]:
    return [f"{tag}{i}@partner.example" for i in range(n)]


def internal(n: int, tag: str = "i") -> list[str]:
    return [f"{tag}{i}@contoso.com" for i in range(n)]


def engine_at(clock: ManualClock, **limits: object) -> QuotaEngine:
    return QuotaEngine(QuotaLimits(internal_domains=OURS, **limits), clock)  # type: ignore[arg-type]


def used(snapshot: QuotaSnapshot, sender: str, name: LimitName) -> int:
    return snapshot.figure(sender, name).used


def test_recipients_per_day_used_remaining_and_recovery() -> None:
    clock = ManualClock(T0 + 7_300)
    engine = engine_at(clock, recipients_per_day=10)
    engine.add_rows(rows(A, external(3), T0 + 10, "m1"))  # bucket B0
    engine.add_rows(rows(A, internal(4), T0 + 3_600, "m2"))  # B0 + 60
    engine.add_rows(rows(A, external(3, "y"), T0 + 7_259, "m3"))  # B0 + 120

    figure = engine.snapshot(T0 + 10_000).figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert (figure.used, figure.limit, figure.remaining) == (10, 10, 0)
    assert figure.utilization == 1.0
    # threshold 0.8 -> under 8 once B0 (3 rows) leaves: 10 - 3 = 7 at T0 + 86,460
    assert figure.recovery_seconds == 86_460 - 10_000

    # one second earlier B0 is still in; at its expiry it is gone and recovery is 0
    assert used(engine.snapshot(T0 + 86_459), A, LimitName.RECIPIENTS_PER_DAY) == 10
    late = engine.snapshot(T0 + 86_460).figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert (late.used, late.remaining, late.recovery_seconds) == (7, 3, 0.0)


def test_recovery_threshold_decides_how_many_buckets_must_expire() -> None:
    clock = ManualClock(T0 + 7_300)
    engine = engine_at(clock, recipients_per_day=10, recovery_threshold=0.5)
    engine.add_rows(rows(A, external(3), T0 + 10, "m1"))
    engine.add_rows(rows(A, external(4, "y"), T0 + 3_600, "m2"))
    engine.add_rows(rows(A, external(3, "z"), T0 + 7_259, "m3"))
    # under 5 needs B0 (leaves 7) and B0 + 60 (leaves 3) gone: (B0 + 60 + 1441) * 60
    figure = engine.snapshot(T0 + 10_000).figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert figure.recovery_seconds == 1_501 * 60 - 10_000


def test_per_sender_override() -> None:
    engine = engine_at(ManualClock(T0 + 60), recipients_per_day_overrides={"B@Fabrikam.com": 4})
    engine.add_rows(rows(B, external(3), T0, "m1"))
    engine.add_rows(rows(A, external(3), T0, "m2"))
    snapshot = engine.snapshot()
    assert snapshot.figure(B, LimitName.RECIPIENTS_PER_DAY).limit == 4
    assert snapshot.figure(B, LimitName.RECIPIENTS_PER_DAY).utilization == 0.75
    assert snapshot.figure(A, LimitName.RECIPIENTS_PER_DAY).limit == 10_000


def test_messages_per_minute_counts_distinct_messages_in_the_busiest_minute() -> None:
    clock = ManualClock(T0 + 390)  # bucket B0 + 6
    engine = engine_at(clock, messages_per_minute=4, recovery_threshold=0.5)
    engine.add_rows(
        rows(A, external(5), T0 + 1, "m1")  # one message, five recipients
        + rows(A, external(2, "y"), T0 + 30, "m2")
        + rows(A, internal(1), T0 + 59, "m3")  # B0: 3 messages
        + rows(A, external(1), T0 + 120, "m4")
        + rows(A, external(1), T0 + 179, "m5")  # B0 + 2: 2 messages
        + rows(A, external(1), T0 + 300, "m6")  # B0 + 5: 1 message
    )
    figure = engine.snapshot().figure(A, LimitName.MESSAGES_PER_MINUTE)
    assert (figure.used, figure.limit, figure.remaining) == (3, 4, 1)
    assert figure.utilization == 0.75
    # under 2 once every minute with >= 2 messages (the last: B0 + 2) has left the 15 min
    # lookback: (B0 + 2 + 16) * 60
    assert figure.recovery_seconds == 18 * 60 - 390
    assert used(engine.snapshot(T0 + 16 * 60), A, LimitName.MESSAGES_PER_MINUTE) == 2
    assert used(engine.snapshot(T0 + 18 * 60), A, LimitName.MESSAGES_PER_MINUTE) == 1
    # recipients still count one by one
    assert used(engine.snapshot(), A, LimitName.RECIPIENTS_PER_DAY) == 11


def test_late_rows_outside_the_lookback_do_not_count_as_message_rate() -> None:
    engine = engine_at(ManualClock(T0 + 3_600), message_rate_lookback_seconds=600)
    engine.add_rows(rows(A, external(1), T0 + 2_900, "old"))  # 11+ minutes before the clock
    engine.add_rows(rows(A, external(1), T0 + 3_000, "recent"))
    snapshot = engine.snapshot()
    assert used(snapshot, A, LimitName.MESSAGES_PER_MINUTE) == 1
    assert used(snapshot, A, LimitName.RECIPIENTS_PER_DAY) == 2


def test_tenant_external_and_spam_policy_caps() -> None:
    clock = ManualClock(T0 + 1_800)
    engine = engine_at(
        clock,
        external_recipients_per_day=10,
        spam_external_per_hour=3,
        spam_internal_per_hour=5,
        spam_recipients_per_day=4,
    )
    engine.add_rows(rows(A, external(3) + internal(2), T0, "m1"))
    engine.add_rows(rows(B, external(4, "y"), T0 + 1_800, "m2"))
    engine.add_rows(rows("x@outside.example", [A, B], T0 + 1_000, "in1"))  # inbound
    engine.add_rows(rows("x@outside.example", external(2), T0 + 1_000, "relay1"))

    snapshot = engine.snapshot(T0 + 3_000)
    tenant = snapshot.figure(TENANT_SENDER, LimitName.EXTERNAL_RECIPIENTS_PER_DAY)
    assert (tenant.used, tenant.limit, tenant.recovery_seconds) == (7, 10, 0.0)
    assert used(snapshot, A, LimitName.SPAM_EXTERNAL_PER_HOUR) == 3
    assert used(snapshot, A, LimitName.SPAM_INTERNAL_PER_HOUR) == 2
    assert used(snapshot, A, LimitName.SPAM_RECIPIENTS_PER_DAY) == 5
    assert used(snapshot, A, LimitName.RECIPIENTS_PER_DAY) == 5
    assert used(snapshot, B, LimitName.SPAM_EXTERNAL_PER_HOUR) == 4
    assert set(snapshot.senders) == {A, B}  # outside senders are not ours
    # A's 3 external rows (B0) against target 0.8 * 3: back under when B0 leaves the hour
    a_ext = snapshot.figure(A, LimitName.SPAM_EXTERNAL_PER_HOUR)
    assert a_ext.recovery_seconds == 61 * 60 - 3_000
    # A's 5 recipients against 0.8 * 4 on the daily spam cap: B0 leaves the day window
    assert snapshot.figure(A, LimitName.SPAM_RECIPIENTS_PER_DAY).recovery_seconds == (
        86_460 - 3_000
    )
    assert snapshot.stats.rows_by_direction == {
        "outbound": 7,
        "internal": 2,
        "inbound": 2,
        "relay": 2,
    }

    later = engine.snapshot(T0 + 3_660)  # bucket B0 + 61: B0 is out of the hour window
    assert used(later, A, LimitName.SPAM_EXTERNAL_PER_HOUR) == 0
    assert used(later, A, LimitName.SPAM_INTERNAL_PER_HOUR) == 0
    assert used(later, A, LimitName.RECIPIENTS_PER_DAY) == 5
    assert used(later, TENANT_SENDER, LimitName.EXTERNAL_RECIPIENTS_PER_DAY) == 7


def test_every_status_counts_unless_ignored() -> None:
    statuses = ["Delivered", "failed", "filteredAsSpam", "PENDING", "expanded", "recalled"]
    statuses += ["gettingStatus", "quarantined", "unknownFutureValue", "somethingNew"]
    clock = ManualClock(T0 + 60)
    counting = engine_at(clock)
    skipping = engine_at(clock, ignored_statuses=frozenset({"Failed", "expanded"}))
    for engine in (counting, skipping):
        engine.add_rows(
            QuotaRow(A, f"r{i}@partner.example", "m1", T0, status)
            for i, status in enumerate(statuses)
        )
    assert used(counting.snapshot(), A, LimitName.RECIPIENTS_PER_DAY) == len(statuses)
    assert used(skipping.snapshot(), A, LimitName.RECIPIENTS_PER_DAY) == len(statuses) - 2
    assert skipping.stats.rows_ignored_status == 2


def test_stale_rows_are_ignored_and_future_rows_are_clamped_to_the_clock() -> None:
    clock = ManualClock(T0 + 100_000)
    engine = engine_at(clock, recipients_per_day=1, recovery_threshold=1.0)
    engine.add_rows(rows(A, external(1), T0, "old"))  # more than 24 h before the clock
    engine.add_rows(rows(A, external(1, "y"), T0 + 100_300, "future"))
    stats = engine.stats
    assert (stats.rows_stale, stats.rows_future_clamped, stats.rows_counted) == (1, 1, 1)
    figure = engine.snapshot().figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert figure.used == 1
    # counted in the clock's bucket (T0 + 99,960 .. 100,020), not 5 minutes later
    assert figure.recovery_seconds == (100_020 + 86_400) - 100_000


def test_engine_clock_never_goes_backwards() -> None:
    clock = ManualClock(T0 + 5_000)
    engine = engine_at(clock)
    engine.add_rows(rows(A, external(1), T0 + 4_000, "m1"))
    assert engine.snapshot(T0).taken_at == T0 + 5_000
    clock.set(T0 + 4_000)
    engine.add_rows(rows(A, external(1), T0 + 4_900, "m2"))
    assert engine.stats.rows_future_clamped == 0


def test_idle_senders_are_dropped_but_still_answer_with_zero_usage() -> None:
    clock = ManualClock(T0 + 60)
    engine = engine_at(clock)
    engine.add_rows(rows(A, external(2), T0, "m1"))
    assert set(engine.snapshot().senders) == {A}
    gone = engine.snapshot(T0 + 90_000)
    assert gone.senders == {}
    idle = gone.figure("A@Contoso.com", LimitName.RECIPIENTS_PER_DAY)
    assert (idle.sender, idle.used, idle.limit, idle.recovery_seconds) == (A, 0, 10_000, 0.0)
    with pytest.raises(KeyError):
        gone.figure(A, LimitName.SPAM_EXTERNAL_PER_HOUR)


def test_addresses_are_case_insensitive() -> None:
    engine = engine_at(ManualClock(T0 + 60))
    engine.add_rows(rows("A@CONTOSO.COM", ["X@Partner.Example"], T0, "m1"))
    engine.add_rows(rows(" a@contoso.com", ["x@partner.example"], T0, "m2"))
    snapshot = engine.snapshot()
    assert set(snapshot.senders) == {A}
    assert used(snapshot, A, LimitName.RECIPIENTS_PER_DAY) == 2


def test_probe_send_counts_at_once_and_its_trace_rows_replace_it() -> None:
    clock = ManualClock(T0 + 50)
    engine = engine_at(clock, recipients_per_day=1, recovery_threshold=1.0)
    engine.record_probe_send(A, "probe-1@contoso.com", ["X@partner.example"], at=T0 + 50)
    first = engine.snapshot().figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert first.used == 1
    assert first.recovery_seconds == 86_460 - 50  # counted in B0

    clock.set(T0 + 600)
    trace = rows(A, ["x@partner.example"], T0 + 70, "<probe-1@contoso.com>")  # B0 + 1
    engine.add_rows(trace)
    replaced = engine.snapshot().figure(A, LimitName.RECIPIENTS_PER_DAY)
    assert replaced.used == 1
    assert replaced.recovery_seconds == 86_520 - 600  # moved to the trace row's bucket
    stats = engine.stats
    assert (stats.probe_rows_counted, stats.probe_rows_replaced, stats.probe_rows_pending) == (
        1,
        1,
        0,
    )


def test_probe_rows_without_trace_rows_stay_counted() -> None:
    clock = ManualClock(T0 + 60)
    engine = engine_at(clock)
    engine.record_probe_send(
        A, "p1", ["x@partner.example", "i@contoso.com", "x@partner.example"], T0
    )
    engine.add_rows(rows(A, ["x@partner.example"], T0 + 5, "<p1>"))
    snapshot = engine.snapshot()
    assert used(snapshot, A, LimitName.RECIPIENTS_PER_DAY) == 2
    assert used(snapshot, A, LimitName.MESSAGES_PER_MINUTE) == 1
    assert used(snapshot, TENANT_SENDER, LimitName.EXTERNAL_RECIPIENTS_PER_DAY) == 1
    assert snapshot.stats.probe_rows_pending == 1


def test_probe_reported_after_its_trace_row_or_twice_is_not_counted_again() -> None:
    clock = ManualClock(T0 + 60)
    engine = engine_at(clock)
    engine.add_rows(rows(A, ["x@partner.example"], T0, "<p1>"))
    engine.record_probe_send(A, "p1", ["x@partner.example"], T0)
    engine.record_probe_send(A, "p2", ["x@partner.example"], T0)
    engine.record_probe_send(A, "<p2>", ["X@partner.example"], T0)
    assert used(engine.snapshot(), A, LimitName.RECIPIENTS_PER_DAY) == 2
    assert engine.stats.probe_rows_counted == 1


def test_trace_row_with_an_ignored_status_still_replaces_the_probe_row() -> None:
    engine = engine_at(ManualClock(T0 + 60), ignored_statuses=frozenset({"failed"}))
    engine.record_probe_send(A, "p1", ["x@partner.example"], T0)
    engine.add_rows(rows(A, ["x@partner.example"], T0, "p1", status="Failed"))
    assert engine.snapshot().senders == {}


def test_probe_sends_from_outside_senders_and_stale_probes_are_ignored() -> None:
    engine = engine_at(ManualClock(T0 + 100_000))
    engine.record_probe_send("x@outside.example", "p1", [A], T0 + 99_990)
    engine.record_probe_send(A, "p2", ["x@partner.example"], T0)  # older than 24 h
    assert engine.snapshot().senders == {}
    assert engine.stats.probe_rows_counted == 0


def test_a_large_batch_counts_as_its_rows_fed_one_at_a_time() -> None:
    # a back-fill's shape: many senders and minutes in one batch, with rows of other
    # directions, ignored statuses, stale and future rows, and a pending probe mixed in
    rng = random.Random(11)
    clock = ManualClock(T0 + 90_000)
    senders = [f"s{i}@contoso.com" for i in range(40)] + ["X@Partner.Example "]
    recipients = external(30) + internal(10) + ["S1@CONTOSO.COM"]
    batch: list[RowFields] = []
    for message in range(2_000):
        sender = rng.choice(senders)
        skewed = rng.random() < 0.02  # stamped after the engine clock
        at = clock() + 45 if skewed else clock() - rng.uniform(0, 90_000)
        status = rng.choice(["delivered", "delivered", "failed", "pending"])
        for recipient in rng.sample(recipients, rng.randint(1, 3)):
            batch.append((sender, recipient, f"<m{message}@contoso.com>", at, status))
    one_shot, row_by_row = (engine_at(clock, ignored_statuses=frozenset({"pending"})) for _ in "ab")
    probe_sender, probe_recipient, probe_id, probe_at, _ = next(
        row for row in reversed(batch) if row[0].startswith("s") and row[3] < clock()
    )
    for engine in (one_shot, row_by_row):
        engine.record_probe_send(
            probe_sender, probe_id, [probe_recipient, "p@else.example"], probe_at
        )
    one_shot.add_rows(batch)
    for row in batch:
        row_by_row.add_rows([row])
    expected = row_by_row.snapshot()
    assert one_shot.snapshot() == expected
    assert expected.stats.probe_rows_replaced == 1
    assert expected.stats.rows_stale and expected.stats.rows_future_clamped
    assert expected.stats.rows_ignored_status and expected.stats.rows_by_direction["inbound"]

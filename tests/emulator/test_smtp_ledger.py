"""Rolling counters behind the emulated sending limits."""

from __future__ import annotations

from m365_emulator.smtp.ledger import DAY, RollingCounter, SendingLedger
from m365_emulator.state import EmulatorState
from tests.support.clock import START, ManualClock


def test_events_leave_the_window_within_one_bucket() -> None:
    counter = RollingCounter(window=DAY, bucket=60)
    counter.add(START, 3)
    counter.add(START + 600, 2)
    assert counter.total(START + DAY - 1) == 5
    assert counter.total(START + DAY + 60) == 2
    assert counter.total(START + DAY + 660) == 0


def test_history_may_arrive_out_of_order() -> None:
    counter = RollingCounter(window=60, bucket=1)
    for offset in (50, 10, 30, 59):
        counter.add(START - offset)
    assert counter.total(START) == 4
    assert counter.total(START + 15) == 2  # START-50 and START-30 are gone


def test_memory_stays_bounded_without_queries() -> None:
    counter = RollingCounter(window=DAY, bucket=60)
    for minute in range(10 * 24 * 60):  # ten days, never queried
        counter.add(START + minute * 60)
    assert counter.bucket_count <= 2 * (24 * 60 + 1) + 1
    assert counter.total(START + 10 * DAY) == 24 * 60


def test_ledger_counts_mailbox_and_tenant_external(
    state: EmulatorState, clock: ManualClock
) -> None:
    ledger = SendingLedger(state)
    ledger.record("probe@contoso.com", ["a@example.org", "b@contoso.com", "c@fabrikam.com"])
    ledger.record_history("PROBE@contoso.com", ["d@example.org"], clock() - 3600)
    # a sender without a mailbox still belongs to the tenant that owns its domain
    ledger.record_history("former-employee@contoso.com", ["e@example.org"], clock() - 7200)
    ledger.record_history("stranger@example.net", ["f@contoso.com"], clock() - 10)
    assert ledger.recipients_last_day("probe@contoso.com") == 4
    assert ledger.messages_last_minute("probe@contoso.com") == 1
    assert ledger.external_recipients_last_day("contoso") == 4
    assert ledger.external_recipients_last_day("fabrikam") == 0
    assert ledger.recipients_last_day("stranger@example.net") == 1
    clock.advance(DAY - 1800)
    assert ledger.recipients_last_day("probe@contoso.com") == 3  # the back-filled one is gone
    clock.advance(DAY)
    assert ledger.external_recipients_last_day("contoso") == 0

"""Matching message-trace rows to tracked probe mails (`m365_delivery_trace_status`)."""

from __future__ import annotations

from pathlib import Path

from m365_smtp_exporter.delivery import DeliveryTracker, message_key
from m365_smtp_exporter.smtp.result import ProbeResult
from tests.support.clock import ManualClock
from tests.support.delivery import (
    TENANT,
    TrackerFactory,
    exposition,
    probe_config,
    row,
    sent,
)
from tests.support.prom import samples


def statuses(tracker: DeliveryTracker) -> dict[str, dict[str, float]]:
    """probe -> {status: value} of every trace-status sample."""
    shown: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples(exposition(tracker)).items():
        if name == "m365_delivery_trace_status":
            label = dict(labels)
            shown.setdefault(label["probe"], {})[label["status"]] = value
    return shown


def tracked(tracker: DeliveryTracker, clock: ManualClock, name: str = "submission") -> ProbeResult:
    probe = probe_config(name)
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    clock.advance(60)
    return result


def test_message_key_ignores_brackets_case_and_space() -> None:
    assert message_key(" <Abc.DEF@Host.example> ") == "abc.def@host.example"
    assert message_key("abc.def@host.example") == "abc.def@host.example"


def test_rows_match_regardless_of_brackets_and_case(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    tracker = make_tracker(clients={})
    result = tracked(tracker, clock)
    bare = result.message_id.strip("<>").upper()
    tracker.on_trace_rows(TENANT, [row("<unrelated@x>", "failed"), row(bare, "pending")])
    assert statuses(tracker) == {"submission": {"pending": 1.0}}
    tracker.on_trace_rows(TENANT, [row(result.message_id, "delivered")])
    assert statuses(tracker) == {"submission": {"delivered": 1.0}}


def test_rows_of_other_tenants_and_recipients_are_ignored(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    tracker = make_tracker(clients={})
    result = tracked(tracker, clock)
    tracker.on_trace_rows("fabrikam", [row(result.message_id, "failed")])
    tracker.on_trace_rows(TENANT, [row(result.message_id, "failed", recipient="x@example.net")])
    assert statuses(tracker) == {}
    tracker.on_trace_rows(TENANT, [row(result.message_id, "quarantined", recipient="")])
    assert statuses(tracker) == {"submission": {"quarantined": 1.0}}


def test_the_newest_mail_wins_over_late_rows_of_older_ones(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    tracker = make_tracker([probe_config(), probe_config("relay")], clients={})
    older = tracked(tracker, clock)
    newer = tracked(tracker, clock)
    relay = tracked(tracker, clock, "relay")
    tracker.on_trace_rows(TENANT, [row(newer.message_id, "filteredasspam")])
    tracker.on_trace_rows(TENANT, [row(older.message_id, "delivered")])
    tracker.on_trace_rows(TENANT, [row(relay.message_id, "unknown")])
    assert statuses(tracker) == {
        "submission": {"filteredasspam": 1.0},
        "relay": {"unknown": 1.0},
    }


def test_trace_status_survives_a_restart(
    make_tracker: TrackerFactory, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    tracker = make_tracker(clients={}, state_file=path)
    result = tracked(tracker, clock)
    tracker.on_trace_rows(TENANT, [row(result.message_id, "pending")])
    again = make_tracker(clients={}, state_file=path)
    assert statuses(again) == {"submission": {"pending": 1.0}}
    again.on_trace_rows(TENANT, [row(result.message_id, "delivered")])
    assert statuses(again) == {"submission": {"delivered": 1.0}}


def test_a_big_batch_without_probe_mails_changes_nothing(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    changes: list[int] = []
    tracker = make_tracker(clients={}, on_change=lambda: changes.append(1))
    tracked(tracker, clock)
    before = len(changes)
    tracker.on_trace_rows(TENANT, [row(f"<{n}@bulk.example>", "delivered") for n in range(20_000)])
    assert len(changes) == before
    assert statuses(tracker) == {}

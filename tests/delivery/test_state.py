"""Restart safety: the state file keeps pending and finished checks; bad files are survived."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m365_emulator.state import EmulatorState
from m365_smtp_exporter.delivery import Stage
from m365_smtp_exporter.delivery.state_file import (
    DeliveryState,
    StateFile,
    StateFileError,
)
from tests.support.clock import ManualClock
from tests.support.delivery import (
    POLL,
    TENANT,
    TIMEOUT,
    TrackerFactory,
    deliver,
    metric,
    outcomes,
    probe_config,
    sent,
)


def names_in(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


async def test_restart_in_the_middle_loses_nothing_and_counts_nothing_twice(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState, tmp_path: Path
) -> None:
    path = tmp_path / "delivery-state.json"
    probe = probe_config(cleanup=False)  # finished mails stay findable in the mailbox
    first = make_tracker([probe], state_file=path)
    t0 = clock.now()
    lost = sent(probe, t0)
    first.track(probe, TENANT, lost)
    clock.advance(5)
    on_time = sent(probe, clock.now())
    first.track(probe, TENANT, on_time)
    deliver(graph_state, on_time.message_id, clock.now() + 2)
    for _ in range(35):
        clock.advance(1)
        await first.poll()
    pending = sent(probe, clock.now())  # t0 + 40
    first.track(probe, TENANT, pending)
    while clock.now() < t0 + TIMEOUT + 1:
        clock.advance(1)
        await first.poll()
    before = outcomes(first)
    assert before == {"delivered": 1, "junk": 0, "lost": 1, "late": 0}
    assert metric(first, "m365_delivery_pending") == 1
    success_before = metric(first, "m365_delivery_success")
    assert success_before == 1  # the newest finished mail (on_time) arrived

    # the process dies here, without close(), once its last write is done
    await first.flush()
    second = make_tracker([probe], state_file=path)
    assert outcomes(second) == {"delivered": 0, "junk": 0, "lost": 0, "late": 0}
    assert metric(second, "m365_delivery_pending") == 1
    assert metric(second, "m365_delivery_success") == success_before
    stages = {check.message_id: check.stage for check in second.checks}
    assert stages == {
        lost.message_id: Stage.LOST,
        on_time.message_id: Stage.DONE,
        pending.message_id: Stage.PENDING,
    }

    deliver(graph_state, pending.message_id, t0 + 70)
    deliver(graph_state, lost.message_id, t0 + 75)
    while clock.now() < t0 + 100:
        clock.advance(1)
        assert await second.poll()
    after = outcomes(second)
    assert after == {"delivered": 1, "junk": 0, "lost": 0, "late": 1}
    # across both processes every mail was counted exactly once per outcome
    total = {key: (before[key] or 0) + (after[key] or 0) for key in before}
    assert total == {"delivered": 2, "junk": 0, "lost": 1, "late": 1}
    assert metric(second, "m365_delivery_pending") == 0


async def test_state_is_written_after_each_change(
    make_tracker: TrackerFactory, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    probe = probe_config()
    tracker = make_tracker([probe], state_file=path)
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    await tracker.flush()
    saved = StateFile(path).load()
    assert saved is not None
    assert [check.message_id for check in saved.checks] == [result.message_id]
    assert names_in(tmp_path) == ["state.json"]  # no temporary files left


async def test_missing_state_file_is_not_an_error(
    make_tracker: TrackerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    tracker = make_tracker(state_file=path)
    assert metric(tracker, "m365_delivery_state_errors_total", operation="load") == 0
    saved = StateFile(path).load()
    assert saved is not None
    assert (saved.checks, saved.cleanups, list(saved.probes)) == ([], [], ["submission"])


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        json.dumps({"version": 1, "checks": [{"probe": "x"}]}).encode(),
        json.dumps({"version": 99, "checks": []}).encode(),
        b"\xff\xfe\x00garbage",
    ],
)
async def test_corrupt_state_file_is_counted_and_replaced(
    make_tracker: TrackerFactory,
    clock: ManualClock,
    graph_state: EmulatorState,
    tmp_path: Path,
    content: bytes,
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    probe = probe_config()
    tracker = make_tracker([probe], state_file=path)
    assert metric(tracker, "m365_delivery_state_errors_total", operation="load") == 1
    assert StateFile(path).load() is not None  # a good file replaced the bad one
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    assert await tracker.poll()
    assert outcomes(tracker)["delivered"] == 1


async def test_unusable_state_path_is_never_fatal(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    path.mkdir()  # neither readable nor replaceable as a file
    probe = probe_config()
    tracker = make_tracker([probe], state_file=path)
    assert metric(tracker, "m365_delivery_state_errors_total", operation="load") == 1
    saves = metric(tracker, "m365_delivery_state_errors_total", operation="save")
    assert saves is not None
    assert saves >= 1
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    assert await tracker.poll()
    assert outcomes(tracker)["delivered"] == 1
    await tracker.flush()
    later = metric(tracker, "m365_delivery_state_errors_total", operation="save")
    assert later is not None
    assert later > saves
    assert names_in(tmp_path) == ["state.json"]


def test_save_into_a_missing_directory_raises_state_file_error(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="cannot write"):
        StateFile(tmp_path / "absent" / "state.json").save(DeliveryState())


async def test_finished_checks_are_forgotten_after_the_memory(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    probe = probe_config()
    tracker = make_tracker([probe], state_file=path, memory=600)
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    await tracker.poll()
    assert [c.stage for c in tracker.checks] == [Stage.DONE]
    clock.advance(600)
    await tracker.poll()
    await tracker.flush()
    assert tracker.checks == []
    saved = StateFile(path).load()
    assert saved is not None
    assert saved.checks == []
    assert saved.probes["submission"].success == 1  # the gauge outlives the check

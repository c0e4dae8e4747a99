"""The delivery metric families: the exact contract of tests/ops/known_metrics.py, zero series
from the start, reconfiguration, change notifications and promtool."""

from __future__ import annotations

from collections import defaultdict

from m365_emulator.state import EmulatorState
from m365_smtp_exporter.delivery import DeliveryTracker
from tests.ops.known_metrics import EXPORTED_METRICS
from tests.support.clock import ManualClock
from tests.support.delivery import (
    POLL,
    TENANT,
    TrackerFactory,
    deliver,
    exposition,
    metric,
    outcomes,
    probe_config,
    row,
    sent,
)
from tests.support.prom import promtool_check_metrics, samples

CONTRACT = {m.name: m for m in EXPORTED_METRICS if m.name.startswith("m365_delivery_")}


def rendered_labels(tracker: DeliveryTracker) -> dict[str, set[frozenset[str]]]:
    found: dict[str, set[frozenset[str]]] = defaultdict(set)
    for name, labels in samples(exposition(tracker)):
        found[name].add(frozenset(label for label, _ in labels))
    return found


async def busy_tracker(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> DeliveryTracker:
    """A tracker with a value in every family: a delivered mail, a trace row, a pending mail."""
    probe = probe_config()
    tracker = make_tracker([probe, probe_config("relay")])
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 4)
    clock.advance(POLL)
    assert await tracker.poll()
    tracker.on_trace_rows(TENANT, [row(result.message_id, "delivered")])
    tracker.track(probe, TENANT, sent(probe, clock.now()))
    return tracker


async def test_families_match_the_metric_contract_exactly(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    tracker = await busy_tracker(make_tracker, clock, graph_state)
    found = rendered_labels(tracker)
    for contract in CONTRACT.values():
        for sample_name, labels in contract.samples().items():
            assert found.get(sample_name) == {labels}, sample_name
    # nothing exported that the metric contract does not list
    extra = {name for name in found if not any(name.startswith(c) for c in CONTRACT)}
    assert extra == set()


async def test_exposition_passes_promtool(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    tracker = await busy_tracker(make_tracker, clock, graph_state)
    assert promtool_check_metrics(exposition(tracker)) == ""


def test_every_probe_exports_zero_outcomes_from_the_start(make_tracker: TrackerFactory) -> None:
    tracker = make_tracker(
        [probe_config("a"), probe_config("b"), probe_config("c", delivery=False)]
    )
    text = exposition(tracker)
    zeros = {
        (dict(labels)["probe"], dict(labels)["outcome"])
        for (name, labels), value in samples(text).items()
        if name == "m365_delivery_outcomes_total" and value == 0
    }
    assert zeros == {(p, o) for p in "ab" for o in ("delivered", "junk", "lost", "late")}
    for probe in "ab":
        assert metric(tracker, "m365_delivery_pending", probe=probe) == 0
        assert metric(tracker, "m365_delivery_lost_total", probe=probe) == 0
        assert metric(tracker, "m365_delivery_junk_total", probe=probe) == 0
        assert metric(tracker, "m365_delivery_latency_seconds_count", probe=probe) == 0
        assert metric(tracker, "m365_delivery_latency_seconds_bucket", probe=probe, le="+Inf") == 0
        assert metric(tracker, "m365_delivery_success", probe=probe) is None
    assert metric(tracker, "m365_delivery_outcomes_total", probe="c", outcome="lost") is None


async def test_configure_drops_removed_probes_and_their_checks(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    changes: list[int] = []
    keep, drop = probe_config("keep"), probe_config("drop")
    tracker = make_tracker([keep, drop], on_change=lambda: changes.append(1))
    tracker.track(keep, TENANT, sent(keep, clock.now()))
    tracker.track(drop, TENANT, sent(drop, clock.now()))
    assert {check.probe for check in tracker.checks} == {"keep", "drop"}
    before = len(changes)
    tracker.configure([keep, probe_config("drop", delivery=False), probe_config("new")])
    assert len(changes) == before + 1
    assert {check.probe for check in tracker.checks} == {"keep"}
    assert metric(tracker, "m365_delivery_pending", probe="drop") is None
    assert metric(tracker, "m365_delivery_pending", probe="keep") == 1
    assert metric(tracker, "m365_delivery_pending", probe="new") == 0


async def test_changes_are_announced(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    changes: list[int] = []
    probe = probe_config()
    tracker = make_tracker([probe], on_change=lambda: changes.append(1))
    start = len(changes)
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    assert len(changes) == start + 1
    clock.advance(1)
    await tracker.poll()  # nothing due: nothing to announce
    assert len(changes) == start + 1
    deliver(graph_state, result.message_id, clock.now())
    clock.advance(POLL)
    await tracker.poll()
    assert len(changes) == start + 2
    assert outcomes(tracker)["delivered"] == 1


async def test_clock_skew_is_counted_and_latency_clamped(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    for offset in (-30.0, -0.5):  # the mailbox clock runs behind; -0.5 s is rounding only
        result = sent(probe, clock.now())
        tracker.track(probe, TENANT, result)
        deliver(graph_state, result.message_id, clock.now() + offset)
        clock.advance(POLL)
        assert await tracker.poll()
    assert metric(tracker, "m365_delivery_clock_skew_total") == 1
    assert metric(tracker, "m365_delivery_latency_seconds_sum") == 0
    assert metric(tracker, "m365_delivery_latency_seconds_bucket", le="1.0") == 2

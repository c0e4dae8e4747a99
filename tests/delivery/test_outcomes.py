"""Outcomes of delivery checks against the emulated mailbox API: delivered, junk, lost, late,
latency and look-up schedule, failed sends, cleanup and its failures."""

from __future__ import annotations

import httpx
import pytest

from m365_emulator.graph.faults import EndpointKind, GraphFault
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.delivery import Stage
from m365_smtp_exporter.delivery.checks import Check
from m365_smtp_exporter.graph.client import GraphClient
from tests.support.clock import ManualClock
from tests.support.delivery import (
    MAILBOX,
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
from tests.support.graph import ClientFactory, GraphService, HookTransport


def folder_of(state: EmulatorState, message_id: str) -> list[str]:
    box = state.mailbox(MAILBOX)
    assert box is not None
    return [m.folder for m in box.messages if m.internet_message_id == message_id]


async def poll_until(tracker_poll: object, clock: ManualClock, until: float, step: float) -> None:
    assert callable(tracker_poll)
    while clock.now() < until:
        clock.advance(min(step, until - clock.now()))
        await tracker_poll()


async def test_delivered_latency_is_received_minus_sent(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    t0 = clock.now()
    result = sent(probe, t0)
    tracker.track(probe, TENANT, result)
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 1
    assert metric(tracker, "m365_delivery_success", probe="submission") is None
    arrival = t0 + 26
    lookups_at: list[float] = []
    while not outcomes(tracker)["delivered"]:
        clock.advance(0.5)
        if clock.now() == arrival:  # the mail lands while the tracker keeps polling
            deliver(graph_state, result.message_id, arrival)
        before = tracker.checks[0].lookups
        assert await tracker.poll()
        if tracker.checks[0].lookups > before:
            lookups_at.append(clock.now() - t0)
        assert clock.now() - t0 < TIMEOUT
    # first look-up after one poll interval, then x1.5; found at the first look-up after arrival
    assert lookups_at == [10.0, 25.0, 47.5]
    assert outcomes(tracker) == {"delivered": 1, "junk": 0, "lost": 0, "late": 0}
    assert metric(tracker, "m365_delivery_latency_seconds_sum", probe="submission") == 26
    assert metric(tracker, "m365_delivery_latency_seconds_bucket", le="15.0") == 0
    assert metric(tracker, "m365_delivery_latency_seconds_bucket", le="30.0") == 1
    assert metric(tracker, "m365_delivery_success", probe="submission") == 1
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 0
    auth = {
        check: metric(tracker, "m365_delivery_auth_result", check=check, result="pass")
        for check in ("spf", "dkim", "dmarc", "compauth")
    }
    assert auth == {"spf": 1, "dkim": 1, "dmarc": 1, "compauth": 1}
    assert folder_of(graph_state, result.message_id) == ["deleteditems"]  # cleaned up


def test_backoff_steps_are_capped_and_meet_the_deadline() -> None:
    check = Check(
        probe="p",
        tenant=TENANT,
        mailbox=MAILBOX,
        message_id="<a@b>",
        sent_at=0.0,
        deadline=100.0,
        grace_until=200.0,
        poll_interval=10.0,
        cleanup=True,
        next_lookup_at=10.0,
        interval=10.0,
    )
    times = [10.0]
    while check.next_lookup_at < 100.0:
        check.back_off(check.next_lookup_at)
        times.append(check.next_lookup_at)
    assert times == [10.0, 25.0, 47.5, 81.25, 100.0]
    check.stage = Stage.LOST
    for _ in range(3):
        check.back_off(check.next_lookup_at)
    assert check.interval == 40.0  # 4x the poll interval


@pytest.mark.parametrize(
    ("folder", "outcome", "success"),
    [("junkemail", "junk", 0.0), ("deleteditems", "delivered", 1.0), ("inbox", "delivered", 1.0)],
)
async def test_folder_decides_between_delivered_and_junk(
    make_tracker: TrackerFactory,
    clock: ManualClock,
    graph_state: EmulatorState,
    folder: str,
    outcome: str,
    success: float,
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 3, folder=folder)
    clock.advance(POLL)
    assert await tracker.poll()
    expected = dict.fromkeys(("delivered", "junk", "lost", "late"), 0.0) | {outcome: 1.0}
    assert outcomes(tracker) == expected
    assert metric(tracker, "m365_delivery_junk_total", probe="submission") == expected["junk"]
    assert metric(tracker, "m365_delivery_success", probe="submission") == success


async def test_missing_mail_is_lost_then_late(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    t0 = clock.now()
    result = sent(probe, t0)
    tracker.track(probe, TENANT, result)
    await poll_until(tracker.poll, clock, t0 + TIMEOUT - 1, 1.0)
    assert outcomes(tracker)["lost"] == 0
    clock.advance(1)
    assert await tracker.poll()  # the look-up at the deadline misses
    assert outcomes(tracker) == {"delivered": 0, "junk": 0, "lost": 1, "late": 0}
    assert metric(tracker, "m365_delivery_lost_total", probe="submission") == 1
    assert metric(tracker, "m365_delivery_success", probe="submission") == 0
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 0

    deliver(graph_state, result.message_id, t0 + TIMEOUT + 20, auth="spf=fail; dkim=pass")
    await poll_until(tracker.poll, clock, t0 + 2 * TIMEOUT - 5, 1.0)
    assert outcomes(tracker) == {"delivered": 0, "junk": 0, "lost": 1, "late": 1}
    assert metric(tracker, "m365_delivery_latency_seconds_sum") == TIMEOUT + 20
    assert metric(tracker, "m365_delivery_success", probe="submission") == 0  # stays as lost set
    assert metric(tracker, "m365_delivery_auth_result", check="spf", result="fail") == 1
    assert metric(tracker, "m365_delivery_auth_result", check="spf", result="pass") is None


async def test_lost_mail_is_not_looked_for_after_the_grace_period(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe], late_grace=0.5)
    t0 = clock.now()
    result = sent(probe, t0)
    tracker.track(probe, TENANT, result)
    await poll_until(tracker.poll, clock, t0 + TIMEOUT * 1.5, 2.0)
    assert tracker.checks[0].stage is Stage.DONE
    deliver(graph_state, result.message_id, clock.now())
    await poll_until(tracker.poll, clock, clock.now() + TIMEOUT, 5.0)
    assert outcomes(tracker) == {"delivered": 0, "junk": 0, "lost": 1, "late": 0}


async def test_failed_send_records_nothing_and_keeps_the_gauge(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    good = sent(probe, clock.now())
    tracker.track(probe, TENANT, good)
    deliver(graph_state, good.message_id, clock.now() + 1)
    clock.advance(POLL)
    await tracker.poll()
    assert metric(tracker, "m365_delivery_success", probe="submission") == 1

    for _ in range(3):
        clock.advance(30)
        tracker.track(probe, TENANT, sent(probe, clock.now(), success=False))
        await tracker.poll()
    await poll_until(tracker.poll, clock, clock.now() + 3 * TIMEOUT, 10.0)
    assert len(tracker.checks) == 1
    assert outcomes(tracker) == {"delivered": 1, "junk": 0, "lost": 0, "late": 0}
    assert metric(tracker, "m365_delivery_success", probe="submission") == 1
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 0


async def test_probe_without_delivery_is_not_tracked(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    plain = probe_config("plain", delivery=False)
    tracker = make_tracker([probe_config(), plain])
    tracker.track(plain, TENANT, sent(plain, clock.now()))
    assert tracker.checks == []
    assert metric(tracker, "m365_delivery_pending", probe="plain") is None


async def test_newest_mail_decides_the_gauges(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    """An older mail counted lost after a newer one arrived does not flip success to 0."""
    probe = probe_config()
    tracker = make_tracker([probe])
    t0 = clock.now()
    older = sent(probe, t0)
    tracker.track(probe, TENANT, older)
    clock.advance(20)
    newer = sent(probe, clock.now())
    tracker.track(probe, TENANT, newer)
    deliver(graph_state, newer.message_id, clock.now() + 2)
    await poll_until(tracker.poll, clock, t0 + TIMEOUT + 1, 1.0)
    assert outcomes(tracker) == {"delivered": 1, "junk": 0, "lost": 1, "late": 0}
    assert metric(tracker, "m365_delivery_success", probe="submission") == 1


async def test_cleanup_off_leaves_the_mail(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    probe = probe_config(cleanup=False)
    tracker = make_tracker([probe])
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    assert await tracker.poll()
    assert outcomes(tracker)["delivered"] == 1
    assert folder_of(graph_state, result.message_id) == ["inbox"]


async def test_failed_delete_is_counted_and_retried(
    make_client: ClientFactory,
    service: GraphService,
    clock: ManualClock,
    graph_state: EmulatorState,
    make_tracker: TrackerFactory,
) -> None:
    failures = {"left": 1}

    def fail_first_delete(request: httpx.Request) -> None:
        if request.method == "DELETE" and failures["left"]:
            failures["left"] -= 1
            service.faults.inject(GraphFault.UNAVAILABLE, endpoint=EndpointKind.MAIL)

    client: GraphClient = make_client(transport=HookTransport(fail_first_delete))
    probe = probe_config()
    tracker = make_tracker([probe], clients={TENANT: client})
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    assert not await tracker.poll()  # the delete failed: reported, not raised
    assert outcomes(tracker)["delivered"] == 1
    assert metric(tracker, "m365_delivery_cleanup_failures_total", probe="submission") == 1
    assert folder_of(graph_state, result.message_id) == ["inbox"]
    assert service.traffic.count(EndpointKind.MAIL, 503) == 1

    clock.advance(5)
    assert await tracker.poll()  # retried in the next round
    assert folder_of(graph_state, result.message_id) == ["deleteditems"]
    assert outcomes(tracker) == {"delivered": 1, "junk": 0, "lost": 0, "late": 0}


async def test_delete_of_a_vanished_mail_is_not_a_failure(
    make_client: ClientFactory,
    service: GraphService,
    clock: ManualClock,
    graph_state: EmulatorState,
    make_tracker: TrackerFactory,
) -> None:
    def purge_before_delete(request: httpx.Request) -> None:
        if request.method == "DELETE":
            box = graph_state.mailbox(MAILBOX)
            assert box is not None
            box.messages.clear()

    client = make_client(transport=HookTransport(purge_before_delete))
    probe = probe_config()
    tracker = make_tracker([probe], clients={TENANT: client})
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    clock.advance(POLL)
    assert await tracker.poll()
    assert service.traffic.count(EndpointKind.MAIL, 404) == 1
    assert metric(tracker, "m365_delivery_cleanup_failures_total", probe="submission") == 0


async def test_lookup_errors_are_counted_and_the_check_survives(
    make_tracker: TrackerFactory,
    service: GraphService,
    clock: ManualClock,
    graph_state: EmulatorState,
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    result = sent(probe, clock.now())
    tracker.track(probe, TENANT, result)
    deliver(graph_state, result.message_id, clock.now() + 1)
    service.faults.inject(GraphFault.THROTTLED, endpoint=EndpointKind.MAIL)
    service.faults.inject(GraphFault.MALFORMED_JSON, endpoint=EndpointKind.MAIL)
    clock.advance(POLL)
    assert not await tracker.poll()
    assert metric(tracker, "m365_delivery_lookup_errors_total", reason="throttled") == 1
    clock.advance(15)
    assert not await tracker.poll()
    assert metric(tracker, "m365_delivery_lookup_errors_total", reason="malformed") == 1
    assert outcomes(tracker)["delivered"] == 0
    clock.advance(22.5)
    assert await tracker.poll()
    assert outcomes(tracker)["delivered"] == 1


async def test_graph_outage_past_the_grace_period_abandons_without_outcome(
    make_tracker: TrackerFactory, service: GraphService, clock: ManualClock
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe])
    tracker.track(probe, TENANT, sent(probe, clock.now()))
    service.faults.inject(GraphFault.UNAVAILABLE, count=1000, endpoint=EndpointKind.MAIL)
    await poll_until(tracker.poll, clock, clock.now() + 2 * TIMEOUT + 1, 5.0)
    assert outcomes(tracker) == {"delivered": 0, "junk": 0, "lost": 0, "late": 0}
    assert metric(tracker, "m365_delivery_abandoned_total", probe="submission") == 1
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 0


async def test_unknown_tenant_waits_without_raising(
    make_tracker: TrackerFactory, clock: ManualClock
) -> None:
    probe = probe_config()
    tracker = make_tracker([probe], clients=lambda tenant: None)
    tracker.track(probe, TENANT, sent(probe, clock.now()))
    clock.advance(POLL)
    assert not await tracker.poll()
    assert metric(tracker, "m365_delivery_pending", probe="submission") == 1

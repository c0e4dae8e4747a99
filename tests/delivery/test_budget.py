"""Mailbox look-ups and message-trace pulls share one tenant budget and never exceed it."""

from __future__ import annotations

from m365_emulator.graph.faults import EndpointKind
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.config import TraceConfig
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.trace import GraphTracePages, TracePuller
from tests.support.clock import ManualClock
from tests.support.delivery import (
    POLL,
    TENANT,
    TrackerFactory,
    deliver,
    metric,
    outcomes,
    probe_config,
    sent,
)
from tests.support.graph import ClientFactory, GraphService

LIMIT = 8
WINDOW = 300.0
MAILS = 6
# A timeout longer than the budget window, so mails held back by the budget are not lost.
PROBE = probe_config(timeout=900)


def requests_seen(service: GraphService) -> dict[str, int]:
    """Answers the emulator gave per endpoint kind (every status)."""
    seen: dict[str, int] = {}
    for key, count in service.traffic.responses().items():
        kind = key.split(".", 1)[0]
        seen[kind] = seen.get(kind, 0) + count
    return seen


def puller_for(client: GraphClient, clock: ManualClock) -> TracePuller:
    return TracePuller(
        TENANT,
        GraphTracePages(client, ["contoso.com"]),
        lambda records: None,
        settings=TraceConfig(lookback=3600),
        clock=clock,
        end_margin=0.0,
    )


def track_mails(
    tracker: DeliveryTracker, clock: ManualClock, state: EmulatorState, count: int
) -> None:
    probe = PROBE
    for _ in range(count):
        result = sent(probe, clock.now())
        tracker.track(probe, TENANT, result)
        deliver(state, result.message_id, clock.now() + 2)
        clock.advance(0.1)


async def test_lookups_leave_a_reserve_for_trace_pulls(
    make_client: ClientFactory,
    make_tracker: TrackerFactory,
    service: GraphService,
    clock: ManualClock,
    graph_state: EmulatorState,
) -> None:
    budget = RequestBudget(limit=LIMIT, window=WINDOW, clock=clock)
    client = make_client(budget=budget)
    tracker = make_tracker([PROBE], clients={TENANT: client}, budget_reserve=0.25)  # keeps 2 slots
    puller = puller_for(client, clock)
    window_start = clock.now()
    track_mails(tracker, clock, graph_state, MAILS)

    assert (await puller.pull()).ok
    clock.advance(POLL)
    assert await tracker.poll()  # cut short by the budget: not a failure
    assert budget.remaining() == 2
    assert metric(tracker, "m365_delivery_budget_deferrals_total", tenant=TENANT) == 1
    assert (await puller.pull()).ok  # the reserve is there for the trace
    assert (await puller.pull()).ok
    assert not (await puller.pull()).ok  # now the budget is spent for everyone
    assert await tracker.poll()
    seen = requests_seen(service)
    assert seen[EndpointKind.MAIL] == LIMIT - 2 - 1
    assert seen[EndpointKind.MAIL] + seen[EndpointKind.TRACE] == LIMIT
    assert clock.now() - window_start < WINDOW
    found = outcomes(tracker)["delivered"]
    assert found is not None
    assert 0 < found < MAILS

    # the window rolls on: the remaining mails are found, still within the limit per window
    for _ in range(4):
        clock.advance(WINDOW)
        before = sum(requests_seen(service).values())
        assert await tracker.poll()
        assert sum(requests_seen(service).values()) - before <= LIMIT
    assert outcomes(tracker) == {"delivered": MAILS, "junk": 0, "lost": 0, "late": 0}


async def test_without_reserve_lookups_may_use_the_whole_budget(
    make_client: ClientFactory,
    make_tracker: TrackerFactory,
    service: GraphService,
    clock: ManualClock,
    graph_state: EmulatorState,
) -> None:
    budget = RequestBudget(limit=LIMIT, window=WINDOW, clock=clock)
    client = make_client(budget=budget)
    tracker = make_tracker([PROBE], clients={TENANT: client}, budget_reserve=0.0)
    puller = puller_for(client, clock)
    track_mails(tracker, clock, graph_state, MAILS)
    assert (await puller.pull()).ok
    clock.advance(POLL)
    assert await tracker.poll()
    assert budget.remaining() == 0
    assert not (await puller.pull()).ok
    seen = requests_seen(service)
    assert seen[EndpointKind.MAIL] + seen[EndpointKind.TRACE] == LIMIT
    assert budget.spent() == LIMIT

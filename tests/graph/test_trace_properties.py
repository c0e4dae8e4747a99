"""Property: whatever the arrival order, trace lag, overlap and failed pulls, the sink gets
every row exactly once. Each example runs the puller against a fresh emulated Graph."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365_emulator.graph.faults import EndpointKind as EmulatorEndpoint
from m365_emulator.graph.faults import GraphFault
from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import TraceRow
from m365_smtp_exporter.config import TraceConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.trace import (
    DEFAULT_DEDUP_SLACK,
    GraphTracePages,
    PullResult,
    TracePuller,
)
from tests.support.clock import ManualClock
from tests.support.examples import examples
from tests.support.graph import CONTOSO, EmulatorTokens, HookTransport, graph_service, new_state
from tests.support.trace import DOMAINS, Sink, trace_row

OVERLAP = 600
# A row may show up at most this long after it was handled and still be caught: the
# overlap's promise. (Rows handled before their step are `age` old when they appear.)
MAX_AGE = 300
MAX_LAG = OVERLAP


@dataclass(frozen=True)
class Step:
    arrivals: list[tuple[int, int]]  # (age when added, further lag until visible)
    fault: tuple[GraphFault, int] | None  # fail the n-th trace request of this step's pull
    advance: int  # seconds until the next step


steps = st.lists(
    st.builds(
        Step,
        arrivals=st.lists(
            st.tuples(st.integers(0, MAX_AGE), st.integers(0, MAX_LAG - MAX_AGE)), max_size=5
        ),
        fault=st.none()
        | st.tuples(
            st.sampled_from(
                [
                    GraphFault.MALFORMED_JSON,
                    GraphFault.UNAVAILABLE,
                    GraphFault.THROTTLED,
                    GraphFault.EXPIRED_TOKEN,
                ]
            ),
            st.integers(1, 4),
        ),
        advance=st.integers(1, 400),
    ),
    min_size=1,
    max_size=6,
)


@dataclass
class Outcome:
    rows: list[TraceRow]
    sink: Sink
    puller: TracePuller
    results: list[PullResult]


async def run(scenario: list[Step]) -> Outcome:
    clock = ManualClock()
    state = new_state(clock)
    rows: list[TraceRow] = []
    sink = Sink()
    results: list[PullResult] = []
    armed: list[tuple[GraphFault, int]] = []
    sent = 0
    async with graph_service(state) as service:

        def before(request: httpx.Request) -> None:
            nonlocal sent
            sent += 1
            if armed and armed[0][1] == sent:
                service.faults.inject(armed.pop()[0], endpoint=EmulatorEndpoint.TRACE)

        async with GraphClient(
            CONTOSO.name,
            base_url=f"{service.base_url}/v1.0",
            scope=GRAPH_SCOPE,
            tokens=EmulatorTokens(state),
            budget=RequestBudget(limit=10_000, clock=clock),
            max_retries=0,
            transport=HookTransport(before),
        ) as client:
            puller = TracePuller(
                CONTOSO.name,
                GraphTracePages(client, DOMAINS),
                sink,
                settings=TraceConfig(page_size=3, overlap=OVERLAP, lookback="2h"),
                clock=clock,
                end_margin=0.0,
            )
            for step in scenario:
                for age, lag in step.arrivals:
                    received = clock() - age
                    row = trace_row(received, visible_at=received + age + lag)
                    state.add_trace_row(row)
                    rows.append(row)
                armed[:] = [step.fault] if step.fault else []
                sent = 0
                results.append(await puller.pull())
                clock.advance(step.advance)
            armed.clear()
            clock.advance(MAX_LAG + 1)  # everything has shown up by now
            results.append(await puller.pull())
    return Outcome(rows, sink, puller, results)


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=steps)
def test_every_row_reaches_the_sink_exactly_once(scenario: list[Step]) -> None:
    outcome = asyncio.run(run(scenario))

    assert outcome.results[-1].ok
    assert outcome.sink.id_counts() == Counter(row.id for row in outcome.rows)
    assert sum(outcome.puller.stats.messages.values()) == len(outcome.rows)
    assert sum(outcome.puller.stats.pulls.values()) == len(outcome.results)
    assert sum(result.rows for result in outcome.results) == len(outcome.rows)
    # memory stays bounded: only rows the next pull can re-read are remembered (the slack
    # and the one-minute buckets keep up to two minutes more)
    cursor = outcome.puller.cursor
    assert cursor is not None
    horizon = cursor - OVERLAP - DEFAULT_DEDUP_SLACK - 60
    assert outcome.puller.rows_window <= sum(row.received_at >= horizon for row in outcome.rows)

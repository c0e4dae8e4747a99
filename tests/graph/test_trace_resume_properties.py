"""Property: a back-fill interrupted anywhere (request budget spent, failed pages, a refused
resume link, a restart from saved state) resumes where it stopped, and once it completes the
quota engine's counts equal a brute-force recount of the rows. Each example runs the puller
against a fresh emulated Graph over real HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365_emulator.graph.faults import EndpointKind as EmulatorEndpoint
from m365_emulator.graph.faults import GraphFault
from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import TraceRow
from m365_smtp_exporter.config import TenantConfig, TraceConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.records import TraceRecord, to_quota_rows
from m365_smtp_exporter.graph.trace import GraphTracePages, PullResult, TracePuller
from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.tenant import TenantQuota
from tests.support.clock import ManualClock
from tests.support.examples import examples
from tests.support.graph import CONTOSO, EmulatorTokens, HookTransport, graph_service, new_state
from tests.support.trace import DOMAINS, Sink, trace_row

SENDERS = ("a@contoso.com", "b@contoso.com", "c@contoso.com")
RECIPIENTS = ("x@example.net", "y@example.org", "colleague@contoso.com")
PAGE = 3
LOOKBACK = 6 * 3600
REFUSE_LINK = "refuse_link"  # the resume link is refused with a 400 (an expired skiptoken)


@dataclass(frozen=True)
class Interruption:
    budget: int  # requests the pull may send
    fault: tuple[GraphFault | str, int] | None  # (fault, n-th request of the pull)
    restart: bool  # the exporter restarts from saved state before the pull


rows_strategy = st.lists(
    st.tuples(
        # age; the clock moves 30 s per pull (at most 9 pulls), so a row older than
        # LOOKBACK - 300 s could leave the window before the back-fill completes, and then
        # rightly never be counted
        st.integers(1, LOOKBACK - 300),
        st.sampled_from(SENDERS),
        st.sampled_from(RECIPIENTS),
        st.integers(0, 3),  # rows sharing this one's second (a busy tenant)
    ),
    max_size=25,
)
interruptions = st.lists(
    st.builds(
        Interruption,
        budget=st.integers(1, 6),
        fault=st.none()
        | st.tuples(
            st.sampled_from(
                [
                    GraphFault.MALFORMED_JSON,
                    GraphFault.UNAVAILABLE,
                    GraphFault.THROTTLED,
                    REFUSE_LINK,
                ]
            ),
            st.integers(1, 4),
        ),
        restart=st.booleans(),
    ),
    max_size=8,
)


@dataclass
class Outcome:
    rows: list[TraceRow]
    sink: Sink
    quota: TenantQuota
    results: list[PullResult]
    progress: list[float]


def _corrupt_link(request: httpx.Request) -> None:
    token = request.url.params.get("$skiptoken")
    if token is not None:
        request.url = request.url.copy_set_param("$skiptoken", "expired" + token[:8])


async def run(specs: list[tuple[int, str, str, int]], plan: list[Interruption]) -> Outcome:
    clock = ManualClock()
    state = new_state(clock)
    rows: list[TraceRow] = []
    for age, sender, recipient, twins in specs:
        for _ in range(twins + 1):
            row = trace_row(clock() - age, sender=sender, recipient=recipient)
            state.add_trace_row(row)
            rows.append(row)
    sink = Sink()
    tenant = TenantConfig.model_validate(
        {
            "tenant_id": CONTOSO.tenant_id,
            "client_id": CONTOSO.client_id,
            "client_secret": "unused",
            "accepted_domains": DOMAINS,
        }
    )
    quota = TenantQuota(CONTOSO.name, tenant, clock=clock)
    budget_clock = ManualClock(0.0)
    results: list[PullResult] = []
    progress: list[float] = []
    armed: list[tuple[GraphFault | str, int]] = []
    sent = 0

    def deliver(records: Sequence[TraceRecord]) -> None:
        sink(records)
        quota.add_rows(to_quota_rows(records))

    async with graph_service(state) as service:

        def before(request: httpx.Request) -> None:
            nonlocal sent
            sent += 1
            if armed and armed[0][1] == sent:
                fault = armed.pop()[0]
                if fault == REFUSE_LINK:
                    _corrupt_link(request)
                else:
                    assert isinstance(fault, GraphFault)
                    service.faults.inject(fault, endpoint=EmulatorEndpoint.TRACE)

        def new_puller(client: GraphClient) -> TracePuller:
            return TracePuller(
                CONTOSO.name,
                GraphTracePages(client, DOMAINS),
                deliver,
                settings=TraceConfig(page_size=PAGE, overlap=600, lookback=LOOKBACK),
                clock=clock,
                end_margin=0.0,
            )

        async with GraphClient(
            CONTOSO.name,
            base_url=f"{service.base_url}/v1.0",
            scope=GRAPH_SCOPE,
            tokens=EmulatorTokens(state),
            budget=RequestBudget(limit=10_000, clock=budget_clock),
            max_retries=0,
            transport=HookTransport(before),
        ) as client:
            puller = new_puller(client)
            for step in plan:
                if step.restart:  # a new process: only the saved state survives
                    saved = puller.export_state()
                    puller = new_puller(client)
                    puller.restore_state(saved)
                client.budget.limit = step.budget
                budget_clock.advance(300)  # a fresh budget window
                armed[:] = [step.fault] if step.fault else []
                sent = 0
                results.append(await puller.pull())
                progress.append(puller.backfill_progress)
                clock.advance(30)
            armed.clear()
            client.budget.limit = 10_000
            budget_clock.advance(300)
            results.append(await puller.pull())
            progress.append(puller.backfill_progress)
    return Outcome(rows, sink, quota, results, progress)


def brute_force_recipients(rows: list[TraceRow]) -> Counter[str]:
    """Recipients per sender in the last 24 h, counted row by row."""
    return Counter(row.sender for row in rows)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=rows_strategy, plan=interruptions)
def test_an_interrupted_backfill_completes_exactly(
    specs: list[tuple[int, str, str, int]], plan: list[Interruption]
) -> None:
    outcome = asyncio.run(run(specs, plan))

    assert outcome.results[-1].ok
    assert outcome.progress[-1] == 1.0
    # until the back-fill's first complete pull, the figures are marked partial
    first_ok = next(i for i, result in enumerate(outcome.results) if result.ok)
    assert all(0.0 <= ratio < 1.0 for ratio in outcome.progress[:first_ok])
    assert outcome.progress[:first_ok] == sorted(outcome.progress[:first_ok])
    assert outcome.sink.id_counts() == Counter(row.id for row in outcome.rows)
    snapshot = outcome.quota.engine.snapshot()
    used = {
        sender: snapshot.figure(sender, LimitName.RECIPIENTS_PER_DAY).used for sender in SENDERS
    }
    expected = brute_force_recipients(outcome.rows)
    assert used == {sender: expected[sender] for sender in SENDERS}
    external = sum(not row.recipient.endswith("@contoso.com") for row in outcome.rows)
    assert snapshot.figure("", LimitName.EXTERNAL_RECIPIENTS_PER_DAY).used == external

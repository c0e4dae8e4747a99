"""A running emulated Graph service and factories for clients and pullers pointed at it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import EmulatorState, TraceRow
from m365_smtp_exporter.config import TraceConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.graph.trace import GraphTracePages, TracePuller
from tests.emulator.conftest import ManualClock
from tests.emulator.graph_fixtures import CONTOSO, GraphService, graph_service, new_state

DOMAINS = ["contoso.com"]


class EmulatorTokens:
    """A TokenProvider minting a fresh emulator token per call (no real token endpoint)."""

    def __init__(self, state: EmulatorState, lifetime: float = 3599) -> None:
        self._state = state
        self._lifetime = lifetime
        self.issued: list[str] = []

    async def get_token(self, scope: str) -> str:
        token = self._state.issue_token(CONTOSO.name, CONTOSO.client_id, scope, self._lifetime)
        self.issued.append(token)
        return token

    async def close(self) -> None:
        return None


class HookTransport(httpx.AsyncBaseTransport):
    """A real HTTP transport that calls `before` with each request first (to arm faults at
    an exact request)."""

    def __init__(self, before: Callable[[httpx.Request], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._before = before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._before(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Sink:
    """Collects what a puller delivers, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[TraceRecord]] = []

    def __call__(self, records: Sequence[TraceRecord]) -> None:
        self.batches.append(list(records))

    @property
    def records(self) -> list[TraceRecord]:
        return [record for batch in self.batches for record in batch]

    def id_counts(self) -> Counter[str]:
        return Counter(record.id for record in self.records)


def visible_ids(state: EmulatorState, start: float, end: float) -> set[str]:
    return {row.id for row in state.trace_rows(CONTOSO.name, start, end)}


def add_rows(state: EmulatorState, rows: Sequence[TraceRow]) -> list[TraceRow]:
    for row in rows:
        state.add_trace_row(row)
    return list(rows)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def graph_state(clock: ManualClock) -> EmulatorState:
    return new_state(clock)


@pytest.fixture
async def service(graph_state: EmulatorState) -> AsyncIterator[GraphService]:
    async with graph_service(graph_state) as running:
        yield running


@pytest.fixture
def tokens(graph_state: EmulatorState) -> EmulatorTokens:
    return EmulatorTokens(graph_state)


ClientFactory = Callable[..., GraphClient]


@pytest.fixture
async def make_client(
    service: GraphService, tokens: EmulatorTokens
) -> AsyncIterator[ClientFactory]:
    """GraphClients on the emulator (v1.0 unless `version`), closed after the test."""
    made: list[GraphClient] = []

    def make(
        *,
        budget: RequestBudget | None = None,
        version: str = "v1.0",
        max_retries: int = 0,
        **options: Any,
    ) -> GraphClient:
        options.setdefault("tokens", tokens)
        options.setdefault("base_url", f"{service.base_url}/{version}")
        client = GraphClient(
            CONTOSO.name,
            scope=GRAPH_SCOPE,
            budget=budget or RequestBudget(limit=80, clock=time.monotonic),
            max_retries=max_retries,
            **options,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


PullerFactory = Callable[..., TracePuller]


@pytest.fixture
def make_puller(clock: ManualClock) -> PullerFactory:
    def make(client: GraphClient, sink: Sink, **settings: Any) -> TracePuller:
        options = {
            key: settings.pop(key)
            for key in ("on_change", "end_margin", "max_window")
            if key in settings
        }
        options.setdefault("end_margin", 0.0)
        return TracePuller(
            client.tenant,
            GraphTracePages(client, DOMAINS),
            sink,
            settings=TraceConfig(**settings),
            clock=clock,
            **options,
        )

    return make

"""`recalled`: Graph returns it only to clients sending `Prefer: include-unknown-enum-members`.

The emulator answers `unknownFutureValue` otherwise (checked over a raw socket, so the oracle
does not depend on the exporter); the exporter asks on every trace page and maps it.
"""

from __future__ import annotations

import aiohttp
import pytest

from m365_emulator.state import EmulatorState
from tests.support.clock import ManualClock
from tests.support.graph import ClientFactory, GraphService
from tests.support.trace import PullerFactory, Sink, add_rows, trace_row

TRACES = "admin/exchange/tracing/messageTraces"


async def statuses(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    *,
    version: str = "v1.0",
    prefer: list[str] | None = None,
) -> list[str]:
    headers: list[tuple[str, str]] = [("Authorization", f"Bearer {token}")]
    headers += [("Prefer", value) for value in prefer or []]
    async with session.get(f"{service.base_url}/{version}/{TRACES}", headers=headers) as answer:
        assert answer.status == 200
        document = await answer.json()
    return sorted(row["status"] for row in document["value"])


@pytest.fixture
def recalled_rows(graph_state: EmulatorState, clock: ManualClock) -> None:
    add_rows(
        graph_state,
        [
            trace_row(clock() - 60, status="recalled"),
            trace_row(clock() - 70, status="recalled"),
            trace_row(clock() - 80, status="delivered"),
        ],
    )


@pytest.mark.usefixtures("recalled_rows")
@pytest.mark.parametrize(
    ("version", "prefer", "expected"),
    [
        pytest.param("v1.0", [], ["delivered", "unknownFutureValue", "unknownFutureValue"],
                     id="no Prefer"),
        pytest.param("v1.0", ["odata.maxpagesize=10"],
                     ["delivered", "unknownFutureValue", "unknownFutureValue"],
                     id="another preference"),
        pytest.param("v1.0", ["include-unknown-enum-members"],
                     ["delivered", "recalled", "recalled"], id="opted in"),
        pytest.param("v1.0", ["odata.maxpagesize=10, Include-Unknown-Enum-Members"],
                     ["delivered", "recalled", "recalled"], id="in a list, any case"),
        pytest.param("v1.0", ["return=minimal", "include-unknown-enum-members"],
                     ["delivered", "recalled", "recalled"], id="second Prefer header"),
        pytest.param("beta", [], ["Delivered", "UnknownFutureValue", "UnknownFutureValue"],
                     id="beta, no Prefer"),
        pytest.param("beta", ["include-unknown-enum-members"],
                     ["Delivered", "Recalled", "Recalled"], id="beta, opted in"),
    ],
)  # fmt: skip
async def test_the_emulator_returns_recalled_only_to_clients_that_ask(
    service: GraphService,
    session: aiohttp.ClientSession,
    token: str,
    version: str,
    prefer: list[str],
    expected: list[str],
) -> None:
    assert await statuses(session, service, token, version=version, prefer=prefer) == expected


@pytest.mark.usefixtures("recalled_rows")
@pytest.mark.parametrize("version", ["v1.0", "beta"])
async def test_the_exporter_asks_for_recalled_on_every_page_and_maps_it(
    service: GraphService,
    make_client: ClientFactory,
    make_puller: PullerFactory,
    version: str,
) -> None:
    sink = Sink()
    puller = make_puller(make_client(version=version), sink, page_size=1)  # nextLinks too

    result = await puller.pull()

    assert result.ok and result.pages == 3
    assert sorted(record.status for record in sink.records) == [
        "delivered",
        "recalled",
        "recalled",
    ]
    assert puller.stats.messages[("recalled", "outbound")] == 2
    assert service.traffic.responses() == {"trace.200": 3}

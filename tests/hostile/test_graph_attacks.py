"""Hostile Graph answers: Retry-After extremes, giant pages, wandering nextLinks and
redirects. The budget stays usable, memory bounded, no token leaves the first path, every
refusal is counted, every failure classified."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest

from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.errors import (
    ForeignRequestError,
    GraphRequestError,
    MalformedPageError,
    ResponseTooLargeError,
)
from m365_smtp_exporter.graph.trace import GraphTracePages
from m365_smtp_exporter.graph.transport import MAX_RETRY_AFTER
from m365_smtp_exporter.graph.windows import PullWindow

from .graph_server import TRACES, HostileGraph, hostile_graph

TOKEN = "canary-graph-token-55120"
WINDOW = PullWindow(1_769_000_000, 1_769_003_600)


@pytest.fixture
async def graph() -> AsyncIterator[HostileGraph]:
    async with hostile_graph(HostileGraph()) as server:
        yield server


def client_for(graph: HostileGraph, **options: object) -> GraphClient:
    return GraphClient(
        "contoso",
        base_url=graph.base_url + "/v1.0",
        scope="https://graph.microsoft.com/.default",
        tokens=StaticTokenProvider(TOKEN),
        budget=RequestBudget(limit=50),
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("retry_after", "clamped"),
    [
        pytest.param("1000000000", True, id="31-years-in-seconds"),
        pytest.param("9" * 400, True, id="400-digits"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", True, id="year-9999"),
        pytest.param("\u0663\u0660", True, id="arabic-indic-digits"),
        pytest.param("soon, maybe", True, id="garbage"),
        pytest.param(formatdate(time.time() - 3600, usegmt=True), False, id="past-date"),
        pytest.param("120", False, id="sane"),
    ],
)
async def test_retry_after_has_a_ceiling(
    graph: HostileGraph, retry_after: str, clamped: bool
) -> None:
    graph.mode, graph.retry_after = "throttle", retry_after
    async with client_for(graph) as client:
        with pytest.raises(GraphRequestError) as raised:
            await GraphTracePages(client, []).first_page(WINDOW, 5000)
        assert raised.value.status == 429
        assert client.budget.seconds_until_available() <= MAX_RETRY_AFTER
        assert client.requests.retry_after_clamped == (1 if clamped else 0)


async def test_a_giant_page_is_abandoned_and_counted_as_malformed(graph: HostileGraph) -> None:
    graph.mode, graph.body_bytes = "giant", 8 * 1024 * 1024
    async with client_for(graph, max_body=1024 * 1024) as client:
        with pytest.raises(ResponseTooLargeError) as raised:
            await GraphTracePages(client, []).first_page(WINDOW, 5000)
        assert isinstance(raised.value, MalformedPageError)  # the pull's outcome: malformed
        assert client.requests.oversized_bodies == 1


async def test_the_default_body_cap_is_far_above_a_real_page() -> None:
    from m365_smtp_exporter.graph.transport import MAX_BODY_BYTES

    # 5,000 rows of ~600 bytes (Microsoft's largest page) are ~3 MB
    assert 5000 * 600 * 10 < MAX_BODY_BYTES <= 64 * 1024 * 1024


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("{base}/v1.0/users/someone/messages?$skiptoken=x", id="another-path"),
        pytest.param("{other}" + TRACES + "?$skiptoken=x", id="another-port"),
        pytest.param("{base_https}" + TRACES + "?$skiptoken=x", id="another-scheme"),
        pytest.param("http://graph.invalid" + TRACES + "?$skiptoken=x", id="another-host"),
        pytest.param("", id="loop"),
    ],
)
async def test_a_next_link_off_the_first_request_is_refused_without_the_token(
    graph: HostileGraph, link: str
) -> None:
    async with hostile_graph(HostileGraph()) as other:
        if link:
            graph.next_link = link.format(
                base=graph.base_url,
                other=other.base_url,
                base_https=graph.base_url.replace("http://", "https://"),
            )
        else:
            graph.mode = "self_link"
        async with client_for(graph) as client:
            pages = GraphTracePages(client, [])
            page = await pages.first_page(WINDOW, 5000)
            assert page.next_link is not None
            with pytest.raises(ForeignRequestError):
                await pages.next_page(page.next_link)
            assert client.requests.refused_requests == 1
    # the refused link was never requested: one request, to the first path, in all
    assert graph.seen + other.seen == [(TRACES, True)]


async def test_a_next_link_loop_stops_at_the_page_cap(graph: HostileGraph) -> None:
    """A server that hands out a fresh link on the same path for ever: the pull stops after
    the budget's worth of pages, never more."""
    counter = iter(range(10**6))

    async with client_for(graph) as client:
        pages = GraphTracePages(client, [])
        graph.next_link = graph.base_url + TRACES + "?$skiptoken=0"
        page = await pages.first_page(WINDOW, 5000)
        with pytest.raises(GraphRequestError):
            while page.next_link is not None:
                graph.next_link = graph.base_url + TRACES + f"?$skiptoken={next(counter)}"
                page = await pages.next_page(page.next_link)
        # every page spent the budget; the pull stopped within it
        assert len(graph.seen) <= client.budget.limit
        assert client.budget.spent() == len(graph.seen)


async def test_a_redirect_to_another_path_spends_the_budget(graph: HostileGraph) -> None:
    graph.mode = "redirect"
    async with client_for(graph) as client:
        await GraphTracePages(client, []).first_page(WINDOW, 5000)
        assert [path for path, _ in graph.seen] == [TRACES, "/v1.0/users/elsewhere/messages"]
        assert client.budget.spent() == 2  # the redirected request counted too


@pytest.mark.parametrize("seconds", [float("inf"), 1e12, 31 * 365 * 86400.0])
def test_no_caller_can_block_the_budget_for_more_than_ten_minutes(seconds: float) -> None:
    budget = RequestBudget(limit=50)
    budget.block_for(seconds)
    assert 0 < budget.seconds_until_available() <= 600


@pytest.mark.parametrize("budget", [1, 50])
def test_the_page_cap_leaves_a_budgets_worth_of_pages_to_the_budget(budget: int) -> None:
    """A back-fill bigger than the budget is ended by the budget ("budget", resumed next
    pull), not by the page cap, which would call a polite server's answer malformed."""
    from m365_smtp_exporter.graph.links import LinkGuard, max_pages_for

    first = "https://graph.microsoft.com/v1.0/admin/exchange/tracing/messageTraces?$top=5000"
    guard = LinkGuard(first, max_pages_for(5000, budget))
    for token in range(budget):  # pages 2 .. budget + 1: the last is refused by the budget
        guard.check(f"{first}&$skiptoken={token}")
    with pytest.raises(ForeignRequestError, match="pages in one pull"):
        guard.check(f"{first}&$skiptoken=last")


def test_link_guard_accepts_microsofts_own_next_links() -> None:
    from m365_smtp_exporter.graph.links import LinkGuard

    first = "https://graph.microsoft.com/v1.0/admin/exchange/tracing/messageTraces?$top=5000"
    guard = LinkGuard(first, max_pages=3)
    for token in ("a", "b"):
        link = (
            "https://graph.microsoft.com:443/v1.0/admin/exchange/tracing/messagetraces"
            f"?$top=5000&$skiptoken={token}"
        )
        assert guard.check(link) == link
    with pytest.raises(ForeignRequestError, match="more than 3 pages"):
        guard.check(first + "&$skiptoken=c")

"""The httpx transport under the Graph SDK's middleware: it sees every request on the wire.

Kiota's retry middleware re-sends a request after 429/503 without telling its caller, so
only the innermost transport knows how many requests Microsoft really received. This one
counts them by endpoint and status, spends the tenant's request budget for message-trace
calls, and honours a 429's Retry-After by blocking that budget.

Budget accounting: `GraphClient` reserves one slot (`RequestBudget.try_acquire`) before it
sends a budgeted request and marks the reservation in a context variable; the request's
first wire attempt uses that slot, every further attempt (SDK retries, a claims challenge)
and any budgeted request sent without a reservation spends an extra slot.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from email.utils import parsedate_to_datetime

import httpx

from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.endpoints import BUDGETED_ENDPOINTS, EndpointKind, endpoint_of

# A 429 without Retry-After still means "back off"; Graph usually sends one.
DEFAULT_THROTTLE_BLOCK = 30.0
NO_RESPONSE_CODE = "error"  # `code` label of requests that got no HTTP answer at all


class _Reservation:
    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = False


_RESERVATION: ContextVar[_Reservation | None] = ContextVar("graph_budget_slot", default=None)


@contextmanager
def reserved_slot(budget: RequestBudget) -> Iterator[None]:
    """Mark that the request sent inside this block already holds a slot of `budget`; the
    slot is given back if no request reached the wire (e.g. no token could be had)."""
    reservation = _Reservation()
    token = _RESERVATION.set(reservation)
    try:
        yield
    finally:
        _RESERVATION.reset(token)
        if not reservation.used:
            budget.refund()


class GraphRequestStats:
    """Wire requests by (endpoint, status code) and 429 answers by endpoint."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[EndpointKind, str]] = Counter()
        self.throttled: Counter[EndpointKind] = Counter()

    def count(self, endpoint: EndpointKind, code: int | str) -> int:
        return self.requests[(endpoint, str(code))]

    def total(self, endpoint: EndpointKind) -> int:
        return sum(n for (kind, _), n in self.requests.items() if kind is endpoint)


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; owns it and closes it."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        budget: RequestBudget,
        stats: GraphRequestStats,
        *,
        budgeted: Collection[EndpointKind] = BUDGETED_ENDPOINTS,
        default_block: float = DEFAULT_THROTTLE_BLOCK,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._budget = budget
        self._stats = stats
        self._budgeted = frozenset(budgeted)
        self._default_block = default_block
        self._wall_clock = wall_clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request.url.path)
        budgeted = endpoint in self._budgeted
        if budgeted:
            self._spend()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._stats.requests[(endpoint, NO_RESPONSE_CODE)] += 1
            raise
        self._stats.requests[(endpoint, str(response.status_code))] += 1
        if response.status_code == 429:
            self._stats.throttled[endpoint] += 1
            if budgeted:
                wait = retry_after_seconds(response.headers, self._wall_clock())
                self._budget.block_for(self._default_block if wait is None else wait)
        return response

    def _spend(self) -> None:
        reservation = _RESERVATION.get()
        if reservation is not None and not reservation.used:
            reservation.used = True  # the slot GraphClient acquired for this request
        else:
            self._budget.record_extra()

    async def aclose(self) -> None:
        await self._inner.aclose()


def retry_after_seconds(headers: httpx.Headers, now: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date); None if absent/bad."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)

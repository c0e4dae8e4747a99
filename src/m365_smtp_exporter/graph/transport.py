"""The httpx transport under the Graph SDK's middleware: it sees every request on the wire.

Kiota's retry middleware re-sends a request after 429/503 without telling its caller, so
only the innermost transport knows how many requests Microsoft really received. This one
counts them by endpoint and status, spends the tenant's request budget for message-trace
calls, and honours a 429's Retry-After by blocking that budget.

Budget accounting: `GraphClient` reserves one slot (`RequestBudget.try_acquire`) before it
sends a budgeted request and marks the reservation in a context variable; the request's
first wire attempt uses that slot, every further attempt (SDK retries, redirects, a claims
challenge, whatever their path) and any budgeted request sent without a reservation spends
an extra slot.

Hostile answers are bounded here too: Retry-After has a ceiling, a request may only go to
the origin (scheme, host, port) of the tenant's Graph base URL (a redirect elsewhere would
carry the bearer token the middleware already attached), and a body is read as a stream
and abandoned past `MAX_BODY_BYTES`.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from email.utils import parsedate_to_datetime

import httpx
import structlog

from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.endpoints import BUDGETED_ENDPOINTS, EndpointKind, endpoint_of
from m365_smtp_exporter.graph.errors import ForeignRequestError, ResponseTooLargeError

log = structlog.get_logger(__name__)

# A 429 without Retry-After still means "back off"; Graph usually sends one.
DEFAULT_THROTTLE_BLOCK = 30.0
# Graph asks for seconds to minutes; a day or a year is a broken or hostile server, and
# honouring it would silence the tenant until a restart.
MAX_RETRY_AFTER = 600.0
# Microsoft's trace pages of 5,000 rows are a few MB; mail look-ups are smaller still.
MAX_BODY_BYTES = 64 * 1024 * 1024
NO_RESPONSE_CODE = "error"  # `code` label of requests that got no HTTP answer at all
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")


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
    """Wire requests by (endpoint, status code), 429 answers by endpoint, and the hostile
    answers that were bounded."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[EndpointKind, str]] = Counter()
        self.throttled: Counter[EndpointKind] = Counter()
        # budgeted 429s while our own window count was well below the tenant's 100
        self.foreign_throttled = 0
        self.retry_after_clamped = 0  # Retry-After over the ceiling or unreadable
        self.refused_requests = 0  # to another origin, or a nextLink off the first path
        self.oversized_bodies = 0  # answers abandoned past MAX_BODY_BYTES

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
        origin: httpx.URL | None = None,
        max_body: int = MAX_BODY_BYTES,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        """`origin`: only requests to its scheme, host and port are sent (None: any)."""
        self._inner = inner
        self._budget = budget
        self._stats = stats
        self._budgeted = frozenset(budgeted)
        self._default_block = default_block
        self._wall_clock = wall_clock
        self._origin = _origin_of(origin) if origin is not None else None
        self._max_body = max_body
        self._max_retry_after = max_retry_after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        endpoint = endpoint_of(request.url.path)
        if self._origin is not None and _origin_of(request.url) != self._origin:
            self._stats.refused_requests += 1
            log.warning(
                "graph request to another origin refused",
                origin=f"{request.url.scheme}://{request.url.host}:{request.url.port}",
            )
            raise ForeignRequestError("graph request to another origin refused")
        # a retry or redirect of a budgeted request counts, wherever the server sent it
        budgeted = endpoint in self._budgeted or _RESERVATION.get() is not None
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
                if self._budget.throttled_by_others():
                    self._stats.foreign_throttled += 1
                self._budget.block_for(self._throttle_block(response.headers))
        return self._bounded(response)

    def _throttle_block(self, headers: httpx.Headers) -> float:
        raw = headers.get("retry-after", "")
        wait = retry_after_seconds(headers, self._wall_clock())
        if wait is not None and wait <= self._max_retry_after:
            return wait
        if wait is None and not raw.strip():
            return self._default_block  # absent: the usual back-off
        self._stats.retry_after_clamped += 1
        block = self._max_retry_after if wait is not None else self._default_block
        log.warning(
            "graph Retry-After clamped",
            retry_after=raw[:64],
            blocked_seconds=block,
        )
        return block

    def _bounded(self, response: httpx.Response) -> httpx.Response:
        """The response with a body that stops past `max_body` bytes."""
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            self._too_large()
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            return response
        response.stream = _LimitedStream(stream, self._max_body, self._too_large)
        return response

    def _too_large(self) -> None:
        self._stats.oversized_bodies += 1
        log.warning("graph answer too large, abandoned", limit_bytes=self._max_body)
        raise ResponseTooLargeError(
            f"graph answer larger than {self._max_body // (1024 * 1024)} MiB"
        )

    def _spend(self) -> None:
        reservation = _RESERVATION.get()
        if reservation is not None and not reservation.used:
            reservation.used = True  # the slot GraphClient acquired for this request
        else:
            self._budget.record_extra()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LimitedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int, exceeded: Callable[[], None]):
        self._inner = inner
        self._limit = limit
        self._exceeded = exceeded

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                await self._inner.aclose()
                self._exceeded()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def retry_after_seconds(headers: httpx.Headers, now: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date); None if absent or
    unreadable. Not clamped: the caller compares it with its ceiling."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):  # ASCII digits only: "٣٠".isdigit() is True
        return float(value)
    if value.isascii() and value.isdigit():
        return float("inf")  # more digits than any sane delay
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None

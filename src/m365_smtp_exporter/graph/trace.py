"""Message-trace pulls for one tenant: windowed, paged, overlapping, de-duplicated.

The caller schedules `TracePuller.pull` (every `trace.interval`, 5 minutes by default) and
hands it a sink for new rows. Each pull asks for the windows `plan_windows` gives: after a
successful pull, from the cursor minus `overlap` up to now; on the first run, `lookback`
back-filled in windows of at most 10 days. Each window is read page by page, following
`@odata.nextLink`, and is all-or-nothing: only when its last page has been read are its rows
that were never delivered before given to the sink, and the cursor moves to its end. A
failed page (HTTP error, 429 left after the SDK's retries, 401, 503, a malformed body, the
request budget spent, the pull's timeout) fails the pull; the window is read again next
time, so nothing is lost and nothing is counted twice. A back-fill keeps the windows it
finished.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

import structlog

from m365_smtp_exporter.config import TenantConfig, TraceConfig
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.dedup import NewRows, SeenRows
from m365_smtp_exporter.graph.errors import FailureReason, ForeignRequestError, GraphRequestError
from m365_smtp_exporter.graph.links import LinkGuard
from m365_smtp_exporter.graph.records import TracePage, TraceRecord, parse_trace_page
from m365_smtp_exporter.graph.windows import MAX_WINDOW, PullWindow, plan_windows

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_abstractions.request_information import RequestInformation
    from msgraph.generated.admin.exchange.tracing.message_traces.message_traces_request_builder import (  # noqa: E501
        MessageTracesRequestBuilder,
    )

log = structlog.get_logger(__name__)

SUCCESS = "success"
PULL_OUTCOMES = (SUCCESS, *(reason.value for reason in FailureReason))
# Our clock may run slightly ahead of Microsoft's; an end in the future is rejected.
DEFAULT_END_MARGIN = 5.0
# Keys are kept this much longer than the next pull can re-read (rounding, clock steps).
DEFAULT_DEDUP_SLACK = 60.0

RowSink = Callable[[Sequence[TraceRecord]], None]
_RECEIVED_AT = attrgetter("received_at")
_STATUS_AND_DIRECTION = attrgetter("status", "direction")


class TracePages(Protocol):
    """Where trace pages come from (Graph through the SDK adapter, in production)."""

    async def first_page(self, window: PullWindow, top: int) -> TracePage: ...

    async def next_page(self, link: str) -> TracePage: ...


class GraphTracePages:
    """Trace pages through the SDK's request adapter: built by the SDK, parsed by orjson."""

    def __init__(self, client: GraphClient, internal_domains: Collection[str]) -> None:
        self._client = client
        self._domains = frozenset(domain.strip().lower() for domain in internal_domains)
        self._links: LinkGuard | None = None  # the current pull's nextLink checks

    def first_request(self, window: PullWindow, top: int) -> RequestInformation:
        """The first page's request, built by the SDK's request builder."""
        builder = self._client.service.admin.exchange.tracing.message_traces
        query = MessageTracesRequestBuilder.MessageTracesRequestBuilderGetQueryParameters(
            filter=window.filter(), top=top
        )
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        info: RequestInformation = builder.to_get_request_information(config)
        return info

    async def page(self, info: RequestInformation) -> TracePage:
        """Send one page request and parse the body."""
        return parse_trace_page(await self._client.get_bytes(info), self._domains)

    async def first_page(self, window: PullWindow, top: int) -> TracePage:
        info = self.first_request(window, top)
        self._links = self._client.link_guard(info, top)
        return await self.page(info)

    async def next_page(self, link: str) -> TracePage:
        if self._links is None:
            raise ForeignRequestError("nextLink without a first page")
        return await self.page(GraphClient.request_for_url(self._links.check(link)))


@dataclass(slots=True)
class TraceStats:
    """What the metrics show about one tenant's trace pipeline."""

    messages: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, direction)
    pulls: Counter[str] = field(default_factory=Counter)  # outcome
    last_pull_ok: bool | None = None  # None until the first pull ends
    last_success_at: float = 0.0
    newest_received_at: float | None = None  # newest receivedDateTime delivered so far
    lag_seconds: float | None = None  # at the last successful pull; None before any row


class PullResult(NamedTuple):
    outcome: str  # "success" or a FailureReason value
    rows: int  # rows delivered to the sink by this pull
    windows: int  # windows read in full
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


class TracePuller:
    """Pulls one tenant's message trace. Not re-entrant: overlapping calls wait their turn."""

    def __init__(
        self,
        tenant: str,
        pages: TracePages,
        on_rows: RowSink,
        *,
        settings: TraceConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        end_margin: float = DEFAULT_END_MARGIN,
        max_window: int = MAX_WINDOW,
        dedup_slack: float = DEFAULT_DEDUP_SLACK,
    ) -> None:
        self.tenant = tenant
        self.stats = TraceStats()
        self._pages = pages
        self._on_rows = on_rows
        self._settings = settings or TraceConfig()
        self._clock = clock
        self._on_change = on_change
        self._end_margin = end_margin
        self._max_window = max_window
        self._dedup_slack = dedup_slack
        self._seen = SeenRows()
        self._cursor: int | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_tenant(
        cls,
        name: str,
        tenant: TenantConfig,
        client: GraphClient,
        on_rows: RowSink,
        **options: Any,
    ) -> TracePuller:
        """A puller reading through `client`, with the tenant's trace settings and domains."""
        pages = GraphTracePages(client, tenant.accepted_domains)
        return cls(name, pages, on_rows, settings=tenant.trace, **options)

    @property
    def cursor(self) -> int | None:
        """End (epoch seconds) of the last window read in full; None before the first."""
        return self._cursor

    @property
    def rows_window(self) -> int:
        """Row keys currently held for de-duplication."""
        return len(self._seen)

    async def pull(self) -> PullResult:
        """Read the trace up to now; failures are returned (and counted), never raised.

        `on_change` is called after every pull. An exception from the sink propagates: the
        rows it was given count as delivered and are not offered again.
        """
        async with self._lock:
            started = self._clock()
            windows = plan_windows(
                cursor=self._cursor,
                now=started,
                lookback=self._settings.lookback,
                overlap=self._settings.overlap,
                end_margin=self._end_margin,
                max_window=self._max_window,
            )
            rows = done = 0
            failure: tuple[FailureReason, str] | None = None
            try:
                async with asyncio.timeout(self._settings.timeout):
                    for window in windows:
                        rows += await self._read_window(window)
                        done += 1
            except GraphRequestError as exc:
                failure = (exc.reason, str(exc))
            except TimeoutError:
                failure = (FailureReason.TIMEOUT, f"pull took over {self._settings.timeout:g}s")
            result = self._finish(started, rows, done, len(windows), failure)
        if self._on_change is not None:
            self._on_change()
        return result

    async def _read_window(self, window: PullWindow) -> int:
        rows = NewRows(self._seen)
        page = await self._pages.first_page(window, self._settings.page_size)
        rows.add_page(page.records)
        while page.next_link is not None:
            page = await self._pages.next_page(page.next_link)
            rows.add_page(page.records)
        self._commit(window, rows)
        return len(rows.records)

    def _commit(self, window: PullWindow, rows: NewRows) -> None:
        """Remember the window's new rows, move the cursor, then hand the rows over once."""
        records = rows.records
        self._seen.add(rows.keys, records)
        self._cursor = window.end if self._cursor is None else max(self._cursor, window.end)
        self._seen.forget_before(self._cursor - self._settings.overlap - self._dedup_slack)
        if not records:
            return
        self.stats.messages.update(map(_STATUS_AND_DIRECTION, records))
        newest = max(map(_RECEIVED_AT, records))
        if self.stats.newest_received_at is None or newest > self.stats.newest_received_at:
            self.stats.newest_received_at = newest
        self._on_rows(records)

    def _finish(
        self,
        started: float,
        rows: int,
        done: int,
        planned: int,
        failure: tuple[FailureReason, str] | None,
    ) -> PullResult:
        finished = self._clock()
        stats = self.stats
        context = {
            "tenant": self.tenant,
            "rows": rows,
            "windows": f"{done}/{planned}",
            "duration": round(finished - started, 3),
            "cursor": self._cursor,
        }
        if failure is None:
            stats.pulls[SUCCESS] += 1
            stats.last_pull_ok = True
            stats.last_success_at = finished
            if stats.newest_received_at is not None:
                stats.lag_seconds = max(0.0, finished - stats.newest_received_at)
            log.info("trace pull done", **context)
            return PullResult(SUCCESS, rows, done)
        reason, error = failure
        stats.pulls[reason.value] += 1
        stats.last_pull_ok = False
        log.warning("trace pull failed", reason=reason.value, error=error, **context)
        return PullResult(reason.value, rows, done, error)

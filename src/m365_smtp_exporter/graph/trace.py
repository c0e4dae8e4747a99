"""Message-trace pulls for one tenant: windowed, paged, overlapping, de-duplicated, resumable.

The caller schedules `TracePuller.pull` (every `trace.interval`, 5 minutes by default) and
hands it a sink for new rows. Each pull asks for the windows `plan_windows` gives: after a
finished window, from the cursor minus `overlap` up to now; on the first run, `lookback`
back-filled in windows of at most 10 days. Each window is read page by page, following
`@odata.nextLink`, and each page is committed as it arrives, in receive order: its rows
that were never delivered go to the sink, and a resume point (the window, the next link and
the newest `receivedDateTime` committed) is kept. A failed page (HTTP error, 429 left after
the SDK's retries, 401, 503, a malformed body, the request budget spent, the pull's
timeout) ends the pull; the next pull continues from the resume point, never from
scratch, so a back-fill larger than the request budget spreads over as many budget
windows as it needs, and each row reaches the sink once. If Graph refuses the saved link
(4xx, e.g. an expired skiptoken), the rest of the window is asked for again from the
newest committed `receivedDateTime` (Graph lists in receive order) and de-duplication
absorbs the rows on that boundary.

De-duplication keeps the keys of the rows a later request can read again: those within
`overlap` (plus a slack) of the window's end, and those near the resume point.
`backfill_progress` (0..1) tells how much of the span the puller set out to read is read;
below 1 the quota figures built from the sink are partial (lower bounds).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import structlog

from m365_smtp_exporter.config import TenantConfig, TraceConfig
from m365_smtp_exporter.graph.dedup import SeenRows
from m365_smtp_exporter.graph.errors import (
    FailureReason,
    ForeignRequestError,
    GraphHttpError,
    GraphRequestError,
)
from m365_smtp_exporter.graph.links import LinkGuard
from m365_smtp_exporter.graph.records import TracePage, TraceRecord, TraceRows, parse_trace_page
from m365_smtp_exporter.graph.windows import MAX_WINDOW, PullWindow, plan_windows

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from kiota_abstractions.request_information import RequestInformation

    from m365_smtp_exporter.graph.client import GraphClient

log = structlog.get_logger(__name__)

SUCCESS = "success"
PULL_OUTCOMES = (SUCCESS, *(reason.value for reason in FailureReason))
# Our clock may run slightly ahead of Microsoft's; an end in the future is rejected.
DEFAULT_END_MARGIN = 5.0
# Keys are kept this much longer than the next pull can re-read (rounding, clock steps).
DEFAULT_DEDUP_SLACK = 60.0
UNFINISHED = 0.999
# Rows go to the sink in slices sized to take about SINK_SLICE_SECONDS each on the event
# loop (measured as they go: the cost per row depends on the machine and its load), so a
# scrape or a probe never waits long behind a page; the engine's per-batch cost bounds
# how small a slice gets.
SINK_SLICE_SECONDS = 0.005
SINK_SLICE_MIN = 250
SINK_SLICE = 5_000  # the largest slice (Graph's largest page)

RowSink = Callable[[Sequence[TraceRecord]], None]


class TracePages(Protocol):
    """Where trace pages come from (Graph through the SDK adapter, in production)."""

    async def first_page(self, window: PullWindow, top: int) -> TracePage: ...

    async def next_page(self, link: str) -> TracePage: ...

    async def resume_page(self, window: PullWindow, top: int, link: str) -> TracePage:
        """The page at `link`, saved by an earlier pull of `window` (a new pull begins)."""
        ...


class GraphTracePages:
    """Trace pages through the SDK's request adapter: built by the SDK, decoded by msgspec
    into columns (records.py)."""

    def __init__(self, client: GraphClient, internal_domains: Collection[str]) -> None:
        self._client = client
        self._domains = frozenset(domain.strip().lower() for domain in internal_domains)
        self._links: LinkGuard | None = None  # the current pull's nextLink checks

    def first_request(self, window: PullWindow, top: int) -> RequestInformation:
        """The first page's request, built by the SDK's request builder."""
        from m365_smtp_exporter.graph.sdk_builders import (
            MessageTracesRequestBuilder,
            RequestConfiguration,
        )

        builder = self._client.service.admin.exchange.tracing.message_traces
        query = MessageTracesRequestBuilder.MessageTracesRequestBuilderGetQueryParameters(
            filter=window.filter(), top=top
        )
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        info: RequestInformation = builder.to_get_request_information(config)
        return info

    async def page(self, info: RequestInformation) -> TracePage:
        """Send one page request and parse the body (in a worker thread: a page of 5,000
        rows takes several milliseconds, which the event loop need not wait for; the
        decode itself holds the GIL for a few of them)."""
        body = await self._client.get_bytes(info)
        return await asyncio.to_thread(parse_trace_page, body, self._domains)

    async def first_page(self, window: PullWindow, top: int) -> TracePage:
        info = self.first_request(window, top)
        self._links = self._client.link_guard(info, top)
        return await self.page(info)

    async def next_page(self, link: str) -> TracePage:
        if self._links is None:
            raise ForeignRequestError("nextLink without a first page")
        return await self.page(self._client.request_for_url(self._links.check(link)))

    async def resume_page(self, window: PullWindow, top: int, link: str) -> TracePage:
        # A resumed pull is a new pull: its own page cap, checked against where the
        # window's first request goes (a saved link may be from before a restart).
        self._links = self._client.link_guard(self.first_request(window, top), top)
        return await self.next_page(link)


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
    windows: int  # windows read to their end by this pull
    error: str | None = None
    pages: int = 0  # pages committed by this pull

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where an interrupted window continues: after its last committed page.

    Graph lists newest first, so the rows still to read are older than `oldest`."""

    window: PullWindow
    next_link: str  # the page after the last committed one, as Graph gave it
    oldest: float | None  # oldest receivedDateTime committed in the window (None: no row)
    # keys of the committed rows on `oldest`'s second, which a re-read from it repeats
    boundary: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class PullerState:
    """Everything a restarted puller needs to continue exactly (see quota/state_file.py)."""

    cursor: int | None
    resume: ResumePoint | None
    span: tuple[int, int] | None
    seen: list[tuple[int, list[tuple[str, str]]]]


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
        self._slice = 1_000  # rows per sink call, adjusted as pages go (see SINK_SLICE_SECONDS)
        self._cursor: int | None = None
        self._resume: ResumePoint | None = None
        # (start, end) the puller set out to read and has not finished: a back-fill
        self._span: tuple[int, int] | None = None
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
    def resume_point(self) -> ResumePoint | None:
        return self._resume

    @property
    def rows_window(self) -> int:
        """Row keys currently held for de-duplication."""
        return len(self._seen)

    @property
    def backfill_progress(self) -> float:
        """Share (0..1) of the span being read that is committed; 1 when caught up.

        Estimated from `receivedDateTime`: windows are read oldest first, each newest first,
        so the part read is up to the cursor plus, in a window in progress, from its end
        down to the oldest row committed."""
        if self._span is None:
            return 1.0 if self._cursor is not None else 0.0
        start, end = self._span
        if end <= start:
            return 0.0
        read = max(0.0, float(self._cursor) - start) if self._cursor is not None else 0.0
        resume = self._resume
        if resume is not None:  # a window in progress, beyond the cursor
            window = resume.window
            in_window = 0.0 if resume.oldest is None else max(0.0, window.end - resume.oldest)
            read = max(read, float(window.start) - start + in_window)
        # 1 means complete: an unfinished span never reads 1, however close it gets
        return min(UNFINISHED, read / (end - start))

    def export_state(self) -> PullerState:
        return PullerState(self._cursor, self._resume, self._span, list(self._seen.buckets()))

    def restore_state(self, state: PullerState) -> None:
        """Continue from a saved state (before the first pull)."""
        self._cursor = state.cursor
        self._resume = state.resume
        self._span = state.span
        self._seen = SeenRows()
        self._seen.restore(state.seen)

    async def pull(self) -> PullResult:
        """Read the trace up to now; failures are returned (and counted), never raised.

        `on_change` is called after every pull. An exception from the sink propagates: the
        rows it was given count as delivered and are not offered again.
        """
        async with self._lock:
            started = self._clock()
            resume = self._resume
            windows = plan_windows(
                cursor=resume.window.end if resume is not None else self._cursor,
                now=started,
                lookback=self._settings.lookback,
                overlap=self._settings.overlap,
                end_margin=self._end_margin,
                max_window=self._max_window,
            )
            planned = len(windows) + (resume is not None)
            if self._span is None and windows and (self._cursor is None or len(windows) > 1):
                self._span = (windows[0].start, windows[-1].end)
            progress = _Progress()
            failure: tuple[FailureReason, str] | None = None
            try:
                async with asyncio.timeout(self._settings.timeout):
                    if resume is not None:
                        await self._continue_window(resume, progress)
                    for window in windows:
                        await self._read_window(window, progress)
            except GraphRequestError as exc:
                failure = (exc.reason, str(exc))
            except TimeoutError:
                failure = (FailureReason.TIMEOUT, f"pull took over {self._settings.timeout:g}s")
            if failure is None:
                self._span = None
            result = self._finish(started, progress, planned, failure)
        if self._on_change is not None:
            self._on_change()
        return result

    async def _continue_window(self, resume: ResumePoint, progress: _Progress) -> None:
        window = resume.window
        try:
            page = await self._pages.resume_page(window, self._settings.page_size, resume.next_link)
        except (GraphHttpError, ForeignRequestError) as exc:
            # The link is refused (an expired skiptoken; or it no longer passes the origin
            # check): ask for the rest of the window again, down from the oldest row
            # committed; the keys on that second are known.
            log.warning(
                "trace resume link refused, re-reading the rest of the window",
                tenant=self.tenant,
                error=str(exc),
            )
            self._seen.add_keys(resume.boundary, resume.oldest or window.end)
            end = window.end if resume.oldest is None else math.ceil(resume.oldest)
            page = await self._pages.first_page(
                PullWindow(window.start, end), self._settings.page_size
            )
        await self._read_pages(window, page, resume.oldest, progress)

    async def _read_window(self, window: PullWindow, progress: _Progress) -> None:
        page = await self._pages.first_page(window, self._settings.page_size)
        await self._read_pages(window, page, None, progress)

    async def _read_pages(
        self, window: PullWindow, page: TracePage, oldest: float | None, progress: _Progress
    ) -> None:
        while True:
            oldest = await self._commit_page(window, page, oldest, progress)
            if page.next_link is None:
                break
            page = await self._pages.next_page(page.next_link)
        self._resume = None
        self._cursor = window.end if self._cursor is None else max(self._cursor, window.end)
        self._seen.forget_before(self._cursor - self._settings.overlap - self._dedup_slack)
        progress.windows += 1

    async def _commit_page(
        self, window: PullWindow, page: TracePage, oldest: float | None, progress: _Progress
    ) -> float | None:
        """Deliver the page's new rows and move the resume point past the page.

        Only keys a later request can read again are remembered: the next pull re-reads
        `overlap` before the window's end. Keys already held (the previous pull's overlap)
        are all kept until the window is read to its end."""
        records, keys = self._seen.unseen(page.records)
        since = window.end - self._settings.overlap - self._dedup_slack
        self._seen.add(keys, records, since=since)
        if page.records:
            page_oldest = min(page.records.received_at)
            oldest = page_oldest if oldest is None else min(oldest, page_oldest)
        if page.next_link is not None:
            boundary = _boundary(page, oldest)
            before = self._resume
            if before is not None and before.window == window and before.oldest == oldest:
                boundary |= before.boundary  # the second spans pages
            self._resume = ResumePoint(window, page.next_link, oldest, boundary)
        progress.pages += 1
        if records:
            await self._deliver(records)
            progress.rows += len(records)
        return oldest

    async def _deliver(self, records: TraceRows) -> None:
        self.stats.messages.update(zip(records.statuses, records.directions, strict=True))
        newest = max(records.received_at)
        if self.stats.newest_received_at is None or newest > self.stats.newest_received_at:
            self.stats.newest_received_at = newest
        # Big pages go to the sink in slices, yielding in between, so the event loop
        # (scrapes, probes) is never held for long.
        first = 0
        while first < len(records):
            started = time.perf_counter()
            chunk = records[first : first + self._slice]
            self._on_rows(chunk)
            first += len(chunk)
            spent = max(time.perf_counter() - started, 1e-6)
            # the next slice at the rate this one went (a short last slice counts its rows)
            size = int(len(chunk) * SINK_SLICE_SECONDS / spent)
            self._slice = min(max(size, SINK_SLICE_MIN), SINK_SLICE)
            if first < len(records):
                await asyncio.sleep(0)

    def _finish(
        self,
        started: float,
        progress: _Progress,
        planned: int,
        failure: tuple[FailureReason, str] | None,
    ) -> PullResult:
        finished = self._clock()
        stats = self.stats
        rows, done, pages = progress.rows, progress.windows, progress.pages
        context = {
            "tenant": self.tenant,
            "rows": rows,
            "pages": pages,
            "windows": f"{done}/{planned}",
            "duration": round(finished - started, 3),
            "cursor": self._cursor,
            "backfill_progress": round(self.backfill_progress, 4),
        }
        if failure is None:
            stats.pulls[SUCCESS] += 1
            stats.last_pull_ok = True
            stats.last_success_at = finished
            if stats.newest_received_at is not None:
                stats.lag_seconds = max(0.0, finished - stats.newest_received_at)
            log.info("trace pull done", **context)
            return PullResult(SUCCESS, rows, done, None, pages)
        reason, error = failure
        stats.pulls[reason.value] += 1
        stats.last_pull_ok = False
        log.warning("trace pull failed", reason=reason.value, error=error, **context)
        return PullResult(reason.value, rows, done, error, pages)


def _boundary(page: TracePage, oldest: float | None) -> frozenset[tuple[str, str]]:
    if oldest is None:
        return frozenset()
    last = math.floor(oldest) + 1
    rows = page.records
    return frozenset(compress(rows.keys(), [stamp < last for stamp in rows.received_at]))


@dataclass(slots=True)
class _Progress:
    rows: int = 0
    pages: int = 0
    windows: int = 0

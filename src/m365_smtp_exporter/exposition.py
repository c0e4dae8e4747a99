"""Per-source exposition: each source's families are rendered once per change of that source,
kept plain and gzip-compressed, and concatenated at scrape time.

A `Chunk` belongs to one subsystem and has its own version; `mark_changed` is the only way
its cached bodies go stale. A large chunk (`offload=True`) renders in a worker thread from a
snapshot taken on the event loop, so the loop never stalls; while a newer rendering is under
way, scrapes are served the previous one (at most one change behind, never blocked on it).
`live` sources (clock-dependent values, process metrics) are small and rendered per scrape.

Gzip members may be concatenated (RFC 1952 2.2): the scrape body is the cached compressed
chunks followed by one freshly compressed member for the live part.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import structlog
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from m365_smtp_exporter.store import ResultsStore

log = structlog.get_logger(__name__)

Collect = Callable[[], Iterable[Metric]]
Encoder = Callable[[Collector], bytes]
# A captured snapshot, encoded on demand into the pieces of its body: a large chunk is kept
# in pieces, never joined whole (a 9 MB join holds the GIL ~10 ms, stalling the event loop).
Renderer = Callable[["Format"], Sequence[bytes]]
# Fast compression: a large chunk is compressed once per change.
GZIP_LEVEL = 1
OPENMETRICS_EOF = b"# EOF\n"
_EOF_GZIP = gzip.compress(OPENMETRICS_EOF, GZIP_LEVEL, mtime=0)


@dataclass(frozen=True, slots=True)
class Format:
    """How to encode: the encoder prometheus_client chose and the Content-Type it implies."""

    encoder: Encoder
    content_type: str

    @property
    def openmetrics(self) -> bool:
        return self.content_type.startswith("application/openmetrics-text")

    @classmethod
    def negotiate(cls, accept: str | None) -> Format:
        """The exposition format for an Accept header (text 0.0.4 unless OpenMetrics asked)."""
        encoder, content_type = choose_encoder(accept or "")
        return cls(encoder, content_type)


TEXT = Format.negotiate(None)


@dataclass(frozen=True, slots=True)
class Body:
    parts: tuple[bytes, ...]  # the plain text, in pieces of about PIECE bytes
    gzip: bytes  # the whole, as gzip members (one per part the renderer returned)

    @property
    def plain(self) -> bytes:
        return b"".join(self.parts)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """Families in `fmt`, without OpenMetrics' `# EOF` (the scrape adds one at the end)."""
    body = fmt.encoder(_Families(families))
    if fmt.openmetrics:
        body = body.removesuffix(OPENMETRICS_EOF)
    return body


# A plain body is kept and written in pieces of about this size: each join and socket write
# is then short (the GIL changes hands between them), and there are few of them.
PIECE = 256 * 1024


def coalesce(parts: Iterable[bytes], size: int = PIECE) -> Iterator[bytes]:
    """`parts` joined into pieces of at least `size` bytes (the last may be shorter); a part
    that is already that large passes through without a copy."""
    group: list[bytes] = []
    held = 0
    for part in parts:
        if held and held + len(part) > size:
            yield b"".join(group)
            group, held = [], 0
        group.append(part)
        held += len(part)
    if group:
        yield b"".join(group)


def gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


_EMPTY_GZIP = gzip_member(b"")


class GzipMembers:
    """One gzip member per part, kept from one rendering to the next: a part that comes back
    (the same bytes object, such as a cached block of senders) is not compressed again. The
    members make one multi-member gzip stream, which HTTP clients read whole."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[bytes, bytes]] = {}  # id(part) -> (part, its member)

    def compress(self, parts: Iterable[bytes]) -> bytes:
        previous: dict[int, tuple[bytes, bytes]] = self._kept
        kept: dict[int, tuple[bytes, bytes]] = {}
        members: list[bytes] = []
        for part in parts:
            if not part:
                continue
            known = previous.get(id(part))
            if known is None or known[0] is not part:  # new, or another object at that id
                known = (part, gzip_member(part))
            kept[id(part)] = known
            members.append(known[1])
        self._kept = kept
        return b"".join(members) if members else _EMPTY_GZIP


class Chunk:
    """One source's cached rendering. `snapshot`, when given, is called on the loop and
    returns the function that encodes what it captured (in a worker thread when `offload`);
    without it, `collect`'s families are encoded by prometheus_client."""

    def __init__(
        self,
        name: str,
        collect: Collect,
        *,
        offload: bool = False,
        snapshot: Callable[[], Renderer] | None = None,
    ) -> None:
        self.name = name
        self._snapshot: Callable[[], Renderer] = snapshot or (
            lambda: lambda fmt: (encode(collect(), fmt),)
        )
        self.offload = offload
        self.version = 0
        self.renders = 0
        self._cache: dict[str, tuple[int, Body]] = {}  # content type -> (version, body)
        self._pending: dict[str, asyncio.Task[Body]] = {}
        self._gzip: dict[str, GzipMembers] = {}  # content type -> its members

    def _body(self, renderer: Renderer, fmt: Format) -> Body:
        parts = renderer(fmt)
        members = self._gzip.setdefault(fmt.content_type, GzipMembers())
        return Body(tuple(coalesce(parts)), members.compress(parts))

    def mark_changed(self) -> None:
        self.version += 1

    def render(self, fmt: Format = TEXT) -> Body:
        """The current body, rendered here if stale (tests, `check`; blocks the caller)."""
        cached = self._cache.get(fmt.content_type)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        version = self.version
        body = self._body(self._snapshot(), fmt)
        return self._store(fmt, version, body)

    async def render_async(self, fmt: Format = TEXT) -> Body:
        """For a scrape: never renders a large chunk on the loop, never waits for one when an
        older rendering exists."""
        cached = self._cache.get(fmt.content_type)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        if not self.offload:
            return self.render(fmt)
        task = self._pending.get(fmt.content_type)
        if task is None:
            task = asyncio.ensure_future(self._render_off_loop(fmt))
            task.add_done_callback(self._log_failure)
            self._pending[fmt.content_type] = task
        if cached is not None:
            return cached[1]
        return await asyncio.shield(task)

    async def _render_off_loop(self, fmt: Format) -> Body:
        version = self.version
        try:
            renderer = self._snapshot()  # on the loop: a consistent view of the data
            body = await asyncio.to_thread(self._body, renderer, fmt)
        finally:
            self._pending.pop(fmt.content_type, None)
        return self._store(fmt, version, body)

    def _log_failure(self, task: asyncio.Task[Body]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # the previous body keeps being served; the next scrape tries again
            log.error("exposition render failed", chunk=self.name, error=repr(task.exception()))

    def _store(self, fmt: Format, version: int, body: Body) -> Body:
        cached = self._cache.get(fmt.content_type)
        if cached is None or cached[0] <= version:
            self._cache[fmt.content_type] = (version, body)
            self.renders += 1
        return body

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)


class Exposition:
    """All chunks plus the live sources, in a fixed order (each family lives in one place)."""

    def __init__(self, chunks: Sequence[Chunk], live: Sequence[Collect] = ()) -> None:
        self.chunks = list(chunks)
        self.live = list(live)

    def _live(self) -> Iterator[Metric]:
        for source in self.live:
            yield from source()

    def render(self, fmt: Format = TEXT) -> bytes:
        """The whole plain body, rendering stale chunks here (tests and tools)."""
        parts = [chunk.render(fmt).plain for chunk in self.chunks]
        parts.append(encode(self._live(), fmt))
        if fmt.openmetrics:
            parts.append(OPENMETRICS_EOF)
        return b"".join(parts)

    def render_gzip(self, fmt: Format = TEXT) -> bytes:
        parts = [chunk.render(fmt).gzip for chunk in self.chunks]
        return b"".join(parts) + self._live_gzip(fmt)

    async def scrape(self, fmt: Format, *, compress: bool) -> bytes:
        return b"".join(await self.scrape_parts(fmt, compress=compress))

    async def scrape_parts(self, fmt: Format, *, compress: bool) -> list[bytes]:
        """The body as the cached parts it is made of, not joined: a large body (10 MB of
        plain text at 100,000 senders) is then written out piece by piece, never copied whole
        on the event loop."""
        bodies = [await chunk.render_async(fmt) for chunk in self.chunks]
        if compress:
            return [*(body.gzip for body in bodies), self._live_gzip(fmt)]
        parts = [part for body in bodies for part in body.parts]
        parts.append(encode(self._live(), fmt))
        if fmt.openmetrics:
            parts.append(OPENMETRICS_EOF)
        return parts

    def _live_gzip(self, fmt: Format) -> bytes:
        live = gzip.compress(encode(self._live(), fmt), GZIP_LEVEL, mtime=0)
        return live + (_EOF_GZIP if fmt.openmetrics else b"")

    async def close(self) -> None:
        for chunk in self.chunks:
            await chunk.close()


class PartsPayload(Payload):
    """A response body made of the cached parts, written piece by piece: a 10 MB body is
    never joined, copied whole into the transport's buffer, nor written in one go on the
    event loop (aiohttp warns about large raw bodies for this reason)."""

    def __init__(self, parts: Sequence[bytes], content_type: str) -> None:
        super().__init__(parts, content_type=content_type)
        self._parts = parts
        self._size = sum(map(len, parts))

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._parts).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._parts:
            view = memoryview(part)
            for start in range(0, len(view), PIECE):
                await writer.write(view[start : start + PIECE])


def accepts_gzip(header: str | None) -> bool:
    """RFC 9110 12.5.3: gzip (or x-gzip, or `*` when gzip is not named) with a q above 0."""
    named: float | None = None
    wildcard: float | None = None
    for item in (header or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            wildcard = q
    if named is not None:
        return named > 0
    return wildcard is not None and wildcard > 0


class CachedExposition:
    """The former single-version exposition: everything re-rendered, on the caller's thread,
    after any change of the store. Kept as the benchmark baseline and for tests of single
    collectors; the exporter serves `Exposition`."""

    def __init__(
        self,
        store: ResultsStore,
        registry: CollectorRegistry,
        live: CollectorRegistry | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._live = live
        self._cached = b""
        self._cached_version = -1
        self._gzip_state: tuple[bytes, zlib._Compress] | None = None
        self.renders = 0

    def _refresh(self) -> None:
        if self._cached_version != self._store.version:
            self._cached_version = self._store.version
            self._cached = generate_latest(self._registry)
            self._gzip_state = None
            self.renders += 1

    def render(self) -> bytes:
        self._refresh()
        return self._cached + (generate_latest(self._live) if self._live is not None else b"")

    def render_gzip(self) -> bytes:
        """One gzip member; the cached part is compressed once per change (flushed, and the
        compressor copied per scrape for the live part)."""
        self._refresh()
        if self._gzip_state is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            prefix = compressor.compress(self._cached) + compressor.flush(zlib.Z_SYNC_FLUSH)
            self._gzip_state = (prefix, compressor)
        prefix, compressor = self._gzip_state
        tail = compressor.copy()
        live = generate_latest(self._live) if self._live is not None else b""
        return prefix + tail.compress(live) + tail.flush()

"""Prometheus text exposition, rendered once per store change and then served from cache."""

from __future__ import annotations

import zlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.store import ResultsStore

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Fast compression: a large exposition is compressed once per change, at scrape time.
GZIP_LEVEL = 1
GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip container


class CachedExposition:
    """`registry` holds collectors that read the store; `live` ones (process metrics) are
    cheap and change on their own, so they are rendered on every scrape."""

    def __init__(
        self,
        store: ResultsStore,
        registry: CollectorRegistry,
        live: CollectorRegistry | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._live = live
        self._cached: bytes = b""
        self._cached_version = -1
        self._gzip_state: tuple[bytes, zlib._Compress] | None = None
        self.renders = 0

    def _refresh(self) -> None:
        if self._cached_version != self._store.version:
            version = self._store.version
            self._cached = generate_latest(self._registry)
            self._cached_version = version
            self._gzip_state = None
            self.renders += 1

    def render(self) -> bytes:
        self._refresh()
        if self._live is None:
            return self._cached
        return self._cached + generate_latest(self._live)

    def render_gzip(self) -> bytes:
        """The same body, gzip-encoded. The cached part is compressed once per change: the
        compressor is flushed (not finished) after it and copied for each scrape, so only
        the small live part is compressed per request, and the result is one gzip member."""
        self._refresh()
        if self._gzip_state is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
            prefix = compressor.compress(self._cached) + compressor.flush(zlib.Z_SYNC_FLUSH)
            self._gzip_state = (prefix, compressor)
        prefix, compressor = self._gzip_state
        tail = compressor.copy()
        live = generate_latest(self._live) if self._live is not None else b""
        return prefix + tail.compress(live) + tail.flush()

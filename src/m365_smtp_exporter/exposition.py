"""Prometheus text exposition, rendered once per store change and then served from cache."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.store import ResultsStore

CONTENT_TYPE = CONTENT_TYPE_LATEST


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
        self.renders = 0

    def render(self) -> bytes:
        if self._cached_version != self._store.version:
            version = self._store.version
            self._cached = generate_latest(self._registry)
            self._cached_version = version
            self.renders += 1
        if self._live is None:
            return self._cached
        return self._cached + generate_latest(self._live)

"""The status document behind `/api/v1/status` and the console: one source per area.

Each `StatusSource` turns what one part of the exporter holds into JSON-ready items; the
document is their union. Sources only read: building the document never does I/O or
changes exporter state. The document's shape is documented in docs/api.md (stable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from m365_smtp_exporter import __version__

STATUS_VERSION = 1
AREAS = ("tenants", "probes", "delivery", "domains")

JsonObject = dict[str, Any]


class StatusSource(Protocol):
    """One area of the status document ("tenants", "probes", "delivery" or "domains")."""

    area: str

    def items(self, now: float) -> Sequence[JsonObject]: ...


def iso(epoch: float | None) -> str | None:
    """RFC 3339 UTC with whole seconds; None for "never"/unknown (0 counts as unknown)."""
    if not epoch:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def build_status(sources: Iterable[StatusSource], now: float) -> JsonObject:
    areas: dict[str, list[JsonObject]] = {area: [] for area in AREAS}
    for source in sources:
        areas.setdefault(source.area, []).extend(source.items(now))
    return {
        "version": STATUS_VERSION,
        "exporter_version": __version__,
        "generated_at": iso(now),
        **areas,
    }


def by_key(items: Iterable[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        grouped.setdefault(str(item.get(key, "")), []).append(item)
    return grouped

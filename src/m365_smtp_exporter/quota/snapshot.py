"""Immutable results of the quota engine: one figure per (sender, limit)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from m365_smtp_exporter.quota.limits import LimitName, QuotaLimits
from m365_smtp_exporter.quota.shards import PublishedMap

TENANT_SENDER = ""  # the `sender` label of tenant-wide figures


@dataclass(frozen=True, slots=True)
class QuotaFigure:
    """Usage of one limit by one sender (or the tenant, sender "")."""

    sender: str
    limit_name: LimitName
    used: int
    limit: int
    recovery_seconds: float  # 0 when already under recovery_threshold * limit

    @property
    def utilization(self) -> float:
        return self.used / self.limit if self.limit else 0.0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class IngestStats:
    """What the engine did with the rows it was given, since it started."""

    rows_received: int = 0
    rows_counted: int = 0
    rows_stale: int = 0  # older than the 24 h window when they arrived
    rows_future_clamped: int = 0  # later than the engine clock: counted at the clock's time
    rows_ignored_status: int = 0
    rows_by_direction: Mapping[str, int] = field(default_factory=dict)
    probe_rows_counted: int = 0
    probe_rows_replaced: int = 0  # provisional probe rows replaced by their trace rows
    probe_rows_pending: int = 0


def idle_figures(limits: QuotaLimits, sender: str) -> tuple[QuotaFigure, ...]:
    """Figures of a sender with no usage in any window."""
    return tuple(
        QuotaFigure(sender, name, used=0, limit=limit, recovery_seconds=0.0)
        for name, limit in limits.sender_limits(sender)
    )


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    """Usage at `taken_at` of every sender with rows in a window, and of the tenant."""

    taken_at: float
    limits: QuotaLimits
    senders: Mapping[str, tuple[QuotaFigure, ...]]
    tenant: tuple[QuotaFigure, ...]
    stats: IngestStats = field(default_factory=IngestStats)
    # sender -> its highest utilization, when the engine kept it (see `peak_utilization`)
    peaks: Mapping[str, float] = field(default_factory=dict)
    # Which senders' figures differ from those of the snapshot numbered `delta_base` (added,
    # changed or gone), so that a consumer holding that one can update instead of re-reading
    # every sender (see cardinality.SeriesSelector); None when not known.
    # (not part of what a snapshot says: two equal snapshots may have different histories)
    generation: int = field(default=0, compare=False)  # unique in the process
    delta_base: int | None = field(default=None, compare=False)
    changed: frozenset[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # a published map is immutable already (the engine's, see shards.py); others copied
        if not isinstance(self.senders, PublishedMap):
            object.__setattr__(self, "senders", MappingProxyType(dict(self.senders)))
        if not isinstance(self.peaks, PublishedMap):
            object.__setattr__(self, "peaks", MappingProxyType(dict(self.peaks)))

    def peak_utilization(self, sender: str) -> float:
        """The sender's highest utilization over its limits (0 with no figures)."""
        peak = self.peaks.get(sender)
        if peak is None:
            peak = max((f.utilization for f in self.senders.get(sender, ())), default=0.0)
        return peak

    def figures_for(self, sender: str) -> tuple[QuotaFigure, ...]:
        """The sender's figures; zero usage for a sender with no rows in any window."""
        sender = sender.lower()
        found = self.senders.get(sender)
        return found if found is not None else idle_figures(self.limits, sender)

    def figure(self, sender: str, limit_name: LimitName) -> QuotaFigure:
        figures = self.tenant if sender == TENANT_SENDER else self.figures_for(sender)
        for figure in figures:
            if figure.limit_name == limit_name:
                return figure
        raise KeyError(f"no {limit_name} figure for sender {sender!r}")

    def all_figures(self) -> Iterator[QuotaFigure]:
        for figures in self.senders.values():
            yield from figures
        yield from self.tenant

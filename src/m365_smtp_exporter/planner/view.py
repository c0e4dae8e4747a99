"""What the planner reads from the quota accounting: a narrow, read-only seam.

The quota engine satisfies `QuotaView` today (`QuotaEngine.usage_buckets` and `.limits`);
anything else with the same shape (a restored state, a test double built from raw rows)
can stand in for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from m365_smtp_exporter.quota.limits import QuotaLimits


class SenderBuckets(Protocol):
    """Minute bucket (floor(epoch / 60)) -> count, as the quota engine keeps them."""

    @property
    def external(self) -> Mapping[int, int]: ...  # the sender's external recipients

    @property
    def internal(self) -> Mapping[int, int]: ...  # the sender's internal recipients

    @property
    def messages(self) -> Mapping[int, int]: ...  # the sender's distinct messages

    @property
    def tenant_external(self) -> Mapping[int, int]: ...  # every sender's external recipients


class QuotaView(Protocol):
    @property
    def limits(self) -> QuotaLimits: ...

    def usage_buckets(self, sender: str) -> SenderBuckets: ...


@dataclass(frozen=True, slots=True)
class TraceFreshness:
    """How current the counted rows are: drives the planner's confidence notes."""

    last_pull_ok: bool | None = None  # None: no pull has finished (or trace is off)
    last_success_at: float | None = None
    newest_row_at: float | None = None
    probe_recipients: int = 0  # the sender's probe recipients counted in the last 24 h


@dataclass(frozen=True, slots=True)
class FrozenView:
    """One sender's buckets copied out of the live engine, so the plan can be computed off
    the event loop while the engine keeps counting."""

    limits: QuotaLimits
    sender: str
    buckets: SenderBuckets

    @classmethod
    def of(cls, view: QuotaView, sender: str) -> FrozenView:
        return cls(view.limits, sender, view.usage_buckets(sender))

    def usage_buckets(self, sender: str) -> SenderBuckets:
        if sender != self.sender:
            raise KeyError(f"this view holds {self.sender!r} only")
        return self.buckets

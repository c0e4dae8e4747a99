"""Bounding the `sender` label: configured senders, the top N, and `__other__`.

Configured senders always appear (with zero usage when idle). Of the other senders the
N with the highest utilization (max over their limits) appear; the rest are summed per
limit under `sender="__other__"`: used and limit summed (so its ratio is sum used / sum
limit), recovery the longest of them. Tenant figures (sender "") pass through. Addresses
may be replaced by a salted hash at output only; the engine always works on real ones.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.snapshot import QuotaFigure, QuotaSnapshot

OTHER_SENDER = "__other__"
DEFAULT_TOP_N = 50
HASH_PREFIX = "h:"
_HASH_LENGTHS = (8, 16, 64)  # hex digits; longer only if shorter ones collide


@dataclass(frozen=True, slots=True)
class SenderSelection:
    """Which senders get their own series, and whether addresses are hashed."""

    configured: frozenset[str] = frozenset()
    top_n: int = DEFAULT_TOP_N
    hash_senders: bool = False
    hash_salt: str = ""

    def __post_init__(self) -> None:
        if self.top_n < 0:
            raise ValueError(f"top_n must be >= 0, got {self.top_n}")
        object.__setattr__(
            self, "configured", frozenset(s.strip().lower() for s in self.configured)
        )

    def __repr__(self) -> str:  # the salt is a secret: keep it out of logs
        return (
            f"SenderSelection(configured={sorted(self.configured)!r}, top_n={self.top_n},"
            f" hash_senders={self.hash_senders}, hash_salt='***')"
        )


def hash_sender(address: str, salt: str, hex_digits: int = _HASH_LENGTHS[0]) -> str:
    """`h:` + the first `hex_digits` hex digits of HMAC-SHA256(salt, address)."""
    digest = hmac.new(salt.encode(), address.lower().encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:hex_digits]


def _labels(senders: Iterable[str], selection: SenderSelection) -> dict[str, str]:
    senders = list(senders)
    if not selection.hash_senders:
        return {s: s for s in senders}
    for digits in _HASH_LENGTHS:
        labels = {s: hash_sender(s, selection.hash_salt, digits) for s in senders}
        if len(set(labels.values())) == len(labels):
            return labels
    raise AssertionError("unreachable: SHA-256 digests of distinct inputs collide")


def select_series(snapshot: QuotaSnapshot, selection: SenderSelection) -> tuple[QuotaFigure, ...]:
    """The figures to export: kept senders, `__other__` when needed, then the tenant's."""
    others = [s for s in snapshot.senders if s not in selection.configured]
    others.sort(key=lambda s: (-snapshot.peak_utilization(s), s))
    kept = sorted(selection.configured) + sorted(others[: selection.top_n])
    labels = _labels(kept, selection)
    output: list[QuotaFigure] = []
    for sender in kept:
        label = labels[sender]
        if label == sender:  # the snapshot's own figures: nothing new for the collector
            output.extend(snapshot.figures_for(sender))
        else:
            output.extend(
                QuotaFigure(label, f.limit_name, f.used, f.limit, f.recovery_seconds)
                for f in snapshot.figures_for(sender)
            )
    output.extend(_summed(snapshot, others[selection.top_n :]))
    output.extend(snapshot.tenant)
    return tuple(output)


def _summed(snapshot: QuotaSnapshot, senders: list[str]) -> list[QuotaFigure]:
    used: dict[LimitName, int] = {}
    limit: dict[LimitName, int] = {}
    recovery: dict[LimitName, float] = {}
    for sender in senders:
        for f in snapshot.senders[sender]:
            used[f.limit_name] = used.get(f.limit_name, 0) + f.used
            limit[f.limit_name] = limit.get(f.limit_name, 0) + f.limit
            recovery[f.limit_name] = max(recovery.get(f.limit_name, 0.0), f.recovery_seconds)
    return [
        QuotaFigure(OTHER_SENDER, name, used[name], limit[name], recovery[name]) for name in used
    ]

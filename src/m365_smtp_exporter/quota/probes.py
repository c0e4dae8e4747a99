"""Matching probe sends, reported at once, with the trace rows that describe them later.

A probe send is counted immediately as provisional rows, one per recipient. When the
trace row with the same (sender, message id, recipient) arrives it replaces the
provisional row: the engine retracts the provisional row and counts the trace row, so a
message is never counted twice. If the trace row comes first (a delayed probe report),
the probe report is ignored for that recipient, as long as the trace row is still within
the match horizon.
"""

from __future__ import annotations

ProbeKey = tuple[str, str, str]  # (sender, message id, recipient), all normalised


class ProbeLedger:
    """Provisional probe rows awaiting their trace rows, and recently seen trace keys."""

    __slots__ = ("_pending", "_recent_trace")

    def __init__(self) -> None:
        self._pending: dict[ProbeKey, int] = {}  # key -> bucket the provisional row is in
        self._recent_trace: dict[int, set[ProbeKey]] = {}  # trace bucket -> keys

    @property
    def pending(self) -> int:
        return len(self._pending)

    def note_trace(self, key: ProbeKey, bucket: int, horizon_cutoff: int) -> int | None:
        """Remember a trace row; return the bucket of the provisional row it replaces."""
        if bucket >= horizon_cutoff:
            keys = self._recent_trace.get(bucket)
            if keys is None:
                keys = self._recent_trace[bucket] = set()
            keys.add(key)
        if self._pending:
            return self._pending.pop(key, None)
        return None

    def claim_probe(self, key: ProbeKey, bucket: int) -> bool:
        """Record a provisional row; False when it is already counted (pending or traced)."""
        if key in self._pending:
            return False
        if any(key in keys for keys in self._recent_trace.values()):
            return False
        self._pending[key] = bucket
        return True

    def prune(self, pending_cutoff: int, horizon_cutoff: int) -> None:
        """Forget provisional rows out of every window and trace keys past the horizon."""
        for key in [k for k, bucket in self._pending.items() if bucket < pending_cutoff]:
            del self._pending[key]
        for bucket in [b for b in self._recent_trace if b < horizon_cutoff]:
            del self._recent_trace[bucket]

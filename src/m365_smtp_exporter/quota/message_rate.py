"""Distinct messages per minute bucket for one sender, over a short lookback.

The message rate limit counts messages, not recipients: the N trace rows of one message
(one per recipient) count once. A message counts once in every bucket in which it has at
least one row (its rows normally share one timestamp). Rows are reference-counted per
(bucket, message id) so that retracting a row is the exact inverse of adding it.
"""

from __future__ import annotations

from collections.abc import Mapping


class MessageRateCounter:
    """Per-bucket sets of message ids with a row count each; buckets expire lazily."""

    __slots__ = ("_buckets", "_oldest")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, int]] = {}
        self._oldest = 0  # never above the oldest bucket held: pruning is due when below cutoff

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def add(self, bucket: int, message_id: str, amount: int, cutoff: int) -> None:
        """Add `amount` rows (negative to retract) of `message_id` in `bucket`."""
        if self._oldest < cutoff:
            self.prune(cutoff)
        if bucket < cutoff:
            return
        buckets = self._buckets
        messages = buckets.get(bucket)
        if messages is None:
            if amount <= 0:
                return
            messages = buckets[bucket] = {}
            self._oldest = min(self._oldest, bucket)
        rows = messages.get(message_id, 0) + amount
        if rows > 0:
            messages[message_id] = rows
        else:
            messages.pop(message_id, None)
            if not messages:
                del buckets[bucket]

    def add_messages(self, bucket: int, rows: Mapping[str, int], cutoff: int) -> None:
        """Add positive row counts per message id in `bucket`: `add` for each, in one pass."""
        if self._oldest < cutoff:
            self.prune(cutoff)
        if bucket < cutoff or not rows:
            return
        messages = self._buckets.get(bucket)
        if messages is None:
            self._buckets[bucket] = dict(rows)
            self._oldest = min(self._oldest, bucket)
            return
        for message_id, count in rows.items():
            messages[message_id] = messages.get(message_id, 0) + count

    def prune(self, cutoff: int) -> None:
        buckets = self._buckets
        for bucket in [b for b in buckets if b < cutoff]:
            del buckets[bucket]
        self._oldest = min(buckets, default=cutoff)

    def oldest_bucket(self) -> int | None:
        """The oldest bucket held (None when empty)."""
        return min(self._buckets, default=None)

    def messages_since(self, cutoff: int) -> dict[int, dict[str, int]]:
        """Copies of the buckets from `cutoff` on: bucket -> message id -> rows."""
        return {b: dict(messages) for b, messages in self._buckets.items() if b >= cutoff}

    def counts(self) -> dict[int, int]:
        """Distinct messages per bucket."""
        return {bucket: len(messages) for bucket, messages in self._buckets.items()}

    def peak(self) -> int:
        """The busiest bucket's distinct message count (0 when empty)."""
        return max(map(len, self._buckets.values()), default=0)

    def last_bucket_reaching(self, target: float) -> int | None:
        """The newest bucket with at least `target` messages: usage stays at or above
        `target` until it expires. None when every bucket is under `target`."""
        reaching = [b for b, messages in self._buckets.items() if len(messages) >= target]
        return max(reaching, default=None)

"""When each sender's figures next change on their own: a due index by minute bucket.

A sender's figures depend on its counters, on the windows' cutoffs and, while a recovery is
running, on the clock. Between two changes of its counters they change only when a window's
cutoff passes one of its buckets, so the engine files each sender under the first minute at
which that happens and, at a snapshot, recomputes only the senders that are due (plus those
whose counters changed and those with a running recovery) instead of all of them.

Filing is conservative: a sender due too early is only recomputed for nothing. A sender
filed again supersedes its earlier entry, which is skipped when its minute comes.
"""

from __future__ import annotations

import heapq


class ExpiryIndex:
    """sender -> the minute bucket from which its figures may differ."""

    __slots__ = ("_by_bucket", "_due_at", "_heap")

    def __init__(self) -> None:
        self._due_at: dict[str, int] = {}
        self._by_bucket: dict[int, list[str]] = {}
        self._heap: list[int] = []  # the keys of `_by_bucket`, as a heap

    def __len__(self) -> int:
        return len(self._due_at)

    def file(self, sender: str, bucket: int) -> None:
        """`sender` is due when the clock reaches `bucket` (replaces its earlier filing)."""
        if self._due_at.get(sender) == bucket:
            return
        self._due_at[sender] = bucket
        senders = self._by_bucket.get(bucket)
        if senders is None:
            self._by_bucket[bucket] = senders = []
            heapq.heappush(self._heap, bucket)
        senders.append(sender)

    def forget(self, sender: str) -> None:
        self._due_at.pop(sender, None)  # its entry is skipped when its minute comes

    def pop_due(self, now_bucket: int) -> set[str]:
        """Every sender due at or before `now_bucket`, taken out of the index."""
        due: set[str] = set()
        heap, by_bucket, due_at = self._heap, self._by_bucket, self._due_at
        while heap and heap[0] <= now_bucket:
            bucket = heapq.heappop(heap)
            for sender in by_bucket.pop(bucket):
                if due_at.get(sender) == bucket:
                    del due_at[sender]
                    due.add(sender)
        return due

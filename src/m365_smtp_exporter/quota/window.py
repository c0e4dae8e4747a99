"""Minute buckets, rolling windows over them, and a compact per-bucket recipient counter.

Granularity: time is cut into aligned buckets of `BUCKET_SECONDS` (bucket = floor(t / 60)).
At time `now` a window of W seconds holds every bucket b with
``b >= bucket(now) - W / 60``: the current, partial bucket plus the W / 60 before it.
A row therefore counts from its timestamp until the end of the minute in which it becomes
W seconds old: never less than the exact sliding window, at most 60 s more. Erring on that
side keeps the headroom figures conservative.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

BUCKET_SECONDS = 60
_COUNT_BITS = 32
_COUNT_MASK = (1 << _COUNT_BITS) - 1
# the packed words' layout, for readers of `BucketCounter.words` (the quota state file)
COUNT_BITS, COUNT_MASK = _COUNT_BITS, _COUNT_MASK


def bucket_of(timestamp: float) -> int:
    """The aligned minute bucket holding `timestamp` (epoch seconds)."""
    return math.floor(timestamp / BUCKET_SECONDS)


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling window of whole buckets (see the module docstring for the exact rule)."""

    seconds: int

    @property
    def buckets(self) -> int:
        return self.seconds // BUCKET_SECONDS

    def cutoff(self, now_bucket: int) -> int:
        """The oldest bucket still inside the window when the clock is in `now_bucket`.

        Never below 0: times before the epoch have no bucket in the packed counters.
        """
        return max(0, now_bucket - self.buckets)

    def expires_at(self, bucket: int) -> float:
        """The instant `bucket` leaves the window."""
        return float((bucket + self.buckets + 1) * BUCKET_SECONDS)


DAY = Window(86_400)
HOUR = Window(3_600)


class BucketCounter:
    """Counts per bucket, sparse and sorted, with a running total.

    Each non-empty bucket is one 64-bit word ``bucket << 32 | count`` in an ``array('Q')``;
    sorting the words sorts the buckets, so lookups are a bisect. Most senders touch few
    minutes a day, so this stays far smaller than a ring of 1,441 slots per sender.
    Buckets older than the cutoff passed to `add`/`prune` are dropped lazily.
    """

    __slots__ = ("_entries", "_total")

    def __init__(self) -> None:
        self._entries: array[int] = array("Q")
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, bucket: int, amount: int, cutoff: int) -> None:
        """Add `amount` (negative to retract) to `bucket`; buckets before `cutoff` expire.

        A bucket older than `cutoff` is out of the window and ignored; retracting from a
        bucket that holds nothing is a no-op, so a retraction never goes below zero.
        """
        entries = self._entries
        if entries and entries[0] >> _COUNT_BITS < cutoff:
            self.prune(cutoff)
        if bucket < cutoff:
            return
        if entries and entries[-1] >> _COUNT_BITS == bucket:
            index = len(entries) - 1  # the common case: the newest bucket again
        else:
            index = bisect_left(entries, bucket << _COUNT_BITS)
            if index == len(entries) or entries[index] >> _COUNT_BITS != bucket:
                if amount > 0:
                    count = min(amount, _COUNT_MASK)
                    entries.insert(index, bucket << _COUNT_BITS | count)
                    self._total += count
                return
        old = entries[index] & _COUNT_MASK
        new = min(max(old + amount, 0), _COUNT_MASK)
        self._total += new - old
        if new:
            entries[index] = bucket << _COUNT_BITS | new
        else:
            del entries[index]

    def add_counts(self, counts: Mapping[int, int], cutoff: int) -> None:
        """Add positive `counts` per bucket: `add(bucket, n, cutoff)` for each, in one pass.

        Buckets after the newest one held are appended (a pull of recent rows), buckets
        before the oldest one are prepended (a back-fill: Graph lists newest first), and
        a few buckets among many go in one by one (a bisect each), and anything else is
        merged in one rebuild.
        """
        if len(counts) == 1:  # the common case of a small batch: one minute of a sender
            ((bucket, count),) = counts.items()
            if count > 0:
                self.add(bucket, count, cutoff)
            return
        self.prune(cutoff)
        words = [
            bucket << _COUNT_BITS | min(count, _COUNT_MASK)
            for bucket, count in sorted(counts.items())
            if bucket >= cutoff and count > 0
        ]
        if not words:
            return
        entries = self._entries
        if not entries or words[0] >> _COUNT_BITS > entries[-1] >> _COUNT_BITS:
            entries.extend(words)
        elif words[-1] >> _COUNT_BITS < entries[0] >> _COUNT_BITS:
            entries[0:0] = array("Q", words)
        elif len(words) * 8 < len(entries):  # a few buckets into many: an insert each
            for word in words:
                self.add(word >> _COUNT_BITS, word & _COUNT_MASK, cutoff)
            return
        else:
            merged = {word >> _COUNT_BITS: word & _COUNT_MASK for word in entries}
            for word in words:
                bucket = word >> _COUNT_BITS
                merged[bucket] = min(merged.get(bucket, 0) + (word & _COUNT_MASK), _COUNT_MASK)
            self._entries = array(
                "Q", [bucket << _COUNT_BITS | count for bucket, count in sorted(merged.items())]
            )
            self._total = sum(merged.values())
            return
        self._total += sum(word & _COUNT_MASK for word in words)

    def prune(self, cutoff: int) -> None:
        """Drop every bucket older than `cutoff`."""
        entries = self._entries
        if not entries or entries[0] >> _COUNT_BITS >= cutoff:
            return
        index = bisect_left(entries, cutoff << _COUNT_BITS)
        self._total -= sum(word & _COUNT_MASK for word in entries[:index])
        del entries[:index]

    def total_since(self, first_bucket: int) -> int:
        """The sum of the counts in buckets from `first_bucket` on."""
        entries = self._entries
        if not entries or entries[0] >> _COUNT_BITS >= first_bucket:
            return self._total
        index = bisect_left(entries, first_bucket << _COUNT_BITS)
        return sum(word & _COUNT_MASK for word in entries[index:])

    def words(self, first_bucket: int = 0) -> array[int]:
        """A copy of the packed words (``bucket << 32 | count``) from `first_bucket` on:
        what the quota state file keeps, copied without a Python object per bucket."""
        entries = self._entries
        index = bisect_left(entries, first_bucket << _COUNT_BITS) if first_bucket > 0 else 0
        return entries[index:]

    def restore_words(self, words: array[int], cutoff: int) -> None:
        """Add packed words (strictly ascending buckets, counts above 0: the caller checks)
        from `cutoff` on; into an empty counter they are taken whole, without a rebuild."""
        index = bisect_left(words, cutoff << _COUNT_BITS) if cutoff > 0 else 0
        if self._entries:
            self.add_counts({w >> _COUNT_BITS: w & _COUNT_MASK for w in words[index:]}, cutoff)
            return
        self._entries = words[index:]
        self._total = sum(word & _COUNT_MASK for word in self._entries)

    def first_bucket(self, since: int = 0) -> int | None:
        """The oldest bucket held from `since` on (None when there is none)."""
        entries = self._entries
        index = bisect_left(entries, since << _COUNT_BITS) if since > 0 else 0
        return entries[index] >> _COUNT_BITS if index < len(entries) else None

    def buckets(self, first_bucket: int = 0) -> Iterator[tuple[int, int]]:
        """(bucket, count) pairs from `first_bucket` on, oldest first."""
        entries = self._entries
        index = bisect_left(entries, first_bucket << _COUNT_BITS) if first_bucket > 0 else 0
        for word in entries[index:]:
            yield word >> _COUNT_BITS, word & _COUNT_MASK


def bucket_to_expire_for(
    target: float, counters: Sequence[BucketCounter], first_bucket: int = 0
) -> int | None:
    """The bucket whose expiry brings usage under `target`; None if already under.

    Usage is the sum over `counters` of their buckets from `first_bucket` on. Buckets
    expire oldest first, so this walks them in order and stops as soon as what is left is
    below `target`, which must be positive.
    """
    left = sum(counter.total_since(first_bucket) for counter in counters)
    if left < target:
        return None
    for bucket, count in heapq.merge(*(c.buckets(first_bucket) for c in counters)):
        left -= count
        if left < target:
            return bucket
    raise ValueError(f"target must be positive, got {target}")

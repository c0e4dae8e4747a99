"""Which trace rows are new: keys of rows already delivered, kept only as long as needed.

Rows are keyed by (trace id, recipient): Graph writes one row per message and recipient,
and a trace id may be shared by the rows of one message. A key is stored as its 64-bit
hash (a collision among a million keys has a chance of about 3e-8) in a bucket per minute
of `receivedDateTime`, so forgetting the keys a pull can no longer re-read drops whole
buckets. Work is done per page and per bucket with C-level iteration where possible: a
back-fill hands over hundreds of thousands of rows at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import attrgetter, itemgetter

from m365_smtp_exporter.graph.records import TraceRecord

BUCKET_SECONDS = 60.0
_ID = attrgetter("id")
_RECIPIENT = attrgetter("recipient")
_RECEIVED_AT = attrgetter("received_at")
_MINUTE = itemgetter(0)
_KEY = itemgetter(1)


def row_keys(records: Sequence[TraceRecord]) -> list[int]:
    return list(map(hash, zip(map(_ID, records), map(_RECIPIENT, records), strict=True)))


def _minutes(received_at: Iterable[float]) -> Iterable[int]:
    return map(int, map(BUCKET_SECONDS.__rfloordiv__, received_at))


class SeenRows:
    """Keys of delivered rows, bucketed by minute."""

    def __init__(self) -> None:
        self._buckets: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def has(self, key: int, received_at: float) -> bool:
        bucket = self._buckets.get(int(received_at // BUCKET_SECONDS))
        return bucket is not None and key in bucket

    def add(self, keys: Sequence[int], records: Sequence[TraceRecord]) -> None:
        """Remember `keys`, the keys of `records` (in the same order)."""
        buckets = self._buckets
        pairs = zip(_minutes(map(_RECEIVED_AT, records)), keys, strict=True)
        for minute, group in groupby(pairs, key=_MINUTE):
            bucket = buckets.get(minute)
            if bucket is None:
                bucket = buckets[minute] = set()
            bucket.update(map(_KEY, group))

    def forget_before(self, horizon: float) -> None:
        """Drop keys of rows received entirely before `horizon` (whole minutes only)."""
        last_dropped = int(horizon // BUCKET_SECONDS) - 1
        for minute in [m for m in self._buckets if m <= last_dropped]:
            del self._buckets[minute]


class NewRows:
    """The rows of one window that were never delivered, collected page by page."""

    def __init__(self, seen: SeenRows) -> None:
        self._seen = seen
        self._fresh: set[int] = set()
        self.records: list[TraceRecord] = []
        self.keys: list[int] = []

    def add_page(self, records: Sequence[TraceRecord]) -> None:
        keys = row_keys(records)
        page_keys = set(keys)
        fresh = self._fresh
        if not self._seen and len(page_keys) == len(keys) and fresh.isdisjoint(page_keys):
            fresh |= page_keys  # a back-fill: nothing delivered yet, nothing repeated
            self.records.extend(records)
            self.keys.extend(keys)
            return
        seen = self._seen
        for key, record in zip(keys, records, strict=True):
            if key in fresh or seen.has(key, record.received_at):
                continue
            fresh.add(key)
            self.keys.append(key)
            self.records.append(record)

"""Which trace rows are new: keys of rows already delivered, kept only as long as needed.

Rows are keyed by (trace id, recipient): Graph writes one row per message and recipient,
and a trace id may be shared by the rows of one message. Keys are kept as those string
pairs (stable across processes, so they can be persisted) in a bucket per minute of
`receivedDateTime`, and only for the rows a later request can read again (the pull overlap
and the newest rows of a window in progress, see trace.py): memory follows the overlap,
not the window. Forgetting drops whole buckets. A page is checked in one pass of C-level
work when none of its rows fall in a remembered minute, which is the common case of a
back-fill.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import compress

from m365_smtp_exporter.graph.records import TraceRecord, TraceRows

BUCKET_SECONDS = 60
RowKey = tuple[str, str]  # (trace id, recipient)


def row_keys(records: Sequence[TraceRecord]) -> list[RowKey]:
    return TraceRows.from_records(records).keys()


def minute_of(received_at: float) -> int:
    return int(received_at // BUCKET_SECONDS)


class SeenRows:
    """Keys of delivered rows, bucketed by minute."""

    def __init__(self) -> None:
        self._buckets: dict[int, set[RowKey]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def has(self, key: RowKey, received_at: float) -> bool:
        bucket = self._buckets.get(minute_of(received_at))
        return bucket is not None and key in bucket

    def unseen(self, records: Sequence[TraceRecord]) -> tuple[TraceRows, list[RowKey]]:
        """The rows of `records` never remembered nor repeated earlier in `records`, with
        their keys (in order)."""
        rows = TraceRows.from_records(records)
        keys = rows.keys()
        if not rows:
            return rows, keys
        buckets = self._buckets
        distinct = len(set(keys)) == len(keys)
        if distinct and not self._may_hold(rows.received_at):
            return rows, keys
        fresh: list[bool] = []
        mark = fresh.append
        page: set[RowKey] = set()
        for key, received_at in zip(keys, rows.received_at, strict=True):
            bucket = buckets.get(minute_of(received_at))
            new = key not in page and (bucket is None or key not in bucket)
            if new and not distinct:
                page.add(key)
            mark(new)
        return rows.select(fresh), list(compress(keys, fresh))

    def _may_hold(self, received_at: Sequence[float]) -> bool:
        """Whether any of `received_at` falls in a remembered minute (cheap range test)."""
        if not self._buckets:
            return False
        lowest = minute_of(min(received_at))
        highest = minute_of(max(received_at))
        return any(lowest <= minute <= highest for minute in self._buckets)

    def add(self, keys: Sequence[RowKey], records: Sequence[TraceRecord], *, since: float) -> None:
        """Remember the keys of `records` (same order) received at or after `since`."""
        stamps = TraceRows.from_records(records).received_at
        if not stamps or max(stamps) < since:
            return  # a back-fill page far behind the overlap: nothing will read it again
        buckets = self._buckets
        for key, received in zip(keys, stamps, strict=True):
            if received < since:
                continue
            minute = minute_of(received)
            bucket = buckets.get(minute)
            if bucket is None:
                bucket = buckets[minute] = set()
            bucket.add(key)

    def add_keys(self, keys: Iterable[RowKey], received_at: float) -> None:
        """Remember keys of rows received at `received_at`."""
        self._buckets.setdefault(minute_of(received_at), set()).update(keys)

    def forget_before(self, horizon: float) -> None:
        """Drop keys of rows received entirely before `horizon` (whole minutes only)."""
        last_dropped = minute_of(horizon) - 1
        for minute in [m for m in self._buckets if m <= last_dropped]:
            del self._buckets[minute]

    def buckets(self) -> Iterator[tuple[int, list[RowKey]]]:
        """(minute, keys) of every bucket, oldest first, to persist them."""
        for minute in sorted(self._buckets):
            yield minute, sorted(self._buckets[minute])

    def restore(self, buckets: Iterable[tuple[int, Iterable[RowKey]]]) -> None:
        for minute, keys in buckets:
            self._buckets.setdefault(minute, set()).update(keys)

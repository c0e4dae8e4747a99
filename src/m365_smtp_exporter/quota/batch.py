"""One batch of trace rows summed per sender and minute, before the engine's counters see it.

A back-fill hands the engine hundreds of thousands of rows at once, and a tenant's rows
repeat the same senders, correspondents and minutes over and over. So each distinct address
is normalised and judged once per batch, rows are summed per (sender, bucket), and the
engine adds each sum to its counters once instead of touching them for every row. The
counting rules are those documented in engine.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from math import floor
from operator import and_, itemgetter, not_, truediv
from typing import NamedTuple

from m365_smtp_exporter.quota.probes import ProbeLedger
from m365_smtp_exporter.quota.rows import (
    Direction,
    RowColumns,
    RowFields,
    domain_of,
    normalize_address,
    normalize_message_id,
)
from m365_smtp_exporter.quota.window import BUCKET_SECONDS


class BatchCutoffs(NamedTuple):
    """The oldest bucket inside each window when the batch is counted."""

    day: int
    messages: int  # the message-rate lookback
    horizon: int  # the probe match horizon


class Retraction(NamedTuple):
    """A provisional probe row that a trace row of the batch replaces."""

    sender: str
    message_id: str
    bucket: int
    external: bool


@dataclass(slots=True)
class BatchSums:
    """What one batch adds to the counters, and how many of its rows went which way."""

    # (sender, bucket, recipient in an accepted domain) -> rows
    rows: dict[tuple[str, int, bool], int] = field(default_factory=dict)
    tenant_external: dict[int, int] = field(default_factory=dict)  # bucket -> rows, all senders
    # (sender, bucket) -> message id -> rows, for buckets inside the message-rate lookback
    messages: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    retractions: list[Retraction] = field(default_factory=list)
    by_direction: dict[Direction, int] = field(default_factory=dict)  # every row received
    future_clamped: int = 0
    stale: int = 0
    status_ignored: int = 0

    @property
    def received(self) -> int:
        return sum(self.by_direction.values())

    @property
    def counted(self) -> int:
        ours = self.by_direction.get(Direction.OUTBOUND, 0)
        ours += self.by_direction.get(Direction.INTERNAL, 0)
        return ours - self.stale - self.status_ignored


class AddressBook(dict[str, tuple[str, bool]]):
    """Raw address -> (normalised address, whether its domain is accepted), learnt on first
    lookup (`book[raw]`).

    The engine keeps one across batches (a tenant's pages repeat the same addresses), and
    starts it over past `max_entries` so hostile input cannot grow it without bound."""

    __slots__ = ("_internal_domains", "max_entries")

    def __init__(self, internal_domains: Collection[str], max_entries: int = 1 << 17) -> None:
        super().__init__()
        self._internal_domains = internal_domains
        self.max_entries = max_entries

    def learn(self, raw: str) -> tuple[str, bool]:
        if len(self) >= self.max_entries:
            self.clear()
        address = normalize_address(raw)
        if address == raw:
            address = raw  # already normalised (the trace parser does it): keep one string
        entry = self[raw] = (address, domain_of(address) in self._internal_domains)
        return entry

    __missing__ = learn


_ADDRESS = itemgetter(0)
_OURS = itemgetter(1)


def sum_rows(
    rows: Iterable[RowFields],
    *,
    now: float,
    cutoffs: BatchCutoffs,
    internal_domains: Collection[str],
    ignored_statuses: Collection[str],
    probes: ProbeLedger,
    addresses: AddressBook | None = None,
) -> BatchSums:
    """Sum `rows` as the engine counts them at `now`; trace keys are noted in `probes`.

    Column by column: each step is a C-level pass (`map`, `compress`, `Counter`) over the
    batch; Python runs once per distinct (sender, bucket, direction), and once per row only
    for the rows the probe ledger or the message rate must see one by one (the last minutes).
    """
    sums = BatchSums()
    columns = RowColumns.of(rows)
    if not len(columns):
        return sums
    if addresses is None:
        addresses = AddressBook(internal_domains)
    learnt = addresses.__getitem__
    senders_known = list(map(learnt, columns.senders))
    recipients_known = list(map(learnt, columns.recipients))
    sender_ours = list(map(_OURS, senders_known))
    recipient_ours = list(map(_OURS, recipients_known))
    ways = Counter(zip(sender_ours, recipient_ours, strict=True))
    directions = {
        Direction.OUTBOUND: ways[True, False],
        Direction.INTERNAL: ways[True, True],
        Direction.INBOUND: ways[False, True],
        Direction.RELAY: ways[False, False],
    }
    sums.by_direction = {direction: n for direction, n in directions.items() if n}
    ours = ways[True, False] + ways[True, True]
    if not ours:
        return sums
    if ours == len(columns):
        senders = list(map(_ADDRESS, senders_known))
        inside = recipient_ours
        stamps = list(columns.received_at)
        mine = columns
    else:  # only our senders' rows count
        senders = list(map(_ADDRESS, compress(senders_known, sender_ours)))
        inside = list(compress(recipient_ours, sender_ours))
        recipients_known = list(compress(recipients_known, sender_ours))
        mine = columns.select(sender_ours)
        stamps = list(mine.received_at)
    if max(stamps) > now:  # clock skew: counted at the engine's time
        sums.future_clamped = sum(stamp > now for stamp in stamps)
        stamps = [min(stamp, now) for stamp in stamps]
    buckets = list(map(floor, map(truediv, stamps, repeat(BUCKET_SECONDS))))
    day_cutoff, message_cutoff, horizon_cutoff = cutoffs
    newest = max(buckets)
    # a trace row only matters to the probe ledger inside the match horizon, or when
    # provisional probe rows wait for it (none are added while a batch is summed)
    if probes.pending or newest >= horizon_cutoff:
        _note_probe_rows(
            sums,
            probes,
            senders=senders,
            recipients=recipients_known,
            message_ids=mine.message_ids,
            buckets=buckets,
            inside=inside,
            horizon_cutoff=horizon_cutoff,
            every_row=probes.pending > 0,
        )
    keep: list[bool] | None = None
    if ignored_statuses:
        ignored = list(map(_IgnoredStatuses(ignored_statuses).__getitem__, mine.statuses))
        sums.status_ignored = sum(ignored)
        if sums.status_ignored:
            keep = [not flag for flag in ignored]
    if min(buckets) < day_cutoff:
        fresh = [bucket >= day_cutoff for bucket in buckets]
        kept = fresh if keep is None else list(map(and_, keep, fresh))
        sums.stale = (len(buckets) if keep is None else sum(keep)) - sum(kept)
        keep = kept
    message_ids: Sequence[str] = mine.message_ids
    if keep is not None:
        senders = list(compress(senders, keep))
        buckets = list(compress(buckets, keep))
        inside = list(compress(inside, keep))
        message_ids = list(compress(message_ids, keep))
    _count(sums, senders, buckets, inside)
    if newest >= message_cutoff:
        _count_messages(sums, senders, buckets, message_ids, message_cutoff)
    return sums


def _note_probe_rows(
    sums: BatchSums,
    probes: ProbeLedger,
    *,
    senders: list[str],
    recipients: list[tuple[str, bool]],
    message_ids: Sequence[str],
    buckets: list[int],
    inside: list[bool],
    horizon_cutoff: int,
    every_row: bool,
) -> None:
    """Note the trace keys of the rows the probe ledger must see, in order; a row that
    replaces a provisional probe row is retracted from the sums."""
    note_trace, retract = probes.note_trace, sums.retractions.append
    rows = zip(senders, recipients, message_ids, buckets, inside, strict=True)
    for sender, (recipient, _), raw_message_id, bucket, recipient_ours in rows:
        if not every_row and bucket < horizon_cutoff:
            continue
        message_id = normalize_message_id(raw_message_id)
        replaced = note_trace((sender, message_id, recipient), bucket, horizon_cutoff)
        if replaced is not None:
            retract(Retraction(sender, message_id, replaced, not recipient_ours))


def _count(sums: BatchSums, senders: list[str], buckets: list[int], inside: list[bool]) -> None:
    """Rows per (sender, bucket, internal or not), and external rows per bucket."""
    sums.rows = Counter(zip(senders, buckets, inside, strict=True))
    sums.tenant_external = Counter(compress(buckets, map(not_, inside)))


def _count_messages(
    sums: BatchSums,
    senders: list[str],
    buckets: list[int],
    message_ids: Sequence[str],
    message_cutoff: int,
) -> None:
    """Rows per message id in each (sender, bucket) inside the message-rate lookback."""
    message_rows = sums.messages
    for sender, bucket, raw_message_id in zip(senders, buckets, message_ids, strict=True):
        if bucket < message_cutoff:
            continue
        message_id = normalize_message_id(raw_message_id)
        key = (sender, bucket)
        messages = message_rows.get(key)
        if messages is None:
            messages = message_rows[key] = {}
        messages[message_id] = messages.get(message_id, 0) + 1


class _IgnoredStatuses(dict[str, bool]):
    """status -> whether it is listed in the ignored statuses (compared lower-cased)."""

    def __init__(self, ignored: Collection[str]) -> None:
        super().__init__()
        self._ignored = ignored

    def __missing__(self, status: str) -> bool:
        flag = self[status] = status.lower() in self._ignored
        return flag

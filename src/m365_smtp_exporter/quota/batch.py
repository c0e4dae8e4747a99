"""One batch of trace rows summed per sender and minute, before the engine's counters see it.

A back-fill hands the engine hundreds of thousands of rows at once, and a tenant's rows
repeat the same senders, correspondents and minutes over and over. So each distinct address
is normalised and judged once per batch, rows are summed per (sender, bucket), and the
engine adds each sum to its counters once instead of touching them for every row. The
counting rules are those documented in engine.py.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from m365_smtp_exporter.quota.probes import ProbeLedger
from m365_smtp_exporter.quota.rows import (
    Direction,
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

    external: dict[str, dict[int, int]] = field(default_factory=dict)  # sender -> bucket -> rows
    tenant_external: dict[int, int] = field(default_factory=dict)  # bucket -> rows, all senders
    internal: dict[str, dict[int, int]] = field(default_factory=dict)
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
    """Raw address -> (normalised address, whether its domain is accepted).

    The engine keeps one across batches (a tenant's pages repeat the same addresses), and
    starts it over past `max_entries` so hostile input cannot grow it without bound."""

    __slots__ = ("_internal_domains", "max_entries")

    def __init__(self, internal_domains: Collection[str], max_entries: int = 20_000) -> None:
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

    One loop with everything it touches in local names: it runs once per row.
    """
    sums = BatchSums()
    external_rows, internal_rows, message_rows = sums.external, sums.internal, sums.messages
    retract = sums.retractions.append
    day_cutoff, message_cutoff, horizon_cutoff = cutoffs
    # a trace row only matters to the probe ledger inside the match horizon, or when
    # provisional probe rows wait for it (none are added while a batch is summed)
    probes_pending = probes.pending > 0
    note_trace = probes.note_trace
    if addresses is None:
        addresses = AddressBook(internal_domains)
    tenant_rows = sums.tenant_external
    known, learn = addresses.get, addresses.learn
    floor = math.floor
    outbound = internal = inbound = relay = future = stale = status_ignored = 0
    for raw_sender, raw_recipient, raw_message_id, received_at, status in rows:
        sender, sender_ours = known(raw_sender) or learn(raw_sender)
        recipient, recipient_ours = known(raw_recipient) or learn(raw_recipient)
        if not sender_ours:
            if recipient_ours:
                inbound += 1
            else:
                relay += 1
            continue
        if recipient_ours:
            internal += 1
            per_sender = internal_rows
        else:
            outbound += 1
            per_sender = external_rows
        if received_at > now:  # clock skew: counted at the engine's time
            bucket = floor(now / BUCKET_SECONDS)
            future += 1
        else:
            bucket = floor(received_at / BUCKET_SECONDS)
        message_id = None
        if probes_pending or bucket >= horizon_cutoff:
            message_id = normalize_message_id(raw_message_id)
            replaced = note_trace((sender, message_id, recipient), bucket, horizon_cutoff)
            if replaced is not None:
                retract(Retraction(sender, message_id, replaced, not recipient_ours))
        if ignored_statuses and status.lower() in ignored_statuses:
            status_ignored += 1
            continue
        if bucket < day_cutoff:
            stale += 1
            continue
        buckets = per_sender.get(sender)
        if buckets is None:
            buckets = per_sender[sender] = {}
        buckets[bucket] = buckets.get(bucket, 0) + 1
        if not recipient_ours:
            tenant_rows[bucket] = tenant_rows.get(bucket, 0) + 1
        if bucket >= message_cutoff:
            if message_id is None:
                message_id = normalize_message_id(raw_message_id)
            key = (sender, bucket)
            messages = message_rows.get(key)
            if messages is None:
                messages = message_rows[key] = {}
            messages[message_id] = messages.get(message_id, 0) + 1
    directions = {
        Direction.OUTBOUND: outbound,
        Direction.INTERNAL: internal,
        Direction.INBOUND: inbound,
        Direction.RELAY: relay,
    }
    sums.by_direction = {direction: n for direction, n in directions.items() if n}
    sums.future_clamped, sums.stale, sums.status_ignored = future, stale, status_ignored
    return sums

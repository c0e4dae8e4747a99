"""The quota engine: rolling per-sender and tenant usage rebuilt from message-trace rows.

Pure computation: the clock is injected and there is no I/O. Rules (see also window.py
for the bucket granularity; batch.py sums each batch of rows before the counters see it):

- Only rows whose sender is in an accepted domain count; inbound and relayed rows are
  only tallied by direction.
- Every attempted recipient counts, whatever its status (delivered, failed, pending,
  filteredAsSpam, quarantined, expanded, unknown values, ...), because Microsoft counts
  attempts, not deliveries; statuses listed in `QuotaLimits.ignored_statuses` are skipped.
  A distribution list row ("expanded") counts as one; its member rows cannot be told apart
  from direct recipients in the trace, so they count too (an overestimate, on the safe side).
- A row older than the 24 h window when it arrives is ignored. A row stamped later than the
  engine clock (clock skew) is counted at the clock's time, so it also ages out by the
  skew earlier than its stamp says; the buckets stay bounded by the clock.
- The engine clock never goes backwards: it is the latest time seen from `now_fn` or
  passed to `snapshot`.
- `messages_per_minute` reports the busiest aligned minute within the last
  `message_rate_lookback_seconds` (trace rows arrive minutes late, so the current minute
  alone would always read 0); a message counts once per minute it has rows in.
- `recipients_per_day`, `spam_recipients_per_day` and the tenant's
  `external_recipients_per_day` are rolling 24 h windows; `spam_external_per_hour` and
  `spam_internal_per_hour` rolling 1 h windows of the sender's external / internal
  recipients.
- Each row given is counted once: callers de-duplicate trace rows by trace id. Probe sends
  reported through `record_probe_send` are replaced by their trace rows (see probes.py).

Snapshots are incremental: a sender's figures are recomputed only when its counters changed,
a window's cutoff passed one of its buckets (expiry.py keeps when), or a recovery time is
running (it follows the clock); otherwise the previous snapshot's tuple is reused. A snapshot
every second of 100,000 senders then touches a few hundred of them and allocates almost
nothing, which keeps the loop responsive and full garbage collections rare.
"""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import NamedTuple

from m365_smtp_exporter.quota.batch import AddressBook, BatchCutoffs, BatchSums, sum_rows
from m365_smtp_exporter.quota.expiry import ExpiryIndex
from m365_smtp_exporter.quota.limits import LimitName, QuotaLimits
from m365_smtp_exporter.quota.message_rate import MessageRateCounter
from m365_smtp_exporter.quota.probes import ProbeKey, ProbeLedger
from m365_smtp_exporter.quota.rows import (
    Direction,
    RowFields,
    direction_of,
    normalize_address,
    normalize_message_id,
)
from m365_smtp_exporter.quota.shards import ShardedMap
from m365_smtp_exporter.quota.snapshot import (
    TENANT_SENDER,
    IngestStats,
    QuotaFigure,
    QuotaSnapshot,
)
from m365_smtp_exporter.quota.window import (
    COUNT_BITS,
    COUNT_MASK,
    DAY,
    HOUR,
    BucketCounter,
    Window,
    bucket_of,
    bucket_to_expire_for,
)

DEFAULT_PROBE_MATCH_HORIZON_SECONDS = 900
_GENERATIONS = itertools.count(1)  # snapshot numbers, unique across engines
_SENDER_OF_SUM = itemgetter(0)


class SenderUsageState(NamedTuple):
    """One sender's buckets, to persist them (see state_file.py)."""

    # BucketCounter's packed words, ``bucket << 32 | recipients``, buckets ascending: a
    # million buckets take 8 MB this way, where a dict would hold ~100 MB of int objects
    external: array[int]
    internal: array[int]
    messages: dict[int, dict[str, int]]  # bucket -> message id -> rows


class EngineUsage(NamedTuple):
    senders: dict[str, SenderUsageState]


class _SenderUsage:
    """Everything counted for one of our senders over the 24 h window.

    Recipients are split by direction; the hourly spam-policy figures are the tails of
    the same counters, so each row touches one recipient counter.
    """

    __slots__ = ("external", "internal", "messages")

    def __init__(self) -> None:
        self.external = BucketCounter()
        self.internal = BucketCounter()
        self.messages = MessageRateCounter()

    def __bool__(self) -> bool:
        return bool(self.external or self.internal or self.messages)


class _Cutoffs:
    """Oldest bucket of each window at one instant."""

    __slots__ = ("day", "horizon", "hour", "messages")

    def __init__(self, now_bucket: int, message_window: Window, horizon: Window) -> None:
        self.day = DAY.cutoff(now_bucket)
        self.hour = HOUR.cutoff(now_bucket)
        self.messages = message_window.cutoff(now_bucket)
        self.horizon = horizon.cutoff(now_bucket)


def _recovery(now: float, expiring_bucket: int | None, window: Window) -> float:
    if expiring_bucket is None:
        return 0.0
    return max(0.0, window.expires_at(expiring_bucket) - now)


def _settled(figures: tuple[QuotaFigure, ...]) -> bool:
    """No recovery under way: the figures do not depend on the clock, only on the counters
    and the windows' cutoffs (a running recovery is always above 0, see `_recovery`)."""
    return all(figure.recovery_seconds == 0.0 for figure in figures)


class UsageBuckets(NamedTuple):
    """Copies of the minute buckets behind one sender's figures and the tenant's external
    count: what the campaign planner projects forward (bucket -> recipients or messages)."""

    external: Mapping[int, int]
    internal: Mapping[int, int]
    messages: Mapping[int, int]
    tenant_external: Mapping[int, int]


class QuotaEngine:
    """Rolling quota usage per sender and per tenant, fed with trace rows and probe sends."""

    def __init__(
        self,
        limits: QuotaLimits,
        now_fn: Callable[[], float],
        *,
        probe_match_horizon_seconds: int = DEFAULT_PROBE_MATCH_HORIZON_SECONDS,
    ) -> None:
        self._limits = limits
        self._now_fn = now_fn
        self._clock = float("-inf")
        self._message_window = Window(limits.message_rate_lookback_seconds)
        self._horizon = Window(probe_match_horizon_seconds)
        self._senders: dict[str, _SenderUsage] = {}
        # the last snapshot's figures, and what tells which of them to recompute at the
        # next one: the senders counted since, those with a running recovery and when each
        # other sender's buckets start leaving their windows (see `snapshot`)
        self._figures: ShardedMap[tuple[QuotaFigure, ...]] = ShardedMap()
        self._peaks: ShardedMap[float] = ShardedMap()  # sender -> highest utilization
        self._changed: set[str] = set()
        self._clock_bound: set[str] = set()
        self._expiry = ExpiryIndex()
        self._generation: int | None = None  # of the last snapshot
        self._tenant_external = BucketCounter()
        self._probes = ProbeLedger()
        self._addresses = AddressBook(limits.internal_domains)
        self._counts: Counter[str] = Counter()  # IngestStats fields, filled as rows come
        self._by_direction: Counter[str] = Counter()

    @property
    def limits(self) -> QuotaLimits:
        return self._limits

    @property
    def stats(self) -> IngestStats:
        counts = self._counts
        return IngestStats(
            rows_received=counts["rows_received"],
            rows_counted=counts["rows_counted"],
            rows_stale=counts["rows_stale"],
            rows_future_clamped=counts["rows_future_clamped"],
            rows_ignored_status=counts["rows_ignored_status"],
            rows_by_direction=dict(self._by_direction),
            probe_rows_counted=counts["probe_rows_counted"],
            probe_rows_replaced=counts["probe_rows_replaced"],
            probe_rows_pending=self._probes.pending,
        )

    def _advance(self, now: float | None = None) -> float:
        candidate = self._now_fn() if now is None else now
        self._clock = max(self._clock, candidate)
        return self._clock

    def _cutoffs(self, now: float) -> _Cutoffs:
        return _Cutoffs(bucket_of(now), self._message_window, self._horizon)

    def add_rows(self, rows: Iterable[RowFields]) -> None:
        """Count trace rows, `QuotaRow`s or plain tuples of their fields (each row once: the
        caller de-duplicates by trace id). The batch is summed first (see batch.py)."""
        now = self._advance()
        cutoffs = self._cutoffs(now)
        sums = sum_rows(
            rows,
            now=now,
            cutoffs=BatchCutoffs(cutoffs.day, cutoffs.messages, cutoffs.horizon),
            internal_domains=self._limits.internal_domains,
            ignored_statuses=self._limits.ignored_statuses,
            probes=self._probes,
            addresses=self._addresses,
        )
        for sender, message_id, bucket, external in sums.retractions:
            self._apply(sender, message_id, bucket, external=external, amount=-1, cutoffs=cutoffs)
        self._apply_sums(sums, cutoffs)
        self._by_direction.update(sums.by_direction)
        self._counts.update(
            rows_received=sums.received,
            rows_counted=sums.counted,
            rows_stale=sums.stale,
            rows_future_clamped=sums.future_clamped,
            rows_ignored_status=sums.status_ignored,
            probe_rows_replaced=len(sums.retractions),
        )
        self._probes.prune(cutoffs.day, cutoffs.horizon)

    def _usage(self, sender: str) -> _SenderUsage:
        self._changed.add(sender)
        usage = self._senders.get(sender)
        if usage is None:
            usage = self._senders[sender] = _SenderUsage()
        return usage

    def _apply_sums(self, sums: BatchSums, cutoffs: _Cutoffs) -> None:
        """Add summed rows to the sender and tenant counters.

        One step per (sender, bucket) of the batch, which in a back-fill is nearly one per
        row (a sender's rows spread over the day): kept to a dict lookup and one add."""
        senders, day = self._senders, cutoffs.day
        self._changed.update(map(_SENDER_OF_SUM, sums.rows))
        for (sender, bucket, internal), rows in sums.rows.items():
            usage = senders.get(sender)
            if usage is None:
                usage = senders[sender] = _SenderUsage()
            (usage.internal if internal else usage.external).add(bucket, rows, day)
        self._tenant_external.add_counts(sums.tenant_external, day)
        for (sender, bucket), messages in sums.messages.items():
            self._usage(sender).messages.add_messages(bucket, messages, cutoffs.messages)

    def record_probe_send(
        self, sender: str, message_id: str, recipients: Iterable[str], at: float
    ) -> None:
        """Count a probe's send now; its trace rows will replace these rows, not add to them."""
        now = self._advance()
        cutoffs = self._cutoffs(now)
        self._probes.prune(cutoffs.day, cutoffs.horizon)  # trace keys past the horizon
        sender = normalize_address(sender)
        message_id = normalize_message_id(message_id)
        bucket = bucket_of(min(at, now))
        if bucket < cutoffs.day:
            return
        for recipient in dict.fromkeys(normalize_address(r) for r in recipients):
            direction = direction_of(sender, recipient, self._limits.internal_domains)
            if direction is Direction.INBOUND or direction is Direction.RELAY:
                continue
            key: ProbeKey = (sender, message_id, recipient)
            if self._probes.claim_probe(key, bucket):
                external = direction is Direction.OUTBOUND
                self._apply(
                    sender, message_id, bucket, external=external, amount=1, cutoffs=cutoffs
                )
                self._counts["probe_rows_counted"] += 1

    def _apply(
        self,
        sender: str,
        message_id: str,
        bucket: int,
        *,
        external: bool,
        amount: int,
        cutoffs: _Cutoffs,
    ) -> None:
        usage = self._senders.get(sender)
        if usage is None:
            if amount <= 0:
                return
            usage = self._senders[sender] = _SenderUsage()
        self._changed.add(sender)
        if external:
            usage.external.add(bucket, amount, cutoffs.day)
            self._tenant_external.add(bucket, amount, cutoffs.day)
        else:
            usage.internal.add(bucket, amount, cutoffs.day)
        usage.messages.add(bucket, message_id, amount, cutoffs.messages)

    def export_usage(self) -> EngineUsage:
        """Every sender's buckets still inside their windows (probe sends not included)."""
        cutoffs = self._cutoffs(self._advance())
        senders: dict[str, SenderUsageState] = {}
        for sender, usage in self._senders.items():
            state = SenderUsageState(
                usage.external.words(cutoffs.day),
                usage.internal.words(cutoffs.day),
                usage.messages.messages_since(cutoffs.messages),
            )
            if state.external or state.internal or state.messages:
                senders[sender] = state
        return EngineUsage(senders)

    def restore_usage(self, usage: EngineUsage) -> None:
        """Add saved buckets (before any row): those out of their windows by now expire."""
        cutoffs = self._cutoffs(self._advance())
        tenant: Counter[int] = Counter()
        for sender, state in usage.senders.items():
            counters = self._usage(sender)
            counters.external.restore_words(state.external, cutoffs.day)
            counters.internal.restore_words(state.internal, cutoffs.day)
            for word in state.external:
                tenant[word >> COUNT_BITS] += word & COUNT_MASK
            for bucket, rows in sorted(state.messages.items()):
                counters.messages.add_messages(bucket, rows, cutoffs.messages)
        self._tenant_external.add_counts(tenant, cutoffs.day)

    def usage_buckets(self, sender: str) -> UsageBuckets:
        """Read-only copies of the buckets (expired ones may remain: filter by window)."""
        tenant = dict(self._tenant_external.buckets())
        usage = self._senders.get(normalize_address(sender))
        if usage is None:
            return UsageBuckets({}, {}, {}, tenant)
        return UsageBuckets(
            dict(usage.external.buckets()),
            dict(usage.internal.buckets()),
            usage.messages.counts(),
            tenant,
        )

    def snapshot(self, now: float | None = None) -> QuotaSnapshot:
        """Usage at `now` (default: the injected clock); expired buckets are dropped.

        Only the senders whose figures may differ from the previous snapshot's are
        recomputed: those counted since, those due in the expiry index (a window's cutoff
        passed one of their buckets) and those with a running recovery (it follows the
        clock). Every other sender keeps its figures, the very same tuple.
        """
        now = self._advance(now)
        cutoffs = self._cutoffs(now)
        self._probes.prune(cutoffs.day, cutoffs.horizon)
        figures_of, peaks = self._figures, self._peaks
        due = self._expiry.pop_due(bucket_of(now))
        due |= self._changed
        due |= self._clock_bound
        self._changed = set()
        changed: set[str] = set()
        for sender in due:
            old = figures_of.get(sender)
            usage = self._senders.get(sender)
            if usage is not None:
                usage.external.prune(cutoffs.day)
                usage.internal.prune(cutoffs.day)
                usage.messages.prune(cutoffs.messages)
            if not usage:
                self._senders.pop(sender, None)
                self._clock_bound.discard(sender)
                self._expiry.forget(sender)
                if figures_of.pop(sender) is not None:
                    peaks.pop(sender)
                    changed.add(sender)
                continue
            figures = self._sender_figures(sender, usage, now, cutoffs)
            if figures != old:
                figures_of[sender] = figures
                peaks[sender] = max((f.utilization for f in figures), default=0.0)
                changed.add(sender)
            # else the kept tuple, long-lived already, stays (the new one is dropped at once)
            if _settled(figures):
                self._clock_bound.discard(sender)
            else:
                self._clock_bound.add(sender)
            self._expiry.file(sender, self._next_change(usage, cutoffs))
        self._tenant_external.prune(cutoffs.day)
        tenant = (
            self._counted_figure(
                TENANT_SENDER,
                LimitName.EXTERNAL_RECIPIENTS_PER_DAY,
                self._limits.tenant_external_limit,
                (self._tenant_external,),
                window=DAY,
                now=now,
                cutoff=cutoffs.day,
            ),
        )
        base, self._generation = self._generation, next(_GENERATIONS)
        return QuotaSnapshot(
            taken_at=now,
            limits=self._limits,
            senders=figures_of.publish(),  # shares the shards no sender changed in
            tenant=tenant,
            stats=self.stats,
            peaks=peaks.publish(),
            generation=self._generation,
            delta_base=base,
            changed=frozenset(changed),
        )

    def _next_change(self, usage: _SenderUsage, cutoffs: _Cutoffs) -> int:
        """The first minute bucket at which a window's cutoff passes one of the sender's
        buckets (a bucket b leaves a window of n buckets when the clock reaches b + n + 1)."""
        due: list[int] = []
        for counter in (usage.external, usage.internal):
            for window, cutoff in ((DAY, cutoffs.day), (HOUR, cutoffs.hour)):
                first = counter.first_bucket(cutoff)
                if first is not None:
                    due.append(first + window.buckets + 1)
        oldest_message = usage.messages.oldest_bucket()
        if oldest_message is not None:
            due.append(oldest_message + self._message_window.buckets + 1)
        return min(due)

    def _counted_figure(
        self,
        sender: str,
        name: LimitName,
        limit: int,
        counters: tuple[BucketCounter, ...],
        *,
        window: Window,
        now: float,
        cutoff: int,
    ) -> QuotaFigure:
        used = sum(counter.total_since(cutoff) for counter in counters)
        target = self._limits.recovery_threshold * limit
        expiring = bucket_to_expire_for(target, counters, cutoff)
        return QuotaFigure(sender, name, used, limit, _recovery(now, expiring, window))

    def _sender_figures(
        self, sender: str, usage: _SenderUsage, now: float, cutoffs: _Cutoffs
    ) -> tuple[QuotaFigure, ...]:
        figures: list[QuotaFigure] = []
        counters: tuple[BucketCounter, ...]
        for name, limit in self._limits.sender_limits(sender):
            if name is LimitName.MESSAGES_PER_MINUTE:
                target = self._limits.recovery_threshold * limit
                expiring = usage.messages.last_bucket_reaching(target)
                recovery = _recovery(now, expiring, self._message_window)
                figures.append(QuotaFigure(sender, name, usage.messages.peak(), limit, recovery))
                continue
            if name is LimitName.SPAM_EXTERNAL_PER_HOUR:
                counters, window, cutoff = (usage.external,), HOUR, cutoffs.hour
            elif name is LimitName.SPAM_INTERNAL_PER_HOUR:
                counters, window, cutoff = (usage.internal,), HOUR, cutoffs.hour
            else:  # recipients_per_day and spam_recipients_per_day: the same rolling 24 h count
                counters, window, cutoff = (usage.external, usage.internal), DAY, cutoffs.day
            figures.append(
                self._counted_figure(
                    sender, name, limit, counters, window=window, now=now, cutoff=cutoff
                )
            )
        return tuple(figures)

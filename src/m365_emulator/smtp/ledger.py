"""Rolling sending counters the emulated limits are checked against.

Counts are kept in fixed-width time buckets, so memory per counter is bounded by
window / bucket no matter how much mail goes through. The price is granularity: an event
leaves the window up to one bucket late (the emulator errs on the strict side, as
Microsoft is reported to do).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from m365_emulator.state import EmulatorState, Tenant

DAY = 86_400.0
MINUTE = 60.0


class RollingCounter:
    """Sum of events over a sliding window, in buckets of `bucket` seconds."""

    __slots__ = ("_bucket", "_buckets", "_span", "_window")

    def __init__(self, window: float, bucket: float) -> None:
        self._window = window
        self._bucket = bucket
        self._span = math.ceil(window / bucket) + 1  # buckets one window can touch
        self._buckets: dict[int, int] = {}

    def add(self, at: float, count: int = 1) -> None:
        index = math.floor(at / self._bucket)
        self._buckets[index] = self._buckets.get(index, 0) + count
        # Counters nobody queries (history-only senders) must not grow without bound.
        if len(self._buckets) > 2 * self._span:
            self._drop_before(max(self._buckets) - self._span)

    def total(self, now: float) -> int:
        """Events in (now - window, now], plus any recorded ahead of `now`."""
        # A bucket stays until its *end* has left the window.
        self._drop_before(math.floor((now - self._window) / self._bucket))
        return sum(self._buckets.values())

    def first_time_below(self, not_before: float, limit: int) -> float:
        """The earliest time >= `not_before` (and >= every recorded event) at which fewer
        than `limit` events are in the window: when a queued event may be released."""
        if not self._buckets:
            return not_before
        at = max(not_before, max(self._buckets) * self._bucket)
        while True:
            first_live = math.floor((at - self._window) / self._bucket)
            live = [index for index in self._buckets if index >= first_live]
            if sum(self._buckets[index] for index in live) < limit:
                return at
            # the oldest live bucket leaves once its end is a whole window behind
            at = (min(live) + 1) * self._bucket + self._window

    @property
    def bucket_count(self) -> int:
        """Buckets currently held (memory use)."""
        return len(self._buckets)

    def _drop_before(self, first_live: int) -> None:
        for index in [index for index in self._buckets if index < first_live]:
            del self._buckets[index]


class SendingLedger:
    """Per-mailbox recipients (24 h) and messages (1 min), per-tenant external recipients (24 h).

    Fed by mail the SMTP server accepts and by `record_history`, which back-fills earlier
    traffic (e.g. 24 h of generated trace history) so quota checks see it too.
    """

    def __init__(self, state: EmulatorState, *, day_bucket: float = 60.0) -> None:
        self._state = state
        self._day_bucket = day_bucket
        self._recipients: dict[str, RollingCounter] = {}
        self._messages: dict[str, RollingCounter] = {}
        self._external: dict[str, RollingCounter] = {}

    def record(
        self,
        sender: str,
        recipients: Iterable[str],
        at: float | None = None,
        *,
        expanded: Iterable[str] | None = None,
    ) -> None:
        """Count one message from `sender` to `recipients` at `at` (default: now).

        `recipients` are the envelope's (a distribution list is one); `expanded` are the
        addresses after list expansion, which the tenant external limit counts instead.
        """
        when = self._state.clock() if at is None else at
        recipients = list(recipients)
        delivered = recipients if expanded is None else list(expanded)
        key = sender.lower()
        self._counter(self._recipients, key, DAY, self._day_bucket).add(when, len(recipients))
        self._counter(self._messages, key, MINUTE, 1.0).add(when)
        tenant = self.tenant_of(sender)
        if tenant is None:
            return
        external = sum(1 for recipient in delivered if not tenant.is_internal(recipient))
        if external:
            self._counter(self._external, tenant.name, DAY, self._day_bucket).add(when, external)

    def record_history(self, sender: str, recipients: Iterable[str], at: float) -> None:
        """Back-fill a message sent earlier (same accounting as accepted SMTP mail)."""
        self.record(sender, recipients, at)

    def recipients_last_day(self, sender: str) -> int:
        return self._total(self._recipients, sender.lower())

    def messages_last_minute(self, sender: str) -> int:
        """Messages counted in the last minute, including ones queued to be released later."""
        return self._total(self._messages, sender.lower())

    def message_slot(self, sender: str, per_minute: int) -> float:
        """When `sender`'s next message may be submitted without exceeding `per_minute`:
        now, or later when the minute is full (queued behind earlier held messages)."""
        now = self._state.clock()
        counter = self._messages.get(sender.lower())
        return now if counter is None else counter.first_time_below(now, per_minute)

    def external_recipients_last_day(self, tenant: str) -> int:
        return self._total(self._external, tenant)

    def tenant_of(self, address: str) -> Tenant | None:
        """The sender's tenant: its mailbox's, else the tenant owning its domain."""
        mailbox = self._state.mailbox(address)
        if mailbox is not None:
            return self._state.tenants.get(mailbox.tenant)
        return self._state.tenant_owning(address)

    def _total(self, counters: dict[str, RollingCounter], key: str) -> int:
        counter = counters.get(key)
        return 0 if counter is None else counter.total(self._state.clock())

    @staticmethod
    def _counter(
        counters: dict[str, RollingCounter], key: str, window: float, bucket: float
    ) -> RollingCounter:
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = RollingCounter(window, bucket)
        return counter

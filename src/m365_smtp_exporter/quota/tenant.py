"""One tenant's quota accounting as the exporter runs it: engine, exported figures, probes.

The snapshot is taken on the schedule (after each trace pull and on a timer, since recovery
times change as the window rolls), never at scrape time.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.quota.cardinality import Group, SenderSelection, SeriesSelector
from m365_smtp_exporter.quota.engine import QuotaEngine
from m365_smtp_exporter.quota.limits import LimitName, QuotaLimits
from m365_smtp_exporter.quota.rows import (
    ExcludedReason,
    RowFields,
    normalize_address,
    without_system_senders,
)
from m365_smtp_exporter.quota.snapshot import QuotaFigure

DAY = 86_400.0


def limits_from_config(tenant: TenantConfig) -> QuotaLimits:
    quota = tenant.quota
    return QuotaLimits(
        internal_domains=frozenset(tenant.accepted_domains),
        recipients_per_day=quota.recipients_per_day,
        recipients_per_day_overrides=dict(quota.sender_limits),
        messages_per_minute=quota.messages_per_minute,
        licenses=quota.licenses or 1,  # a loaded file must give one (or the limit itself)
        trial_tenant=quota.trial,
        external_recipients_per_day=quota.external_recipient_limit,
        spam_external_per_hour=quota.spam_policy.external_per_hour,
        spam_internal_per_hour=quota.spam_policy.internal_per_hour,
        spam_recipients_per_day=quota.spam_policy.recipients_per_day,
        recovery_threshold=quota.recovery_threshold,
    )


def selection_from_config(tenant: TenantConfig, probe_senders: Iterable[str]) -> SenderSelection:
    quota = tenant.quota
    salt = quota.hash_salt.get_secret_value() if quota.hash_salt is not None else ""
    return SenderSelection(
        configured=frozenset([*quota.senders, *probe_senders]),
        top_n=quota.top_senders,
        hash_senders=quota.hash_senders,
        hash_salt=salt,
    )


class TenantQuota:
    def __init__(
        self,
        name: str,
        tenant: TenantConfig,
        probe_senders: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._clock = clock
        self.engine = QuotaEngine(limits_from_config(tenant), clock)
        self.selection = selection_from_config(tenant, probe_senders)
        self._selector = SeriesSelector(self.selection)
        # the exported figures, one group per sender (then `__other__`, then the tenant's);
        # replaced whole by `refresh`, never mutated
        self.series: tuple[Group, ...] = ()
        self._flat: tuple[tuple[Group, ...], tuple[QuotaFigure, ...]] = ((), ())
        self.excluded_rows: Counter[ExcludedReason] = Counter()
        # Limits Microsoft may not apply to this tenant (TERRL is paused over 500 licences):
        # exported so alerts stay quiet about a limit that blocks nothing.
        self.limit_enforced: dict[LimitName, bool] = {
            LimitName.EXTERNAL_RECIPIENTS_PER_DAY: tenant.quota.external_limit_enforced
        }
        self.probe_recipients: dict[str, int] = {}
        self._probe_sends: deque[tuple[float, str, int]] = deque()
        self._label_of: dict[str, str] = {}

    @property
    def figures(self) -> tuple[QuotaFigure, ...]:
        """The exported figures, in exposition order (`series` flattened)."""
        series, flat = self._flat
        if series is not self.series:
            flat = tuple(f for group in self.series for f in group)
            self._flat = (self.series, flat)
        return flat

    def add_rows(self, rows: Iterable[RowFields]) -> None:
        """Count `rows`, except those of system senders (bounces, postmaster, Exchange's
        NDR mailboxes), which no mailbox limit or TERRL counts: those are tallied apart."""
        self.engine.add_rows(without_system_senders(rows, self.excluded_rows))

    def record_probe_send(
        self, sender: str, message_id: str, recipients: Iterable[str], at: float
    ) -> None:
        recipients = list(recipients)
        self.engine.record_probe_send(sender, message_id, recipients, at)
        self._probe_sends.append((at, normalize_address(sender), len(recipients)))

    def refresh(self) -> None:
        """Take a snapshot and keep the figures to export."""
        now = self._clock()
        self.series = self._selector.update(self.engine.snapshot(now), self.selection)
        while self._probe_sends and self._probe_sends[0][0] <= now - DAY:
            self._probe_sends.popleft()
        totals: dict[str, int] = {}
        for _, sender, count in self._probe_sends:
            totals[sender] = totals.get(sender, 0) + count
        self.probe_recipients = totals

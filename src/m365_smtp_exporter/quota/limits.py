"""Sending limits that quota usage is measured against (Exchange Online defaults)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from m365_smtp_exporter.quota.window import BUCKET_SECONDS

DEFAULT_RECIPIENTS_PER_DAY = 10_000
DEFAULT_MESSAGES_PER_MINUTE = 30
TRIAL_EXTERNAL_RECIPIENTS_PER_DAY = 5_000
# Trace rows show up 5-10 minutes late, so the current minute alone would always read 0.
DEFAULT_MESSAGE_RATE_LOOKBACK_SECONDS = 900


class LimitName(enum.StrEnum):
    """The `limit` label of the `m365_quota_*` metrics."""

    RECIPIENTS_PER_DAY = "recipients_per_day"
    MESSAGES_PER_MINUTE = "messages_per_minute"
    EXTERNAL_RECIPIENTS_PER_DAY = "external_recipients_per_day"
    SPAM_EXTERNAL_PER_HOUR = "spam_external_per_hour"
    SPAM_INTERNAL_PER_HOUR = "spam_internal_per_hour"
    SPAM_RECIPIENTS_PER_DAY = "spam_recipients_per_day"


def terrl_limit(licenses: int) -> int:
    """Tenant external recipient rate limit: 500 * licenses^0.7 + 9500, rounded to the nearest
    recipient as Microsoft's published examples are (10,000 licences -> 324,979)."""
    if licenses < 1:
        raise ValueError(f"licenses must be >= 1, got {licenses}")
    return round(500 * math.pow(licenses, 0.7) + 9500)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Every limit the engine reports on, plus what it needs to tell ours from theirs.

    Addresses and domains are lower-cased on construction. `internal_domains` are the
    tenant's accepted domains: a sender is one of ours when its domain is listed, a
    recipient is external when its domain is not. The tenant external limit is, in order
    of precedence: `external_recipients_per_day` if set, 5,000 for a trial tenant,
    otherwise the TERRL formula over `licenses`. The three `spam_*` caps model the
    outbound spam policy and are reported only when set. `recovery_threshold` defines
    recovery: the time until usage is back under `recovery_threshold * limit`.
    `ignored_statuses` (trace status values, any case) are not counted; by default every
    attempted recipient counts, as it does for Microsoft.
    """

    internal_domains: frozenset[str] = frozenset()
    recipients_per_day: int = DEFAULT_RECIPIENTS_PER_DAY
    recipients_per_day_overrides: Mapping[str, int] = field(default_factory=dict)
    messages_per_minute: int = DEFAULT_MESSAGES_PER_MINUTE
    message_rate_lookback_seconds: int = DEFAULT_MESSAGE_RATE_LOOKBACK_SECONDS
    licenses: int = 1
    trial_tenant: bool = False
    external_recipients_per_day: int | None = None
    spam_external_per_hour: int | None = None
    spam_internal_per_hour: int | None = None
    spam_recipients_per_day: int | None = None
    recovery_threshold: float = 0.8
    ignored_statuses: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        overrides = {
            addr.strip().lower(): n for addr, n in self.recipients_per_day_overrides.items()
        }
        for addr, n in overrides.items():
            _positive(f"recipients_per_day override for {addr}", n)
        for name in (
            "recipients_per_day",
            "messages_per_minute",
            "licenses",
            "external_recipients_per_day",
            "spam_external_per_hour",
            "spam_internal_per_hour",
            "spam_recipients_per_day",
        ):
            _positive(name, getattr(self, name))
        lookback = self.message_rate_lookback_seconds
        if lookback < BUCKET_SECONDS or lookback % BUCKET_SECONDS:
            raise ValueError(
                f"message_rate_lookback_seconds must be a positive multiple of {BUCKET_SECONDS},"
                f" got {lookback}"
            )
        if not 0 < self.recovery_threshold <= 1:
            raise ValueError(f"recovery_threshold must be in (0, 1], got {self.recovery_threshold}")
        object.__setattr__(self, "recipients_per_day_overrides", MappingProxyType(overrides))
        object.__setattr__(
            self, "internal_domains", frozenset(d.strip().lower() for d in self.internal_domains)
        )
        object.__setattr__(
            self, "ignored_statuses", frozenset(s.strip().lower() for s in self.ignored_statuses)
        )

    @property
    def tenant_external_limit(self) -> int:
        if self.external_recipients_per_day is not None:
            return self.external_recipients_per_day
        if self.trial_tenant:
            return TRIAL_EXTERNAL_RECIPIENTS_PER_DAY
        return terrl_limit(self.licenses)

    def recipients_per_day_for(self, sender: str) -> int:
        return self.recipients_per_day_overrides.get(sender.lower(), self.recipients_per_day)

    def sender_limits(self, sender: str) -> tuple[tuple[LimitName, int], ...]:
        """The per-sender limits reported for `sender`, in a fixed order."""
        limits: list[tuple[LimitName, int]] = [
            (LimitName.RECIPIENTS_PER_DAY, self.recipients_per_day_for(sender)),
            (LimitName.MESSAGES_PER_MINUTE, self.messages_per_minute),
        ]
        if self.spam_external_per_hour is not None:
            limits.append((LimitName.SPAM_EXTERNAL_PER_HOUR, self.spam_external_per_hour))
        if self.spam_internal_per_hour is not None:
            limits.append((LimitName.SPAM_INTERNAL_PER_HOUR, self.spam_internal_per_hour))
        if self.spam_recipients_per_day is not None:
            limits.append((LimitName.SPAM_RECIPIENTS_PER_DAY, self.spam_recipients_per_day))
        return tuple(limits)

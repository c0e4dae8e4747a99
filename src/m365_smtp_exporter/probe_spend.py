"""What the configured probes spend of their sending mailboxes' limits, per day.

Probes send real mail: 100 recipients every 60 s is 144,000 recipients a day against a
mailbox's 10,000. Every probe that sends (kind smtp, hve, direct_send or graph_sendmail in
mode `send`) spends `len(rcpt_to)` recipients per run from its `mail_from`, which is also
the sender its trace rows are counted under. Session probes and `basic_auth_check` send
nothing. The figures are per sending address, summed over its probes, against the daily
limit the exporter measures that sender with (the tenant's `quota.sender_limits` entry or
`quota.recipients_per_day`; 10,000 without a tenant) and the 30 messages per minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from m365_smtp_exporter.config import ProbeConfig, TenantConfig

DAY = 86_400.0
DEFAULT_RECIPIENTS_PER_DAY = 10_000
DEFAULT_MESSAGES_PER_MINUTE = 30
# Above this share of a mailbox's daily limit, probes crowd out the mailbox's real mail.
WARN_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class MailboxSpend:
    """The probes sending from one address and what they spend of its limits."""

    sender: str
    probes: tuple[tuple[str, float], ...]  # (probe name, recipients per day)
    recipients_per_day: float
    messages_per_minute: float
    daily_limit: int
    minute_limit: int
    exhaustion_allowed: bool  # a probe of this mailbox opts in to running into its limit

    @property
    def daily_share(self) -> float:
        return self.recipients_per_day / self.daily_limit

    @property
    def minute_share(self) -> float:
        return self.messages_per_minute / self.minute_limit

    @property
    def over_limit(self) -> bool:
        return self.recipients_per_day > self.daily_limit

    def describe(self) -> str:
        names = ", ".join(f"{name} {per_day:,.0f}" for name, per_day in self.probes)
        return (
            f"{self.sender}: {self.recipients_per_day:,.0f} recipients/day = "
            f"{self.daily_share:.1%} of {self.daily_limit:,}; "
            f"{self.messages_per_minute:.2f} messages/minute = {self.minute_share:.1%} of "
            f"{self.minute_limit} ({names})"
        )


def sends_mail(probe: ProbeConfig) -> bool:
    return probe.mode == "send" and probe.kind != "basic_auth_check"


def probe_spend(
    probes: Sequence[ProbeConfig], tenants: Mapping[str, TenantConfig]
) -> list[MailboxSpend]:
    """Spend per sending address, in the order the addresses first appear."""
    by_sender: dict[str, list[ProbeConfig]] = {}
    for probe in probes:
        if sends_mail(probe):
            by_sender.setdefault(probe.mail_from.lower(), []).append(probe)
    spends = []
    for sender, senders_probes in by_sender.items():
        named = (tenants.get(p.tenant) for p in senders_probes if p.tenant is not None)
        tenant = next((t for t in named if t is not None), None)
        daily_limit, minute_limit = _limits(sender, tenant)
        per_probe = tuple((p.name, len(p.rcpt_to) * DAY / p.interval) for p in senders_probes)
        spends.append(
            MailboxSpend(
                sender=sender,
                probes=per_probe,
                recipients_per_day=sum(per_day for _, per_day in per_probe),
                messages_per_minute=sum(60.0 / p.interval for p in senders_probes),
                daily_limit=daily_limit,
                minute_limit=minute_limit,
                exhaustion_allowed=any(p.allow_quota_exhaustion for p in senders_probes),
            )
        )
    return spends


def _limits(sender: str, tenant: TenantConfig | None) -> tuple[int, int]:
    if tenant is None:
        return DEFAULT_RECIPIENTS_PER_DAY, DEFAULT_MESSAGES_PER_MINUTE
    quota = tenant.quota
    overrides = {address.lower(): limit for address, limit in quota.sender_limits.items()}
    return overrides.get(sender, quota.recipients_per_day), quota.messages_per_minute


def spend_errors(spends: Sequence[MailboxSpend]) -> list[str]:
    """Mailboxes the probes alone would run into their daily limit (unless opted in)."""
    return [
        f"probes: the probes {_names(spend)} would send "
        f"{spend.recipients_per_day:,.0f} recipients a day from {spend.sender}, over its "
        f"daily limit of {spend.daily_limit:,}: the mailbox would be blocked (554 5.2.0) by "
        "its own probes; send less often or to fewer recipients, use a dedicated probe "
        "mailbox, or set allow_quota_exhaustion: true on a probe that is meant to hit the "
        "limit"
        for spend in spends
        if spend.over_limit and not spend.exhaustion_allowed
    ]


def _names(spend: MailboxSpend, shown: int = 5) -> str:
    names = [name for name, _ in spend.probes]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def spend_warnings(spends: Sequence[MailboxSpend]) -> list[str]:
    """Mailboxes whose probes take over 10 % of the daily limit (opted-in ones excepted)."""
    return [
        f"{spend.sender}: probes spend {spend.daily_share:.1%} of its daily limit of "
        f"{spend.daily_limit:,} (over {WARN_SHARE:.0%}), leaving less for its real mail: "
        "use a dedicated probe mailbox"
        for spend in spends
        if spend.daily_share > WARN_SHARE and not spend.over_limit and not spend.exhaustion_allowed
    ]

"""Who sends what and when in the emulated tenant: shared by the backfill and the live generator.

A `TrafficProfile` names the tenant's ordinary senders, its bulk (campaign) sender, the
mailbox that is sometimes held busy and the outside world's domains; a `DailyCurve` says how
busy a moment is (office hours busy, nights and weekends quiet).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from m365_emulator.world import WorldConfig

HOUR = 3600.0
DAY = 86_400.0

# Relative activity per local hour (0-23): the peak hour is 1.0.
OFFICE_HOURS = (
    0.04, 0.03, 0.03, 0.03, 0.04, 0.08, 0.18, 0.40, 0.75, 0.95, 1.00, 0.95,
    0.75, 0.85, 0.95, 0.95, 0.85, 0.60, 0.35, 0.22, 0.15, 0.11, 0.08, 0.05,
)  # fmt: skip

CAMPAIGN_SENDER = "campaign@contoso.com"
# The demo world has no dedicated busy application mailbox, so one pool mailbox plays it:
# the live generator sometimes holds every SMTP connection slot of it at once.
BUSY_MAILBOX = "user200@contoso.com"

EXTERNAL_DOMAINS = (
    "adatum.com",
    "northwindtraders.com",
    "tailspintoys.com",
    "wingtiptoys.com",
    "litwareinc.com",
    "example.net",
)
_FIRST_NAMES = ("alex", "sam", "kim", "lee", "maria", "noah", "priya", "omar", "lena", "yuki")
_LAST_NAMES = ("smith", "garcia", "chen", "mueller", "rossi", "tanaka", "okafor", "silva")
INBOUND_ROLES = ("newsletter", "noreply", "billing", "support", "orders", "events", "hr-portal")

ORDINARY_SUBJECTS = (
    "Quarterly report",
    "Re: meeting notes",
    "Invoice 4471",
    "Draft proposal",
    "Re: project timeline",
    "Lunch on Friday?",
    "FW: customer feedback",
    "Updated slides",
    "Travel request",
    "Re: Re: contract review",
)
INBOUND_SUBJECTS = (
    "Your order has shipped",
    "Weekly newsletter",
    "Invoice available",
    "Re: partnership",
    "Webinar invitation",
    "Password expiry notice",
    "Support ticket updated",
)
CAMPAIGN_SUBJECTS = ("Spring offers", "Product update", "Customer survey", "Event reminder")


@dataclass(frozen=True, slots=True)
class DailyCurve:
    """Relative activity (0-1] at a moment: hourly weights, linear in between, weekends damped."""

    hourly: Sequence[float] = OFFICE_HOURS
    utc_offset_hours: float = 0.0  # the tenant's local time
    weekend_factor: float = 0.25
    floor: float = 0.01  # never quite silent, so a rate never becomes zero

    def __post_init__(self) -> None:
        if len(self.hourly) != 24 or min(self.hourly) < 0 or max(self.hourly) <= 0:
            raise ValueError("a daily curve needs 24 non-negative hourly weights, not all zero")

    def weight(self, at: float) -> float:
        local = at + self.utc_offset_hours * HOUR
        # weights belong to the middle of their hour
        position = (local % DAY) / HOUR - 0.5
        index = math.floor(position)
        fraction = position - index
        value = self.hourly[index % 24] * (1 - fraction) + self.hourly[(index + 1) % 24] * fraction
        weekday = (math.floor(local / DAY) + 3) % 7  # 1970-01-01 was a Thursday (3)
        if weekday >= 5:
            value *= self.weekend_factor
        return max(value, self.floor)


FLAT_CURVE = DailyCurve(hourly=(1.0,) * 24, weekend_factor=1.0)


def _pool() -> tuple[str, ...]:
    return tuple(f"user{n:03d}@contoso.com" for n in range(1, 201))


@dataclass(frozen=True, slots=True)
class TrafficProfile:
    """The addresses traffic is made of (defaults: the demo world's contoso tenant)."""

    tenant: str = "contoso"
    domain: str = "contoso.com"
    senders: tuple[str, ...] = field(default_factory=_pool)
    campaign_sender: str | None = CAMPAIGN_SENDER
    busy_mailbox: str | None = BUSY_MAILBOX
    external_domains: tuple[str, ...] = EXTERNAL_DOMAINS
    campaign_batch: int = 500  # recipients per campaign message (Exchange's default cap)

    def __post_init__(self) -> None:
        if len(self.senders) < 2:
            raise ValueError("a traffic profile needs at least two ordinary senders")
        if not self.external_domains:
            raise ValueError("a traffic profile needs at least one external domain")

    def external_person(self, rng: random.Random) -> str:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        return f"{first}.{last}@{rng.choice(self.external_domains)}"

    def inbound_sender(self, rng: random.Random) -> str:
        if rng.random() < 0.5:
            return f"{rng.choice(INBOUND_ROLES)}@{rng.choice(self.external_domains)}"
        return self.external_person(rng)

    def colleague_of(self, sender: str, rng: random.Random) -> str:
        """Another ordinary mailbox of the tenant (internal mail)."""
        while True:
            colleague = rng.choice(self.senders)
            if colleague != sender:
                return colleague

    def subscriber(self, number: int) -> str:
        """The campaign's mailing list: subscriber00000@adatum.com, subscriber00001@... ."""
        domain = self.external_domains[number % len(self.external_domains)]
        return f"subscriber{number:05d}@{domain}"


def profile_for_world(world: WorldConfig, tenant: str = "contoso") -> TrafficProfile:
    """A profile over a world's tenant: its pooled mailboxes send, `campaign@` is the bulk sender.

    The busy mailbox is the last pooled sender (in the demo world `BUSY_MAILBOX`).
    """
    config = next((t for t in world.tenants if t.name == tenant), None)
    if config is None:
        raise ValueError(f"the world has no tenant {tenant!r}")
    domain = config.accepted_domains[0].lower()
    senders = tuple(
        mailbox.address.lower()
        for pool in world.sender_pools
        if pool.tenant == tenant
        for mailbox in pool.mailboxes()
    )
    addresses = {mailbox.address.lower() for mailbox in world.all_mailboxes()}
    campaign = f"campaign@{domain}"
    return TrafficProfile(
        tenant=tenant,
        domain=domain,
        senders=senders,
        campaign_sender=campaign if campaign in addresses else None,
        busy_mailbox=senders[-1] if senders else None,
    )

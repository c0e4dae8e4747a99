"""A day of history at start-up: message-trace rows plus the same sends in the sending ledger.

So that quota panels and trace counters have data the moment a demo starts, `backfill` writes
what the tenant sent and received over the last `hours` (following the daily curve) as trace
rows that are already visible, and records every send in the SMTP server's ledger so the
emulated limits count it too. The campaign sender is left just short of its daily limit.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from m365_emulator.smtp.delivery import EXTERNAL_TO_IP
from m365_emulator.smtp.ledger import SendingLedger
from m365_emulator.smtp.replies import MAILBOX_SERVER
from m365_emulator.state import EmulatorState, Tenant, TraceRow
from m365_emulator.traffic.model import (
    CAMPAIGN_SUBJECTS,
    HOUR,
    INBOUND_SUBJECTS,
    ORDINARY_SUBJECTS,
    DailyCurve,
    TrafficProfile,
)

Share = Annotated[float, Field(ge=0.0, le=1.0)]
_BIN = 60.0  # seconds per time bin when placing sends on the curve
# How many recipients an ordinary message has, and how often.
_RECIPIENT_COUNTS = (1, 2, 3, 4, 5, 8)
_RECIPIENT_WEIGHTS = (50, 22, 12, 7, 5, 4)
_OFFICE_IPS = tuple(f"192.0.2.{n}" for n in range(10, 40))  # the tenant's clients (RFC 5737)
_INTERNET_IPS = tuple(f"198.51.100.{n}" for n in range(1, 250))  # outside mail servers


class StatusShares(BaseModel):
    """Share of rows that end other than `delivered`."""

    model_config = ConfigDict(extra="forbid")

    failed: Share = 0.015
    filtered_as_spam: Share = 0.006
    quarantined: Share = 0.004

    @model_validator(mode="after")
    def _at_most_one(self) -> StatusShares:
        if self.failed + self.filtered_as_spam + self.quarantined > 1.0:
            raise ValueError("failed + filtered_as_spam + quarantined exceed 1")
        return self

    def draw(self, rng: random.Random) -> str:
        draw = rng.random()
        if draw < self.failed:
            return "failed"
        draw -= self.failed
        if draw < self.filtered_as_spam:
            return "filteredAsSpam"
        draw -= self.filtered_as_spam
        return "quarantined" if draw < self.quarantined else "delivered"


class BackfillVolumes(BaseModel):
    """How much history to write (defaults: about 45,000 rows for 24 h)."""

    model_config = ConfigDict(extra="forbid")

    ordinary_messages: int = Field(default=10_000, ge=0)  # internal and outbound
    external_share: Share = 0.12  # per ordinary recipient
    inbound_messages: int = Field(default=12_000, ge=0)
    campaign_recipients_min: int = Field(default=8_500, ge=0)
    campaign_recipients_max: int = Field(default=9_500, ge=0)
    # Never fill more than this share of the tenant's external limit (TERRL), so live
    # traffic is not locked out tenant-wide from the first minute.
    max_tenant_external_share: Share = 0.85
    outbound_statuses: StatusShares = Field(default_factory=StatusShares)
    campaign_statuses: StatusShares = Field(
        default_factory=lambda: StatusShares(failed=0.03, filtered_as_spam=0.01, quarantined=0.0)
    )
    inbound_statuses: StatusShares = Field(
        default_factory=lambda: StatusShares(failed=0.005, filtered_as_spam=0.05, quarantined=0.01)
    )

    @model_validator(mode="after")
    def _ordered(self) -> BackfillVolumes:
        if self.campaign_recipients_max < self.campaign_recipients_min:
            raise ValueError("campaign_recipients_max must not be below campaign_recipients_min")
        return self


@dataclass(slots=True)
class BackfillSummary:
    rows: int = 0
    messages: int = 0
    campaign_recipients: int = 0
    external_recipients: int = 0  # outbound recipients counted against the tenant's TERRL
    inbound_rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # rows by trace status


@dataclass(slots=True)
class _Message:
    sender: str
    recipients: list[str]
    at: float
    subject: str
    size: int
    from_ip: str
    statuses: StatusShares
    sent_by_tenant: bool  # counted by the sending ledger


class _Timeline:
    """Random moments in (now - hours, now], denser where the daily curve is higher."""

    def __init__(self, curve: DailyCurve, now: float, hours: float, rng: random.Random) -> None:
        self._now = now
        self._rng = rng
        bins = max(1, int(hours * HOUR / _BIN))
        total = 0.0
        self._cumulative: list[float] = []
        for index in range(bins):  # bin 0 is the most recent minute
            total += curve.weight(now - (index + 0.5) * _BIN)
            self._cumulative.append(total)
        self._bins = range(bins)

    def moments(self, count: int) -> list[float]:
        chosen = self._rng.choices(self._bins, cum_weights=self._cumulative, k=count)
        random_ = self._rng.random
        # bin i covers (now - (i + 1) * BIN, now - i * BIN]
        return [self._now - (index + random_()) * _BIN for index in chosen]


class _Builder:
    """Generates the messages of one backfill."""

    def __init__(
        self,
        state: EmulatorState,
        ledger: SendingLedger,
        profile: TrafficProfile,
        tenant: Tenant,
        *,
        volumes: BackfillVolumes,
        timeline: _Timeline,
        rng: random.Random,
    ) -> None:
        self._state = state
        self._ledger = ledger
        self._profile = profile
        self._volumes = volumes
        self._timeline = timeline
        self._rng = rng
        already = ledger.external_recipients_last_day(tenant.name)
        self.external_left = int(tenant.terrl * volumes.max_tenant_external_share) - already
        self.campaign_recipients = 0

    def campaign(self) -> list[_Message]:
        sender = self._profile.campaign_sender
        mailbox = self._state.mailbox(sender) if sender else None
        if sender is None or mailbox is None:
            return []
        volumes, rng = self._volumes, self._rng
        wanted = rng.randint(volumes.campaign_recipients_min, volumes.campaign_recipients_max)
        room = mailbox.recipients_per_day - 1 - self._ledger.recipients_last_day(sender)
        total = max(0, min(wanted, room, self.external_left))
        batch = min(self._profile.campaign_batch, mailbox.recipient_limit_per_message)
        sizes = [batch] * (total // batch) + ([total % batch] if total % batch else [])
        messages = []
        first = 0
        for size, at in zip(sizes, sorted(self._timeline.moments(len(sizes))), strict=True):
            recipients = [self._profile.subscriber(n) for n in range(first, first + size)]
            first += size
            messages.append(
                _Message(
                    sender,
                    recipients,
                    at,
                    rng.choice(CAMPAIGN_SUBJECTS),
                    48_000 + rng.randrange(4_000),
                    rng.choice(_OFFICE_IPS),
                    volumes.campaign_statuses,
                    sent_by_tenant=True,
                )
            )
        self.external_left -= total
        self.campaign_recipients = total
        return messages

    def ordinary(self) -> list[_Message]:
        profile, volumes, rng = self._profile, self._volumes, self._rng
        count = volumes.ordinary_messages
        # A few senders send much more than most (heavy tail), as in a real tenant.
        cumulative, total = [], 0.0
        for rank in range(1, len(profile.senders) + 1):
            total += rank**-0.8
            cumulative.append(total)
        senders = rng.choices(profile.senders, cum_weights=cumulative, k=count)
        sizes = rng.choices(_RECIPIENT_COUNTS, weights=_RECIPIENT_WEIGHTS, k=count)
        messages = []
        for sender, size, at in zip(senders, sizes, self._timeline.moments(count), strict=True):
            recipients = [self._ordinary_recipient(sender) for _ in range(size)]
            messages.append(
                _Message(
                    sender,
                    list(dict.fromkeys(recipients)),  # one row per distinct recipient
                    at,
                    rng.choice(ORDINARY_SUBJECTS),
                    2_000 + int(rng.lognormvariate(10.0, 1.1)),
                    rng.choice(_OFFICE_IPS),
                    volumes.outbound_statuses,
                    sent_by_tenant=True,
                )
            )
        return messages

    def _ordinary_recipient(self, sender: str) -> str:
        if self.external_left > 0 and self._rng.random() < self._volumes.external_share:
            self.external_left -= 1
            return self._profile.external_person(self._rng)
        return self._profile.colleague_of(sender, self._rng)

    def inbound(self) -> list[_Message]:
        profile, volumes, rng = self._profile, self._volumes, self._rng
        count = volumes.inbound_messages
        messages = []
        for at in self._timeline.moments(count):
            recipients = [rng.choice(profile.senders) for _ in range(1 + (rng.random() < 0.25))]
            messages.append(
                _Message(
                    profile.inbound_sender(rng),
                    list(dict.fromkeys(recipients)),
                    at,
                    rng.choice(INBOUND_SUBJECTS),
                    3_000 + int(rng.lognormvariate(10.3, 1.0)),
                    rng.choice(_INTERNET_IPS),
                    volumes.inbound_statuses,
                    sent_by_tenant=False,
                )
            )
        return messages


def backfill(
    state: EmulatorState,
    ledger: SendingLedger,
    profile: TrafficProfile,
    *,
    now: float,
    rng: random.Random,
    hours: float = 24.0,
    volumes: BackfillVolumes | None = None,
    curve: DailyCurve | None = None,
    trace_lag_seconds: float = 300.0,
) -> BackfillSummary:
    """Write `hours` of the profile tenant's mail before `now` into trace and ledger.

    Every row is visible by `now` (rows of the last `trace_lag_seconds` become visible
    exactly at `now`). Sends by the tenant's mailboxes go into `ledger`; inbound mail does not.
    """
    tenant = state.tenants.get(profile.tenant)
    if tenant is None:
        raise ValueError(f"unknown tenant {profile.tenant!r}")
    volumes = volumes or BackfillVolumes()
    timeline = _Timeline(curve or DailyCurve(), now, hours, rng)
    builder = _Builder(state, ledger, profile, tenant, volumes=volumes, timeline=timeline, rng=rng)
    # The campaign goes first so it is not crowded out of the tenant's external budget.
    messages = [*builder.campaign(), *builder.ordinary(), *builder.inbound()]
    messages.sort(key=lambda message: message.at)

    writer = _RowWriter(tenant, now=now, lag=trace_lag_seconds, rng=rng)
    writer.summary.campaign_recipients = builder.campaign_recipients
    writer.summary.messages = len(messages)
    rows: list[TraceRow] = []
    for message in messages:
        if message.sent_by_tenant:
            ledger.record_history(message.sender, message.recipients, message.at)
        rows.extend(writer.rows_of(message))
    # Oldest first: appending in order keeps the state's sorted insert cheap.
    for row in rows:
        state.add_trace_row(row)
    writer.summary.rows = len(rows)
    return writer.summary


class _RowWriter:
    """Trace rows of generated messages, in the form the SMTP emulator's delivery writes them."""

    def __init__(self, tenant: Tenant, *, now: float, lag: float, rng: random.Random) -> None:
        self._tenant = tenant.name
        self._internal = frozenset(domain.lower() for domain in tenant.accepted_domains)
        self._now = now
        self._lag = lag
        self._rng = rng
        self.summary = BackfillSummary()

    def rows_of(self, message: _Message) -> list[TraceRow]:
        """One row per recipient."""
        rng, summary, by_tenant = self._rng, self.summary, message.sent_by_tenant
        host = MAILBOX_SERVER if by_tenant else "mail." + message.sender.rsplit("@")[-1]
        message_id = f"<{rng.getrandbits(128):032x}@{host}>"
        visible_at = min(message.at + self._lag, self._now)
        rows = []
        for recipient in message.recipients:
            outbound = by_tenant and recipient.rsplit("@", 1)[-1].lower() not in self._internal
            status = message.statuses.draw(rng)
            summary.statuses[status] += 1
            summary.external_recipients += outbound
            summary.inbound_rows += not by_tenant
            rows.append(
                TraceRow(
                    id=_trace_id(rng),
                    tenant=self._tenant,
                    sender=message.sender,
                    recipient=recipient,
                    message_id=message_id,
                    received_at=message.at,
                    subject=message.subject,
                    size=message.size,
                    from_ip=message.from_ip,
                    to_ip=EXTERNAL_TO_IP if outbound else "",
                    status=status,
                    visible_at=visible_at,
                )
            )
        return rows


def _trace_id(rng: random.Random) -> str:
    """A GUID-shaped id like Graph's (8-4-4-4-12 hex digits), reproducible from `rng`."""
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

"""What happens to mail after the SMTP server accepted it: trace rows and mailbox delivery.

Every (message, recipient) gets a trace row at once (visible after the trace lag, status
`pending`). Recipients that are emulated mailboxes receive the message after the delivery
delay, in Inbox or Junk Email; the row then turns `delivered`. Outcomes are drawn from a
seeded random generator so a run can be replayed. `records` is the ground truth.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import email.utils
import random
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from m365_emulator.smtp.replies import MAILBOX_SERVER
from m365_emulator.state import (
    EmulatorState,
    StoredMessage,
    TraceRow,
)

Outcome = Literal[
    "inbox", "junkemail", "external", "dropped", "failed", "quarantined", "filteredAsSpam"
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# Documentation address (RFC 5737): where "the internet" receives external mail.
EXTERNAL_TO_IP = "203.0.113.25"
_MAX_RECORDS = 10_000


class DeliveryBehaviour(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_seconds: float = Field(default=2.0, ge=0.0)
    # When set, each delay is drawn uniformly from [delay_seconds, delay_max_seconds].
    delay_max_seconds: float | None = Field(default=None, ge=0.0)
    trace_lag_seconds: float = Field(default=300.0, ge=0.0)
    drop_probability: Probability = 0.0  # per message: accepted, never delivered
    failed_probability: Probability = 0.0  # per recipient, from here on
    quarantined_probability: Probability = 0.0
    spam_probability: Probability = 0.0  # trace filteredAsSpam, lands in Junk Email
    junk_probability: Probability = 0.0  # delivered, but into Junk Email
    spf_fail_probability: Probability = 0.0
    dkim_fail_probability: Probability = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _valid_ranges(self) -> DeliveryBehaviour:
        if self.delay_max_seconds is not None and self.delay_max_seconds < self.delay_seconds:
            raise ValueError("delay_max_seconds must not be below delay_seconds")
        total = self.failed_probability + self.quarantined_probability + self.spam_probability
        if total > 1.0:
            raise ValueError("failed + quarantined + spam probabilities exceed 1")
        return self


@dataclass(slots=True)
class AcceptedMessage:
    """A message as the SMTP server accepted it."""

    sender: str  # envelope MAIL FROM
    recipients: list[str]
    content: bytes
    peer_ip: str
    accepted_at: float
    # distribution lists among `recipients` and their (expanded) members
    lists: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class DeliveryRecord:
    """Ground truth for one (message, recipient)."""

    message_id: str
    sender: str
    recipient: str
    outcome: Outcome
    accepted_at: float
    delay: float | None = None  # seconds until delivery; None when never delivered
    delivered_at: float | None = None
    stored_id: str | None = None  # Graph id of the stored message
    trace_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Pending:
    record: DeliveryRecord
    rows: list[TraceRow]
    parsed: EmailMessage | None  # None for external recipients
    auth_results: str


class DeliveryAgent:
    """Turns accepted mail into trace rows and stored messages on the running loop."""

    def __init__(self, state: EmulatorState, behaviour: DeliveryBehaviour | None = None) -> None:
        self._state = state
        self.behaviour = behaviour or DeliveryBehaviour()
        self._random = random.Random(self.behaviour.seed)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._next_timer = 0
        self._idle: asyncio.Event | None = None
        self.records: deque[DeliveryRecord] = deque(maxlen=_MAX_RECORDS)

    @property
    def pending(self) -> int:
        return len(self._timers)

    def accept(self, message: AcceptedMessage) -> str:
        """Record and schedule delivery of an accepted message; returns its Message-ID."""
        parsed = email.message_from_bytes(message.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message_id = str(parsed.get("Message-ID", "")).strip()
        if not message_id:
            # Exchange stamps a Message-ID on submissions that lack one.
            message_id = f"<{uuid.uuid4()}@{MAILBOX_SERVER}>"
            parsed["Message-ID"] = message_id
        dropped = self._random.random() < self.behaviour.drop_probability
        handled: set[str] = set()
        for recipient in message.recipients:
            members = message.lists.get(recipient)
            if members is not None:
                # Exchange writes each list (nested ones too) as an `expanded` row, then
                # one row per member
                expansion = self._state.list_expansion(recipient)
                for group in expansion[0] if expansion else [recipient]:
                    self._trace_rows(message, parsed, message_id, group, "expanded")
            for address in [recipient] if members is None else members:
                if address.lower() not in handled:
                    handled.add(address.lower())
                    self._handle_recipient(message, parsed, message_id, address, dropped)
        return message_id

    def _handle_recipient(
        self,
        message: AcceptedMessage,
        parsed: EmailMessage,
        message_id: str,
        recipient: str,
        dropped: bool,
    ) -> None:
        outcome = self._draw_outcome(recipient, dropped)
        record = DeliveryRecord(message_id, message.sender, recipient, outcome, message.accepted_at)
        final = outcome in ("failed", "quarantined", "filteredAsSpam")
        status = outcome if final else "pending"
        rows = self._trace_rows(message, parsed, message_id, recipient, status)
        record.trace_ids = [row.id for row in rows]
        self.records.append(record)
        if outcome in ("dropped", "failed", "quarantined"):
            return
        if outcome == "filteredAsSpam" and self._state.mailbox(recipient) is None:
            return
        auth_results = self._authentication_results(message, parsed)
        local = outcome != "external"
        pending = _Pending(record, rows, parsed if local else None, auth_results)
        self._schedule(pending, self._draw_delay())

    def _draw_outcome(self, recipient: str, dropped: bool) -> Outcome:
        if dropped:
            return "dropped"
        behaviour = self.behaviour
        draw = self._random.random()
        if self._unknown_internal(recipient):
            return "failed"
        if draw < behaviour.failed_probability:
            return "failed"
        draw -= behaviour.failed_probability
        if draw < behaviour.quarantined_probability:
            return "quarantined"
        draw -= behaviour.quarantined_probability
        if draw < behaviour.spam_probability:
            return "filteredAsSpam"
        if self._state.mailbox(recipient) is None:
            return "external"
        junk = self._random.random() < behaviour.junk_probability
        return "junkemail" if junk else "inbox"

    def _unknown_internal(self, recipient: str) -> bool:
        """An address in an emulated tenant's domain that has no mailbox (5.1.10 NDR)."""
        if self._state.mailbox(recipient) is not None:
            return False
        return self._state.tenant_owning(recipient) is not None

    def _draw_delay(self) -> float:
        low, high = self.behaviour.delay_seconds, self.behaviour.delay_max_seconds
        return low if high is None else self._random.uniform(low, high)

    def _trace_rows(
        self,
        message: AcceptedMessage,
        parsed: EmailMessage,
        message_id: str,
        recipient: str,
        status: str,
    ) -> list[TraceRow]:
        """The sender tenant's row, plus the recipient tenant's if that is another one."""
        owners = [self._state.tenant_owning(message.sender), self._state.tenant_owning(recipient)]
        tenants = {tenant.name: tenant for tenant in owners if tenant is not None}
        rows: list[TraceRow] = []
        for tenant in tenants.values():
            outbound = not tenant.is_internal(recipient)
            row = TraceRow(
                id=str(uuid.uuid4()),
                tenant=tenant.name,
                sender=message.sender,
                recipient=recipient,
                message_id=message_id,
                received_at=message.accepted_at,
                subject=str(parsed.get("Subject", "")),
                size=len(message.content),
                from_ip=message.peer_ip,
                to_ip=EXTERNAL_TO_IP if outbound else "",
                status=status,
                visible_at=message.accepted_at + self.behaviour.trace_lag_seconds,
            )
            self._state.add_trace_row(row)
            rows.append(row)
        return rows

    def _authentication_results(self, message: AcceptedMessage, parsed: EmailMessage) -> str:
        """Header text in Exchange Online's form; DMARC passes when SPF or DKIM does."""
        sender = message.sender
        mail_domain = sender.rsplit("@", 1)[-1]
        from_addresses = email.utils.getaddresses([str(parsed.get("From", sender))])
        from_address = from_addresses[0][1] if from_addresses and from_addresses[0][1] else sender
        from_domain = from_address.rsplit("@", 1)[-1]
        spf = self._random.random() >= self.behaviour.spf_fail_probability
        dkim = self._random.random() >= self.behaviour.dkim_fail_probability
        dmarc = spf or dkim
        return (
            f"spf={'pass' if spf else 'fail'} (sender IP is {message.peer_ip}) "
            f"smtp.mailfrom={mail_domain}; "
            + (
                f"dkim=pass (signature was verified) header.d={from_domain};"
                if dkim
                else f"dkim=fail (body hash did not verify) header.d={from_domain};"
            )
            + f"dmarc={'pass' if dmarc else 'fail'} action=none header.from={from_domain};"
            + ("compauth=pass reason=100" if dmarc else "compauth=fail reason=000")
        )

    # scheduling on the running loop
    def _schedule(self, pending: _Pending, delay: float) -> None:
        pending.record.delay = delay
        key = self._next_timer
        self._next_timer += 1
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._deliver, key, pending)
        self._idle_event().clear()

    def _deliver(self, key: int, pending: _Pending) -> None:
        del self._timers[key]
        now = self._state.clock()
        record = pending.record
        record.delivered_at = now
        for row in pending.rows:
            if row.status == "pending":
                row.status = "delivered"
        if pending.parsed is not None:
            record.stored_id = self._store(pending, now)
        if not self._timers:
            self._idle_event().set()

    def _store(self, pending: _Pending, now: float) -> str | None:
        mailbox = self._state.mailbox(pending.record.recipient)
        parsed = pending.parsed
        if mailbox is None or parsed is None:
            return None
        folder = "inbox" if pending.record.outcome == "inbox" else "junkemail"
        stored_id = "AAMkAGI2TGuLAAA=" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()
        sent = parsed.get("Date")
        sent_at = now
        if sent is not None:
            try:
                sent_at = email.utils.parsedate_to_datetime(str(sent)).timestamp()
            except (TypeError, ValueError):
                sent_at = now
        mailbox.messages.append(
            StoredMessage(
                id=stored_id,
                internet_message_id=pending.record.message_id,
                subject=str(parsed.get("Subject", "")),
                sender=pending.record.sender,
                received_at=now,
                sent_at=sent_at,
                folder=folder,
                headers=[
                    ("Authentication-Results", pending.auth_results),
                    *((name, str(value)) for name, value in parsed.items()),
                ],
                body=_body_text(parsed),
            )
        )
        return stored_id

    def _idle_event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            if not self._timers:
                self._idle.set()
        return self._idle

    async def wait_idle(self) -> None:
        """Return once nothing is waiting to be delivered."""
        await self._idle_event().wait()

    def cancel_all(self) -> None:
        """Forget scheduled deliveries (shutdown)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._idle_event().set()


def _body_text(parsed: EmailMessage) -> str:
    body = parsed.get_body(preferencelist=("plain", "html"))
    if not isinstance(body, EmailMessage):
        return ""
    try:
        return str(body.get_content())
    except (LookupError, ValueError):  # unknown charset or broken transfer encoding
        return ""

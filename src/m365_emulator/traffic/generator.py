"""Live mail through the emulated SMTP endpoint, so a demo has moving traffic and real replies.

Three streams run side by side, each over real SMTP (STARTTLS, AUTH LOGIN, the emulator's
CA verified):
- ordinary: pool mailboxes write to colleagues and outside addresses, following the daily curve;
- campaign: the bulk sender mails its list in batches until Exchange's daily quota answers
  `554 5.2.0`, then retries now and then (quota panels and rejection counters get data);
- busy: now and then one mailbox holds every connection slot it has, so a probe using it
  gets `432 4.3.2`.
SMTP failures are counted and logged, never raised: the generator keeps going.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import structlog

from m365_emulator.smtp.framing import reply_key
from m365_emulator.state import Clock, EmulatorState
from m365_emulator.traffic.model import (
    CAMPAIGN_SUBJECTS,
    ORDINARY_SUBJECTS,
    DailyCurve,
    TrafficProfile,
)

log = structlog.get_logger(__name__)

_RECIPIENT_COUNTS = (1, 2, 3, 4)
_RECIPIENT_WEIGHTS = (55, 25, 12, 8)


@dataclass(frozen=True, slots=True)
class BusyHolds:
    """How often and how long the busy mailbox occupies all of its connection slots."""

    every_seconds: float = 300.0  # mean time between holds
    hold_seconds: float = 45.0
    connections: int = 3  # Exchange Online's concurrent-connection limit per mailbox


DEFAULT_BUSY_HOLDS = BusyHolds()


@dataclass(slots=True)
class TrafficStats:
    """What the generator sent and what the server answered."""

    messages: Counter[str] = field(default_factory=Counter)  # accepted messages per stream
    recipients: Counter[str] = field(default_factory=Counter)  # accepted recipients per stream
    replies: Counter[str] = field(default_factory=Counter)  # "250 2.0.0", "554 5.2.0", ...
    errors: Counter[str] = field(default_factory=Counter)  # failures without a reply, by type

    def to_json(self) -> dict[str, dict[str, int]]:
        return {
            "messages": dict(self.messages),
            "recipients": dict(self.recipients),
            "replies": dict(self.replies),
            "errors": dict(self.errors),
        }


class TrafficGenerator:
    """Sends the three streams to the SMTP emulator at `smtp_host:smtp_port` until stopped.

    Rates are per minute of real time; `rate_per_minute` is the ordinary rate at the curve's
    peak (it scales with `curve.weight(clock())`), the campaign rate is constant. Passwords
    come from `passwords` (address -> password) or else from the mailboxes in `state`.
    """

    def __init__(
        self,
        state: EmulatorState,
        smtp_host: str,
        smtp_port: int,
        ca_file: Path,
        *,
        profile: TrafficProfile | None = None,
        passwords: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        rate_per_minute: float = 20.0,
        campaign_rate_per_minute: float = 2.0,
        campaign_retry_seconds: float = 90.0,
        external_share: float = 0.12,
        busy: BusyHolds | None = DEFAULT_BUSY_HOLDS,
        mailbox_keep: int = 200,
        curve: DailyCurve | None = None,
        clock: Clock | None = None,
        timeout: float = 30.0,
        stop_grace_seconds: float = 5.0,
        local_hostname: str = "traffic-generator",
    ) -> None:
        self._state = state
        self._host = smtp_host
        self._port = smtp_port
        self._tls = ssl.create_default_context(cafile=str(ca_file))
        self._profile = profile or TrafficProfile()
        self._passwords = {k.lower(): v for k, v in (passwords or {}).items()}
        self._rng = rng or random.Random()
        self._rate = rate_per_minute
        self._campaign_rate = campaign_rate_per_minute
        self._campaign_retry = campaign_retry_seconds
        self._external_share = external_share
        self._busy = busy
        self._mailbox_keep = mailbox_keep
        self._curve = curve or DailyCurve()
        self._clock = clock or state.clock
        self._timeout = timeout
        self._stop_grace = stop_grace_seconds
        self._local_hostname = local_hostname
        self._next_subscriber = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = TrafficStats()
        self.holding = False  # the busy mailbox's slots are taken right now

    # life cycle
    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("the traffic generator is already running")
        self._stopping.clear()
        streams: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        if self._rate > 0:
            streams["ordinary"] = self._ordinary_loop
        if self._profile.campaign_sender and self._campaign_rate > 0:
            streams["campaign"] = self._campaign_loop
        if self._profile.busy_mailbox and self._busy is not None:
            streams["busy"] = self._busy_loop
        for name, stream in streams.items():
            task = asyncio.create_task(stream(), name=f"traffic-{name}")
            task.add_done_callback(_log_crash)
            self._tasks.append(task)

    async def stop(self) -> None:
        """Let the current sends finish (up to the grace period), then end every stream."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        self._stopping.set()
        _, late = await asyncio.wait(tasks, timeout=self._stop_grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        self.holding = False

    @property
    def running(self) -> bool:
        """Started, and every stream still alive."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    # streams
    async def _ordinary_loop(self) -> None:
        while not await self._pause(self._ordinary_gap()):
            sender = self._ordinary_sender()
            recipients = self._ordinary_recipients(sender)
            content = self._message(sender, recipients, self._rng.choice(ORDINARY_SUBJECTS))
            await self._send("ordinary", sender, recipients, content)
            self._trim_mailboxes(recipients)

    async def _campaign_loop(self) -> None:
        sender = self._profile.campaign_sender
        assert sender is not None
        gap = 1.0  # the campaign is under way when the generator starts
        full_batch = len(self._campaign_recipients(sender))
        batch = full_batch
        while not await self._pause(gap):
            recipients = self._campaign_recipients(sender)[:batch]
            subject = self._rng.choice(CAMPAIGN_SUBJECTS)
            content = self._message(sender, ["undisclosed-recipients:;"], subject)
            accepted = await self._send("campaign", sender, recipients, content)
            # Like bulk-mail tools, a rejected batch is retried smaller at once, so the
            # campaign fills its quota to the last recipient and the mailbox ends up blocked.
            if accepted:
                self._next_subscriber += len(recipients)
                if batch == full_batch:
                    gap = self._rng.expovariate(self._campaign_rate / 60)
                else:
                    gap = min(2.0, self._campaign_retry)
            elif batch > 1:
                batch = max(1, batch // 2)
                gap = min(2.0, self._campaign_retry)
            else:  # blocked for every recipient: try again once the window may have rolled
                batch = full_batch
                gap = self._campaign_retry

    async def _busy_loop(self) -> None:
        assert self._busy is not None
        while not await self._pause(self._rng.expovariate(1 / self._busy.every_seconds)):
            await self._hold_busy_mailbox(self._busy)

    async def _hold_busy_mailbox(self, busy: BusyHolds) -> None:
        """Authenticate `connections` sessions at once, send on each, keep them open a while."""
        mailbox = self._profile.busy_mailbox
        assert mailbox is not None
        clients = [self._client() for _ in range(busy.connections)]
        try:
            for client in clients:
                await self._open(client, mailbox)
            self.holding = True
            for client in clients:
                recipient = self._profile.colleague_of(mailbox, self._rng)
                content = self._message(mailbox, [recipient], "Automated status report")
                await self._submit(client, "busy", mailbox, [recipient], content)
            await self._pause(busy.hold_seconds)
            for client in clients:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError) as error:
            self._count_failure("busy", mailbox, error)
        finally:
            self.holding = False
            for client in clients:
                client.close()

    # one message
    async def _send(self, stream: str, sender: str, recipients: list[str], content: bytes) -> bool:
        """One connection, one message; True when the server accepted it."""
        client = self._client()
        try:
            await self._open(client, sender)
            await self._submit(client, stream, sender, recipients, content)
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as error:
            self._count_failure(stream, sender, error)
            return False
        finally:
            client.close()
        return True

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            start_tls=True,
            tls_context=self._tls,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
        )

    async def _open(self, client: aiosmtplib.SMTP, mailbox: str) -> None:
        await client.connect()
        await client.ehlo()  # capabilities change after STARTTLS
        await client.auth_login(mailbox, self._password(mailbox))

    async def _submit(
        self,
        client: aiosmtplib.SMTP,
        stream: str,
        sender: str,
        recipients: list[str],
        content: bytes,
    ) -> None:
        refused, response = await client.sendmail(sender, recipients, content)
        for answer in refused.values():
            self._count_reply(answer.code, answer.message)
        self._count_reply(250, response)
        self.stats.messages[stream] += 1
        self.stats.recipients[stream] += len(recipients) - len(refused)

    def _count_failure(self, stream: str, sender: str, error: Exception) -> None:
        if isinstance(error, aiosmtplib.SMTPResponseException):
            key = self._count_reply(error.code, error.message)
        elif isinstance(error, aiosmtplib.SMTPRecipientsRefused):
            for refusal in error.recipients:
                key = self._count_reply(refusal.code, refusal.message)
        else:
            key = type(error).__name__
            self.stats.errors[key] += 1
        log.debug("traffic send failed", stream=stream, sender=sender, reply=key)

    def _count_reply(self, code: int, message: str) -> str:
        key = reply_key(f"{code} {message}") or str(code)
        self.stats.replies[key] += 1
        return key

    def _password(self, mailbox: str) -> str:
        password = self._passwords.get(mailbox.lower())
        if password is None:
            known = self._state.mailbox(mailbox)
            password = known.password if known is not None else None
        return password or ""

    def _trim_mailboxes(self, addresses: list[str]) -> None:
        """Keep only the newest messages of mailboxes this traffic fills (bounded memory)."""
        for address in addresses:
            mailbox = self._state.mailbox(address)
            if mailbox is not None and len(mailbox.messages) > self._mailbox_keep:
                del mailbox.messages[: -self._mailbox_keep]

    # what to send
    def _ordinary_gap(self) -> float:
        per_second = self._rate * self._curve.weight(self._clock()) / 60
        return self._rng.expovariate(per_second)

    def _ordinary_sender(self) -> str:
        while True:  # the busy mailbox has its own stream
            sender = self._rng.choice(self._profile.senders)
            if sender != self._profile.busy_mailbox:
                return sender

    def _ordinary_recipients(self, sender: str) -> list[str]:
        count = self._rng.choices(_RECIPIENT_COUNTS, weights=_RECIPIENT_WEIGHTS)[0]
        recipients = [
            self._profile.external_person(self._rng)
            if self._rng.random() < self._external_share
            else self._profile.colleague_of(sender, self._rng)
            for _ in range(count)
        ]
        return list(dict.fromkeys(recipients))

    def _campaign_recipients(self, sender: str) -> list[str]:
        mailbox = self._state.mailbox(sender)
        batch = self._profile.campaign_batch
        if mailbox is not None:
            batch = min(batch, mailbox.recipient_limit_per_message)
        first = self._next_subscriber
        return [self._profile.subscriber(n % 100_000) for n in range(first, first + batch)]

    def _message(self, sender: str, to: list[str], subject: str) -> bytes:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.fromtimestamp(self._clock(), tz=UTC))
        message["Message-ID"] = make_msgid(domain=self._local_hostname)
        message.set_content(f"{subject}\n\nGenerated mail for the emulated tenant.\n")
        return message.as_bytes()

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less when stopped; True when the generator is stopping."""
        if self._stopping.is_set():
            return True
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("traffic stream crashed", stream=task.get_name(), exc_info=error)

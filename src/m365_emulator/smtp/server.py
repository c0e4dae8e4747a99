"""The emulated `smtp.office365.com` submission endpoint: aiosmtpd on the running loop.

`SmtpEmulator` owns the listener, the TLS material, the sending ledger, delivery and the
fault switches. Each connection gets an `_ExchangeSmtp` protocol, which adds Exchange
Online's framing (banner, STARTTLS before AUTH, reply texts) and injects faults; the
submission rules themselves are in `submission.SubmissionPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP
from pydantic import BaseModel, ConfigDict, Field

from m365_emulator.certs import TlsMaterial
from m365_emulator.smtp import replies
from m365_emulator.smtp.delivery import DeliveryAgent, DeliveryBehaviour
from m365_emulator.smtp.faults import BANNER, OutageMode, SmtpFaults
from m365_emulator.smtp.framing import Closable, ExchangeConnection, ExchangeListener
from m365_emulator.smtp.ledger import SendingLedger
from m365_emulator.smtp.submission import SubmissionPolicy
from m365_emulator.state import Clock, EmulatorState

log = logging.getLogger(__name__)

_MECHANISMS = frozenset({"LOGIN", "PLAIN", "XOAUTH2"})


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: any free port
    hostname: str = replies.FRONTEND_HOSTNAME
    certificate_names: list[str] = Field(default_factory=list)  # added to localhost, 127.0.0.1
    certificate_days: float = 365.0
    max_connections_per_mailbox: int = Field(default=3, ge=1)
    idle_timeout_seconds: float = Field(default=600.0, gt=0)
    max_message_bytes: int = Field(default=36_700_160, ge=1)  # 35 MB send default


class _ExchangeSmtp(ExchangeConnection):
    """One submission connection: Exchange's framing plus its banner faults, AUTH only
    after STARTTLS, and the data-drop fault; the submission rules are in the policy."""

    def __init__(
        self,
        policy: SubmissionPolicy,
        *,
        faults: SmtpFaults,
        replies_sent: Counter[str],
        settings: SmtpSettings,
        tls_context: ssl.SSLContext,
        greeted_at: float,
        on_closed: Callable[[Closable], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(
            policy,
            hostname=settings.hostname,
            greeted_at=greeted_at,
            tls_context=tls_context,
            faults=faults,
            replies_sent=replies_sent,
            on_closed=on_closed,
            auth_required=True,
            auth_require_tls=True,  # AUTH is advertised only after STARTTLS
            authenticator=policy.authenticate,
            data_size_limit=settings.max_message_bytes,
            timeout=settings.idle_timeout_seconds,
            loop=loop,
        )
        self._policy = policy

    async def _handle_client(self) -> None:
        self.task = asyncio.current_task()
        await self._pause("banner")
        scripted = self._faults.take_reply(BANNER)
        if scripted is not None:  # a refusing greeting ends the connection
            await self.push(scripted)
            self.shutdown(graceful=True)
            return
        await super()._handle_client()

    async def check_auth_needed(self, caller_method: str) -> bool:
        assert self.session is not None
        if self.session.authenticated:
            return False
        await self.push(replies.NOT_AUTHENTICATED)
        return True

    async def smtp_AUTH(self, arg: str | None) -> None:  # noqa: N802
        if await self._intercepted("AUTH"):
            return
        assert self.session is not None
        mechanism = (arg or "").split(" ", 1)[0].upper()
        # Before STARTTLS Exchange Online knows no mechanism at all.
        if self.session.ssl is None or (mechanism and mechanism not in _MECHANISMS):
            await self.push(replies.AUTH_UNRECOGNIZED)
            return
        await super().smtp_AUTH(arg)

    async def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802
        if await self._intercepted("DATA"):
            return
        assert self.session is not None
        assert self.envelope is not None
        ready = bool(self.session.authenticated and self.envelope.rcpt_tos and not arg)
        if ready and self._faults.take_data_drop():
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readline()  # let the transfer begin, then cut it
            self.shutdown()
            return
        await SMTP.smtp_DATA(self, arg)  # aiosmtpd's own: the faults were applied above

    async def smtp_QUIT(self, arg: str | None) -> None:  # noqa: N802
        if await self._intercepted("QUIT"):
            return
        if self.session is not None and not arg:
            # Free the connection slot before the client reads "221", not when the socket
            # is finally torn down, so a client that quits and reconnects is not throttled.
            self._policy.session_closed(self.session)
        await super().smtp_QUIT(arg)


class _BlackHole(asyncio.Protocol):
    """Accepts a connection and never says anything (a hung front end)."""

    def __init__(self, on_closed: Callable[[Closable], None]) -> None:
        self._on_closed = on_closed
        self._transport: asyncio.BaseTransport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._on_closed(self)

    def shutdown(self, *, graceful: bool = False) -> None:
        if self._transport is not None:
            self._transport.close()


class SmtpEmulator:
    """The SMTP submission side of the Microsoft 365 emulator.

    `ledger.record_history(...)` back-fills earlier sending, `delivery.records` tells what
    happened to accepted mail, `replies` counts every final reply sent ("535 5.7.3": n) and
    `faults.injected` every fault injected.
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        settings: SmtpSettings | None = None,
        delivery: DeliveryBehaviour | None = None,
        tls_dir: Path | None = None,
        certificate_clock: Clock = time.time,
    ) -> None:
        self.state = state
        self.settings = settings or SmtpSettings()
        self.faults = SmtpFaults()
        self.ledger = SendingLedger(state)
        self.delivery = DeliveryAgent(state, delivery)
        self.replies: Counter[str] = Counter()
        self._policy = SubmissionPolicy(
            state,
            self.ledger,
            self.delivery,
            self.faults,
            max_connections_per_mailbox=self.settings.max_connections_per_mailbox,
        )
        self._tls_dir = tls_dir
        self._certificate_clock = certificate_clock
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._tls: TlsMaterial | None = None
        self._context: ssl.SSLContext | None = None
        self._listener = ExchangeListener(self.settings.host, self._new_connection)

    # life cycle
    async def start(self) -> None:
        if self._tls_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="m365-emulator-tls-")
            directory = Path(self._tempdir.name)
        else:
            directory = self._tls_dir
            directory.mkdir(parents=True, exist_ok=True)
        self._tls = TlsMaterial(
            directory,
            [self.settings.hostname, *self.settings.certificate_names],
            days_valid=self.settings.certificate_days,
            clock=self._certificate_clock,
        )
        self._context = self._tls.server_context()
        await self._listener.listen(self.settings.port)
        log.info("SMTP emulator listening on %s:%s", self.settings.host, self._listener.port)

    async def stop(self) -> None:
        await self._listener.stop()
        self.delivery.cancel_all()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    @property
    def port(self) -> int:
        if not self._listener.started:
            raise RuntimeError("the SMTP emulator has not been started")
        return self._listener.port

    @property
    def tls_failures(self) -> Counter[str]:
        """Failed STARTTLS handshakes by OpenSSL reason (e.g. "UNSUPPORTED_PROTOCOL")."""
        return self._policy.tls_failures

    @property
    def delayed_submissions(self) -> Counter[str]:
        """Submissions held for the 30 messages/minute pace, by mailbox (ground truth)."""
        return self._policy.delayed

    @property
    def held_submissions(self) -> Counter[str]:
        """Submissions held right now, by mailbox."""
        return self._policy.holding

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def ca_file(self) -> Path:
        return self._tls_material().ca_file

    @property
    def certificate_not_after(self) -> datetime:
        return self._tls_material().not_after

    # faults that change the listener or the certificate
    async def set_outage(self, mode: OutageMode) -> None:
        """`refuse`: stop listening; `blackhole`: accept, never greet; `none`: normal."""
        if mode == "refuse" and self._listener.listening:
            self._listener.close_listener()  # open connections may finish their session
            self.faults.injected["outage:refuse"] += 1
        elif mode != "refuse" and not self._listener.listening and self._listener.started:
            await self._listener.listen(self._listener.port)
        self.faults.outage = mode

    def use_certificate(self, days_left: float | None) -> datetime:
        """Serve a new certificate expiring in `days_left` days (None: the normal validity)."""
        tls = self._tls_material()
        not_after = tls.reissue(self.settings.certificate_days if days_left is None else days_left)
        self._context = tls.server_context()
        self.faults.certificate_days_left = days_left
        if days_left is not None:
            self.faults.injected["certificate"] += 1
        return not_after

    async def reset_faults(self) -> None:
        """Back to normal service: listener open, normal certificate, no faults."""
        swapped = self.faults.certificate_days_left is not None
        self.faults.reset()
        await self.set_outage("none")
        if swapped:
            self.use_certificate(None)

    # internals
    def _tls_material(self) -> TlsMaterial:
        if self._tls is None:
            raise RuntimeError("the SMTP emulator has not been started")
        return self._tls

    def _new_connection(self) -> _ExchangeSmtp | _BlackHole:
        if self.faults.outage == "blackhole":
            self.faults.note_blackholed_connection()
            return _BlackHole(self._listener.forget)
        assert self._context is not None
        return _ExchangeSmtp(
            self._policy,
            faults=self.faults,
            replies_sent=self.replies,
            settings=self.settings,
            tls_context=self._context,
            greeted_at=self.state.clock(),
            on_closed=self._listener.forget,
            loop=asyncio.get_running_loop(),
        )

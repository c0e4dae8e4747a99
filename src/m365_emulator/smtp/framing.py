"""Exchange Online's SMTP framing, shared by every emulated endpoint (submission, HVE, MX).

`ExchangeConnection` is one client connection: a banner stamped with the greeting time,
fault switches in front of every command (a delay for the command's phase, then a scripted
reply instead of the real one), every final reply counted, and the connection closed after
a 421. `ExchangeListener` listens on a port, hands each connection to a protocol factory and
stops them all within a grace period. The rules of each path live in its aiosmtpd handler.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from m365_emulator.smtp import replies
from m365_emulator.smtp.faults import Phase, SmtpFaults, phase_of

SHUTDOWN_GRACE = 5.0
_FINAL_REPLY = re.compile(r"^(\d{3})(?: (\d\.\d{1,3}\.\d{1,3}))?(?: |$)")


def reply_key(line: str) -> str | None:
    """`"535 5.7.3"` for a final reply line, `"250"` without an enhanced code, else None."""
    match = _FINAL_REPLY.match(line)
    if match is None:
        return None
    code, enhanced = match.groups()
    return f"{code} {enhanced}" if enhanced else code


def peer_of(session: Session) -> str:
    """The client's IP address as Exchange prints it, or "unknown"."""
    return str(session.peer[0]) if isinstance(session.peer, tuple) else "unknown"


def ehlo_lines(
    server: SMTP, session: Session, hostname: str, responses: list[str], *, auth: bool = True
) -> list[str]:
    """Exchange's EHLO answer: "<host> Hello [<ip>]", aiosmtpd's extensions without HELP
    (and without AUTH where the endpoint offers none), then ENHANCEDSTATUSCODES."""
    session.host_name = hostname
    capabilities = [
        line[4:]
        for line in responses[1:]
        if line[4:] != "HELP" and (auth or not line[4:].startswith("AUTH"))
    ]
    capabilities.append("ENHANCEDSTATUSCODES")
    lines = [f"{server.hostname} Hello [{peer_of(session)}]", *capabilities]
    return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]


def accept_sender(envelope: Envelope, address: str, mail_options: list[str]) -> str:
    envelope.mail_from = address
    envelope.mail_options.extend(mail_options)
    return replies.SENDER_OK


def accept_recipient(envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
    envelope.rcpt_tos.append(address)
    envelope.rcpt_options.extend(rcpt_options)
    return replies.RECIPIENT_OK


class _QuietSession(Session):
    """aiosmtpd sets the deprecated `login_data` on every AUTH and logs a warning each time;
    the emulator keeps the identity in `auth_data` and ignores `login_data`."""

    @property
    def login_data(self) -> object:
        return None

    @login_data.setter
    def login_data(self, value: object) -> None:
        pass


class Closable(Protocol):
    task: asyncio.Task[None] | None

    def shutdown(self, *, graceful: bool = False) -> None: ...


class ExchangeConnection(SMTP):
    """One client connection with Exchange Online's framing over `handler`'s rules."""

    def __init__(
        self,
        handler: Any,
        *,
        hostname: str,
        greeted_at: float,
        tls_context: ssl.SSLContext,
        faults: SmtpFaults,
        replies_sent: Counter[str],
        on_closed: Callable[[Closable], None],
        **smtp_options: Any,
    ) -> None:
        stamp = format_datetime(datetime.fromtimestamp(greeted_at, tz=UTC))
        super().__init__(
            handler,
            hostname=hostname,
            ident=f"{replies.BANNER_IDENT} {stamp}",
            tls_context=tls_context,
            **smtp_options,
        )
        self._handler = handler
        self._faults = faults
        self._replies_sent = replies_sent
        self._on_closed = on_closed
        self.task: asyncio.Task[None] | None = None

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    async def _handle_client(self) -> None:
        self.task = asyncio.current_task()
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        closed = getattr(self._handler, "session_closed", None)
        if self.session is not None and closed is not None:
            closed(self.session)
        self._on_closed(self)
        super().connection_lost(error)

    def shutdown(self, *, graceful: bool = False) -> None:
        """Close (after what is queued is sent) when graceful; otherwise cut at once."""
        if self.transport is None:
            return
        if graceful or not isinstance(self.transport, asyncio.Transport):
            self.transport.close()
        else:
            self.transport.abort()

    async def push(self, status: AnyStr) -> None:
        await super().push(status)
        line = status if isinstance(status, str) else status.decode("ascii", "replace")
        key = reply_key(line)
        if key is not None:
            self._replies_sent[key] += 1
        if line.startswith("421"):  # "closing transmission channel"
            self.shutdown(graceful=True)

    # fault injection in front of every command
    async def _pause(self, phase: Phase | None) -> None:
        seconds = 0.0 if phase is None else self._faults.latency_for(phase)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _intercepted(self, verb: str) -> bool:
        """Apply the verb's latency; True when a scripted reply answered it instead."""
        await self._pause(phase_of(verb))
        scripted = self._faults.take_reply(verb)
        if scripted is None:
            return False
        await self.push(scripted)
        return True

    async def smtp_HELO(self, hostname: str) -> None:  # noqa: N802
        if not await self._intercepted("HELO"):
            await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:  # noqa: N802
        if not await self._intercepted("EHLO"):
            await super().smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("STARTTLS"):
            await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("MAIL"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("DATA"):
            await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("RSET"):
            await super().smtp_RSET(arg)

    async def smtp_NOOP(self, arg: str | None) -> None:  # noqa: N802
        if not await self._intercepted("NOOP"):
            await super().smtp_NOOP(arg)


class ExchangeListener:
    """Listens on `host:port` (0: any free port); `connect` makes each connection's protocol.

    The listener can be closed and opened again on the same port (an outage), and `stop`
    closes every connection it accepted, waiting `SHUTDOWN_GRACE` at most.
    """

    def __init__(self, host: str, connect: Callable[[], Closable]) -> None:
        self.host = host
        self._connect = connect
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[Closable] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the listener has not been started")
        return self._port

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def started(self) -> bool:
        return self._port is not None

    def forget(self, connection: Closable) -> None:
        self._connections.discard(connection)

    async def listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, port)
        self._port = self._server.sockets[0].getsockname()[1]

    def close_listener(self) -> None:
        """Stop accepting at once; open connections may finish their session."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.shutdown()
        tasks = [c.task for c in connections if c.task is not None and not c.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        if server is not None:
            # Since Python 3.12 this also waits for the connections closed above.
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)

    def _accept(self) -> asyncio.Protocol:
        connection = self._connect()
        self._connections.add(connection)
        assert isinstance(connection, asyncio.Protocol)
        return connection

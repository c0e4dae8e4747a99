"""An extra SMTP listener with Exchange Online's framing, for the other send paths.

The port-25 MX endpoint (direct send) and the High Volume Email endpoint each run one of
these next to the submission server: same CA and certificate, same banner style, their own
aiosmtpd handler (the rules of the path) and their own fault switches (scripted replies).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Session

from m365_emulator.smtp.faults import SmtpFaults
from m365_emulator.smtp.server import reply_key
from m365_emulator.state import Clock

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 5.0
BANNER_IDENT = "Microsoft ESMTP MAIL Service ready at"


class _QuietSession(Session):
    """Keeps aiosmtpd from setting (and warning about) the deprecated `login_data`."""

    @property
    def login_data(self) -> object:
        return None

    @login_data.setter
    def login_data(self, value: object) -> None:
        pass


class _Endpoint(SMTP):
    """One connection: banner with a timestamp, scripted replies in front of commands."""

    def __init__(
        self,
        handler: Any,
        *,
        hostname: str,
        greeted_at: float,
        tls_context: ssl.SSLContext,
        faults: SmtpFaults,
        replies_sent: Counter[str],
        on_closed: Callable[[_Endpoint], None],
        **smtp_options: Any,
    ) -> None:
        stamp = format_datetime(datetime.fromtimestamp(greeted_at, tz=UTC))
        super().__init__(
            handler,
            hostname=hostname,
            ident=f"{BANNER_IDENT} {stamp}",
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

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        await super().push(status)
        line = status if isinstance(status, str) else status.decode("ascii", "replace")
        key = reply_key(line)
        if key is not None:
            self._replies_sent[key] += 1
        if line.startswith("421"):
            self.shutdown()

    async def _scripted(self, verb: str) -> bool:
        reply = self._faults.take_reply(verb)
        if reply is None:
            return False
        await self.push(reply)
        return True

    async def smtp_EHLO(self, hostname: str) -> None:  # noqa: N802
        if not await self._scripted("EHLO"):
            await super().smtp_EHLO(hostname)

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802
        if not await self._scripted("MAIL"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802
        if not await self._scripted("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802
        if not await self._scripted("DATA"):
            await super().smtp_DATA(arg)


class SmtpListener:
    """Listens on `host:port` (0: any free port) and serves `handler` with Exchange framing.

    `tls_context()` is asked for the server context on each connection, so a listener sharing
    the submission server's certificate follows it. `smtp_options` go to aiosmtpd's `SMTP`.
    """

    def __init__(
        self,
        handler: Any,
        *,
        host: str,
        port: int,
        hostname: str,
        tls_context: Callable[[], ssl.SSLContext],
        clock: Clock,
        **smtp_options: Any,
    ) -> None:
        self.handler = handler
        self.faults = SmtpFaults()
        self.replies: Counter[str] = Counter()
        self._host = host
        self._requested_port = port
        self._hostname = hostname
        self._tls_context = tls_context
        self._clock = clock
        self._options = smtp_options
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[_Endpoint] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the listener has not been started")
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connect, self._host, self._requested_port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.shutdown()
        tasks = [c.task for c in connections if c.task is not None and not c.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE)
        if server is not None:
            await asyncio.wait_for(server.wait_closed(), _SHUTDOWN_GRACE)

    def _connect(self) -> asyncio.Protocol:
        connection = _Endpoint(
            self.handler,
            hostname=self._hostname,
            greeted_at=self._clock(),
            tls_context=self._tls_context(),
            faults=self.faults,
            replies_sent=self.replies,
            on_closed=self._connections.discard,
            loop=asyncio.get_running_loop(),
            **self._options,
        )
        self._connections.add(connection)
        return connection

"""An extra SMTP listener with Exchange Online's framing, for the other send paths.

The port-25 MX endpoint (direct send) and the High Volume Email endpoint each run one of
these next to the submission server: same CA and certificate, same banner style and
framing (framing.py), their own aiosmtpd handler (the rules of the path) and their own
fault switches (scripted replies).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

from m365_emulator.smtp.faults import SmtpFaults
from m365_emulator.smtp.framing import ExchangeConnection, ExchangeListener
from m365_emulator.state import Clock


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
        self._requested_port = port
        self._hostname = hostname
        self._tls_context = tls_context
        self._clock = clock
        self._options = smtp_options
        self._listener = ExchangeListener(host, self._connect)

    @property
    def port(self) -> int:
        return self._listener.port

    async def start(self) -> None:
        await self._listener.listen(self._requested_port)

    async def stop(self) -> None:
        await self._listener.stop()

    def _connect(self) -> ExchangeConnection:
        return ExchangeConnection(
            self.handler,
            hostname=self._hostname,
            greeted_at=self._clock(),
            tls_context=self._tls_context(),
            faults=self.faults,
            replies_sent=self.replies,
            on_closed=self._listener.forget,
            loop=asyncio.get_running_loop(),
            **self._options,
        )

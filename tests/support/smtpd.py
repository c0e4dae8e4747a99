"""A small real SMTP submission server (aiosmtpd, STARTTLS with trustme certs, AUTH LOGIN/PLAIN)
that can be stopped and restarted on the same port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Mailbox:
    received: list[Envelope] = field(default_factory=list)


class _Handler:
    def __init__(self, sink: Mailbox) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sink.received.append(envelope)
        return "250 2.0.0 OK queued"


class SubmissionServer:
    """STARTTLS required before AUTH; one user with one password."""

    def __init__(self, ca: trustme.CA, username: str, password: str) -> None:
        self.ca = ca
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.tls)
        self.username = username
        self.password = password
        self.mailbox = Mailbox()
        self.port = 0
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)

    def _factory(self) -> SMTP:
        return SMTP(
            _Handler(self.mailbox),
            hostname="smtp.test.local",
            tls_context=self.tls,
            require_starttls=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            auth_exclude_mechanism=["CRAM-MD5"],
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def write_ca(self, directory: Path) -> Path:
        """The CA that signed the server certificate, as a PEM file for `ca_file`."""
        path = directory / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path


@asynccontextmanager
async def submission_server(
    password: str, username: str = "probe@example.test"
) -> AsyncIterator[SubmissionServer]:
    """A started server with its own CA, stopped on exit."""
    server = SubmissionServer(trustme.CA(), username, password)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()

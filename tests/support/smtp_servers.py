"""Real SMTP servers on 127.0.0.1 for the probe tests (the fixtures are in tests/smtp/).

`SmtpServers.start(...)` runs an aiosmtpd server in the test's event loop with trustme
certificates; keyword knobs script its replies (see `Behaviour`). `SmtpServers.raw(...)`
runs a bare TCP server that sends a fixed greeting (or nothing) and never answers, for
silent and hostile servers. `new_pki` makes the certificates they use."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SENDER = "probe@contoso.test"
RECIPIENTS = ["inbox@contoso.test", "second@contoso.test"]
PASSWORD = "correct-horse-battery"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature"
SERVER_NAME = "smtp.probe.test"
CERT_NOT_AFTER = datetime(2031, 5, 17, 8, 30, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    cert: trustme.LeafCert  # 127.0.0.1 and SERVER_NAME, expires CERT_NOT_AFTER
    name_only_cert: trustme.LeafCert  # SERVER_NAME only
    untrusted_cert: trustme.LeafCert  # from a CA the probe does not trust


@dataclass
class Behaviour:
    """How the server answers. A `*_reply` replaces the normal answer to that command."""

    starttls: bool = True  # offer STARTTLS
    implicit_tls: bool = False  # TLS from the first byte (port 465 style)
    require_starttls: bool = True
    auth_require_tls: bool = True  # advertise/accept AUTH only after TLS
    exclude_auth: tuple[str, ...] = ()
    cert: str = "default"  # "default", "name_only" or "untrusted"
    tls_maximum_version: ssl.TLSVersion | None = None
    users: dict[str, str] = field(default_factory=lambda: {SENDER: PASSWORD})
    tokens: dict[str, str] = field(default_factory=lambda: {SENDER: TOKEN})
    ehlo_reply: str | None = None
    auth_reply: str | None = None
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    drop_on_data: bool = False  # hang up after receiving the message, before answering
    quit_reply: str | None = None


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Recorder:
    """What the server saw."""

    auth_attempts: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, login)
    xoauth2_strings: list[bytes] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    tls_sessions: list[tuple[str, str]] = field(default_factory=list)  # (version, cipher)
    helo_names: list[str] = field(default_factory=list)


class ScriptedHandler:
    """aiosmtpd handler: records everything and answers as `Behaviour` says."""

    def __init__(self, behaviour: Behaviour, recorder: Recorder) -> None:
        self.behaviour = behaviour
        self.recorder = recorder

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode()
        self.recorder.auth_attempts.append((mechanism, login))
        if self.behaviour.auth_reply is not None:
            return AuthResult(success=False, handled=False, message=self.behaviour.auth_reply)
        if self.behaviour.users.get(login) == data.password.decode():
            return AuthResult(success=True, auth_data=login)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 as Exchange Online does it: a refused token gets a base64 JSON
        challenge first, and the final 535 only after the client's empty line."""
        sasl = base64.b64decode(args[1]) if len(args) > 1 else b""
        self.recorder.xoauth2_strings.append(sasl)
        user = sasl.partition(b"\x01")[0].removeprefix(b"user=").decode()
        self.recorder.auth_attempts.append(("XOAUTH2", user))
        if self.behaviour.auth_reply is not None:
            return AuthResult(success=False, handled=False, message=self.behaviour.auth_reply)
        token = self.behaviour.tokens.get(user)
        if token is not None and sasl == f"user={user}\x01auth=Bearer {token}\x01\x01".encode():
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "smtp"})
        await server.challenge_auth(error)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.recorder.helo_names.append(hostname)
        if self.behaviour.ehlo_reply is not None:
            return [self.behaviour.ehlo_reply]
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        if ssl_object is not None:
            self.recorder.tls_sessions.append((ssl_object.version(), ssl_object.cipher()[0]))
        if self.behaviour.mail_reply is not None:
            return self.behaviour.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        reply = self.behaviour.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if self.behaviour.drop_on_data:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "250 2.0.0 never sent"
        if self.behaviour.data_reply is not None:
            return self.behaviour.data_reply
        self.recorder.messages.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
        )
        return "250 2.0.0 OK <queued@smtp.probe.test>"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.behaviour.quit_reply or "221 2.0.0 Service closing transmission channel"


@dataclass
class RunningServer:
    port: int
    recorder: Recorder


class SmtpServers:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _server_context(self, behaviour: Behaviour) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert = {
            "default": self.pki.cert,
            "name_only": self.pki.name_only_cert,
            "untrusted": self.pki.untrusted_cert,
        }[behaviour.cert]
        cert.configure_cert(context)
        if behaviour.tls_maximum_version is not None:
            context.maximum_version = behaviour.tls_maximum_version
        return context

    async def start(self, **knobs: Any) -> RunningServer:
        """An aiosmtpd server; `knobs` are `Behaviour` fields."""
        behaviour = Behaviour(**knobs)
        recorder = Recorder()
        handler = ScriptedHandler(behaviour, recorder)
        context = self._server_context(behaviour)
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                handler,
                hostname=SERVER_NAME,
                tls_context=context if behaviour.starttls and not behaviour.implicit_tls else None,
                require_starttls=behaviour.require_starttls and behaviour.starttls,
                authenticator=handler.authenticate,
                # aiosmtpd only counts STARTTLS as encryption
                auth_require_tls=behaviour.auth_require_tls and not behaviour.implicit_tls,
                auth_exclude_mechanism=list(behaviour.exclude_auth),
                loop=loop,
            )

        server = await loop.create_server(
            factory, "127.0.0.1", 0, ssl=context if behaviour.implicit_tls else None
        )
        self._servers.append(server)
        return RunningServer(server.sockets[0].getsockname()[1], recorder)

    async def raw(
        self,
        greeting: bytes = b"",
        replies: dict[str, bytes] | None = None,
        tls_alert: bytes = b"",
        hang_up_on: str = "",
    ) -> int:
        """A line-based server: sends `greeting` (maybe nothing), answers a command only
        when `replies` has its verb, and stays silent otherwise. With `tls_alert`, the
        bytes are sent once the client starts a TLS handshake after STARTTLS; the
        `hang_up_on` verb makes it close the connection without a reply."""
        script = replies or {}

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                writer.write(greeting)
                while line := await reader.readline():
                    verb = line.split(maxsplit=1)[0].decode().upper() if line.strip() else ""
                    if verb == hang_up_on:
                        break
                    writer.write(script.get(verb, b""))
                    if verb == "STARTTLS" and tls_alert:
                        await reader.read(1)  # the ClientHello has begun
                        writer.write(tls_alert)
                        await writer.drain()
                        break
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # let transports closed above run their connection_lost callbacks
        await asyncio.sleep(0.05)


def new_pki(directory: Path) -> Pki:
    """A CA (its PEM in `directory`) and the server certificates the tests choose from."""
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca=ca,
        ca_file=ca_file,
        cert=ca.issue_cert("127.0.0.1", SERVER_NAME, not_after=CERT_NOT_AFTER),
        name_only_cert=ca.issue_cert(SERVER_NAME),
        untrusted_cert=trustme.CA().issue_cert("127.0.0.1", SERVER_NAME),
    )

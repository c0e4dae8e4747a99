"""One synthetic SMTP send, every phase timed, every failure reduced to one bounded reason.

The probe drives aiosmtplib's `SMTPProtocol` (reply parsing, STARTTLS with its
injection defence) directly instead of the `SMTP` client, so that connecting, the
greeting, the TLS handshake and each command are timed separately.

Phase times add up to `duration`: the stopwatch charges every moment to the phase that
was running (fetching the OAuth2 token counts towards `auth`). With `tls: implicit` the
`starttls` phase is the handshake right after connecting, before the greeting.

The clock times the network, not the prober: the message and the TLS context are ready
before it starts, an IP address is used without a resolver thread, and the transcript and
the certificate are rendered and parsed after it stops. So a probe reports what a bare
SMTP client would see.

`run_probe` never raises except `CancelledError`: a failure is a `ProbeResult` with
`failed_phase`, `reason` and a human `detail`. Every reply outside 2xx/3xx is kept in
`rejections`, classified, even when the probe goes on (some recipients rejected, EHLO
answered by a HELO fallback, a failing QUIT after the message was accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from typing import Final, cast

from aiosmtplib.auth import auth_login_encode, auth_plain_encode, auth_xoauth2_encode
from aiosmtplib.errors import SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from m365_smtp_exporter.auth import TokenError, TokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.message import build_probe_message, data_payload
from m365_smtp_exporter.smtp.replies import classify, parse_reply
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason, RejectedReply
from m365_smtp_exporter.smtp.tls import (
    RawTls,
    facts_of,
    handshake_failure,
    raw_tls,
    server_hostname,
    shared_ssl_context,
)
from m365_smtp_exporter.smtp.transcript import REDACTED, Transcript

SMTP_SCOPE: Final = "https://outlook.office365.com/.default"

_READY = 220
_AUTH_OK = 235
_OK = 250
_WILL_FORWARD = 251
_AUTH_CONTINUE = 334
_START_INPUT = 354
_SERVICE_CLOSING = 421

# What a rejected phase is called in `detail`.
_COMMAND_NAMES = {
    Phase.BANNER: "greeting",
    Phase.EHLO: "EHLO",
    Phase.STARTTLS: "STARTTLS",
    Phase.AUTH: "AUTH",
    Phase.MAIL: "MAIL FROM",
    Phase.RCPT: "RCPT TO",
    Phase.DATA: "DATA",
    Phase.QUIT: "QUIT",
}
_PHASE_TIMEOUTS = {
    Phase.RESOLVE: Reason.DNS,
    Phase.CONNECT: Reason.CONNECT_TIMEOUT,
    Phase.BANNER: Reason.BANNER_TIMEOUT,
}
_MAX_REPLY_IN_DETAIL = 300


async def run_probe(
    config: ProbeConfig,
    *,
    token_provider: TokenProvider | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    ssl_context: ssl.SSLContext | None = None,
    token_scope: str = SMTP_SCOPE,
) -> ProbeResult:
    """Send one probe mail as `config` describes and report what happened.

    The whole run, QUIT included, ends by `config.timeout`; each command also waits at
    most the time left. `token_provider` is needed for `auth.mechanism: xoauth2` and is
    asked for `token_scope`. `ssl_context` replaces the context built from the config
    (verification, `ca_file`, `min_version`). `result.message_id` keeps its angle brackets.
    """
    run = _ProbeRun(
        config,
        token_provider=token_provider,
        token_scope=token_scope,
        monotonic=monotonic,
        wall_clock=wall_clock,
        ssl_context=ssl_context,
    )
    try:
        await run.execute()
    finally:
        run.close()
    return run.finish()


class _ProbeError(Exception):
    """Ends the transaction with a known reason; `detail` never holds a credential."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Stopwatch:
    """Charges all elapsed time to the running phase, so phases sum to the total."""

    def __init__(self, monotonic: Callable[[], float], first: Phase) -> None:
        self._now = monotonic
        self.start = self._mark = monotonic()
        self.phase = first
        self.phases: dict[Phase, float] = {}

    def enter(self, phase: Phase) -> None:
        self._settle()
        self.phase = phase

    def stop(self) -> float:
        return self._settle() - self.start

    def restart(self) -> None:
        """Start again from now, with nothing charged yet (after the preparations)."""
        self.start = self._mark = self._now()
        self.phases = {}

    def elapsed(self) -> float:
        return self._now() - self.start

    def _settle(self) -> float:
        now = self._now()
        self.phases[self.phase] = self.phases.get(self.phase, 0.0) + (now - self._mark)
        self._mark = now
        return now


class _ProbeRun:
    def __init__(
        self,
        config: ProbeConfig,
        *,
        token_provider: TokenProvider | None,
        token_scope: str,
        monotonic: Callable[[], float],
        wall_clock: Callable[[], float],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.token_provider = token_provider
        self.token_scope = token_scope
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + config.timeout
        self.ssl_context = ssl_context
        self.ehlo_name = config.ehlo_name or socket.gethostname()

        started_at = wall_clock()
        token = secrets.token_hex(16)
        self.message = b""  # built inside the run: a probe always reports
        self.result = ProbeResult(
            probe=config.name,
            target=config.target,
            started_at=started_at,
            message_id="",
            probe_token=token,
        )
        self.clock = _Stopwatch(monotonic, first=Phase.RESOLVE)
        self.transcript = Transcript(self.clock.elapsed)

        self.sock: socket.socket | None = None  # until a transport owns it
        self.protocol: SMTPProtocol | None = None
        self.extensions: dict[str, str] = {}
        self.auth_methods: list[str] = []
        self.encrypted = False
        self.tls: RawTls | None = None  # parsed into `result.tls` after the clock stops
        self.conversation_intact = True  # False once a reply may have been missed
        self.server_closing = False  # after a 421 the server hangs up by itself
        self.quit_answered = False

    # -- driver --------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            async with asyncio.timeout_at(self.deadline):
                await self._prepare()
                self.clock.restart()  # from here on, only the network is timed
                await self._transaction()
        except Exception as exc:  # a probe reports failures; it never raises them
            self._record_failure(exc)
        if self._can_quit():
            try:
                async with asyncio.timeout_at(self.deadline):
                    await self._quit()
            except Exception:  # noqa: S110 -- QUIT cannot change a result already decided
                pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        transport = self.protocol.transport if self.protocol is not None else None
        if transport is not None and not transport.is_closing():
            if self.quit_answered:
                transport.close()
            else:
                cast(asyncio.Transport, transport).abort()

    def finish(self) -> ProbeResult:
        self.result.duration = self.clock.stop()
        self.result.phases = dict(self.clock.phases)
        self.result.transcript = self.transcript.lines
        if self.tls is not None:
            self.result.tls = facts_of(self.tls)
        return self.result

    async def _prepare(self) -> None:
        """What the probe needs besides the network, before its clock starts."""
        if self.config.mode == "send":  # a session sends no mail: it has no Message-ID
            self.message, self.result.message_id = build_probe_message(
                self.config, now=self.result.started_at, token=self.result.probe_token
            )
        if self.config.tls != "none":
            # the shared context (built once per TLS configuration); an unusable CA file
            # is reported by the phase that needs the context
            with contextlib.suppress(_ProbeError):
                await self._context()

    async def _transaction(self) -> None:
        addresses = await self._resolve()
        await self._connect(addresses)
        await self._banner()
        await self._ehlo()
        if self.config.tls == "starttls":
            await self._starttls()
            await self._ehlo()
        if self.config.auth.mechanism != "none":
            await self._authenticate()
        if self.config.mode == "session":
            await self._reset()  # reachability, TLS and AUTH only: no mail, no quota spent
            return
        await self._mail()
        await self._rcpt()
        await self._data()

    # -- phases --------------------------------------------------------------------------

    async def _resolve(self) -> list[tuple[int, int, int, tuple[object, ...]]]:
        self.clock.enter(Phase.RESOLVE)
        host, port = self.config.host, self.config.port
        literal = _ip_literal(host, port)
        if literal is not None:  # as asyncio does: no resolver thread for an address
            return [literal]
        try:
            infos = await self.loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise _ProbeError(Reason.DNS, f"cannot resolve {host}: {_why(exc)}") from None
        if not infos:
            raise _ProbeError(Reason.DNS, f"cannot resolve {host}: no addresses")
        return [(family, kind, proto, tuple(address)) for family, kind, proto, _, address in infos]

    async def _connect(self, addresses: list[tuple[int, int, int, tuple[object, ...]]]) -> None:
        """TCP to each address in turn; with implicit TLS, the handshake follows."""
        self.clock.enter(Phase.CONNECT)
        failures: list[tuple[tuple[object, ...], OSError]] = []
        for family, kind, proto, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await self.loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                failures.append((address, exc))
                continue
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            break
        if self.sock is None:
            _, last = failures[-1]
            reason = (
                Reason.CONNECT_REFUSED
                if isinstance(last, ConnectionRefusedError)
                else Reason.CONNECT_TIMEOUT
                if isinstance(last, TimeoutError)
                else Reason.CONNECT_ERROR
            )
            tried = "; ".join(
                f"{address[0]} port {address[1]}: {_why(exc)}" for address, exc in failures
            )
            raise _ProbeError(reason, f"cannot connect to {self.config.target} ({tried})")

        protocol = self.protocol = SMTPProtocol(loop=self.loop)
        if self.config.tls == "implicit":
            self.clock.enter(Phase.STARTTLS)
            context = await self._context()
            sock, self.sock = self.sock, None
            await self.loop.create_connection(
                lambda: protocol,
                sock=sock,
                ssl=context,
                server_hostname=server_hostname(self.config),
                # past the deadline, so the deadline (a clean TimeoutError) fires first
                ssl_handshake_timeout=self._remaining() + 1.0,
            )
            self._tls_established()
        else:
            sock, self.sock = self.sock, None
            await self.loop.create_connection(
                lambda: protocol,
                sock=sock,
            )

    async def _banner(self) -> None:
        self.clock.enter(Phase.BANNER)
        response = await self._smtp.read_response(timeout=self._remaining())
        self.transcript.server(response.code, response.message)
        if response.code != _READY:
            raise self._reject(Phase.BANNER, response, Reason.BANNER_REJECTED)

    async def _ehlo(self) -> None:
        """EHLO, falling back to HELO (no extensions) when the server refuses EHLO."""
        self.clock.enter(Phase.EHLO)
        name = self.ehlo_name.encode("ascii")
        response = await self._command(b"EHLO", name)
        if response.code == _OK:
            self.extensions, self.auth_methods = parse_esmtp_extensions(response.message)
            return
        refused = self._reject(Phase.EHLO, response, Reason.PROTOCOL_ERROR)
        if not 500 <= response.code < 600:
            raise refused
        response = await self._command(b"HELO", name)
        if response.code != _OK:
            raise self._reject(Phase.EHLO, response, Reason.PROTOCOL_ERROR)
        self.extensions, self.auth_methods = {}, []

    async def _starttls(self) -> None:
        self.clock.enter(Phase.STARTTLS)
        if "starttls" not in self.extensions:
            raise _ProbeError(Reason.STARTTLS_UNSUPPORTED, "the server does not offer STARTTLS")
        context = await self._context()
        self.transcript.client("STARTTLS")
        try:
            response = await self._smtp.start_tls(
                context,
                server_hostname=server_hostname(self.config),
                timeout=self._remaining(),
            )
        except SMTPResponseException as exc:
            if exc.code < 0:  # aiosmtplib's code for an unparsable reply
                raise
            self.transcript.server(exc.code, exc.message)
            refused = SMTPResponse(exc.code, exc.message)
            raise self._reject(Phase.STARTTLS, refused, Reason.STARTTLS_UNSUPPORTED) from None
        self.transcript.server(response.code, response.message)
        self._tls_established()
        # RFC 3207: forget what the server said before TLS; the next EHLO tells again
        self.extensions, self.auth_methods = {}, []

    async def _authenticate(self) -> None:
        self.clock.enter(Phase.AUTH)
        mechanism = self.config.auth.mechanism
        if not self.encrypted and not self.config.allow_insecure_auth:
            raise _ProbeError(
                Reason.AUTH_INSECURE,
                "refusing to send credentials over an unencrypted connection "
                "(use tls: starttls or implicit, or set allow_insecure_auth: true)",
            )
        if mechanism not in self.auth_methods:
            offered = " ".join(method.upper() for method in self.auth_methods) or "none"
            raise _ProbeError(
                Reason.AUTH_UNSUPPORTED,
                f"the server does not offer AUTH {mechanism.upper()} (offers: {offered})",
            )
        if mechanism == "xoauth2":
            response = await self._auth_xoauth2()
        elif mechanism == "login":
            response = await self._auth_login()
        else:
            response = await self._auth_plain()
        if response.code != _AUTH_OK:
            raise self._reject(Phase.AUTH, response, Reason.AUTH_FAILED)

    async def _auth_xoauth2(self) -> SMTPResponse:
        if self.token_provider is None:
            raise _ProbeError(
                Reason.AUTH_TOKEN, "XOAUTH2 needs a token provider (the probe's tenant)"
            )
        try:
            token = await self.token_provider.get_token(self.token_scope)
        except TokenError as exc:
            raise _ProbeError(Reason.AUTH_TOKEN, f"cannot get an access token: {exc}") from None
        except Exception as exc:  # the provider's own failure must not end the probe run
            raise _ProbeError(
                Reason.AUTH_TOKEN, f"cannot get an access token: {type(exc).__name__}"
            ) from None
        initial = auth_xoauth2_encode(self._username, token)
        response = await self._command(
            b"AUTH", b"XOAUTH2", initial, shown=f"AUTH XOAUTH2 {REDACTED}"
        )
        if response.code == _AUTH_CONTINUE:
            # a refused token comes back as a base64 JSON challenge; an empty line ends
            # the exchange and brings the final reply (RFC 7628 section 3.2.3)
            response = await self._command(b"", shown="")
        return response

    async def _auth_login(self) -> SMTPResponse:
        username, password = auth_login_encode(self._username, self._password)
        response = await self._command(b"AUTH", b"LOGIN")
        for answer in (username, password):
            if response.code != _AUTH_CONTINUE:
                break
            response = await self._command(answer, shown=REDACTED)
        return response

    async def _auth_plain(self) -> SMTPResponse:
        initial = auth_plain_encode(self._username, self._password)
        return await self._command(b"AUTH", b"PLAIN", initial, shown=f"AUTH PLAIN {REDACTED}")

    async def _mail(self) -> None:
        self.clock.enter(Phase.MAIL)
        args = [b"MAIL", b"FROM:<" + self.config.mail_from.encode("ascii") + b">"]
        if "size" in self.extensions:
            args.append(b"SIZE=%d" % len(self.message))
        response = await self._command(*args)
        if response.code != _OK:
            raise self._reject(Phase.MAIL, response, Reason.MAIL_FROM_REJECTED)

    async def _rcpt(self) -> None:
        """Every recipient; the probe goes on if at least one is accepted."""
        self.clock.enter(Phase.RCPT)
        first_refusal: _ProbeError | None = None
        for recipient in self.config.rcpt_to:
            response = await self._command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
            if response.code in (_OK, _WILL_FORWARD):
                self.result.recipients_accepted += 1
                continue
            refusal = self._reject(Phase.RCPT, response, Reason.RCPT_REJECTED)
            first_refusal = first_refusal or refusal
            if self.server_closing:
                raise refusal
        if first_refusal is not None:
            if self.result.recipients_accepted == 0:
                raise first_refusal
            refused = len(self.config.rcpt_to) - self.result.recipients_accepted
            self.result.detail = (
                f"{refused} of {len(self.config.rcpt_to)} recipients rejected; "
                f"first: {first_refusal.detail}"
            )

    async def _data(self) -> None:
        self.clock.enter(Phase.DATA)
        response = await self._command(b"DATA")
        if response.code != _START_INPUT:
            raise self._reject(Phase.DATA, response, Reason.DATA_REJECTED)
        self.transcript.client(f"<message: {len(self.message)} bytes>")
        self._smtp.write(data_payload(self.message))
        response = await self._smtp.read_response(timeout=self._remaining())
        self.transcript.server(response.code, response.message)
        if response.code != _OK:
            raise self._reject(Phase.DATA, response, Reason.DATA_REJECTED)
        self.result.success = True

    async def _reset(self) -> None:
        self.clock.enter(Phase.QUIT)
        response = await self._command(b"RSET")
        if response.code != _OK:
            raise self._reject(Phase.QUIT, response, Reason.PROTOCOL_ERROR)
        self.result.success = True

    async def _quit(self) -> None:
        self.clock.enter(Phase.QUIT)
        response = await self._command(b"QUIT")
        self.quit_answered = True
        if response.code >= 400:  # counted, but the outcome was decided before QUIT
            self._reject(Phase.QUIT, response, Reason.PROTOCOL_ERROR)

    # -- helpers -------------------------------------------------------------------------

    @property
    def _smtp(self) -> SMTPProtocol:
        if self.protocol is None:  # only reachable through a bug in the phase order
            raise SMTPServerDisconnected("not connected")
        return self.protocol

    @property
    def _username(self) -> str:
        return self.config.auth.username or ""

    @property
    def _password(self) -> str:
        password = self.config.auth.password
        return password.get_secret_value() if password is not None else ""

    def _remaining(self) -> float:
        return max(self.deadline - self.loop.time(), 0.0)

    async def _context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            try:
                self.ssl_context = await shared_ssl_context(self.config)
            except (ssl.SSLError, OSError) as exc:
                raise _ProbeError(
                    Reason.TLS_HANDSHAKE, f"cannot load CA certificates: {_why(exc)}"
                ) from None
        return self.ssl_context

    def _tls_established(self) -> None:
        transport = self._smtp.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        self.tls = raw_tls(ssl_object)
        self.encrypted = True
        version = self.tls.version if self.tls else "TLS"
        self.transcript.note(f"TLS established ({version}): what follows is encrypted")

    async def _command(self, *args: bytes, shown: str | None = None) -> SMTPResponse:
        """Send one command line and read its reply; `shown` replaces a secret line."""
        self.transcript.client(shown if shown is not None else b" ".join(args).decode("ascii"))
        response = await self._smtp.execute_command(*args, timeout=self._remaining())
        self.transcript.server(response.code, response.message)
        return response

    def _reject(self, phase: Phase, response: SMTPResponse, default: Reason) -> _ProbeError:
        """Record a refusal reply and return the failure it means (to raise, or not)."""
        reply = parse_reply(response.code, response.message)
        classification = classify(reply)
        self.result.rejections.append(
            RejectedReply(phase, reply, classification.category, classification.recoverable)
        )
        if response.code == _SERVICE_CLOSING:
            self.server_closing = True
        described = " ".join(
            part for part in (str(reply.code), reply.enhanced_code, reply.text) if part
        ).replace("\n", " ")
        if len(described) > _MAX_REPLY_IN_DETAIL:
            described = described[:_MAX_REPLY_IN_DETAIL] + "..."
        detail = f"{_COMMAND_NAMES[phase]} rejected: {described}"
        if classification.hint:
            detail += f" ({classification.hint})"
        return _ProbeError(classification.reason or default, detail)

    def _record_failure(self, exc: Exception) -> None:
        phase = self.clock.phase
        if not isinstance(exc, _ProbeError):
            # a timeout or a broken connection may leave a reply in flight
            self.conversation_intact = False
        reason, detail = self._explain(exc, phase)
        self.result.success = False
        self.result.failed_phase = phase
        self.result.reason = reason
        self.result.detail = detail

    def _explain(self, exc: Exception, phase: Phase) -> tuple[Reason, str]:
        """Reason and detail for what ended the transaction. Exception texts from the
        network stack never carry credentials; unknown ones are named by type only."""
        during = f"during {phase}"
        if isinstance(exc, _ProbeError):
            return exc.reason, exc.detail
        if isinstance(exc, TimeoutError):
            return _PHASE_TIMEOUTS.get(phase, Reason.TIMEOUT), (
                f"no answer {during} within the {self.config.timeout:g} s probe deadline"
            )
        if isinstance(exc, ssl.SSLError):
            return handshake_failure(exc)
        if isinstance(exc, SMTPServerDisconnected | ConnectionError | EOFError):
            if phase is Phase.STARTTLS:
                return Reason.TLS_HANDSHAKE, "the server closed the connection during TLS set-up"
            return Reason.DISCONNECTED, f"the server closed the connection {during}"
        if isinstance(exc, SMTPResponseException):
            return Reason.PROTOCOL_ERROR, f"unreadable reply {during}: {exc.message[:200]}"
        if isinstance(exc, OSError):
            return Reason.DISCONNECTED, f"connection failed {during}: {_why(exc)}"
        return Reason.PROTOCOL_ERROR, f"{type(exc).__name__} {during}"

    def _can_quit(self) -> bool:
        return (
            self.protocol is not None
            and self.protocol.is_connected
            and self.conversation_intact
            and not self.server_closing
        )


def _ip_literal(host: str, port: int) -> tuple[int, int, int, tuple[object, ...]] | None:
    """The address info of an IPv4/IPv6 literal (None for a name or a scoped address)."""
    if "%" in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 4:
        return socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port)
    return socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port, 0, 0)


def _why(exc: BaseException) -> str:
    """An OS-level error in words, "Connection refused", without errno or address noise."""
    if isinstance(exc, socket.gaierror):  # negative resolver codes, not errno values
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        # asyncio's sock_connect replaces strerror with "Connect call failed (...)"
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

"""Exchange Online's client-submission rules as an aiosmtpd handler.

Authentication (LOGIN, PLAIN, XOAUTH2), send-as rights and the sending limits, answered
with Microsoft's reply texts. The protocol framing (banner, STARTTLS, faults) lives in
`smtp_server`.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import logging
import ssl
from base64 import b64decode
from collections import Counter
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from m365_emulator.smtp import replies
from m365_emulator.smtp.delivery import AcceptedMessage, DeliveryAgent
from m365_emulator.smtp.faults import DATA_END, SmtpFaults
from m365_emulator.smtp.framing import accept_recipient, accept_sender, ehlo_lines
from m365_emulator.smtp.ledger import SendingLedger
from m365_emulator.state import EmulatorState, Mailbox

OUTLOOK_RESOURCE = "https://outlook.office365.com"
Sleep = Callable[[float], Awaitable[None]]
TEMPORARY_ERROR = "451 4.7.0 Temporary server error. Please try again later."

log = logging.getLogger(__name__)


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """(user, token) from `user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01`, else None."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    user, auth = fields.get("user", ""), fields.get("auth", "")
    scheme, _, token = auth.partition(" ")
    if not user or scheme.lower() != "bearer" or not token:
        return None
    return user, token


class SubmissionPolicy:
    """The aiosmtpd handler (hooks `handle_*`, mechanism `auth_XOAUTH2`, `authenticate`)."""

    def __init__(
        self,
        state: EmulatorState,
        ledger: SendingLedger,
        delivery: DeliveryAgent,
        faults: SmtpFaults,
        *,
        max_connections_per_mailbox: int = 3,
        sleep: Sleep = asyncio.sleep,
        hold_poll_seconds: float = 0.1,
    ) -> None:
        self._state = state
        self._ledger = ledger
        self._delivery = delivery
        self._faults = faults
        self._max_connections = max_connections_per_mailbox
        self._sleep = sleep
        self._hold_poll = hold_poll_seconds
        self.delayed: Counter[str] = Counter()  # submissions held for the per-minute pace
        self.holding: Counter[str] = Counter()  # submissions being held right now
        # authenticated sessions per mailbox, oldest first: the first N may submit
        self._sessions: dict[str, list[Session]] = {}
        self.tls_failures: Counter[str] = Counter()  # failed STARTTLS handshakes by reason

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd hook for errors while handling a command."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            reason = getattr(cause, "reason", None) if isinstance(cause, ssl.SSLError) else None
            self.tls_failures[reason or type(cause).__name__] += 1
            log.info("STARTTLS handshake failed: %s", reason or type(cause).__name__)
            return TEMPORARY_ERROR  # not sent: aiosmtpd closes the connection
        log.error("SMTP session error", exc_info=error)
        return TEMPORARY_ERROR

    # authentication
    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        """aiosmtpd `authenticator` for the Basic mechanisms (LOGIN, PLAIN)."""
        if not isinstance(auth_data, LoginPassword):
            return _failed(replies.AUTH_UNSUCCESSFUL)
        address = auth_data.login.decode("utf-8", errors="replace")
        mailbox = self._state.mailbox(address)
        if mailbox is None:
            return _failed(replies.AUTH_UNSUCCESSFUL)
        tenant = self._state.tenants.get(mailbox.tenant)
        if not mailbox.basic_auth_enabled or (tenant is not None and not tenant.basic_auth_enabled):
            return _failed(replies.AUTH_BASIC_DISABLED)
        expected = (mailbox.password or "").encode("utf-8")
        if mailbox.password is None or not hmac.compare_digest(expected, auth_data.password):
            return _failed(replies.AUTH_UNSUCCESSFUL)
        return self._admit(session, mailbox)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL XOAUTH2 with an access token for https://outlook.office365.com."""
        if len(args) > 1:
            try:
                blob = b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            response = await server.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(response, bytes)
            blob = response
        parsed = parse_xoauth2(blob)
        if parsed is None:
            return _failed(replies.AUTH_UNSUCCESSFUL)
        user, token = parsed
        grant = self._state.check_token(token, OUTLOOK_RESOURCE)
        mailbox = self._state.mailbox(user)
        if grant is None or mailbox is None:
            return _failed(replies.AUTH_UNSUCCESSFUL)
        tenant = self._state.tenant_by_id(grant.tenant)
        if tenant is None or tenant.name != mailbox.tenant:
            return _failed(replies.AUTH_UNSUCCESSFUL)
        assert server.session is not None
        return self._admit(server.session, mailbox)

    def _admit(self, session: Session, mailbox: Mailbox) -> AuthResult:
        if not mailbox.smtp_auth_enabled:
            return _failed(replies.AUTH_SMTP_DISABLED)
        key = mailbox.address.lower()
        self._sessions.setdefault(key, []).append(session)
        return AuthResult(success=True, auth_data=key, message=replies.AUTH_SUCCESSFUL)

    def session_closed(self, session: Session) -> None:
        """Free the session's connection slot (called when its connection ends)."""
        key = session.auth_data
        if not isinstance(key, str) or key not in self._sessions:
            return
        sessions = self._sessions[key]
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            del self._sessions[key]

    # envelope
    async def handle_EHLO(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_lines(server, session, hostname, responses)

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        mailbox = self._mailbox_of(session)
        if mailbox is None:
            return replies.NOT_AUTHENTICATED
        own = mailbox.address.lower()
        if address.lower() != own and address.lower() not in mailbox.send_as:
            return replies.SEND_AS_DENIED
        if self._connection_slot(own, session) >= self._max_connections:
            if self._faults.connection_limit_text == "sender_thread":
                return replies.THREAD_LIMIT
            return replies.CONCURRENT_CONNECTIONS
        return accept_sender(envelope, address, mail_options)

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        mailbox = self._mailbox_of(session)
        if mailbox is None:
            return replies.NOT_AUTHENTICATED
        if len(envelope.rcpt_tos) >= mailbox.recipient_limit_per_message:
            return replies.TOO_MANY_RECIPIENTS
        return accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        scripted = self._faults.take_reply(DATA_END)
        if scripted is not None:
            return scripted
        mailbox = self._mailbox_of(session)
        if mailbox is None or envelope.mail_from is None:
            return replies.NOT_AUTHENTICATED
        own = mailbox.address.lower()
        recipients = list(envelope.rcpt_tos)
        if self._ledger.recipients_last_day(own) + len(recipients) > mailbox.recipients_per_day:
            return replies.SUBMISSION_QUOTA
        lists = self._expanded_lists(recipients)
        delivered = _delivered_recipients(recipients, lists)
        tenant = self._state.tenants.get(mailbox.tenant)
        if tenant is not None:
            # the tenant external limit counts after distribution-list expansion
            external = sum(1 for recipient in delivered if not tenant.is_internal(recipient))
            used = self._ledger.external_recipients_last_day(tenant.name)
            if external and used + external > tenant.terrl:
                return replies.TENANT_EXTERNAL_LIMIT
        now = await self._paced(own, recipients, delivered, mailbox.messages_per_minute)
        content = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        message_id = self._delivery.accept(
            AcceptedMessage(envelope.mail_from, recipients, content, str(peer), now, lists)
        )
        return replies.queued_reply(message_id)

    def _expanded_lists(self, recipients: list[str]) -> dict[str, list[str]]:
        lists: dict[str, list[str]] = {}
        for recipient in recipients:
            members = self._state.expand_list(recipient)
            if members is not None:
                lists[recipient] = members
        return lists

    async def _paced(
        self, sender: str, recipients: list[str], delivered: list[str], per_minute: int
    ) -> float:
        """Count the message and hold the DATA reply until the sender's minute has room.

        Over 30 messages a minute Exchange Online delays submission instead of refusing it.
        The slot is reserved before waiting, so concurrent sessions queue in order; the hold
        is at most one window and follows the emulator's clock (tests move it by hand).
        """
        release = self._ledger.message_slot(sender, per_minute)
        self._ledger.record(sender, recipients, release, expanded=delivered)
        now = self._state.clock()
        if release <= now:
            return now
        self.delayed[sender] += 1
        self.holding[sender] += 1
        try:
            while (wait := release - self._state.clock()) > 0:
                await self._sleep(min(wait, self._hold_poll))
        finally:
            self.holding[sender] -= 1
            if not self.holding[sender]:
                del self.holding[sender]
        return self._state.clock()

    def _connection_slot(self, key: str, session: Session) -> int:
        """0 for the mailbox's oldest authenticated connection, 1 for the next, ..."""
        sessions = self._sessions.get(key, [])
        return sessions.index(session) if session in sessions else len(sessions)

    def _mailbox_of(self, session: Session) -> Mailbox | None:
        if not session.authenticated or not isinstance(session.auth_data, str):
            return None
        return self._state.mailbox(session.auth_data)


def _delivered_recipients(recipients: list[str], lists: dict[str, list[str]]) -> list[str]:
    """Envelope recipients with each list replaced by its members, each address once."""
    seen: set[str] = set()
    delivered: list[str] = []
    for recipient in recipients:
        for address in lists.get(recipient, [recipient]):
            if address.lower() not in seen:
                seen.add(address.lower())
                delivered.append(address)
    return delivered


def _failed(reply: str) -> AuthResult:
    return AuthResult(success=False, handled=False, message=reply)

"""The High Volume Email endpoint (`smtp.hve.mx.microsoft:587`): TLS required, HVE accounts.

HVE accounts are not mailboxes: they authenticate with their own password (Basic auth on HVE
is reported supported until September 2028) or with XOAUTH2 for an app granted per account
(`Add-HVEAppAccess`). Mail goes to internal recipients only and leaves no Sent Items copy;
HVE traffic does not count toward the mailbox limits or TERRL, so it has no ledger here.
"""

from __future__ import annotations

import binascii
import hmac
import ssl
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from m365_emulator.smtp import paths_replies as replies
from m365_emulator.smtp.delivery import AcceptedMessage, DeliveryAgent
from m365_emulator.smtp.framing import accept_recipient, accept_sender, ehlo_lines, peer_of
from m365_emulator.smtp.listener import SmtpListener
from m365_emulator.smtp.submission import OUTLOOK_RESOURCE, parse_xoauth2
from m365_emulator.state import EmulatorState


@dataclass(slots=True)
class HveAccount:
    address: str
    password: str = field(repr=False)
    app_ids: set[str] = field(default_factory=set)  # client ids granted by Add-HVEAppAccess


@dataclass(slots=True)
class HveRules:
    accounts: dict[str, HveAccount] = field(default_factory=dict)  # lower-cased address
    accepted: int = 0

    def add(self, account: HveAccount) -> None:
        self.accounts[account.address.lower()] = account

    def snapshot(self) -> dict[str, object]:
        return {
            "accounts": {
                key: sorted(account.app_ids) for key, account in sorted(self.accounts.items())
            },
            "accepted": self.accepted,
        }


class HvePolicy:
    """aiosmtpd handler of the HVE endpoint (`authenticate`, `auth_XOAUTH2`, `handle_*`)."""

    def __init__(self, state: EmulatorState, delivery: DeliveryAgent, rules: HveRules) -> None:
        self._state = state
        self._delivery = delivery
        self.rules = rules

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return _failed()
        account = self.rules.accounts.get(auth_data.login.decode("utf-8", "replace").lower())
        if account is None or not hmac.compare_digest(
            account.password.encode("utf-8"), auth_data.password
        ):
            return _failed()
        return AuthResult(
            success=True, auth_data=account.address.lower(), message=replies.AUTH_SUCCESSFUL
        )

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) > 1:
            try:
                blob = b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            response = await server.challenge_auth("")
            if response is MISSING or not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
            blob = response
        parsed = parse_xoauth2(blob)
        if parsed is None:
            return _failed()
        user, token = parsed
        account = self.rules.accounts.get(user.lower())
        grant = self._state.check_token(token, OUTLOOK_RESOURCE)
        if account is None or grant is None or grant.client_id not in account.app_ids:
            return _failed()
        tenant = self._state.tenant_by_id(grant.tenant)
        if tenant is None or not tenant.is_internal(account.address):
            return _failed()
        return AuthResult(
            success=True, auth_data=account.address.lower(), message=replies.AUTH_SUCCESSFUL
        )

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
        account = self._account(session)
        if account is None:
            return replies.NOT_AUTHENTICATED
        if address.lower() != account:
            return replies.SEND_AS_DENIED
        return accept_sender(envelope, address, mail_options)

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        account = self._account(session)
        if account is None:
            return replies.NOT_AUTHENTICATED
        tenant = self._state.tenant_owning(account)
        if tenant is None or not tenant.is_internal(address):
            return replies.HVE_EXTERNAL_RECIPIENT
        if self._state.mailbox(address) is None:
            return replies.RECIPIENT_NOT_FOUND.format(address=address)
        return accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self._account(session) is None or envelope.mail_from is None:
            return replies.NOT_AUTHENTICATED
        peer = peer_of(session)
        message_id = self._delivery.accept(
            AcceptedMessage(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                peer,
                self._state.clock(),
            )
        )
        self.rules.accepted += 1
        return replies.queued(message_id)

    def _account(self, session: Session) -> str | None:
        if not session.authenticated or not isinstance(session.auth_data, str):
            return None
        return session.auth_data


def hve_listener(
    state: EmulatorState,
    delivery: DeliveryAgent,
    *,
    host: str,
    port: int,
    tls_context: Callable[[], ssl.SSLContext],
    rules: HveRules | None = None,
) -> SmtpListener:
    policy = HvePolicy(state, delivery, rules or HveRules())
    return SmtpListener(
        policy,
        host=host,
        port=port,
        hostname=replies.HVE_HOSTNAME,
        tls_context=tls_context,
        clock=state.clock,
        auth_required=True,
        auth_require_tls=True,
        require_starttls=True,  # TLS required for everything after EHLO
        authenticator=policy.authenticate,
    )


def _failed() -> AuthResult:
    return AuthResult(success=False, handled=False, message=replies.AUTH_UNSUCCESSFUL)

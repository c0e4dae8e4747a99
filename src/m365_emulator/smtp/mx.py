"""The tenant MX endpoint (`<domain>.mail.protection.outlook.com:25`): direct send.

No AUTH (it is not advertised), STARTTLS offered, recipients must be mailboxes of an
emulated tenant. Switches, through the control API: `RejectDirectSend` per tenant (then a
sender in the tenant's own domain gets `550 5.7.68`), banned client IPs (`550 5.7.606`),
and scripted replies (`451 4.7.500` throttling, anything else) via the listener's faults.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from m365_emulator.smtp import paths_replies as replies
from m365_emulator.smtp.delivery import AcceptedMessage, DeliveryAgent
from m365_emulator.smtp.framing import accept_recipient, accept_sender, ehlo_lines, peer_of
from m365_emulator.smtp.listener import SmtpListener
from m365_emulator.state import EmulatorState


@dataclass(slots=True)
class DirectSendRules:
    """What the control API switches on the MX endpoint."""

    reject_direct_send: set[str] = field(default_factory=set)  # tenant names
    banned_ips: set[str] = field(default_factory=set)
    accepted: int = 0  # messages accepted (ground truth)

    def snapshot(self) -> dict[str, object]:
        return {
            "reject_direct_send": sorted(self.reject_direct_send),
            "banned_ips": sorted(self.banned_ips),
            "accepted": self.accepted,
        }


class DirectSendPolicy:
    """aiosmtpd handler for inbound mail to the emulated tenants' MX."""

    def __init__(
        self, state: EmulatorState, delivery: DeliveryAgent, rules: DirectSendRules
    ) -> None:
        self._state = state
        self._delivery = delivery
        self.rules = rules

    async def handle_EHLO(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_lines(server, session, hostname, responses, auth=False)

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        peer = peer_of(session)
        if peer in self.rules.banned_ips:
            return replies.BANNED_IP.format(ip=peer)
        return accept_sender(envelope, address, mail_options)

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        tenant = self._state.tenant_owning(address)
        if tenant is None:
            return replies.UNABLE_TO_RELAY
        if self._state.mailbox(address) is None:
            return replies.RECIPIENT_NOT_FOUND.format(address=address)
        sender = envelope.mail_from or ""
        # Direct send: mail from the tenant's own domain arriving unauthenticated on the MX.
        if tenant.name in self.rules.reject_direct_send and tenant.is_internal(sender):
            return replies.DIRECT_SEND_REJECTED
        return accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        now = self._state.clock()
        content = envelope.original_content or b""
        message_id = self._delivery.accept(
            AcceptedMessage(
                envelope.mail_from or "", list(envelope.rcpt_tos), content, peer_of(session), now
            )
        )
        self.rules.accepted += 1
        return replies.queued(message_id)


def mx_listener(
    state: EmulatorState,
    delivery: DeliveryAgent,
    *,
    host: str,
    port: int,
    tls_context: Callable[[], ssl.SSLContext],
    rules: DirectSendRules | None = None,
) -> SmtpListener:
    policy = DirectSendPolicy(state, delivery, rules or DirectSendRules())
    return SmtpListener(
        policy,
        host=host,
        port=port,
        hostname=replies.MX_HOSTNAME,
        tls_context=tls_context,
        clock=state.clock,
        auth_required=False,
        auth_exclude_mechanism=["LOGIN", "PLAIN"],
    )

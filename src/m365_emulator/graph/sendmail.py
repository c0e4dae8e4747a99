"""Graph `POST /users/{id}/sendMail`: 202 Accepted, then delivery like SMTP-submitted mail.

Limits as Microsoft documents them per app and mailbox: 10,000 requests per 10 minutes
and 4 concurrent requests (429 `ApplicationThrottled` with Retry-After). Switches for the
control API: mailboxes the app may not send as (403 `ErrorSendAsDenied`) and mailboxes
Graph cannot reach (404 `MailboxNotEnabledForRESTAPI`). The message counts against the
mailbox's 24 h recipient limit in the shared ledger, as any submission does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import orjson
from aiohttp import web

from m365_emulator.graph.http_common import API_VERSIONS, GraphError, require_graph_token
from m365_emulator.graph.throttle import RollingWindowLimiter
from m365_emulator.smtp.delivery import AcceptedMessage, DeliveryAgent
from m365_emulator.smtp.ledger import SendingLedger
from m365_emulator.state import EmulatorState, Mailbox

MAX_BODY_BYTES = 4 * 1024 * 1024  # Graph's request size limit (about 4 MB)
SEND_AS_DENIED = (
    "The user account which was used to submit this request does not have the right to send "
    "mail on behalf of the specified sending account., Cannot submit message."
)
NOT_ENABLED = "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
CONCURRENCY = "Application is over its MailboxConcurrency limit."
REQUESTS = "Application is over its MailboxRequests limit."  # emulator wording
# Exchange's submission quota as Graph reports it (emulator wording of the message).
QUOTA = "The message can't be submitted because the sender's submission quota was exceeded."

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class SendMailRules:
    """Switches of the sendMail route and its ground truth."""

    requests_per_window: int = 10_000
    window_seconds: float = 600.0
    max_concurrent: int = 4
    processing_seconds: float = 0.0  # time a request holds its concurrency slot
    send_as_denied: set[str] = field(default_factory=set)  # lower-cased mailboxes
    rest_disabled: set[str] = field(default_factory=set)
    accepted: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "202", "429 ApplicationThrottled"

    def snapshot(self) -> dict[str, object]:
        return {
            "send_as_denied": sorted(self.send_as_denied),
            "rest_disabled": sorted(self.rest_disabled),
            "processing_seconds": self.processing_seconds,
            "accepted": self.accepted,
            "answers": dict(sorted(self.answers.items())),
        }


class SendMailEndpoint:
    def __init__(
        self,
        state: EmulatorState,
        delivery: DeliveryAgent,
        ledger: SendingLedger,
        rules: SendMailRules | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._state = state
        self._delivery = delivery
        self._ledger = ledger
        self.rules = rules or SendMailRules()
        self._sleep = sleep
        self._limiter = RollingWindowLimiter(
            self.rules.requests_per_window, self.rules.window_seconds, state.clock
        )
        self._in_flight: Counter[str] = Counter()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(
                f"/{version}/users/{{user}}/sendMail",
                self.send_mail,
                name=f"mail.sendmail.{version.replace('.', '_')}",
            )
            for version in API_VERSIONS
        ]

    async def send_mail(self, request: web.Request) -> web.Response:
        try:
            response = await self._send_mail(request)
        except GraphError as error:
            self.rules.answers[f"{error.status} {error.code}"] += 1
            raise
        self.rules.answers[str(response.status)] += 1
        return response

    async def _send_mail(self, request: web.Request) -> web.Response:
        grant = require_graph_token(request, self._state)
        user = request.match_info["user"]
        mailbox = self._state.mailbox(user)
        if mailbox is None or mailbox.tenant != grant.tenant:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        key = mailbox.address.lower()
        if key in self.rules.rest_disabled:
            raise GraphError(404, "MailboxNotEnabledForRESTAPI", NOT_ENABLED)
        self._limiter.limit = self.rules.requests_per_window  # adjustable while running
        wait = self._limiter.admit(key)
        if wait is not None:
            raise GraphError(429, "ApplicationThrottled", REQUESTS, {"Retry-After": str(wait)})
        if self._in_flight[key] >= self.rules.max_concurrent:
            raise GraphError(429, "ApplicationThrottled", CONCURRENCY, {"Retry-After": "1"})
        self._in_flight[key] += 1
        try:
            if self.rules.processing_seconds > 0:
                await self._sleep(self.rules.processing_seconds)
            return await self._accept(request, mailbox)
        finally:
            self._in_flight[key] -= 1

    async def _accept(self, request: web.Request, mailbox: Mailbox) -> web.Response:
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "The request body is too large.")
        message = _message_of(raw)
        sender = _address(message.get("from")) or mailbox.address
        key = mailbox.address.lower()
        if key in self.rules.send_as_denied or (
            sender.lower() != key and sender.lower() not in mailbox.send_as
        ):
            raise GraphError(403, "ErrorSendAsDenied", SEND_AS_DENIED)
        recipients = [
            address
            for field_name in ("toRecipients", "ccRecipients", "bccRecipients")
            for address in _addresses(message.get(field_name))
        ]
        if not recipients:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        if self._ledger.recipients_last_day(key) + len(recipients) > mailbox.recipients_per_day:
            raise GraphError(403, "ErrorSubmissionQuotaExceeded", QUOTA)
        now = self._state.clock()
        content = _mime(message, sender, recipients, now)
        self._ledger.record(key, recipients, now)
        self._delivery.accept(AcceptedMessage(sender, recipients, content, "", now))
        self.rules.accepted += 1
        return web.Response(status=202)


def _message_of(raw: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
    message = document.get("message") if isinstance(document, dict) else None
    if not isinstance(message, dict):
        raise GraphError(400, "ErrorInvalidRequest", "The message property is missing.")
    return message


def _address(value: object) -> str:
    if isinstance(value, dict):
        inner = value.get("emailAddress")
        if isinstance(inner, dict) and isinstance(inner.get("address"), str):
            return str(inner["address"])
    return ""


def _addresses(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    found = [_address(item) for item in value]
    if any(not address or "@" not in address for address in found):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
    return found


def _mime(message: dict[str, Any], sender: str, recipients: list[str], now: float) -> bytes:
    """The message as Exchange would put it on the wire (for delivery and trace)."""
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = ", ".join(recipients)
    mime["Subject"] = str(message.get("subject", ""))[:998]
    mime["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    message_id = message.get("internetMessageId")
    if isinstance(message_id, str) and message_id.startswith("<") and message_id.endswith(">"):
        mime["Message-ID"] = message_id
    else:
        mime["Message-ID"] = f"<{uuid.uuid4()}@emulator.outlook.com>"
    for header in message.get("internetMessageHeaders") or []:
        name = header.get("name", "") if isinstance(header, dict) else ""
        if not isinstance(name, str) or not name.lower().startswith("x-"):
            raise GraphError(
                400,
                "InvalidInternetMessageHeader",
                "The internet message header name should start with 'x-' or 'X-'.",
            )
        mime[name] = str(header.get("value", ""))[:998]
    body = message.get("body")
    content = body.get("content", "") if isinstance(body, dict) else ""
    mime.set_content(str(content))
    return mime.as_bytes(policy=policy.SMTP)

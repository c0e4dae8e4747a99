"""Control API of the other send paths: the MX (direct send), HVE and Graph sendMail.

JSON in, JSON out, mounted under `/_emulator/paths`; every switch answers with the path's
current state. Service-health incidents have their own routes (`graph.health`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from m365_emulator.graph.sendmail import SendMailRules
from m365_emulator.smtp.hve import HveRules
from m365_emulator.smtp.listener import SmtpListener
from m365_emulator.smtp.mx import DirectSendRules

DEFAULT_PREFIX = "/_emulator/paths"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RejectDirectSendRequest(_Request):
    tenant: str = Field(min_length=1)
    enabled: bool


class BannedIpRequest(_Request):
    ip: str = Field(min_length=1, max_length=45)
    banned: bool


class ReplyRequest(_Request):
    reply: str = Field(pattern=r"^[2-5]\d\d( .*)?$", max_length=500)
    count: int = Field(default=1, ge=1, le=10_000)
    command: str | None = Field(default=None, pattern=r"^[A-Za-z_]+$")


class MailboxSwitchRequest(_Request):
    mailbox: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    enabled: bool


class ProcessingRequest(_Request):
    seconds: float = Field(ge=0, le=60)


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _validated(handler: _Handler) -> _Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationError as error:
            details = orjson.loads(error.json(include_url=False, include_input=False))
            return _json({"error": "invalid request", "details": details}, status=400)

    return wrapped


async def _body(request: web.Request) -> bytes:
    body = await request.read()
    return body if body.strip() else b"{}"


def paths_control_routes(
    *,
    mx: SmtpListener,
    mx_rules: DirectSendRules,
    hve: SmtpListener,
    hve_rules: HveRules,
    sendmail: SendMailRules,
    prefix: str = DEFAULT_PREFIX,
) -> list[web.RouteDef]:
    def mx_state() -> dict[str, object]:
        return {**mx_rules.snapshot(), "faults": mx.faults.snapshot(), "replies": dict(mx.replies)}

    async def get_state(request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "mx": mx_state(),
                "hve": {**hve_rules.snapshot(), "replies": dict(hve.replies)},
                "sendmail": sendmail.snapshot(),
            }
        )

    async def reject_direct_send(request: web.Request) -> web.StreamResponse:
        wanted = RejectDirectSendRequest.model_validate_json(await _body(request))
        if wanted.enabled:
            mx_rules.reject_direct_send.add(wanted.tenant)
        else:
            mx_rules.reject_direct_send.discard(wanted.tenant)
        return _json(mx_state())

    async def banned_ip(request: web.Request) -> web.StreamResponse:
        wanted = BannedIpRequest.model_validate_json(await _body(request))
        if wanted.banned:
            mx_rules.banned_ips.add(wanted.ip)
        else:
            mx_rules.banned_ips.discard(wanted.ip)
        return _json(mx_state())

    def scripted(listener: SmtpListener) -> _Handler:
        async def script(request: web.Request) -> web.StreamResponse:
            wanted = ReplyRequest.model_validate_json(await _body(request))
            listener.faults.script_reply(wanted.reply, wanted.count, wanted.command)
            return _json(listener.faults.snapshot())

        return script

    async def send_as(request: web.Request) -> web.StreamResponse:
        wanted = MailboxSwitchRequest.model_validate_json(await _body(request))
        target = sendmail.send_as_denied
        (target.add if wanted.enabled else target.discard)(wanted.mailbox.lower())
        return _json(sendmail.snapshot())

    async def rest_disabled(request: web.Request) -> web.StreamResponse:
        wanted = MailboxSwitchRequest.model_validate_json(await _body(request))
        target = sendmail.rest_disabled
        (target.add if wanted.enabled else target.discard)(wanted.mailbox.lower())
        return _json(sendmail.snapshot())

    async def processing(request: web.Request) -> web.StreamResponse:
        sendmail.processing_seconds = ProcessingRequest.model_validate_json(
            await _body(request)
        ).seconds
        return _json(sendmail.snapshot())

    return [
        web.get(f"{prefix}", get_state),
        web.put(f"{prefix}/mx/reject-direct-send", _validated(reject_direct_send)),
        web.put(f"{prefix}/mx/banned-ips", _validated(banned_ip)),
        web.post(f"{prefix}/mx/replies", _validated(scripted(mx))),
        web.post(f"{prefix}/hve/replies", _validated(scripted(hve))),
        web.put(f"{prefix}/sendmail/send-as-denied", _validated(send_as)),
        web.put(f"{prefix}/sendmail/rest-disabled", _validated(rest_disabled)),
        web.put(f"{prefix}/sendmail/processing", _validated(processing)),
    ]

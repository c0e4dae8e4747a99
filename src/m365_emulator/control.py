"""HTTP control API of the SMTP emulator: inject and clear faults, read ground truth.

JSON in, JSON out; every fault endpoint answers with the current fault snapshot
(`GET {prefix}/faults`). Meant to be mounted next to the Graph API under `/_emulator/`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from m365_emulator.smtp.faults import OutageMode, Phase
from m365_emulator.smtp.server import SmtpEmulator

DEFAULT_PREFIX = "/_emulator/smtp"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutageRequest(_Request):
    mode: OutageMode


class ReplyRequest(_Request):
    reply: str = Field(pattern=r"^[2-5]\d\d( .*)?$")
    count: int = Field(default=1, ge=1)
    command: str | None = Field(default=None, pattern=r"^[A-Za-z_]+$")


class DropDataRequest(_Request):
    count: int = Field(default=1, ge=1)


class CertificateRequest(_Request):
    days_left: float | None  # None: back to the normal certificate


_LATENCY = TypeAdapter(dict[Phase, Annotated[float, Field(ge=0, le=3600)]])


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def _body(request: web.Request) -> bytes:
    body = await request.read()
    return body if body.strip() else b"{}"


def _validated(handler: _Handler) -> _Handler:
    """Turn invalid request bodies into 400 answers with the validation errors."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValidationError as error:
            details = orjson.loads(error.json(include_url=False, include_input=False))
            return _json({"error": "invalid request", "details": details}, status=400)
        except ValueError as error:
            return _json({"error": str(error)}, status=400)

    return wrapped


def control_routes(emulator: SmtpEmulator, prefix: str = DEFAULT_PREFIX) -> list[web.RouteDef]:
    """aiohttp routes controlling `emulator` (add with `app.add_routes(...)`)."""
    faults = emulator.faults

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return _json(faults.snapshot())

    async def reset_faults(request: web.Request) -> web.StreamResponse:
        await emulator.reset_faults()
        return _json(faults.snapshot())

    async def set_outage(request: web.Request) -> web.StreamResponse:
        outage = OutageRequest.model_validate_json(await _body(request))
        await emulator.set_outage(outage.mode)
        return _json(faults.snapshot())

    async def set_latency(request: web.Request) -> web.StreamResponse:
        for phase, seconds in _LATENCY.validate_json(await _body(request)).items():
            faults.set_latency(phase, seconds)
        return _json(faults.snapshot())

    async def script_reply(request: web.Request) -> web.StreamResponse:
        reply = ReplyRequest.model_validate_json(await _body(request))
        faults.script_reply(reply.reply, reply.count, reply.command)
        return _json(faults.snapshot())

    async def drop_data(request: web.Request) -> web.StreamResponse:
        drop = DropDataRequest.model_validate_json(await _body(request))
        faults.drop_next_data(drop.count)
        return _json(faults.snapshot())

    async def set_certificate(request: web.Request) -> web.StreamResponse:
        certificate = CertificateRequest.model_validate_json(await _body(request))
        not_after = emulator.use_certificate(certificate.days_left)
        return _json({**faults.snapshot(), "certificate_not_after": not_after.isoformat()})

    async def ground_truth(request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "deliveries": [record.to_json() for record in emulator.delivery.records],
                "pending_deliveries": emulator.delivery.pending,
                "replies": dict(sorted(emulator.replies.items())),
                "injected": dict(sorted(faults.injected.items())),
            }
        )

    return [
        web.get(f"{prefix}/faults", get_faults),
        web.delete(f"{prefix}/faults", _validated(reset_faults)),
        web.put(f"{prefix}/faults/outage", _validated(set_outage)),
        web.put(f"{prefix}/faults/latency", _validated(set_latency)),
        web.post(f"{prefix}/faults/replies", _validated(script_reply)),
        web.post(f"{prefix}/faults/drop-data", _validated(drop_data)),
        web.put(f"{prefix}/faults/certificate", _validated(set_certificate)),
        web.get(f"{prefix}/ground-truth", ground_truth),
    ]

"""HTTP control API of the SMTP emulator: read, set and clear faults, read ground truth.

- `GET    {prefix}/faults`        the fault document (see `SmtpFaults.snapshot`)
- `PUT    {prefix}/faults`        set the fields given, e.g. `{"outage": "refuse"}`; fields
  left out keep their value; `scripted_replies` replaces the queue
- `DELETE {prefix}/faults`        back to normal service (the `injected` tally is kept)
- `GET    {prefix}/ground-truth`  deliveries, replies sent, faults injected, held submissions

Every fault answer is the fault document. Mounted next to the Graph API under `/_emulator/`.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from m365_emulator.rest import json_response, parse_body, resource
from m365_emulator.smtp.faults import ConnectionLimitText, OutageMode, Phase
from m365_emulator.smtp.server import SmtpEmulator

DEFAULT_PREFIX = "/_emulator/smtp"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScriptedReplyRequest(_Request):
    reply: str = Field(pattern=r"^[2-5]\d\d( .*)?$", max_length=512)
    count: int = Field(default=1, ge=1)
    command: str | None = Field(default=None, pattern=r"^[A-Za-z_]{1,16}$")


class FaultsUpdate(_Request):
    """The body of `PUT {prefix}/faults`: every field optional."""

    outage: OutageMode | None = None
    latency: dict[Phase, Annotated[float, Field(ge=0, le=3600)]] | None = None
    scripted_replies: list[ScriptedReplyRequest] | None = Field(default=None, max_length=100)
    drop_data: int | None = Field(default=None, ge=0)
    certificate_days_left: float | None = None  # null: back to the normal certificate
    connection_limit_text: ConnectionLimitText | None = None


PUT_EXAMPLE = {
    "outage": "none | refuse | blackhole",
    "latency": {"banner|ehlo|starttls|auth|mail|rcpt|data": "seconds"},
    "scripted_replies": [
        {
            "reply": "451 4.7.500 Access denied, please try again later",
            "count": 1,
            "command": "MAIL (any SMTP verb, BANNER or DATA_END; omit for any)",
        }
    ],
    "drop_data": "connections to cut during DATA",
    "certificate_days_left": "days, or null for the normal certificate",
    "connection_limit_text": "concurrent_connections | sender_thread",
}


def control_routes(emulator: SmtpEmulator, prefix: str = DEFAULT_PREFIX) -> list[web.RouteDef]:
    """aiohttp routes controlling `emulator` (add with `app.add_routes(...)`)."""
    faults = emulator.faults
    prefix = prefix.rstrip("/")

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return json_response(_document(emulator))

    async def put_faults(request: web.Request) -> web.StreamResponse:
        update = await parse_body(request, FaultsUpdate)
        given = update.model_fields_set
        # validate everything before changing anything: a 400 leaves the faults as they were
        if "outage" in given and update.outage is None:
            raise ValueError("outage: must be none, refuse or blackhole")
        if update.latency is not None:
            for phase, seconds in update.latency.items():
                faults.set_latency(phase, seconds)
        if update.scripted_replies is not None:
            faults.scripted.clear()
            for entry in update.scripted_replies:
                faults.script_reply(entry.reply, entry.count, entry.command)
        if update.drop_data is not None:
            faults.data_drops = update.drop_data
        if update.connection_limit_text is not None:
            faults.connection_limit_text = update.connection_limit_text
        if "certificate_days_left" in given:
            emulator.use_certificate(update.certificate_days_left)
        if update.outage is not None:
            await emulator.set_outage(update.outage)
        return json_response(_document(emulator))

    async def delete_faults(request: web.Request) -> web.StreamResponse:
        await emulator.reset_faults()
        return json_response(_document(emulator))

    async def ground_truth(request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "deliveries": [record.to_json() for record in emulator.delivery.records],
                "pending_deliveries": emulator.delivery.pending,
                "replies": dict(sorted(emulator.replies.items())),
                "injected": dict(sorted(faults.injected.items())),
                "delayed_submissions": dict(sorted(emulator.delayed_submissions.items())),
            }
        )

    return [
        resource(
            f"{prefix}/faults",
            {"GET": get_faults, "PUT": put_faults, "DELETE": delete_faults},
            expected_body={"PUT": PUT_EXAMPLE, "DELETE": "no body"},
        ),
        resource(f"{prefix}/ground-truth", {"GET": ground_truth}),
    ]


def _document(emulator: SmtpEmulator) -> dict[str, object]:
    """The fault snapshot plus the certificate the server presents now."""
    return {
        **emulator.faults.snapshot(),
        "certificate_not_after": emulator.certificate_not_after.isoformat(),
    }

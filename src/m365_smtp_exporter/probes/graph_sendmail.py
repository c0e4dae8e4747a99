"""Kind `graph_sendmail`: `POST /users/{mail_from}/sendMail` through the tenant's Graph client.

202 means Exchange accepted the message, not that it arrived: delivery tracking finds it
again by its `internetMessageId` (the probe Message-ID) and the probe token, which the mail
also carries in its subject and an `X-` header. The request goes out once (no SDK retry),
so a 429 is seen as throttling instead of being hidden inside the probe's duration.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption

from m365_smtp_exporter.auth import TokenError
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import ProbeContext, Stopwatch
from m365_smtp_exporter.probes.graph_errors import classify_graph_error
from m365_smtp_exporter.smtp.message import NAME_HEADER, TOKEN_HEADER, build_probe_message
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason, RejectedReply, Reply

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

_ERROR_MAPPING: dict[str, Any] = {"XXX": ODataError}
_SUBJECT_TOKEN_LENGTH = 8
_MAX_TEXT = 300
_MAX_DETAIL = 800


def sendmail_body(config: ProbeConfig, *, message_id: str, token: str, now: float) -> bytes:
    """The JSON of a Graph `sendMail` request carrying the probe's identity."""
    sent_at = datetime.fromtimestamp(now, UTC).isoformat()
    message = {
        "subject": f"{config.subject} [{token[:_SUBJECT_TOKEN_LENGTH]}]",
        "body": {
            "contentType": "Text",
            "content": (
                f"Synthetic Graph sendMail probe {config.name!r} from m365-smtp-exporter.\n"
                f"Sent at {sent_at}.\nProbe token: {token}\n"
                "This message can be deleted; no reply is needed.\n"
            ),
        },
        "toRecipients": [{"emailAddress": {"address": address}} for address in config.rcpt_to],
        "internetMessageId": message_id,
        # Graph accepts only X- headers here (no Auto-Submitted)
        "internetMessageHeaders": [
            {"name": NAME_HEADER, "value": config.name},
            {"name": TOKEN_HEADER, "value": token},
            {"name": "X-Auto-Response-Suppress", "value": "All"},
        ],
    }
    return orjson.dumps({"message": message, "saveToSentItems": config.save_to_sent_items})


async def probe_graph_sendmail(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    started_at = context.wall_clock()
    token = secrets.token_hex(16)
    _, message_id = build_probe_message(config, now=started_at, token=token)
    client = context.graph_client
    result = ProbeResult(
        probe=config.name,
        target=config.target,  # the configured label; the client's base URL is the tenant's
        started_at=started_at,
        message_id=message_id,
        probe_token=token,
    )
    clock = Stopwatch(context.monotonic, Phase.DATA)
    try:
        if client is None:
            _fail(result, Reason.AUTH_TOKEN, "graph_sendmail needs the probe tenant's Graph client")
        else:
            info = RequestInformation(Method.POST)
            info.url = f"{client.base_url}/users/{quote(config.mail_from, safe='@')}/sendMail"
            info.headers.try_add("Content-Type", "application/json")
            info.headers.try_add("Accept", "application/json")
            info.content = sendmail_body(config, message_id=message_id, token=token, now=started_at)
            info.add_request_options([RetryHandlerOption(delay=0.0, max_retries=0)])
            clock = Stopwatch(context.monotonic, Phase.DATA)  # times the request, not its making
            async with asyncio.timeout(config.timeout):
                await client.adapter.send_no_response_content_async(info, _ERROR_MAPPING)
            result.success = True
            result.recipients_accepted = len(config.rcpt_to)
    except APIError as exc:
        _refused(result, exc)
    except TokenError as exc:
        _fail(result, Reason.AUTH_TOKEN, f"cannot get a Graph token: {exc}")
    except (TimeoutError, httpx.TimeoutException):
        _fail(result, Reason.TIMEOUT, f"no answer within the {config.timeout:g} s probe deadline")
    except httpx.ConnectError as exc:
        _fail(result, Reason.CONNECT_ERROR, f"cannot connect to Graph: {type(exc).__name__}")
    except httpx.TransportError as exc:
        _fail(result, Reason.DISCONNECTED, f"Graph connection failed: {type(exc).__name__}")
    except Exception as exc:  # a probe reports failures; it never raises them
        _fail(result, Reason.GRAPH_ERROR, f"sendMail failed: {type(exc).__name__}")
    result.duration = clock.stop()
    result.phases = dict(clock.phases)
    return result


def _fail(result: ProbeResult, reason: Reason, detail: str) -> None:
    result.success = False
    result.failed_phase = Phase.DATA
    result.reason = reason
    result.detail = detail[:_MAX_DETAIL]


def _refused(result: ProbeResult, exc: APIError) -> None:
    status = exc.response_status_code or 0
    code, message = "", ""
    if isinstance(exc, ODataError) and exc.error is not None:
        code, message = exc.error.code or "", exc.error.message or ""
    refusal = classify_graph_error(status, code)
    text = f"{code}: {message}".strip(": ")[:_MAX_TEXT]
    reply = Reply(code=status if 100 <= status <= 599 else 0, enhanced_code="", text=text)
    result.rejections.append(
        RejectedReply(Phase.DATA, reply, refusal.category, refusal.recoverable)
    )
    detail = f"sendMail refused: HTTP {status} {text}".rstrip()
    if refusal.hint:
        detail += f" ({refusal.hint})"
    _fail(result, refusal.reason, detail)

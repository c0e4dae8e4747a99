"""The probe mail: a small, recognisable message that triggers no auto-replies.

The Message-ID keeps its angle brackets (`<m365probe.<hex>@<domain>>`) because Microsoft
Graph's `internetMessageId` carries them too, so delivery checks can compare it as is.
The random token is repeated in a header and the subject so a mail can be matched even
where only one of them survives (message trace shows the subject, not headers).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from m365_smtp_exporter.config import ProbeConfig

TOKEN_HEADER = "X-M365-Probe-Token"
NAME_HEADER = "X-M365-Probe-Name"
# How much of the token goes into the subject: enough to tell probes apart in a list.
_SUBJECT_TOKEN_LENGTH = 8
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


def build_probe_message(config: ProbeConfig, *, now: float, token: str) -> tuple[bytes, str]:
    """Render the probe mail for `config` sent at `now` (unix seconds).

    Returns the message with CRLF line endings and its Message-ID, angle brackets included.
    The email package renders the message once per configuration with placeholders; each
    send fills them in (a fraction of the cost of rendering). When a placeholder does not
    come out verbatim (a long or non-ASCII subject is encoded or folded), every send is
    rendered in full.
    """
    domain = config.mail_from.rpartition("@")[2]
    message_id = f"<m365probe.{uuid.uuid4().hex}@{domain}>"
    sent_at = datetime.fromtimestamp(now, UTC)
    values = {
        _DATE: format_datetime(sent_at),
        _MESSAGE_ID: message_id,
        _TOKEN: token,
        _SHORT_TOKEN: token[:_SUBJECT_TOKEN_LENGTH],
        _SENT_AT: sent_at.isoformat(),
    }
    template = _template(config)
    if template is None or not all(
        _SAFE.fullmatch(value) and len(value) <= len(key) for key, value in values.items()
    ):
        return _render(config, values), message_id
    filled = {key.encode(): value.encode() for key, value in values.items()}
    return _PLACEHOLDER.sub(lambda match: filled[match[0]], template), message_id


# Placeholders: ASCII words the email package writes verbatim, replaced per send (the Date
# header must hold a date: a date no probe is sent at).
_DATE = format_datetime(datetime.fromtimestamp(0, UTC))
# The others are as long as the longest value they stand for (a longer one is rendered in
# full), so a filled line is never longer than in the template: same folding, same encoding.
_MESSAGE_ID = "PROBEMSGIDx".ljust(78 - len("Message-ID: "), "0")  # never folded
_TOKEN = "PROBETOKENx".ljust(32, "0")
_SHORT_TOKEN = "PROBESHORTx".ljust(_SUBJECT_TOKEN_LENGTH + 4, "0")
_SENT_AT = "PROBESENTATx".ljust(len("2026-01-01T00:00:00.000000+00:00"), "0")
_KEYS = (_DATE, _MESSAGE_ID, _TOKEN, _SHORT_TOKEN, _SENT_AT)
_EXPECTED_COUNTS = [1, 1, 2, 1, 1]  # the token is in a header and in the body
_PLACEHOLDER = re.compile("|".join(map(re.escape, _KEYS)).encode())
# what may replace a placeholder without changing how the message must be encoded
_SAFE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,199}")
_TemplateKey = tuple[str, str, tuple[str, ...], str]
_TEMPLATES: dict[_TemplateKey, bytes | None] = {}


def _template(config: ProbeConfig) -> bytes | None:
    key = (config.name, config.mail_from, tuple(config.rcpt_to), config.subject)
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    if len(_TEMPLATES) > 1_000:  # configurations come and go with reloads
        _TEMPLATES.clear()
    rendered = _render(config, {name: name for name in _KEYS})
    counts = [rendered.count(name.encode()) for name in _KEYS]
    template = rendered if counts == _EXPECTED_COUNTS else None
    _TEMPLATES[key] = template
    return template


def _render(config: ProbeConfig, values: dict[str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = ", ".join(config.rcpt_to)
    message["Subject"] = f"{config.subject} [{values[_SHORT_TOKEN]}]"
    message["Date"] = values[_DATE]
    message["Message-ID"] = values[_MESSAGE_ID]
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[NAME_HEADER] = config.name
    message[TOKEN_HEADER] = values[_TOKEN]
    message.set_content(
        f"Synthetic send probe {config.name!r} from m365-smtp-exporter.\n"
        f"Sent at {values[_SENT_AT]} to check that mail can be submitted and delivered.\n"
        f"Probe token: {values[_TOKEN]}\n"
        "This message can be deleted; no reply is needed.\n"
    )
    return message.as_bytes(policy=policy.SMTP)


def data_payload(message: bytes) -> bytes:
    """The bytes to send after DATA's 354: CRLF line endings, dot-stuffed, terminated."""
    body = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", body) + b".\r\n"

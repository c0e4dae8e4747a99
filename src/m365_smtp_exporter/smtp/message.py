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
    """
    domain = config.mail_from.rpartition("@")[2]
    message_id = f"<m365probe.{uuid.uuid4().hex}@{domain}>"
    sent_at = datetime.fromtimestamp(now, UTC)

    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = ", ".join(config.rcpt_to)
    message["Subject"] = f"{config.subject} [{token[:_SUBJECT_TOKEN_LENGTH]}]"
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[NAME_HEADER] = config.name
    message[TOKEN_HEADER] = token
    message.set_content(
        f"Synthetic send probe {config.name!r} from m365-smtp-exporter.\n"
        f"Sent at {sent_at.isoformat()} to check that mail can be submitted and delivered.\n"
        f"Probe token: {token}\n"
        "This message can be deleted; no reply is needed.\n"
    )
    return message.as_bytes(policy=policy.SMTP), message_id


def data_payload(message: bytes) -> bytes:
    """The bytes to send after DATA's 354: CRLF line endings, dot-stuffed, terminated."""
    body = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return _LEADING_PERIOD.sub(b"..", body) + b".\r\n"

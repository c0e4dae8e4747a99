"""Logs are read on terminals and by log shippers: an escape sequence or a secret a server
sent must reach neither, in any log format."""

from __future__ import annotations

import base64
import io

import pytest
import structlog

from m365_smtp_exporter.logs import LogFormat, Redactor, configure_logging

from .promises import assert_no_secret

SECRET = "canary-log-secret-30981"
HOSTILE = "535 \x1b]52;c;cHduZWQ=\x07\x1b[2J\rfake level=info event=ok\nsecond line"


@pytest.mark.parametrize("fmt", ["logfmt", "console", "json"])
def test_escape_sequences_and_echoed_secrets_never_reach_the_log(fmt: LogFormat) -> None:
    stream = io.StringIO()
    redactor = Redactor()
    redactor.add([SECRET])
    configure_logging("info", fmt, redactor=redactor, stream=stream)
    sasl = base64.b64encode(f"\x00probe@contoso.test\x00{SECRET}".encode()).decode()
    structlog.get_logger("t").warning("smtp refused", reply=HOSTILE, echoed=f"you sent {sasl}")
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    if fmt != "console":
        assert text.count("\n") == 1  # one event, one line: no forged log lines
    assert_no_secret(text, SECRET)
    structlog.reset_defaults()

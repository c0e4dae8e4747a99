"""What the exporter promises about anything a hostile peer sent: checked the same way
by every test in this folder."""

from __future__ import annotations

import base64
import re

from m365_smtp_exporter.smtp.replies import CATEGORIES
from m365_smtp_exporter.smtp.result import ProbeResult, Reason

# Characters that act on a terminal or hide text: C0 (but newline), DEL, C1, bidi, BOM.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
ENHANCED_CODE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


def shown_texts(result: ProbeResult) -> list[str]:
    texts = [result.detail or ""]
    texts += [line.text for line in result.transcript]
    texts += [r.reply.text for r in result.rejections]
    return texts


def assert_safe_text(text: str) -> None:
    text.encode("utf-8")  # strict: no lone surrogates
    assert not UNSAFE.search(text), repr(text)


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        for encoder in (base64.b64encode, base64.urlsafe_b64encode):
            # any alignment of the secret inside a base64 blob
            for prefix in (b"", b"\x00", b"\x00\x00"):
                core = encoder(prefix + secret.encode()).decode().rstrip("=")
                assert core[4:-4] not in text, (secret, text)


def assert_classified(result: ProbeResult) -> None:
    assert not result.success
    assert isinstance(result.reason, Reason)
    for text in shown_texts(result):
        assert_safe_text(text)
    for rejection in result.rejections:
        assert rejection.reply.code == 0 or 200 <= rejection.reply.code <= 599
        code = rejection.reply.enhanced_code
        assert code == "" or ENHANCED_CODE.fullmatch(code), code
        assert code.isascii()
        assert rejection.category in CATEGORIES

"""Secret redaction: a registered secret never survives in a text, plain or base64-encoded
inside a longer payload (SASL PLAIN, XOAUTH2), whatever surrounds it."""

from __future__ import annotations

import base64
import re

from hypothesis import given
from hypothesis import strategies as st

from m365_smtp_exporter.logs import _SecretSet, base64_cores

secrets = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=16, max_size=80
)
around = st.binary(max_size=12)
words = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def decoded_runs(text: str) -> list[bytes]:
    """Every base64 run of `text` decoded at each alignment (what an attacker would try)."""
    found = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{4,}", text):
        standard = run.replace("-", "+").replace("_", "/")
        for start in range(4):
            chunk = standard[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            if chunk:
                found.append(base64.b64decode(chunk))
    return found


@given(secret=secrets, before=words, after=words)
def test_a_plain_secret_is_removed(secret: str, before: str, after: str) -> None:
    kept = _SecretSet()
    kept.add([secret])

    out = kept.redact(f"{before}{secret}{after}{secret}")

    assert secret not in out
    assert out.count("<redacted>") >= 2


@given(secret=secrets, prefix=around, suffix=around, words=words, urlsafe=st.booleans())
def test_a_secret_inside_a_base64_payload_is_removed(
    secret: str, prefix: bytes, suffix: bytes, words: str, urlsafe: bool
) -> None:
    kept = _SecretSet()
    kept.add([secret])
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    payload = encode(prefix + secret.encode() + suffix).decode()

    out = kept.redact(f"{words} AUTH PLAIN {payload} {words}")

    assert " AUTH PLAIN <redacted> " in out  # the whole payload, not just the fragment
    assert not any(core in out for core in base64_cores(secret))
    assert not any(secret.encode() in run for run in decoded_runs(out))


def test_the_newest_secrets_are_kept_and_the_oldest_forgotten() -> None:
    kept = _SecretSet(keep=3, min_length=16)
    tokens = [f"token-{n:02d}-" + "x" * 20 for n in range(5)]
    for token in tokens:
        kept.add([token])

    assert kept.redact(tokens[0]) == tokens[0]  # forgotten
    assert kept.redact(tokens[4]) == "<redacted>"
    assert kept.redact("short") == "short"

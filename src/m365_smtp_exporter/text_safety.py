"""Text from the network made safe to show: decoded once, control characters neutralised.

aiosmtplib decodes replies with `surrogateescape`, so a Latin-1 banner arrives as a str
holding lone surrogates that cannot be encoded again (a 500 on the status page, a crash of
`probe` under a strict stdout encoding). Escape sequences in a reply (ANSI colours, OSC
clipboard writes, CR line erases, bidi overrides) would act on the operator's terminal.
"""

from __future__ import annotations

import re

# C0 (but newline), DEL, C1, zero-width and bidirectional overrides, BOM, lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)
_NEWLINE = re.compile("\n")


def from_network(raw: str | bytes) -> str:
    """Valid Unicode, every undecodable byte replaced by U+FFFD."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    try:
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates outside the escape range: not from bytes
        return raw.encode("utf-8", "replace").decode("utf-8", "replace")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control or invisible formatting character shown as `\\xNN`."""
    text = _UNSAFE.sub(_escape, text)
    return text if keep_newlines else _NEWLINE.sub("\\\\n", text)


def network_text(raw: str | bytes, *, keep_newlines: bool = True) -> str:
    """Decode and neutralise in one step: what every network text goes through first.
    CRLF line ends count as newlines and tabs as spaces; a lone CR (which erases a
    terminal line) does not."""
    text = from_network(raw).replace("\r\n", "\n").replace("\t", " ")
    return printable(text, keep_newlines=keep_newlines)

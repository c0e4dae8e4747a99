"""The readable SMTP conversation of one probe, with credentials kept out of it.

Callers pass a display text for every client line that carries a secret; server `334`
replies are always redacted, since they only occur inside an AUTH exchange (LOGIN
prompts, XOAUTH2 error challenges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from m365_smtp_exporter.logs import redact
from m365_smtp_exporter.smtp.result import TranscriptLine
from m365_smtp_exporter.text_safety import network_text, printable

REDACTED = "<redacted>"
CLIENT = "C"
SERVER = "S"
NOTE = "*"  # a remark of the prober's own (e.g. "TLS established"), not on the wire
_AUTH_CONTINUE = 334


class Transcript:
    def __init__(self, elapsed: Callable[[], float]) -> None:
        self._elapsed = elapsed
        self.lines: list[TranscriptLine] = []

    def client(self, text: str) -> None:
        self.lines.append(TranscriptLine(self._elapsed(), CLIENT, redact(printable(text))))

    def note(self, text: str) -> None:
        """A remark between the wire lines, such as where encryption starts."""
        self.lines.append(TranscriptLine(self._elapsed(), NOTE, text))

    def server(self, code: int, message: str) -> None:
        """One reply, as the server sent it: one line per reply line, `250-` continuations.

        The text is decoded, neutralised and redacted here, once: a server may echo the
        credentials it was sent, in plain or base64."""
        at = self._elapsed()
        shown = redact(network_text(message))
        texts = [REDACTED] if code == _AUTH_CONTINUE else shown.split("\n")
        for index, text in enumerate(texts):
            separator = "-" if index < len(texts) - 1 else " "
            self.lines.append(TranscriptLine(at, SERVER, f"{code}{separator}{text}".rstrip()))


def format_transcript(lines: Iterable[TranscriptLine]) -> str:
    """Lines like `  0.012 S: 220 mail.example.com ESMTP`, for troubleshooting output."""
    return "\n".join(f"{line.elapsed:7.3f} {line.direction}: {line.text}" for line in lines)

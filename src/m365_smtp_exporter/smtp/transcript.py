"""The readable SMTP conversation of one probe, with credentials kept out of it.

Callers pass a display text for every client line that carries a secret; server `334`
replies are always redacted, since they only occur inside an AUTH exchange (LOGIN
prompts, XOAUTH2 error challenges).

While the probe runs, lines are only recorded (a timestamp and the raw text); decoding,
neutralising and redacting happen in `lines`, after the probe's clock has stopped, so that
work is never charged to a network phase.
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
        self._records: list[tuple[float, str, int, str]] = []  # at, direction, code, raw text

    def client(self, text: str) -> None:
        self._records.append((self._elapsed(), CLIENT, 0, text))

    def note(self, text: str) -> None:
        """A remark between the wire lines, such as where encryption starts."""
        self._records.append((self._elapsed(), NOTE, 0, text))

    def server(self, code: int, message: str) -> None:
        """One reply, as the server sent it (rendered by `lines`)."""
        self._records.append((self._elapsed(), SERVER, code, message))

    @property
    def lines(self) -> list[TranscriptLine]:
        """The conversation for people: client lines neutralised and redacted; each reply
        one line per reply line with `250-` continuations, decoded, neutralised and
        redacted, since a server may echo the credentials it was sent, plain or base64."""
        lines: list[TranscriptLine] = []
        for at, direction, code, text in self._records:
            if direction == CLIENT:
                lines.append(TranscriptLine(at, CLIENT, redact(printable(text))))
            elif direction == NOTE:
                lines.append(TranscriptLine(at, NOTE, text))
            else:
                lines.extend(_reply_lines(at, code, text))
        return lines


def _reply_lines(at: float, code: int, message: str) -> list[TranscriptLine]:
    shown = redact(network_text(message))
    texts = [REDACTED] if code == _AUTH_CONTINUE else shown.split("\n")
    return [
        TranscriptLine(at, SERVER, f"{code}{'-' if index < len(texts) - 1 else ' '}{text}".rstrip())
        for index, text in enumerate(texts)
    ]


def format_transcript(lines: Iterable[TranscriptLine]) -> str:
    """Lines like `  0.012 S: 220 mail.example.com ESMTP`, for troubleshooting output."""
    return "\n".join(f"{line.elapsed:7.3f} {line.direction}: {line.text}" for line in lines)

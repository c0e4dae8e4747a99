"""Faults the SMTP emulator can be told to inject, and a tally of what it injected.

The tally (`injected`) is ground truth for resilience tests: it survives `reset()`.
Outage mode and the certificate are applied by `SmtpEmulator` (they change its listener
and TLS context); this class only holds what is currently configured.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal, get_args

Phase = Literal["banner", "ehlo", "starttls", "auth", "mail", "rcpt", "data"]
PHASES: tuple[Phase, ...] = get_args(Phase)
OutageMode = Literal["none", "refuse", "blackhole"]
# Which text the concurrent-connection limit answers with (both are Microsoft's, see replies).
ConnectionLimitText = Literal["concurrent_connections", "sender_thread"]

# Pseudo-commands a scripted reply can target besides the SMTP verbs.
BANNER = "BANNER"  # the greeting
DATA_END = "DATA_END"  # the reply after the message body's final dot

_REPLY = re.compile(r"^[2-5]\d\d( .*)?$")
_PHASE_OF_VERB: dict[str, Phase] = {
    "HELO": "ehlo",
    "EHLO": "ehlo",
    "STARTTLS": "starttls",
    "AUTH": "auth",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
}


def phase_of(verb: str) -> Phase | None:
    return _PHASE_OF_VERB.get(verb.upper())


@dataclass(slots=True)
class ScriptedReply:
    """Answer the next `remaining` matching commands with `reply` instead of handling them.

    `command` None matches any SMTP command (not BANNER or DATA_END).
    """

    reply: str
    remaining: int
    command: str | None = None

    def matches(self, command: str) -> bool:
        if self.command is None:
            return command not in (BANNER, DATA_END)
        return self.command == command

    def to_json(self) -> dict[str, object]:
        return {"reply": self.reply, "remaining": self.remaining, "command": self.command}


class SmtpFaults:
    def __init__(self) -> None:
        self.injected: Counter[str] = Counter()
        self.outage: OutageMode = "none"
        self.certificate_days_left: float | None = None
        self.latency: dict[Phase, float] = dict.fromkeys(PHASES, 0.0)
        self.scripted: list[ScriptedReply] = []
        self.data_drops = 0
        self.connection_limit_text: ConnectionLimitText = "concurrent_connections"

    # configuration
    def set_latency(self, phase: Phase, seconds: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self.latency[phase] = seconds

    def script_reply(self, reply: str, count: int = 1, command: str | None = None) -> None:
        """Queue `reply` for the next `count` commands (only `command` ones if given)."""
        if not _REPLY.match(reply):
            raise ValueError("a reply starts with a 2xx-5xx code, e.g. '451 4.7.500 ...'")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.scripted.append(ScriptedReply(reply, count, command.upper() if command else None))

    def drop_next_data(self, count: int = 1) -> None:
        """Close the next `count` connections in the middle of their DATA transfer."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.data_drops += count

    def reset(self) -> None:
        """Clear every configured fault; the `injected` tally is kept."""
        self.outage = "none"
        self.certificate_days_left = None
        self.latency = dict.fromkeys(PHASES, 0.0)
        self.scripted.clear()
        self.data_drops = 0
        self.connection_limit_text = "concurrent_connections"

    # consumption by the server (each records what it injected)
    def latency_for(self, phase: Phase) -> float:
        seconds = self.latency[phase]
        if seconds > 0:
            self.injected[f"latency:{phase}"] += 1
        return seconds

    def take_reply(self, command: str) -> str | None:
        for entry in self.scripted:
            if entry.matches(command):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self.scripted.remove(entry)
                self.injected[f"reply:{command}:{entry.reply[:3]}"] += 1
                return entry.reply
        return None

    def take_data_drop(self) -> bool:
        if self.data_drops == 0:
            return False
        self.data_drops -= 1
        self.injected["data_drop"] += 1
        return True

    def note_blackholed_connection(self) -> None:
        self.injected["blackhole"] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "outage": self.outage,
            "latency": dict(self.latency),
            "scripted_replies": [entry.to_json() for entry in self.scripted],
            "drop_data": self.data_drops,
            "certificate_days_left": self.certificate_days_left,
            "connection_limit_text": self.connection_limit_text,
            "injected": dict(sorted(self.injected.items())),
        }

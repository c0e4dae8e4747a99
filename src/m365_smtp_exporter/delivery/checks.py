"""Delivery checks (one per probe mail) and what the metrics show per probe.

Both are plain dataclasses that the state file stores as they are. Times are unix seconds on
the exporter's wall clock, except `received_at` values, which come from the mailbox server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

BACKOFF_FACTOR = 1.5
BACKOFF_CAP = 4.0  # look-ups back off to at most this many poll intervals


class Outcome(enum.StrEnum):
    """`outcome` label of `m365_delivery_outcomes_total`."""

    DELIVERED = "delivered"  # found in time, in the Inbox or another non-junk folder
    JUNK = "junk"  # found in time, in Junk Email
    LOST = "lost"  # not found by the deadline
    LATE = "late"  # found after it had been counted lost


class Stage(enum.StrEnum):
    PENDING = "pending"  # looked for until the deadline
    LOST = "lost"  # counted lost; still looked for until `grace_until` to count it late
    DONE = "done"  # finished: kept a while to match trace rows and to never count it twice


class Folder(enum.StrEnum):
    INBOX = "inbox"
    JUNK = "junk"
    OTHER = "other"


def message_key(message_id: str) -> str:
    """A Message-ID as matched across SMTP, the mailbox and the trace: no angle brackets,
    no surrounding space, lower case."""
    return message_id.strip().removeprefix("<").removesuffix(">").strip().lower()


@dataclass(slots=True)
class Check:
    """The search for one probe mail in its recipient mailbox."""

    probe: str
    tenant: str
    mailbox: str  # UPN the mail is looked for in
    message_id: str  # as the probe sent it, with angle brackets
    sent_at: float  # end of the SMTP transaction
    deadline: float  # sent_at + timeout: not found by then means lost
    grace_until: float  # a lost mail found before this counts as late
    poll_interval: float
    cleanup: bool
    next_lookup_at: float
    interval: float  # the current back-off step
    stage: Stage = Stage.PENDING
    lookups: int = 0

    @property
    def key(self) -> str:
        return message_key(self.message_id)

    def back_off(self, now: float) -> None:
        """Schedule the next look-up after a miss: the step grows 1.5x up to 4x the poll
        interval; a pending check is always looked up once more at its deadline."""
        self.interval = min(self.interval * BACKOFF_FACTOR, self.poll_interval * BACKOFF_CAP)
        self.next_lookup_at = now + self.interval
        if self.stage is Stage.PENDING and now < self.deadline:
            self.next_lookup_at = min(self.next_lookup_at, self.deadline)


@dataclass(slots=True)
class Cleanup:
    """A found probe mail still to be deleted."""

    probe: str
    tenant: str
    mailbox: str
    graph_id: str
    attempts: int = 0


@dataclass(slots=True)
class ProbeView:
    """The gauges of one probe. Each describes the most recently *sent* mail whose fact is
    known (`*_of` is that mail's `sent_at`), so a check finishing out of order (an older
    mail declared lost after a newer one arrived) does not overwrite newer news."""

    tenant: str
    success: float | None = None  # 1 delivered, 0 junk or lost; None until one is known
    success_of: float = 0.0
    auth: dict[str, str] = field(default_factory=dict)  # check -> result
    auth_of: float = 0.0
    trace_status: str | None = None
    trace_of: float = 0.0

    def set_success(self, sent_at: float, value: float) -> bool:
        if sent_at < self.success_of:
            return False
        self.success, self.success_of = value, sent_at
        return True

    def set_auth(self, sent_at: float, verdicts: dict[str, str]) -> bool:
        if sent_at < self.auth_of:
            return False
        self.auth, self.auth_of = dict(verdicts), sent_at
        return True

    def set_trace_status(self, sent_at: float, status: str) -> bool:
        if sent_at < self.trace_of or (sent_at == self.trace_of and status == self.trace_status):
            return False
        self.trace_status, self.trace_of = status, sent_at
        return True

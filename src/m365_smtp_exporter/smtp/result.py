"""The outcome of one SMTP send probe: shared by the probe, the store and the CLI."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Phase(enum.StrEnum):
    """SMTP transaction phases, in the order a probe runs them."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    QUIT = "quit"


class Reason(enum.StrEnum):
    """Bounded failure reasons: the `reason` label of `m365_smtp_probe_failures_total`."""

    DNS = "dns"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_ERROR = "connect_error"
    BANNER_TIMEOUT = "banner_timeout"
    BANNER_REJECTED = "banner_rejected"
    TLS_HANDSHAKE = "tls_handshake"
    TLS_VERIFY = "tls_verify"
    TLS_VERSION = "tls_version"
    STARTTLS_UNSUPPORTED = "starttls_unsupported"
    AUTH_UNSUPPORTED = "auth_unsupported"
    AUTH_INSECURE = "auth_insecure"
    AUTH_FAILED = "auth_failed"
    AUTH_DISABLED = "auth_disabled"
    AUTH_TOKEN = "auth_token"
    SEND_AS_DENIED = "send_as_denied"
    MAIL_FROM_REJECTED = "mail_from_rejected"
    RCPT_REJECTED = "rcpt_rejected"
    DATA_REJECTED = "data_rejected"
    THROTTLED = "throttled"
    QUOTA_EXCEEDED = "quota_exceeded"
    BLOCKED = "blocked"
    SERVICE_UNAVAILABLE = "service_unavailable"
    PROTOCOL_ERROR = "protocol_error"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    # the other send paths (m365_smtp_exporter.probes)
    DIRECT_SEND_REJECTED = "direct_send_rejected"  # 550 5.7.68, RejectDirectSend
    MAILBOX_NOT_ENABLED = "mailbox_not_enabled"  # Graph MailboxNotEnabledForRESTAPI
    GRAPH_ERROR = "graph_error"  # any other Graph refusal


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply as the server sent it."""

    code: int
    enhanced_code: str  # "5.7.139", or "" when the server sent none
    text: str


@dataclass(frozen=True, slots=True)
class RejectedReply:
    """A non-2xx/3xx reply, classified, with the phase it answered."""

    phase: Phase
    reply: Reply
    category: str
    recoverable: bool


@dataclass(frozen=True, slots=True)
class TlsFacts:
    version: str
    cipher: str
    cert_not_after: float | None  # unix seconds; None when the peer sent no certificate
    cert_subject: str = ""  # RFC 4514 form, for people reading a transcript (never a label)
    cert_issuer: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line of the SMTP conversation; `direction` is 'C' (client) or 'S' (server)."""

    elapsed: float
    direction: str
    text: str


@dataclass(slots=True)
class ProbeResult:
    """Everything one probe run learned. Never carries a credential."""

    probe: str
    target: str
    started_at: float  # unix seconds (wall clock, for timestamps)
    success: bool = False
    duration: float = 0.0  # monotonic seconds, whole transaction
    phases: dict[Phase, float] = field(default_factory=dict)
    failed_phase: Phase | None = None
    reason: Reason | None = None
    detail: str = ""
    rejections: list[RejectedReply] = field(default_factory=list)
    tls: TlsFacts | None = None
    message_id: str = ""
    probe_token: str = ""
    recipients_accepted: int = 0
    transcript: list[TranscriptLine] = field(default_factory=list)

    @property
    def last_rejection(self) -> RejectedReply | None:
        return self.rejections[-1] if self.rejections else None

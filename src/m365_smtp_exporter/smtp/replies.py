"""Parse SMTP replies and classify them against what Exchange Online is known to send.

`classify` walks `RULES` (first match wins); a reply no rule knows still gets a bounded
category built from its RFC 3463 class and subject, so every reply can be counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from m365_smtp_exporter.logs import redact
from m365_smtp_exporter.smtp.result import Reason, Reply
from m365_smtp_exporter.text_safety import network_text

# Specific categories, for replies Exchange Online is known to send.
THROTTLE = "throttle"
QUOTA = "quota"
TLS = "tls"
AUTH = "auth"
POLICY = "policy"
BLOCKED = "blocked"
RECIPIENT = "recipient"
SIZE = "size"
TRANSIENT = "transient"

# RFC 3463 status classes and subjects, for the generic "<class>_<subject>" fallback.
_CLASS_NAMES = {2: "success", 4: "transient", 5: "permanent"}
_SUBJECT_NAMES = {
    1: "address",
    2: "mailbox",
    3: "system",
    4: "network",
    5: "protocol",
    6: "content",
    7: "security",
}
_OTHER_SUBJECT = "other"
# Reply codes outside the RFC 3463 classes (1xx, 3xx, nonsense) carry no subject either.
UNKNOWN = "unknown_other"

CATEGORIES: tuple[str, ...] = (
    THROTTLE,
    QUOTA,
    TLS,
    AUTH,
    POLICY,
    BLOCKED,
    RECIPIENT,
    SIZE,
    TRANSIENT,
    *(
        f"{class_name}_{subject}"
        for class_name in _CLASS_NAMES.values()
        for subject in (*_SUBJECT_NAMES.values(), _OTHER_SUBJECT)
    ),
    UNKNOWN,
)

Status = tuple[int, int, int]

# class.subject.detail; RFC 3463 allows 1-3 digits for subject and detail. ASCII digits
# only: `\d` would also take Arabic-Indic or fullwidth digits and mint new label values.
_ENHANCED_CODE = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?:[ \t]+|\Z)")
# Reply codes that may become a label value: RFC 5321's 2xx-5xx. Anything else is folded.
INVALID_CODE = 0
_VALID_CODES = range(200, 600)


def _canonical_status(match: re.Match[str]) -> str:
    """ "5.07.001" and "5.7.1" are one status: one label value."""
    return ".".join(str(int(part)) for part in match.groups())


def _split_status(line: str) -> tuple[str, str]:
    """Split "5.7.139 text" into ("5.7.139", "text"); ("", line) when there is no status."""
    match = _ENHANCED_CODE.match(line)
    if match is None:
        return "", line
    return _canonical_status(match), line[match.end() :]


def code_label(code: int) -> str:
    """The `code` label value of a reply: "550", or "invalid" outside 2xx-5xx."""
    return str(code) if code in _VALID_CODES else "invalid"


def _strip_reply_code(line: str, code: int) -> str:
    """Drop a leading "554 " / "554-" some callers leave on the text."""
    prefix = str(code)
    if line.startswith(prefix) and line[len(prefix) : len(prefix) + 1] in (" ", "-", "\t"):
        return line[len(prefix) + 1 :].lstrip()
    return line


def parse_reply(code: int, message: str) -> Reply:
    """Build a `Reply` from a reply code and its text (lines joined with "\\n").

    The enhanced status code comes from the first line; Exchange repeats it on every line
    of a multi-line reply, so the same code is removed from the following lines too.
    Network text is decoded and neutralised here (the boundary), and known secrets are
    removed; a code outside 2xx-5xx becomes `INVALID_CODE`, so no label can be minted.
    """
    if code not in _VALID_CODES:
        code = INVALID_CODE
    message = redact(network_text(message))
    lines = [_strip_reply_code(line.strip(), code) for line in message.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return Reply(code=code, enhanced_code="", text="")
    enhanced_code, first = _split_status(lines[0])
    rest = []
    for line in lines[1:]:
        repeated, remainder = _split_status(line)
        rest.append(remainder if repeated and repeated == enhanced_code else line)
    text = "\n".join([first, *rest]).strip()
    return Reply(code=code, enhanced_code=enhanced_code, text=text)


def _parse_status(enhanced_code: str) -> Status | None:
    match = _ENHANCED_CODE.fullmatch(enhanced_code.strip(" \t"))
    if match is None:
        return None
    klass, subject, detail = (int(part) for part in match.groups())
    return klass, subject, detail


@dataclass(frozen=True, slots=True)
class Classification:
    category: str
    recoverable: bool  # a later retry can succeed without an admin acting
    reason: Reason | None  # None: the caller uses the failed phase's default reason
    hint: str  # one sentence an admin can act on; "" for generic categories


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the classification table; every given condition must hold."""

    codes: tuple[int, int]  # inclusive reply-code range
    statuses: tuple[tuple[Status, Status], ...]  # inclusive ranges; () matches any
    text: re.Pattern[str] | None
    outcome: Classification

    def matches(self, reply: Reply, status: Status | None) -> bool:
        if not self.codes[0] <= reply.code <= self.codes[1]:
            return False
        if self.statuses and (
            status is None or not any(low <= status <= high for low, high in self.statuses)
        ):
            return False
        return self.text is None or self.text.search(reply.text) is not None


# One row of the table, in the notation of the reference table:
#   codes: "" (any), "421" or "4xx"; statuses: "" (any) or space-separated "5.7.3" /
#   "4.7.500-4.7.699"; text: a case-insensitive regex searched in the reply text, or None;
#   then category, recoverable, reason, hint.
_Row = tuple[str, str, str | None, str, bool, Reason | None, str]


def _compile(row: _Row) -> Rule:
    codes, statuses, text, category, recoverable, reason, hint = row
    if not codes:
        code_range = (0, 999)
    elif codes.endswith("xx"):
        hundreds = int(codes[0]) * 100
        code_range = (hundreds, hundreds + 99)
    else:
        code_range = (int(codes), int(codes))
    spans = []
    for item in statuses.split():
        low, _, high = item.partition("-")
        low_status, high_status = _parse_status(low), _parse_status(high or low)
        if low_status is None or high_status is None:
            raise ValueError(f"bad enhanced status code in rule: {item!r}")
        spans.append((low_status, high_status))
    return Rule(
        codes=code_range,
        statuses=tuple(spans),
        text=re.compile(text, re.IGNORECASE) if text is not None else None,
        outcome=Classification(category, recoverable, reason, hint),
    )


_HINT_CONCURRENCY = (
    "More than 3 concurrent SMTP connections for this mailbox: run fewer probes or clients "
    "at once against the same mailbox."
)
_HINT_SENDER_THREADS = (
    "Too many submissions from this sender at once (sender thread limit): send from fewer "
    "clients or probes in parallel with the same mailbox; the retry normally succeeds."
)
_HINT_THROTTLED = (
    "Exchange Online is throttling this sender or IP: back off and retry later, and lower "
    "the sending rate if it persists."
)
_HINT_TLS_VERSION = (
    "Exchange Online accepts only TLS 1.2 or later: update the client's TLS settings "
    "(or opt the tenant in to smtp-legacy.office365.com)."
)
_HINT_MAILBOX_QUOTA = (
    "This mailbox hit its sending limit (10,000 recipients per rolling 24 h): wait for the "
    "window to roll and find what else is sending from it."
)
_HINT_TERRL = (
    "The tenant exceeded its external recipient rate limit (TERRL, rolling 24 h): check "
    "Get-LimitsEnforcementStatus and wait for the window to roll."
)
_HINT_MOERA = (
    "Senders on an onmicrosoft.com address may reach only 100 external recipients per 24 h: "
    "send from a custom accepted domain."
)
_HINT_BAD_CREDENTIALS = (
    "The credentials were rejected: check the user name and password, or for XOAUTH2 the "
    "app's SMTP.SendAsApp permission, service principal and mailbox access."
)
_HINT_AUTH_DISABLED = (
    "SMTP AUTH is disabled for this mailbox or tenant: Set-CASMailbox -Identity <mailbox> "
    "-SmtpClientAuthenticationDisabled $false, and check security defaults / Conditional Access."
)
_HINT_NOT_AUTHENTICATED = (
    "The server requires authentication before MAIL FROM: enable AUTH for this probe and "
    "submit on port 587 after STARTTLS."
)
_HINT_BASIC_AUTH_OFF = (
    "Basic authentication is turned off for SMTP AUTH: switch this probe to OAuth2 (XOAUTH2)."
)
_HINT_MECHANISM = (
    "The server does not accept this authentication here: authenticate only after STARTTLS, "
    "with a mechanism EHLO advertises (e.g. XOAUTH2)."
)
_HINT_SEND_AS = (
    "The authenticated account may not send as this address: grant it Send As on mail_from "
    "(Add-RecipientPermission) or set mail_from to the authenticated mailbox."
)
_HINT_DIRECT_SEND = (
    "Direct send is disabled for this tenant (RejectDirectSend): submit through SMTP AUTH "
    "on port 587 or through a connector."
)
_HINT_BANNED_IP = (
    "Exchange Online Protection lists this sending IP (5.7.606-649): request delisting at "
    "https://sender.office.com and find what sent spam from it."
)
_HINT_DIRECT_SEND_RELAY = (
    "Direct send (port 25 to the tenant's MX) reaches only recipients in the tenant's accepted "
    "domains: send to an internal recipient, or use SMTP AUTH or a connector."
)
_HINT_HVE_EXTERNAL = (
    "High Volume Email delivers to internal recipients only: send to an address in the "
    "tenant's accepted domains."
)
_HINT_RESTRICTED_SENDER = (
    "The sender is restricted (bad outbound sender, usually after exceeding limits or sending "
    'spam): unblock it in the Defender portal under "Restricted entities".'
)
_HINT_SPAM_ABUSE = (
    "Exchange Online flagged this sender for spam abuse or banned it: review the outbound "
    "spam alerts and ask Microsoft support to lift the block."
)
_HINT_TENANT_THRESHOLD = (
    "The tenant is blocked for exceeding outbound spam thresholds: contact Microsoft support."
)
_HINT_IP_NOT_ACCEPTED = (
    "Exchange Online does not accept traffic from this sending IP (poor reputation): "
    "contact Microsoft support."
)
_HINT_UNREGISTERED_DOMAIN = (
    "The tenant may not send from unregistered domains: add and verify the sending domain "
    "as an accepted domain."
)
_HINT_NO_SUCH_RECIPIENT = "The recipient address does not exist: check the probe's rcpt_to."
_HINT_MAILBOX_FULL = "The recipient mailbox is full: free space in it or raise its quota."
_HINT_SIZE = (
    "The message exceeds the size limit (35 MB by default): send a smaller probe or raise "
    "MaxSendSize / MaxReceiveSize."
)
_HINT_SERVICE_UNAVAILABLE = (
    "The service is temporarily unavailable: retry later, and check Microsoft 365 service "
    "health if it persists."
)

# Rows are tried in order; put specific rows before the broader ones they overlap.
# fmt: off
_TABLE: tuple[_Row, ...] = (
    # -- throttle: the text tells the sender-thread limit from the connection limit
    ("4xx", "4.3.2", r"sender thread limit", THROTTLE, True, Reason.THROTTLED,
     _HINT_SENDER_THREADS),
    ("432", "4.3.2", None, THROTTLE, True, Reason.THROTTLED, _HINT_CONCURRENCY),
    ("4xx", "4.3.2", r"thread limit|concurrent connection", THROTTLE, True,
     Reason.THROTTLED, _HINT_CONCURRENCY),
    ("4xx", "4.7.500-4.7.699", None, THROTTLE, True, Reason.THROTTLED, _HINT_THROTTLED),
    # -- tls
    ("4xx", "4.7.66", None, TLS, False, Reason.TLS_VERSION, _HINT_TLS_VERSION),
    # -- quota: recoverable once the rolling window drops back under the limit
    ("", "5.2.0", r"SubmissionQuotaExceededException", QUOTA, True,
     Reason.QUOTA_EXCEEDED, _HINT_MAILBOX_QUOTA),
    ("", "5.1.90", None, QUOTA, True, Reason.QUOTA_EXCEEDED, _HINT_MAILBOX_QUOTA),
    ("", "5.2.2", r"submission\s*quota|\brate\b", QUOTA, True,
     Reason.QUOTA_EXCEEDED, _HINT_MAILBOX_QUOTA),
    ("", "5.7.232-5.7.233", None, QUOTA, True, Reason.QUOTA_EXCEEDED, _HINT_TERRL),
    ("", "5.7.236", None, QUOTA, True, Reason.QUOTA_EXCEEDED, _HINT_MOERA),
    # -- recipient mailbox full: X.2.2 means exactly that unless the text says submission quota
    ("", "5.2.2", None, RECIPIENT, False, None, _HINT_MAILBOX_FULL),
    # -- auth
    ("", "5.7.3", None, AUTH, False, Reason.AUTH_FAILED, _HINT_BAD_CREDENTIALS),
    ("", "5.7.139", None, AUTH, False, Reason.AUTH_DISABLED, _HINT_AUTH_DISABLED),
    ("", "5.7.57", None, AUTH, False, Reason.AUTH_FAILED, _HINT_NOT_AUTHENTICATED),
    # Microsoft's text only: other servers (Google) use 5.7.30 for a DKIM failure
    ("", "5.7.30", r"Basic authentication is not supported", AUTH, False,
     Reason.AUTH_DISABLED, _HINT_BASIC_AUTH_OFF),
    ("", "5.7.4", None, AUTH, False, Reason.AUTH_UNSUPPORTED, _HINT_MECHANISM),
    # -- policy
    ("", "5.7.60", None, POLICY, False, Reason.SEND_AS_DENIED, _HINT_SEND_AS),
    ("", "5.7.68", r"TenantInboundAttribution|Direct Send", POLICY, False,
     Reason.DIRECT_SEND_REJECTED, _HINT_DIRECT_SEND),
    ("", "5.7.68", None, POLICY, False, None, _HINT_DIRECT_SEND),
    ("", "5.7.54", r"relay", POLICY, False, None, _HINT_DIRECT_SEND_RELAY),
    # High Volume Email refusing an external recipient (reported code; text varies)
    ("", "5.5.105", None, POLICY, False, None, _HINT_HVE_EXTERNAL),
    # -- blocked: an admin (or Microsoft) has to lift these
    ("", "5.1.8", None, BLOCKED, False, Reason.BLOCKED, _HINT_RESTRICTED_SENDER),
    ("", "5.7.501-5.7.503", None, BLOCKED, False, Reason.BLOCKED, _HINT_SPAM_ABUSE),
    ("", "5.7.705", None, BLOCKED, False, Reason.BLOCKED, _HINT_TENANT_THRESHOLD),
    ("", "5.7.708", None, BLOCKED, False, Reason.BLOCKED, _HINT_IP_NOT_ACCEPTED),
    ("", "5.7.750", None, BLOCKED, False, Reason.BLOCKED, _HINT_UNREGISTERED_DOMAIN),
    ("", "5.7.606-5.7.649", None, BLOCKED, False, Reason.BLOCKED, _HINT_BANNED_IP),
    # -- recipient
    ("", "5.1.10", None, RECIPIENT, False, None, _HINT_NO_SUCH_RECIPIENT),
    ("", "5.1.1", None, RECIPIENT, False, None, _HINT_NO_SUCH_RECIPIENT),
    # X.5.0 is a generic protocol error; only "550 5.5.0 ... mailbox" is about the recipient
    ("550", "5.5.0", r"mailbox|recipient", RECIPIENT, False, None,
     _HINT_NO_SUCH_RECIPIENT),
    # -- size
    ("", "5.3.4", None, SIZE, False, None, _HINT_SIZE),
    ("", "5.2.3", None, SIZE, False, None, _HINT_SIZE),
    # -- transient: any other 421 (with or without an enhanced code) closes the channel
    ("421", "", None, TRANSIENT, True, Reason.SERVICE_UNAVAILABLE,
     _HINT_SERVICE_UNAVAILABLE),
)
# fmt: on

RULES: tuple[Rule, ...] = tuple(_compile(row) for row in _TABLE)


def _fallback(reply: Reply, status: Status | None) -> Classification:
    """The generic "<class>_<subject>" category of a reply no rule knows."""
    if status is not None:
        klass, subject = status[0], _SUBJECT_NAMES.get(status[1], _OTHER_SUBJECT)
    else:
        klass, subject = reply.code // 100, _OTHER_SUBJECT
    class_name = _CLASS_NAMES.get(klass)
    if class_name is None:
        return Classification(UNKNOWN, False, None, "")
    return Classification(f"{class_name}_{subject}", klass == 4, None, "")


def classify(reply: Reply) -> Classification:
    """Category, recoverability, implied failure reason and admin hint for one reply."""
    status = _parse_status(reply.enhanced_code)
    for rule in RULES:
        if rule.matches(reply, status):
            return rule.outcome
    return _fallback(reply, status)

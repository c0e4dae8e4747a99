"""Reply parsing and the Exchange Online classification table (M365_REFERENCE section 3)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from m365_smtp_exporter.smtp.replies import (
    CATEGORIES,
    RULES,
    Classification,
    classify,
    parse_reply,
)
from m365_smtp_exporter.smtp.result import Reason, Reply

# -- parse_reply


@pytest.mark.parametrize(
    ("code", "message", "enhanced_code", "text"),
    [
        pytest.param(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
            "5.7.139",
            "Authentication unsuccessful, SmtpClientAuthentication is disabled",
            id="three-digit-detail",
        ),
        pytest.param(
            535,
            "5.7.3 Authentication unsuccessful",
            "5.7.3",
            "Authentication unsuccessful",
            id="one-digit-detail",
        ),
        pytest.param(
            554,
            "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
            "process message due to a permanent exception with message [BeginDiagnosticData]"
            "Cannot submit message.[EndDiagnosticData]",
            "5.2.0",
            "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
            "process message due to a permanent exception with message [BeginDiagnosticData]"
            "Cannot submit message.[EndDiagnosticData]",
            id="storedrv-diagnostic-data",
        ),
        pytest.param(
            554,
            "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
            "5.2.0",
            "STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
            id="reply-code-left-on-text",
        ),
        pytest.param(
            421,
            "4.7.0 Temporary server error\n4.7.0 Please try again later",
            "4.7.0",
            "Temporary server error\nPlease try again later",
            id="multi-line-repeated-code",
        ),
        pytest.param(
            421,
            "421-4.7.0 Temporary server error\r\n421 4.7.0 Please try again later\r\n",
            "4.7.0",
            "Temporary server error\nPlease try again later",
            id="multi-line-raw-with-reply-codes",
        ),
        pytest.param(
            550,
            "5.1.10 RESOLVER.ADR.RecipientNotFound\nsee 5.1.1 for details",
            "5.1.10",
            "RESOLVER.ADR.RecipientNotFound\nsee 5.1.1 for details",
            id="multi-line-code-only-on-first",
        ),
        pytest.param(
            550,
            "5.7.1 first\n5.7.2 second",
            "5.7.1",
            "first\n5.7.2 second",
            id="multi-line-different-code-kept",
        ),
        pytest.param(
            421,
            "Service not available, closing transmission channel",
            "",
            "Service not available, closing transmission channel",
            id="no-enhanced-code",
        ),
        pytest.param(
            535,
            "  5.7.139\t  Authentication unsuccessful  ",
            "5.7.139",
            "Authentication unsuccessful",
            id="odd-spacing",
        ),
        pytest.param(550, "5.1.1", "5.1.1", "", id="enhanced-code-only"),
        pytest.param(421, "", "", "", id="empty"),
        pytest.param(421, "\n  \n", "", "", id="blank-lines-only"),
        pytest.param(550, "5.7.1390 not a code", "", "5.7.1390 not a code", id="four-digit-part"),
        pytest.param(550, "5.7.139x junk", "", "5.7.139x junk", id="code-glued-to-text"),
        pytest.param(550, "3.1.0 not a class", "", "3.1.0 not a class", id="invalid-class"),
        pytest.param(
            550, "452 4.5.3 other code", "", "452 4.5.3 other code", id="other-reply-code-kept"
        ),
        pytest.param(
            250,
            "2.6.0 <id@example.com> Queued mail for delivery",
            "2.6.0",
            "<id@example.com> Queued mail for delivery",
            id="success",
        ),
    ],
)
def test_parse_reply(code: int, message: str, enhanced_code: str, text: str) -> None:
    assert parse_reply(code, message) == Reply(code=code, enhanced_code=enhanced_code, text=text)


# -- the reference table, row by row


@dataclass(frozen=True)
class Expected:
    category: str
    recoverable: bool
    reason: Reason | None
    hint_contains: str


THROTTLED = Expected("throttle", True, Reason.THROTTLED, "retry later")
MAILBOX_QUOTA = Expected("quota", True, Reason.QUOTA_EXCEEDED, "10,000 recipients")
TERRL = Expected("quota", True, Reason.QUOTA_EXCEEDED, "TERRL")
SPAM_BLOCK = Expected("blocked", False, Reason.BLOCKED, "Microsoft support")
NO_SUCH_RECIPIENT = Expected("recipient", False, None, "rcpt_to")

REFERENCE_ROWS = [
    pytest.param(
        432,
        "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        Expected("throttle", True, Reason.THROTTLED, "sender thread limit"),
        id="432 4.3.2 sender thread limit",
    ),
    pytest.param(
        432,
        "4.3.2 Concurrent connections limit exceeded",
        Expected("throttle", True, Reason.THROTTLED, "3 concurrent"),
        id="432 4.3.2 concurrent connections",
    ),
    pytest.param(
        451, "4.7.500 Server busy. Please try again later", THROTTLED, id="4xx 4.7.500 throttle"
    ),
    pytest.param(
        450,
        "4.7.650 Access denied, please try again later",
        THROTTLED,
        id="4xx 4.7.650 throttle",
    ),
    pytest.param(
        421,
        "4.7.699 Access denied, please try again later",
        THROTTLED,
        id="4xx 4.7.699 throttle",
    ),
    pytest.param(
        421,
        "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client",
        Expected("tls", False, Reason.TLS_VERSION, "TLS 1.2"),
        id="421 4.7.66 tls",
    ),
    pytest.param(
        554,
        "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception with message [BeginDiagnosticData]",
        MAILBOX_QUOTA,
        id="554 5.2.0 submission quota",
    ),
    pytest.param(
        550,
        "5.1.90 Your message can't be sent because you've reached your daily limit for "
        "message recipients",
        MAILBOX_QUOTA,
        id="NDR 5.1.90 daily recipient limit",
    ),
    pytest.param(
        554, "5.2.2 Submission quota exceeded", MAILBOX_QUOTA, id="554 5.2.2 submission quota"
    ),
    pytest.param(
        554,
        "5.2.2 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        MAILBOX_QUOTA,
        id="554 5.2.2 SubmissionQuotaExceededException",
    ),
    pytest.param(
        554,
        "5.2.2 Message rate exceeded for this sender",
        MAILBOX_QUOTA,
        id="554 5.2.2 message rate",
    ),
    pytest.param(
        554,
        "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
        "MapiExceptionShutoffQuotaExceeded",
        Expected("recipient", False, None, "mailbox is full"),
        id="554 5.2.2 mailbox full",
    ),
    pytest.param(
        550,
        "5.7.232 Your message can't be sent because your organization has exceeded its "
        "external recipient rate limit",
        TERRL,
        id="550 5.7.232 TERRL",
    ),
    pytest.param(
        550,
        "5.7.233 tenant exceeded external recipient rate limit",
        TERRL,
        id="550 5.7.233 TERRL",
    ),
    pytest.param(
        550,
        "5.7.236 Tenant has exceeded the external recipient limit for MOERA",
        Expected("quota", True, Reason.QUOTA_EXCEEDED, "onmicrosoft.com"),
        id="550 5.7.236 MOERA",
    ),
    pytest.param(
        535,
        "5.7.3 Authentication unsuccessful",
        Expected("auth", False, Reason.AUTH_FAILED, "password"),
        id="535 5.7.3 authentication unsuccessful",
    ),
    pytest.param(
        535,
        "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
        Expected("auth", False, Reason.AUTH_DISABLED, "-SmtpClientAuthenticationDisabled $false"),
        id="535 5.7.139 SMTP AUTH disabled",
    ),
    pytest.param(
        535,
        "5.7.139 Authentication unsuccessful, user is locked by your organization's "
        "security defaults policy. Contact your administrator.",
        Expected("auth", False, Reason.AUTH_DISABLED, "security defaults"),
        id="535 5.7.139 security defaults",
    ),
    pytest.param(
        530,
        "5.7.57 Client not authenticated to send mail. [AM0PR02CA0001.eurprd02.prod]",
        Expected("auth", False, Reason.AUTH_FAILED, "STARTTLS"),
        id="530 5.7.57 not authenticated",
    ),
    pytest.param(
        550,
        "5.7.30 Basic authentication is not supported for Client Submission.",
        Expected("auth", False, Reason.AUTH_DISABLED, "XOAUTH2"),
        id="550 5.7.30 basic auth off",
    ),
    pytest.param(
        550,
        "5.7.30 Basic authentication is not supported for Client Submission",
        Expected("auth", False, Reason.AUTH_DISABLED, "XOAUTH2"),
        id="550 5.7.30 basic auth off without full stop",
    ),
    pytest.param(
        504,
        "5.7.4 Unrecognized authentication type",
        Expected("auth", False, Reason.AUTH_UNSUPPORTED, "STARTTLS"),
        id="504 5.7.4 unrecognized authentication type",
    ),
    pytest.param(
        550,
        "5.7.60 SMTP; Client does not have permissions to send as this sender",
        Expected("policy", False, Reason.SEND_AS_DENIED, "Send As"),
        id="550 5.7.60 send as denied",
    ),
    pytest.param(
        550,
        "5.1.8 Access denied, bad outbound sender",
        Expected("blocked", False, Reason.BLOCKED, "Restricted entities"),
        id="550 5.1.8 restricted sender",
    ),
    pytest.param(550, "5.7.501 Access denied, spam abuse detected", SPAM_BLOCK, id="550 5.7.501"),
    pytest.param(550, "5.7.502 Access denied, banned sender", SPAM_BLOCK, id="550 5.7.502"),
    pytest.param(550, "5.7.503 Access denied, banned sender", SPAM_BLOCK, id="550 5.7.503"),
    pytest.param(
        550,
        "5.7.705 Access denied, tenant has exceeded threshold",
        Expected("blocked", False, Reason.BLOCKED, "spam thresholds"),
        id="550 5.7.705 tenant threshold",
    ),
    pytest.param(
        550,
        "5.7.708 Access denied, traffic not accepted from this IP",
        Expected("blocked", False, Reason.BLOCKED, "IP"),
        id="550 5.7.708 IP not accepted",
    ),
    pytest.param(
        550,
        "5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        Expected("blocked", False, Reason.BLOCKED, "accepted domain"),
        id="550 5.7.750 unregistered domain",
    ),
    pytest.param(
        550,
        "5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization",
        Expected("policy", False, Reason.DIRECT_SEND_REJECTED, "RejectDirectSend"),
        id="550 5.7.68 direct send",
    ),
    pytest.param(
        550,
        "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        NO_SUCH_RECIPIENT,
        id="550 5.1.10 recipient not found",
    ),
    pytest.param(
        550,
        "5.1.1 RESOLVER.ADR.ExRecipNotFound; not found",
        NO_SUCH_RECIPIENT,
        id="550 5.1.1 bad destination mailbox",
    ),
    pytest.param(
        550,
        "5.5.0 Requested action not taken: mailbox unavailable",
        NO_SUCH_RECIPIENT,
        id="550 5.5.0 mailbox unavailable",
    ),
    pytest.param(
        552,
        "5.3.4 Message size exceeds fixed maximum message size",
        Expected("size", False, None, "35 MB"),
        id="552 5.3.4 message too big",
    ),
    pytest.param(
        421,
        "4.3.2 Service not available, closing transmission channel",
        Expected("transient", True, Reason.SERVICE_UNAVAILABLE, "retry later"),
        id="421 4.x.x service not available",
    ),
    pytest.param(
        421,
        "4.4.2 Connection dropped due to SocketError",
        Expected("transient", True, Reason.SERVICE_UNAVAILABLE, "retry later"),
        id="421 4.4.2 connection dropped",
    ),
]


@pytest.mark.parametrize(("code", "message", "expected"), REFERENCE_ROWS)
def test_reference_row(code: int, message: str, expected: Expected) -> None:
    result = classify(parse_reply(code, message))
    assert (result.category, result.recoverable, result.reason) == (
        expected.category,
        expected.recoverable,
        expected.reason,
    )
    assert expected.hint_contains in result.hint


# -- where the code alone is ambiguous


@pytest.mark.parametrize(
    ("code", "message", "category", "recoverable", "reason"),
    [
        pytest.param(
            554,
            "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException",
            "permanent_mailbox",
            False,
            None,
            id="5.2.0 without SubmissionQuotaExceededException",
        ),
        pytest.param(
            554,
            "5.2.0 submissionquotaexceededexception",
            "quota",
            True,
            Reason.QUOTA_EXCEEDED,
            id="5.2.0 quota text matched case-insensitively",
        ),
        pytest.param(
            552,
            "5.2.2 Requested mail action aborted",
            "recipient",
            False,
            None,
            id="5.2.2 unexplained means mailbox full",
        ),
        pytest.param(
            552,
            "5.2.2 Storage quota exceeded",
            "recipient",
            False,
            None,
            id="5.2.2 storage quota is not submission quota",
        ),
        pytest.param(
            451,
            "4.7.499 Try again",
            "transient_security",
            True,
            None,
            id="4.7.499 below throttle range",
        ),
        pytest.param(
            451,
            "4.7.700 Try again",
            "transient_security",
            True,
            None,
            id="4.7.700 above throttle range",
        ),
        pytest.param(
            550,
            "5.7.550 Access denied",
            "permanent_security",
            False,
            None,
            id="5.7.5xx is not throttle",
        ),
        pytest.param(
            550,
            "5.7.500 Access denied",
            "permanent_security",
            False,
            None,
            id="5.7.500 below blocked range",
        ),
        pytest.param(
            550,
            "5.7.504 Access denied",
            "permanent_security",
            False,
            None,
            id="5.7.504 above blocked range",
        ),
        pytest.param(
            451,
            "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            "throttle",
            True,
            Reason.THROTTLED,
            id="4.3.2 thread limit on another 4xx",
        ),
        # Google answers 5.7.30 for a DKIM failure: not an authentication problem
        pytest.param(
            550,
            "5.7.30 This mail has been blocked because the sender is unauthenticated. "
            "Gmail requires all senders to authenticate with either SPF or DKIM.",
            "permanent_security",
            False,
            None,
            id="5.7.30 DKIM failure elsewhere is no auth failure",
        ),
        pytest.param(
            550,
            "5.7.68 Direct Send rejected",
            "policy",
            False,
            Reason.DIRECT_SEND_REJECTED,
            id="5.7.68 direct send, shorter text",
        ),
        pytest.param(
            451,
            "4.3.2 System not accepting network messages",
            "transient_system",
            True,
            None,
            id="4.3.2 without concurrency text",
        ),
        pytest.param(
            421,
            "4.7.600 Access denied, please try again later",
            "throttle",
            True,
            Reason.THROTTLED,
            id="421 in throttle range is throttle",
        ),
        pytest.param(
            421,
            "Service not available",
            "transient",
            True,
            Reason.SERVICE_UNAVAILABLE,
            id="421 without enhanced code",
        ),
        pytest.param(
            501,
            "5.5.0 Invalid mailbox syntax",
            "permanent_protocol",
            False,
            None,
            id="5.5.0 on another code is protocol",
        ),
        pytest.param(
            550,
            "5.5.0 Requested action not taken",
            "permanent_protocol",
            False,
            None,
            id="550 5.5.0 without mailbox text",
        ),
        pytest.param(
            451,
            "4.7.66 TLS 1.0 and 1.1 are not supported",
            "tls",
            False,
            Reason.TLS_VERSION,
            id="4.7.66 on another 4xx",
        ),
        pytest.param(
            550,
            "5.7.139 Authentication unsuccessful",
            "auth",
            False,
            Reason.AUTH_DISABLED,
            id="5.7.139 is not 5.7.13 or 5.7.3",
        ),
    ],
)
def test_ambiguous(
    code: int, message: str, category: str, recoverable: bool, reason: Reason | None
) -> None:
    result = classify(parse_reply(code, message))
    assert (result.category, result.recoverable, result.reason) == (category, recoverable, reason)


# -- generic RFC 3463 fallback


@pytest.mark.parametrize(
    ("code", "enhanced_code", "category", "recoverable"),
    [
        pytest.param(550, "5.1.99", "permanent_address", False, id="permanent_address"),
        pytest.param(550, "5.2.99", "permanent_mailbox", False, id="permanent_mailbox"),
        pytest.param(554, "5.3.99", "permanent_system", False, id="permanent_system"),
        pytest.param(554, "5.4.99", "permanent_network", False, id="permanent_network"),
        pytest.param(500, "5.5.99", "permanent_protocol", False, id="permanent_protocol"),
        pytest.param(554, "5.6.99", "permanent_content", False, id="permanent_content"),
        pytest.param(550, "5.7.99", "permanent_security", False, id="permanent_security"),
        pytest.param(550, "5.0.0", "permanent_other", False, id="permanent_other-x0"),
        pytest.param(550, "5.8.1", "permanent_other", False, id="permanent_other-unknown-subject"),
        pytest.param(550, "", "permanent_other", False, id="permanent_other-no-enhanced"),
        pytest.param(450, "4.1.99", "transient_address", True, id="transient_address"),
        pytest.param(452, "4.2.99", "transient_mailbox", True, id="transient_mailbox"),
        pytest.param(451, "4.3.99", "transient_system", True, id="transient_system"),
        pytest.param(451, "4.4.99", "transient_network", True, id="transient_network"),
        pytest.param(451, "4.5.99", "transient_protocol", True, id="transient_protocol"),
        pytest.param(451, "4.6.99", "transient_content", True, id="transient_content"),
        pytest.param(451, "4.7.99", "transient_security", True, id="transient_security"),
        pytest.param(451, "4.0.0", "transient_other", True, id="transient_other-x0"),
        pytest.param(451, "", "transient_other", True, id="transient_other-no-enhanced"),
        pytest.param(250, "2.1.0", "success_address", False, id="success_address"),
        pytest.param(250, "", "success_other", False, id="success_other-no-enhanced"),
        pytest.param(550, "4.1.99", "transient_address", True, id="class-from-enhanced-code"),
        pytest.param(354, "", "unknown_other", False, id="unknown_other-3xx"),
        pytest.param(0, "", "unknown_other", False, id="unknown_other-no-code"),
        pytest.param(550, "not.a.code", "permanent_other", False, id="malformed-enhanced-code"),
    ],
)
def test_fallback(code: int, enhanced_code: str, category: str, recoverable: bool) -> None:
    result = classify(Reply(code=code, enhanced_code=enhanced_code, text="whatever"))
    assert result == Classification(category, recoverable, None, "")


# -- the category set is bounded and complete


def test_categories_are_unique() -> None:
    assert len(CATEGORIES) == len(set(CATEGORIES))


def test_every_producible_category_is_listed_and_every_listed_one_is_producible() -> None:
    produced = {rule.outcome.category for rule in RULES}
    for code in range(1000):
        produced.add(classify(Reply(code=code, enhanced_code="", text="")).category)
    for klass, subject, detail in itertools.product((2, 4, 5), range(10), range(1000)):
        reply = Reply(code=klass * 100 + 50, enhanced_code=f"{klass}.{subject}.{detail}", text="")
        produced.add(classify(reply).category)
    assert produced == set(CATEGORIES)


def test_rules_know_their_hints_and_fallbacks_do_not() -> None:
    assert all(rule.outcome.hint for rule in RULES)
    assert classify(Reply(code=550, enhanced_code="5.6.99", text="")).hint == ""

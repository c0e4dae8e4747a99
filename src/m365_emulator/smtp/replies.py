"""The SMTP replies Exchange Online sends, word for word where Microsoft documents them."""

from __future__ import annotations

# Server names as Exchange Online shows them in the banner and in the final DATA reply.
FRONTEND_HOSTNAME = "XX0PR00CA0000.outlook.office365.com"
MAILBOX_SERVER = "XX0PR00MB0000.namprd00.prod.outlook.com"

BANNER_IDENT = "Microsoft ESMTP MAIL Service ready at"

AUTH_SUCCESSFUL = "235 2.7.0 Authentication successful"
AUTH_UNSUCCESSFUL = "535 5.7.3 Authentication unsuccessful"
AUTH_SMTP_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information."
)
# Basic auth for SMTP AUTH is off by default from the end of December 2026 (MC786329).
AUTH_BASIC_DISABLED = "550 5.7.30 Basic authentication is not supported for Client Submission"
AUTH_UNRECOGNIZED = "504 5.7.4 Unrecognized authentication type"
NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail"

SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
# The concurrent-connection limit (3 per mailbox). Microsoft documents the first text; the
# second is seen in the wild for the same limit. Nothing else answers 432 4.3.2: going over
# 30 messages/minute delays submission (Microsoft corrected its documentation in 2025).
CONCURRENT_CONNECTIONS = "432 4.3.2 Concurrent connections limit exceeded"
THREAD_LIMIT = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
SUBMISSION_QUOTA = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
    "process message due to a permanent exception with message [BeginDiagnosticData]Message "
    "submission quota exceeded.[EndDiagnosticData]"
)
TENANT_EXTERNAL_LIMIT = (
    "550 5.7.232 Your message can't be sent because your organization has exceeded its "
    "external recipient rate limit."
)
SERVICE_NOT_AVAILABLE = "421 4.3.2 Service not available, closing transmission channel"


def queued_reply(message_id: str) -> str:
    """The final DATA reply: `250 2.0.0 OK <id> [Hostname=...]`."""
    return f"250 2.0.0 OK {message_id} [Hostname={MAILBOX_SERVER}]"

"""Graph `sendMail` refusals reduced to the probe's bounded reason and category.

Graph's error code is text a remote server chooses: it picks a row here and is kept in the
result's detail, never in a label.
"""

from __future__ import annotations

from dataclasses import dataclass

from m365_smtp_exporter.smtp.replies import AUTH, POLICY, QUOTA, THROTTLE, TRANSIENT
from m365_smtp_exporter.smtp.result import Reason

OTHER = "permanent_other"  # one of smtp.replies.CATEGORIES


@dataclass(frozen=True, slots=True)
class GraphRefusal:
    reason: Reason
    category: str
    recoverable: bool
    hint: str


THROTTLED = GraphRefusal(
    Reason.THROTTLED,
    THROTTLE,
    True,
    "Graph throttled the mailbox (10,000 requests per 10 minutes or 4 concurrent per app and "
    "mailbox): send less often or spread probes over mailboxes",
)
SEND_AS_DENIED = GraphRefusal(
    Reason.SEND_AS_DENIED,
    POLICY,
    False,
    "the app may not send as this mailbox: check Mail.Send and its RBAC for Applications "
    "scope (New-ManagementRoleAssignment -Role 'Application Mail.Send')",
)
MAILBOX_NOT_ENABLED = GraphRefusal(
    Reason.MAILBOX_NOT_ENABLED,
    POLICY,
    False,
    "the mailbox is inactive, soft-deleted, unlicensed or on-premises: Graph reaches only "
    "licensed Exchange Online mailboxes",
)
QUOTA_EXCEEDED = GraphRefusal(
    Reason.QUOTA_EXCEEDED,
    QUOTA,
    True,
    "the mailbox hit a sending limit (10,000 recipients per rolling 24 h): wait for the "
    "window to roll",
)
ACCESS_DENIED = GraphRefusal(
    Reason.AUTH_FAILED,
    AUTH,
    False,
    "Graph refused the app: grant the application permission Mail.Send with admin consent",
)
UNAVAILABLE = GraphRefusal(
    Reason.SERVICE_UNAVAILABLE,
    TRANSIENT,
    True,
    "Graph is unavailable: retry later and check Microsoft 365 service health",
)
OTHER_REFUSAL = GraphRefusal(Reason.GRAPH_ERROR, OTHER, False, "")

_BY_CODE: dict[str, GraphRefusal] = {
    "errorsendasdenied": SEND_AS_DENIED,
    "mailboxnotenabledforrestapi": MAILBOX_NOT_ENABLED,
    "mailboxnotsupportedforrestapi": MAILBOX_NOT_ENABLED,
    "errorquotaexceeded": QUOTA_EXCEEDED,
    "errorsubmissionquotaexceeded": QUOTA_EXCEEDED,
    "errormessagesubmissionblocked": QUOTA_EXCEEDED,
    "erroraccessdenied": ACCESS_DENIED,
    "accessdenied": ACCESS_DENIED,
    "authorization_requestdenied": ACCESS_DENIED,
    "invalidauthenticationtoken": ACCESS_DENIED,
}


def classify_graph_error(status: int, code: str) -> GraphRefusal:
    """The refusal an HTTP status and Graph error code stand for; the code wins."""
    known = _BY_CODE.get(code.strip().lower())
    if known is not None:
        return known
    if status == 429:
        return THROTTLED
    if status in (401, 403):
        return ACCESS_DENIED
    if status >= 500:
        return UNAVAILABLE
    return OTHER_REFUSAL

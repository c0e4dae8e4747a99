"""Which Graph API a request goes to: the `endpoint` label and what spends the trace budget."""

from __future__ import annotations

import enum

_TRACES = "/admin/exchange/tracing/messagetraces"


class EndpointKind(enum.StrEnum):
    TRACE = "trace"  # message trace list (and $count)
    TRACE_DETAILS = "trace_details"  # messageTraces/{id}/getDetailsByRecipient(...)
    MAIL = "mail"  # users/{upn}/messages, mailFolders
    OTHER = "other"


# Microsoft's 100 requests per 5 minutes per tenant covers message trace list and detail
# calls together; mailbox calls have their own, much larger, per-mailbox limits.
BUDGETED_ENDPOINTS = frozenset({EndpointKind.TRACE, EndpointKind.TRACE_DETAILS})


def endpoint_of(path: str) -> EndpointKind:
    """Classify a request by its URL path (any API version prefix, any base path)."""
    lowered = path.lower()
    at = lowered.find(_TRACES)
    if at >= 0:
        rest = lowered[at + len(_TRACES) :]
        return EndpointKind.TRACE_DETAILS if "getdetailsbyrecipient" in rest else EndpointKind.TRACE
    if "/users/" in lowered or lowered.endswith("/users") or "/me/" in lowered:
        return EndpointKind.MAIL
    return EndpointKind.OTHER

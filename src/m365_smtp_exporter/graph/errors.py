"""Why a Graph request or a trace pull failed: one exception type per bounded `reason` label.

Messages carry status codes, Graph error codes and short service texts, never a token or a
client secret.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class FailureReason(enum.StrEnum):
    """The `outcome` of a failed trace pull (`m365_trace_pulls_total`)."""

    THROTTLED = "throttled"  # 429 left after the SDK's retries
    UNAVAILABLE = "unavailable"  # 5xx, connection refused or reset
    AUTH = "auth"  # 401/403 or no token could be obtained
    MALFORMED = "malformed"  # a 200 whose body is not a trace page
    BUDGET = "budget"  # our own request budget is spent (or blocked by Retry-After)
    HTTP_ERROR = "http_error"  # any other 4xx
    TIMEOUT = "timeout"  # a request or the whole pull took too long


class GraphRequestError(Exception):
    """A Graph request that did not produce a usable answer."""

    reason: ClassVar[FailureReason]

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GraphThrottledError(GraphRequestError):
    reason = FailureReason.THROTTLED


class GraphUnavailableError(GraphRequestError):
    reason = FailureReason.UNAVAILABLE


class GraphAuthError(GraphRequestError):
    reason = FailureReason.AUTH


class MalformedPageError(GraphRequestError):
    reason = FailureReason.MALFORMED


class ResponseTooLargeError(MalformedPageError):
    """An answer past the body size cap: abandoned, counted as malformed."""


class ForeignRequestError(MalformedPageError):
    """A request (a redirect, an `@odata.nextLink`) that left the origin or path it must
    keep: never sent, counted as malformed since the server's answer pointed there."""


class BudgetExhaustedError(GraphRequestError):
    reason = FailureReason.BUDGET


class GraphHttpError(GraphRequestError):
    reason = FailureReason.HTTP_ERROR


class GraphTimeoutError(GraphRequestError):
    reason = FailureReason.TIMEOUT


def error_for_status(status: int, message: str) -> GraphRequestError:
    """The failure a non-success HTTP status stands for."""
    if status == 429:
        return GraphThrottledError(message, status=status)
    if status in (401, 403):
        return GraphAuthError(message, status=status)
    if status >= 500:
        return GraphUnavailableError(message, status=status)
    return GraphHttpError(message, status=status)

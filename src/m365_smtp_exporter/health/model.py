"""Microsoft's service-health answers, parsed defensively into bounded values.

Everything here comes from the network: statuses and classifications are checked against
closed sets, issue ids and feature names against a closed form and a length cap, so no
answer can mint an unbounded label value. Unknown values fold into one bucket each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

EXCHANGE_ONLINE: Final = "Exchange Online"
OTHER: Final = "other"

# Graph's serviceHealthStatus enum (v1.0), plus the catch-all Graph itself uses.
STATUSES: tuple[str, ...] = (
    "serviceOperational",
    "investigating",
    "restoringService",
    "verifyingService",
    "serviceRestored",
    "postIncidentReviewPublished",
    "serviceDegradation",
    "serviceInterruption",
    "extendedRecovery",
    "falsePositive",
    "investigationSuspended",
    "resolved",
    "mitigatedExternal",
    "mitigated",
    "resolvedExternal",
    "confirmed",
    "reported",
    "unknownFutureValue",
)
_STATUS_BY_LOWER = {status.lower(): status for status in STATUSES}
CLASSIFICATIONS: tuple[str, ...] = ("incident", "advisory", OTHER)
_ISSUE_ID = re.compile(r"^[A-Z]{2,4}[0-9]{1,10}$")  # EX1234567, MO123456
_FEATURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ,&()/.'+-]{0,63}$")
_MAX_TEXT = 300


class HealthAnswerError(ValueError):
    """A 200 whose body is not the shape Graph documents."""


@dataclass(frozen=True, slots=True)
class Issue:
    id: str  # validated, or "other"
    classification: str  # incident, advisory or other
    feature: str  # validated, or "other"
    status: str  # one of STATUSES
    title: str  # for logs and the console, never a label
    start: str  # as Graph wrote it (ISO 8601), capped


def status_of(raw: object) -> str:
    if isinstance(raw, str):
        return _STATUS_BY_LOWER.get(raw.strip().lower(), "unknownFutureValue")
    return "unknownFutureValue"


def parse_page(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The `value` items and the `@odata.nextLink` of one Graph collection page."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HealthAnswerError("the answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise HealthAnswerError("the answer has no 'value' list")
    items = [item for item in document["value"] if isinstance(item, dict)]
    link = document.get("@odata.nextLink")
    return items, link if isinstance(link, str) else None


def overview_status(items: list[dict[str, Any]], service: str = EXCHANGE_ONLINE) -> str | None:
    """The service's status from `healthOverviews` items; None when it is not listed."""
    for item in items:
        if item.get("service") == service:
            return status_of(item.get("status"))
    return None


def active_issues(items: list[dict[str, Any]], service: str = EXCHANGE_ONLINE) -> list[Issue]:
    """Unresolved issues of `service`, incidents first, then newest first."""
    found = [
        _issue(item)
        for item in items
        if item.get("service") == service and item.get("isResolved") is not True
    ]
    found.sort(key=lambda issue: issue.start, reverse=True)
    found.sort(key=lambda issue: issue.classification != "incident")
    return found


def _issue(item: dict[str, Any]) -> Issue:
    raw_id, feature = item.get("id"), item.get("feature")
    classification = item.get("classification")
    return Issue(
        id=raw_id if isinstance(raw_id, str) and _ISSUE_ID.match(raw_id) else OTHER,
        classification=classification if classification in ("incident", "advisory") else OTHER,
        feature=feature.strip()
        if isinstance(feature, str) and _FEATURE.match(feature.strip())
        else OTHER,
        status=status_of(item.get("status")),
        title=_text(item.get("title")),
        start=_text(item.get("startDateTime"))[:40],
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return printable[:_MAX_TEXT]

"""Microsoft 365 service health: `admin/serviceAnnouncement/healthOverviews` and `/issues`.

Shapes as Graph's `serviceHealth` and `serviceHealthIssue` resources; the app needs
`ServiceHealth.Read.All` (here: any valid Graph token). Incidents are opened and resolved
through the control API, and a service's overview status follows its open incidents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from m365_emulator.graph.http_common import (
    API_VERSIONS,
    GraphError,
    api_version,
    bad_request,
    json_response,
    metadata_url,
    require_graph_token,
)
from m365_emulator.graph.odata import (
    ODataError,
    Value,
    evaluate,
    parse_filter,
    referenced_properties,
)
from m365_emulator.state import Clock, EmulatorState, graph_datetime

# Service ids and display names as healthOverviews lists them.
SERVICES: dict[str, str] = {
    "Exchange": "Exchange Online",
    "OSDPPlatform": "Microsoft 365 suite",
    "SharePoint": "SharePoint Online",
    "microsoftteams": "Microsoft Teams",
}
OPERATIONAL = "serviceOperational"
RESTORED = "serviceRestored"
OPEN_STATUSES = (
    "investigating",
    "serviceDegradation",
    "serviceInterruption",
    "restoringService",
    "extendedRecovery",
    "verifyingService",
)
_PAGE = 100
_Row = TypeVar("_Row")
_PREFIX = "admin/serviceAnnouncement"


@dataclass(slots=True)
class HealthIssue:
    id: str
    title: str
    service: str
    feature: str
    feature_group: str
    classification: Literal["incident", "advisory"]
    status: str
    impact_description: str
    start: float
    last_modified: float
    end: float | None = None
    posts: list[tuple[float, str]] = field(default_factory=list)

    @property
    def is_resolved(self) -> bool:
        return self.end is not None

    def to_graph(self) -> dict[str, object]:
        return {
            "startDateTime": graph_datetime(self.start),
            "endDateTime": graph_datetime(self.end) if self.end is not None else None,
            "lastModifiedDateTime": graph_datetime(self.last_modified),
            "title": self.title,
            "id": self.id,
            "impactDescription": self.impact_description,
            "classification": self.classification,
            "origin": "microsoft",
            "status": self.status,
            "service": self.service,
            "feature": self.feature,
            "featureGroup": self.feature_group,
            "isResolved": self.is_resolved,
            "highImpact": None,
            "details": [],
            "posts": [
                {
                    "createdDateTime": graph_datetime(at),
                    "postType": "regular",
                    "description": {"contentType": "html", "content": text},
                }
                for at, text in self.posts
            ],
        }


class ServiceHealth:
    """Issues of the emulated tenants' services (Microsoft's incidents are tenant-wide)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.issues: dict[str, HealthIssue] = {}
        self._next = 260_001

    def open_issue(
        self,
        *,
        title: str,
        service: str = "Exchange Online",
        feature: str = "E-Mail and calendar access",
        feature_group: str = "E-Mail and calendar access",
        classification: Literal["incident", "advisory"] = "incident",
        status: str = "serviceDegradation",
        impact_description: str = "Users may be unable to send or receive email.",
    ) -> HealthIssue:
        prefix = next((key for key, name in SERVICES.items() if name == service), "MO")
        now = self._clock()
        issue = HealthIssue(
            id=f"{prefix[:2].upper()}{self._next}",
            title=title,
            service=service,
            feature=feature,
            feature_group=feature_group,
            classification=classification,
            status=status,
            impact_description=impact_description,
            start=now,
            last_modified=now,
            posts=[(now, f"Title: {title}<br>User impact: {impact_description}")],
        )
        self._next += 1
        self.issues[issue.id] = issue
        return issue

    def resolve(self, issue_id: str) -> HealthIssue | None:
        issue = self.issues.get(issue_id)
        if issue is None:
            return None
        now = self._clock()
        issue.end = issue.last_modified = now
        issue.status = RESTORED
        issue.posts.append((now, "Final status: We've confirmed that service is restored."))
        return issue

    def status_of(self, service: str) -> str:
        """The overview status: the newest open incident's status, else operational."""
        open_incidents = [
            issue
            for issue in self.issues.values()
            if issue.service == service
            and issue.classification == "incident"
            and not issue.is_resolved
        ]
        if not open_incidents:
            return OPERATIONAL
        return max(open_incidents, key=lambda issue: issue.start).status


_ISSUE_FIELDS: dict[str, Callable[[HealthIssue], Value]] = {
    "service": lambda issue: issue.service,
    "classification": lambda issue: issue.classification,
    "status": lambda issue: issue.status,
    "isResolved": lambda issue: issue.is_resolved,
    "feature": lambda issue: issue.feature,
    "id": lambda issue: issue.id,
}
_OVERVIEW_FIELDS: dict[str, Callable[[tuple[str, str, str]], Value]] = {
    "service": lambda row: row[1],
    "id": lambda row: row[0],
    "status": lambda row: row[2],
}


class HealthEndpoints:
    def __init__(
        self, state: EmulatorState, health: ServiceHealth, *, public_base_url: Callable[[], str]
    ) -> None:
        self._state = state
        self.health = health
        self._public_base_url = public_base_url

    def _check(self, request: web.Request) -> None:
        require_graph_token(request, self._state)  # ServiceHealth.Read.All in Microsoft 365

    def routes(self) -> list[web.RouteDef]:
        routes: list[web.RouteDef] = []
        for version in API_VERSIONS:
            suffix = version.replace(".", "_")
            base = f"/{version}/{_PREFIX}"
            routes += [
                web.get(
                    f"{base}/healthOverviews", self.overviews, name=f"health.overviews.{suffix}"
                ),
                web.get(f"{base}/issues", self.list_issues, name=f"health.issues.{suffix}"),
                web.get(
                    f"{base}/issues/{{issue_id}}", self.get_issue, name=f"health.issue.{suffix}"
                ),
            ]
        return routes

    async def overviews(self, request: web.Request) -> web.Response:
        self._check(request)
        version = api_version(request)
        rows = [(key, name, self.health.status_of(name)) for key, name in SERVICES.items()]
        selected = _filtered(rows, request.query.get("$filter", ""), _OVERVIEW_FIELDS)
        return json_response(
            {
                "@odata.context": metadata_url(version, f"{_PREFIX}/healthOverviews"),
                "value": [
                    {"service": name, "status": status, "id": key} for key, name, status in selected
                ],
            }
        )

    async def list_issues(self, request: web.Request) -> web.Response:
        self._check(request)
        version = api_version(request)
        issues = sorted(self.health.issues.values(), key=lambda issue: issue.start, reverse=True)
        selected = _filtered(issues, request.query.get("$filter", ""), _ISSUE_FIELDS)
        skip = _skip(request)
        page = selected[skip : skip + _PAGE]
        body: dict[str, object] = {
            "@odata.context": metadata_url(version, f"{_PREFIX}/issues"),
        }
        if skip + _PAGE < len(selected):
            query = dict(request.query) | {"$skip": str(skip + _PAGE)}
            body["@odata.nextLink"] = (
                f"{self._public_base_url().rstrip('/')}{request.path}?{urlencode(query)}"
            )
        body["value"] = [issue.to_graph() for issue in page]
        return json_response(body)

    async def get_issue(self, request: web.Request) -> web.Response:
        self._check(request)
        version = api_version(request)
        issue = self.health.issues.get(request.match_info["issue_id"])
        if issue is None:
            raise GraphError(404, "NotFound", "The requested issue was not found.")
        context = metadata_url(version, f"{_PREFIX}/issues/$entity")
        return json_response({"@odata.context": context} | issue.to_graph())


def _filtered(
    rows: list[_Row], text: str, fields: dict[str, Callable[[_Row], Value]]
) -> list[_Row]:
    if not text:
        return rows
    try:
        expression = parse_filter(text)
        for name in referenced_properties(expression):
            if name not in fields:
                raise ODataError(f"Could not find a property named '{name}'.")
        return [row for row in rows if evaluate(expression, partial(_field, fields, row))]
    except ODataError as exc:
        raise bad_request(str(exc)) from None


def _field(fields: dict[str, Callable[[_Row], Value]], row: _Row, name: str) -> Value:
    return fields[name](row)


def _skip(request: web.Request) -> int:
    raw = request.query.get("$skip", "0")
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for $skip.")
    return int(raw)


class IncidentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="Users can't send email", min_length=1, max_length=300)
    service: str = "Exchange Online"
    feature: str = Field(default="E-Mail and calendar access", max_length=200)
    feature_group: str = Field(default="E-Mail and calendar access", max_length=200)
    classification: Literal["incident", "advisory"] = "incident"
    status: Literal[OPEN_STATUSES] = "serviceDegradation"  # type: ignore[valid-type]
    impact_description: str = Field(
        default="Users may be unable to send or receive email.", max_length=2000
    )


def health_control_routes(
    health: ServiceHealth, prefix: str = "/_emulator/health"
) -> list[web.RouteDef]:
    """Open (`POST {prefix}/issues`) and resolve (`POST {prefix}/issues/{id}/resolve`)."""

    async def open_issue(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            wanted = IncidentRequest.model_validate_json(raw if raw.strip() else b"{}")
        except ValidationError as error:
            return web.json_response(
                {
                    "error": "invalid request",
                    "details": error.errors(include_url=False, include_input=False),
                },
                status=400,
            )
        issue = health.open_issue(
            title=wanted.title,
            service=wanted.service,
            feature=wanted.feature,
            feature_group=wanted.feature_group,
            classification=wanted.classification,
            status=wanted.status,
            impact_description=wanted.impact_description,
        )
        return web.json_response(issue.to_graph(), status=201)

    async def resolve(request: web.Request) -> web.StreamResponse:
        issue = health.resolve(request.match_info["issue_id"])
        if issue is None:
            return web.json_response({"error": "no such issue"}, status=404)
        return web.json_response(issue.to_graph())

    async def listing(request: web.Request) -> web.StreamResponse:
        return web.json_response([issue.to_graph() for issue in health.issues.values()])

    return [
        web.get(f"{prefix}/issues", listing),
        web.post(f"{prefix}/issues", open_issue),
        web.post(f"{prefix}/issues/{{issue_id}}/resolve", resolve),
    ]

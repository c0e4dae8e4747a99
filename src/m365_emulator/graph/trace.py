"""Graph message trace: `admin/exchange/tracing/messageTraces` and `getDetailsByRecipient`.

Rows come newest first (then by recipient and id), like Get-MessageTraceV2, and pages are
cut by keyset: the skiptoken carries the query and the sort key of the last row served, so
rows appended while a client pages neither repeat nor shift later pages.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from xml.sax.saxutils import quoteattr

import orjson
from aiohttp import web

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
    Comparison,
    Expression,
    FunctionCall,
    Junction,
    Negation,
    ODataError,
    Value,
    conjuncts,
    edm_type,
    evaluate,
    parse_filter,
)
from m365_emulator.graph.throttle import RollingWindowLimiter
from m365_emulator.state import EmulatorState, TraceRow, graph_datetime

HOUR = 3600.0
DAY = 24 * HOUR
TRACE_CONTEXT = "admin/exchange/tracing/messageTraces"
DETAIL_CONTEXT = "Collection(microsoft.graph.exchangeMessageTraceDetail)"
_TRACE_TYPE = "microsoft.graph.exchangeMessageTrace"
_SUPPORTED_OPTIONS = frozenset({"$filter", "$top", "$skiptoken"})
_DETAILS_CALL = re.compile(r"getDetailsByRecipient\(recipientAddress='(?P<address>(?:[^']|'')*)'\)")

# Properties that support `eq` (strings) and the row values they compare with.
_EQ_PROPERTIES: dict[str, Callable[[TraceRow], str]] = {
    "id": lambda row: row.id,
    "senderAddress": lambda row: row.sender,
    "recipientAddress": lambda row: row.recipient,
    "status": lambda row: row.status,
    "messageId": lambda row: row.message_id,
    "fromIP": lambda row: row.from_ip,
    "toIP": lambda row: row.to_ip,
}
_FUNCTION_PROPERTIES: dict[str, Callable[[TraceRow], str]] = {"subject": lambda row: row.subject}


@dataclass(frozen=True, slots=True)
class TraceLimits:
    """Microsoft's documented limits (reference section 4); tests may shrink them."""

    max_window: float = 10 * DAY
    retention: float = 90 * DAY
    default_window: float = 48 * HOUR
    default_top: int = 1000
    max_top: int = 5000


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """A parsed message-trace `$filter`: the receivedDateTime bounds and the other conditions."""

    start: datetime | None
    end: datetime | None
    conditions: tuple[Expression, ...]

    def matches(self, row: TraceRow) -> bool:
        def lookup(name: str) -> Value:
            getter = _EQ_PROPERTIES.get(name) or _FUNCTION_PROPERTIES[name]
            return getter(row)

        return all(evaluate(condition, lookup) for condition in self.conditions)


def compile_trace_filter(text: str) -> TraceFilter:
    """Check a `$filter` against what the message trace API accepts; raises ODataError.

    Top-level `and` conditions apply; an `or` anywhere at the top level is dropped without an
    error, which is how the service is reported to behave.
    """
    start: datetime | None = None
    end: datetime | None = None
    conditions: list[Expression] = []
    for condition in conjuncts(parse_filter(text)):
        if isinstance(condition, Junction):  # an `or`: ignored
            continue
        if isinstance(condition, Negation):
            raise ODataError("The 'not' operator is not supported by message trace.")
        if isinstance(condition, FunctionCall):
            if condition.property not in _FUNCTION_PROPERTIES:
                raise ODataError(
                    f"The function '{condition.function}' is only supported on 'subject', "
                    f"not on '{condition.property}'."
                )
            conditions.append(condition)
            continue
        if condition.property == "receivedDateTime":
            bound = _datetime_bound(condition)
            if condition.operator == "ge":
                if start is not None:
                    raise ODataError("receivedDateTime has more than one 'ge' bound.")
                start = bound
            else:
                if end is not None:
                    raise ODataError("receivedDateTime has more than one 'le' bound.")
                end = bound
            continue
        if condition.property not in _EQ_PROPERTIES:
            raise ODataError(
                f"Could not find a property named '{condition.property}' on type '{_TRACE_TYPE}'."
            )
        if condition.operator != "eq":
            raise ODataError(
                f"The operator '{condition.operator}' is not supported on "
                f"'{condition.property}'; use 'eq'."
            )
        if not isinstance(condition.value, str):
            raise ODataError(
                f"'{condition.property}' must be compared with a quoted string, not "
                f"'{edm_type(condition.value)}'."
            )
        conditions.append(condition)
    return TraceFilter(start, end, tuple(conditions))


def _datetime_bound(condition: Comparison) -> datetime:
    if condition.operator not in ("ge", "le"):
        raise ODataError(
            f"The operator '{condition.operator}' is not supported on 'receivedDateTime'; "
            "use 'ge' and 'le'."
        )
    if not isinstance(condition.value, datetime):
        raise ODataError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'Edm.DateTimeOffset' and '{edm_type(condition.value)}' for operator kind "
            f"'{condition.operator}'. Write the timestamp unquoted, e.g. 2026-01-20T00:00:00Z."
        )
    return condition.value


def resolve_window(
    trace_filter: TraceFilter, now: float, limits: TraceLimits
) -> tuple[float, float]:
    """The receivedDateTime range to search, enforcing the service's window rules."""
    if trace_filter.start is None and trace_filter.end is None:
        return now - limits.default_window, now
    if trace_filter.start is None or trace_filter.end is None:
        raise bad_request(
            "Both 'receivedDateTime ge' and 'receivedDateTime le' must be given in $filter."
        )
    start, end = trace_filter.start.timestamp(), trace_filter.end.timestamp()
    if start > end:
        raise bad_request("The receivedDateTime start must not be after its end.")
    if end > now:
        raise bad_request("The receivedDateTime end must not be in the future.")
    if start < now - limits.retention:
        days = round(limits.retention / DAY)
        raise bad_request(f"The receivedDateTime start must be within the last {days} days.")
    if end - start > limits.max_window:
        days = round(limits.max_window / DAY)
        raise bad_request(f"The receivedDateTime range must not span more than {days} days.")
    return start, end


SortKey = tuple[float, str, str]


def _sort_key(row: TraceRow) -> SortKey:
    return (-row.received_at, row.recipient.lower(), row.id)


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """One page request: everything a skiptoken must carry to continue the listing."""

    tenant: str
    start: float
    end: float
    top: int
    filter_text: str
    after: SortKey | None = None  # sort key of the last row already served

    def to_skiptoken(self) -> str:
        document = {
            "v": 1,
            "t": self.tenant,
            "s": self.start,
            "e": self.end,
            "n": self.top,
            "f": self.filter_text,
            "a": list(self.after) if self.after else None,
        }
        return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")

    @classmethod
    def from_skiptoken(cls, token: str, tenant: str) -> TraceQuery:
        invalid = bad_request("The $skiptoken value is invalid.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            document = orjson.loads(raw)
            after = document["a"]
            query = cls(
                tenant=str(document["t"]),
                start=float(document["s"]),
                end=float(document["e"]),
                top=int(document["n"]),
                filter_text=str(document["f"]),
                after=(float(after[0]), str(after[1]), str(after[2])) if after else None,
            )
        except (ValueError, binascii.Error, KeyError, TypeError, IndexError):
            raise invalid from None
        if document.get("v") != 1 or query.tenant != tenant:
            raise invalid
        return query


class TraceEndpoints:
    """The message trace routes of one emulated Graph service."""

    def __init__(
        self,
        state: EmulatorState,
        limiter: RollingWindowLimiter,
        *,
        public_base_url: Callable[[], str],
        limits: TraceLimits,
    ) -> None:
        self._state = state
        self._limiter = limiter
        self._public_base_url = public_base_url
        self._limits = limits

    def routes(self) -> list[web.RouteDef]:
        routes: list[web.RouteDef] = []
        for version in API_VERSIONS:
            suffix = version.replace(".", "_")  # route names must be identifiers
            base = f"/{version}/{TRACE_CONTEXT}"
            routes += [
                web.get(base, self.list_traces, name=f"trace.list.{suffix}"),
                web.get(base + "/{trace_id}/{call}", self.details, name=f"trace.details.{suffix}"),
            ]
        return routes

    def _admit(self, request: web.Request) -> str:
        """The caller's tenant, after authentication and the per-tenant rate limit."""
        tenant = require_graph_token(request, self._state).tenant
        retry_after = self._limiter.admit(tenant)
        if retry_after is not None:
            raise GraphError(
                429,
                "TooManyRequests",
                f"Too many requests. Message trace allows {self._limiter.limit} requests per "
                f"{round(self._limiter.window / 60)} minutes per tenant; retry after "
                f"{retry_after} seconds.",
                {"Retry-After": str(retry_after)},
            )
        return tenant

    async def list_traces(self, request: web.Request) -> web.Response:
        version = api_version(request)
        tenant = self._admit(request)
        query, trace_filter = self._query(request, tenant)
        # Rows after the cursor are no newer than the last row served.
        newest = query.end if query.after is None else min(query.end, -query.after[0])
        rows = [
            row
            for row in self._state.trace_rows(tenant, query.start, newest)
            if trace_filter.matches(row)
        ]
        rows.sort(key=_sort_key)
        if query.after is not None:
            after = query.after
            rows = [row for row in rows if _sort_key(row) > after]
        page = rows[: query.top]
        body: dict[str, object] = {"@odata.context": metadata_url(version, TRACE_CONTEXT)}
        if len(rows) > query.top:
            following = replace(query, after=_sort_key(page[-1]))
            body["@odata.nextLink"] = (
                f"{self._public_base_url().rstrip('/')}/{version}/{TRACE_CONTEXT}"
                f"?$skiptoken={following.to_skiptoken()}"
            )
        evolvable = wants_unknown_enum_members(request)
        body["value"] = [_row_document(row, version, evolvable) for row in page]
        return json_response(body)

    def _query(self, request: web.Request, tenant: str) -> tuple[TraceQuery, TraceFilter]:
        for option in request.query:
            if option.startswith("$") and option not in _SUPPORTED_OPTIONS:
                raise bad_request(f"The query option '{option}' is not supported here.")
        skiptoken = request.query.get("$skiptoken")
        if skiptoken is not None:  # the token carries the whole query
            query = TraceQuery.from_skiptoken(skiptoken, tenant)
            return query, _compile(query.filter_text)
        top = _top(request.query.get("$top"), self._limits)
        filter_text = request.query.get("$filter", "")
        trace_filter = _compile(filter_text)
        start, end = resolve_window(trace_filter, self._state.clock(), self._limits)
        return TraceQuery(tenant, start, end, top, filter_text), trace_filter

    async def details(self, request: web.Request) -> web.Response:
        version = api_version(request)
        call = _DETAILS_CALL.fullmatch(request.match_info["call"])
        if call is None:
            raise bad_request(f"Resource not found for the segment '{request.match_info['call']}'.")
        tenant = self._admit(request)
        trace_id = request.match_info["trace_id"]
        recipient = call["address"].replace("''", "'").lower()
        now = self._state.clock()
        rows = [
            row
            for row in self._state.all_trace_rows()
            if row.id == trace_id and row.tenant == tenant and row.visible_at <= now
        ]
        if not rows:
            raise GraphError(
                404, "ResourceNotFound", f"The message trace '{trace_id}' was not found."
            )
        details = [
            detail
            for row in rows
            if row.recipient.lower() == recipient
            for detail in self._detail_documents(row)
        ]
        return json_response(
            {"@odata.context": metadata_url(version, DETAIL_CONTEXT), "value": details}
        )

    def _detail_documents(self, row: TraceRow) -> list[dict[str, object]]:
        tenant = self._state.tenants.get(row.tenant)
        internal = tenant is not None and tenant.is_internal(row.recipient)
        data = (
            f"<root><MEP Name={quoteattr('ClientIP')} String={quoteattr(row.from_ip)}/>"
            f"<MEP Name={quoteattr('ServerIP')} String={quoteattr(row.to_ip)}/></root>"
        )
        return [
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{row.id}/{row.recipient}/{index}")),
                "messageId": row.message_id,
                "dateTime": graph_datetime(row.received_at + index),
                "event": event,
                "action": action,
                "description": description,
                "data": data,
            }
            for index, (event, action, description) in enumerate(_events(row, internal))
        ]


def _events(row: TraceRow, internal: bool) -> list[tuple[str, str, str]]:
    """(event, action, description) steps a row of this status goes through."""
    received = ("Receive", "", "Message received by: EMULATOR01.prod.outlook.com")
    status = row.status.lower()
    if status == "delivered" and internal:
        return [received, ("Deliver", "", "The message was successfully delivered.")]
    if status == "delivered":
        domain = row.recipient.rsplit("@", 1)[-1]
        description = f"Message sent to mx.{domain} at {row.to_ip or '0.0.0.0'} using TLS1.2."  # noqa: S104
        return [received, ("Send external", "", description)]
    steps: dict[str, tuple[str, str, str]] = {
        "pending": ("Defer", "", "Reason: 451 4.4.0 Message delayed; the service will retry."),
        "failed": (
            "Fail",
            "",
            "Reason: [{LED=550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
            "Recipient not found by SMTP address lookup}]",
        ),
        "quarantined": ("Quarantine", "", "The message was quarantined."),
        "filteredasspam": (
            "Deliver",
            "MoveToJmf",
            "The message was delivered to the Junk Email folder.",
        ),
        "expanded": ("Expand", "", "The distribution group was expanded."),
    }
    step = steps.get(status)
    return [received, step] if step else [received]


# Members Graph added after the `unknownFutureValue` sentinel of exchangeMessageTraceStatus:
# a client that did not opt in gets the sentinel instead (Graph's "evolvable enums").
_EVOLVABLE_STATUSES = frozenset({"recalled"})
UNKNOWN_FUTURE_VALUE = "unknownFutureValue"
INCLUDE_UNKNOWN_ENUM_MEMBERS = "include-unknown-enum-members"


def wants_unknown_enum_members(request: web.Request) -> bool:
    """Whether a `Prefer` header (any of them; preferences comma-separated, with or without
    parameters, any case) asks for `include-unknown-enum-members`."""
    for header in request.headers.getall("Prefer", ()):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if token == INCLUDE_UNKNOWN_ENUM_MEMBERS:
                return True
    return False


def _row_document(row: TraceRow, version: str, evolvable: bool) -> dict[str, object]:
    document = row.to_graph()
    status = row.status
    if status.lower() in _EVOLVABLE_STATUSES and not evolvable:
        status = UNKNOWN_FUTURE_VALUE
        document["status"] = status
    if version == "beta":  # beta capitalises status values, e.g. "Delivered"
        document["status"] = status[:1].upper() + status[1:]
    return document


def _compile(filter_text: str) -> TraceFilter:
    if not filter_text:
        return TraceFilter(None, None, ())
    try:
        return compile_trace_filter(filter_text)
    except ODataError as exc:
        raise bad_request(str(exc)) from None


def _top(raw: str | None, limits: TraceLimits) -> int:
    if raw is None:
        return limits.default_top
    try:
        top = int(raw)
    except ValueError:
        top = 0
    if not 1 <= top <= limits.max_top:
        raise bad_request(
            f"Invalid value '{raw}' for $top: it must be an integer from 1 to {limits.max_top}."
        )
    return top

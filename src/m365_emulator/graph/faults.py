"""Failures the Graph side of the emulator injects on request, and the counts of what it did.

Tests and the demo arm faults through the Python API or the HTTP control routes; the Graph
application takes one armed fault per matching request. Counters are the ground truth a test
compares the exporter's own metrics against.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from m365_emulator.rest import BadRequestError, json_response, parse_body, resource


class GraphFault(StrEnum):
    UNAVAILABLE = "unavailable"  # 503 with Retry-After
    EXPIRED_TOKEN = "expired_token"  # 401; at the token endpoint: expired client secret
    MALFORMED_JSON = "malformed_json"  # 200 with the real body cut in half
    THROTTLED = "throttled"  # 429 with Retry-After


class EndpointKind(StrEnum):
    TOKEN = "token"  # Entra ID token and discovery endpoints
    TRACE = "trace"  # message trace list and details
    MAIL = "mail"  # users/{upn}/messages and mailFolders
    HEALTH = "health"  # admin/serviceAnnouncement (service health)


@dataclass(frozen=True, slots=True)
class InjectedFault:
    fault: GraphFault
    retry_after: int  # seconds, for UNAVAILABLE and THROTTLED


@dataclass(slots=True)
class _Armed:
    fault: GraphFault
    remaining: int
    endpoint: EndpointKind | None  # None: any endpoint
    retry_after: int

    def describe(self) -> dict[str, object]:
        return {
            "fault": self.fault.value,
            "remaining": self.remaining,
            "endpoint": self.endpoint.value if self.endpoint else None,
            "retry_after": self.retry_after,
        }


@dataclass(slots=True)
class _Delay:
    seconds: float
    remaining: int | None  # None: until reset
    endpoint: EndpointKind | None

    def describe(self) -> dict[str, object]:
        return {
            "seconds": self.seconds,
            "remaining": self.remaining,
            "endpoint": self.endpoint.value if self.endpoint else None,
        }


class GraphFaults:
    """Armed faults and delays, consumed first-armed-first by matching requests."""

    def __init__(self, *, default_retry_after: int = 1) -> None:
        self.default_retry_after = default_retry_after
        self._armed: list[_Armed] = []
        self._delays: list[_Delay] = []
        self._injected: Counter[str] = Counter()

    def inject(
        self,
        fault: GraphFault | str,
        count: int = 1,
        *,
        endpoint: EndpointKind | str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next `count` requests to `endpoint` (any endpoint if None) fail with `fault`."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self._armed.append(
            _Armed(
                GraphFault(fault),
                count,
                _endpoint(endpoint),
                self.default_retry_after if retry_after is None else retry_after,
            )
        )

    def slow_down(
        self,
        seconds: float,
        count: int | None = None,
        *,
        endpoint: EndpointKind | str | None = None,
    ) -> None:
        """Delay the next `count` answers (all answers until reset if None) by `seconds`."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        self._delays.append(_Delay(seconds, count, _endpoint(endpoint)))

    def reset(self) -> None:
        """Disarm every fault and delay; counters keep counting."""
        self.disarm_faults()
        self.disarm_delays()

    def disarm_faults(self) -> None:
        self._armed.clear()

    def disarm_delays(self) -> None:
        self._delays.clear()

    def reset_counters(self) -> None:
        self._injected.clear()

    def take_fault(self, endpoint: EndpointKind) -> InjectedFault | None:
        """The fault this request must answer with, if one is armed for its endpoint."""
        for armed in self._armed:
            if armed.endpoint in (None, endpoint):
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
                self._injected[f"{endpoint.value}.{armed.fault.value}"] += 1
                return InjectedFault(armed.fault, armed.retry_after)
        return None

    def take_delay(self, endpoint: EndpointKind) -> float:
        """Seconds to hold this request back (0 when no delay is armed for its endpoint)."""
        for delay in self._delays:
            if delay.endpoint in (None, endpoint):
                if delay.remaining is not None:
                    delay.remaining -= 1
                    if delay.remaining == 0:
                        self._delays.remove(delay)
                self._injected[f"{endpoint.value}.delayed"] += 1
                return delay.seconds
        return 0.0

    def injected(self) -> dict[str, int]:
        """How many faults were served, keyed `endpoint.fault` (e.g. `trace.unavailable`)."""
        return dict(self._injected)

    def snapshot(self) -> dict[str, object]:
        return {
            "armed": [armed.describe() for armed in self._armed],
            "delays": [delay.describe() for delay in self._delays],
            "injected": self.injected(),
        }


class GraphTraffic:
    """Answers the Graph application gave, keyed `endpoint.status` (e.g. `trace.429`)."""

    def __init__(self) -> None:
        self._responses: Counter[str] = Counter()

    def record(self, endpoint: EndpointKind, status: int) -> None:
        self._responses[f"{endpoint.value}.{status}"] += 1

    def count(self, endpoint: EndpointKind, status: int) -> int:
        return self._responses[f"{endpoint.value}.{status}"]

    def responses(self) -> dict[str, int]:
        return dict(self._responses)

    def reset(self) -> None:
        self._responses.clear()


def _endpoint(value: EndpointKind | str | None) -> EndpointKind | None:
    return None if value is None else EndpointKind(value)


def graph_control_routes(
    faults: GraphFaults,
    traffic: GraphTraffic,
    *,
    prefix: str = "/_emulator/graph",
) -> list[web.RouteDef]:
    """HTTP control API for the Graph side, the same shape as the SMTP side's.

    - `GET    {prefix}/faults`  armed faults, delays, injected counts and response counts
    - `PUT    {prefix}/faults`  `{"faults": [{"fault": "throttled", "count": 2, "endpoint":
      "trace", "retry_after": 5}], "delays": [{"seconds": 1.5, "count": 3, "endpoint":
      "mail"}]}`; each list given replaces what is armed, a list left out is kept
    - `DELETE {prefix}/faults`  disarms everything; `?counters=true` also zeroes the counts
    Every answer is the fault document; bad input gets 400 `{"error": "..."}` naming the field.
    """
    prefix = prefix.rstrip("/")

    def document() -> web.Response:
        return json_response(faults.snapshot() | {"responses": traffic.responses()})

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return document()

    async def put_faults(request: web.Request) -> web.StreamResponse:
        update = await parse_body(request, _FaultsUpdate)
        if update.faults is not None:
            faults.disarm_faults()
            for order in update.faults:
                faults.inject(
                    order.fault, order.count, endpoint=order.endpoint, retry_after=order.retry_after
                )
        if update.delays is not None:
            faults.disarm_delays()
            for delay in update.delays:
                faults.slow_down(delay.seconds, delay.count, endpoint=delay.endpoint)
        return document()

    async def delete_faults(request: web.Request) -> web.StreamResponse:
        counters = request.query.get("counters", "false").lower()
        if counters not in ("true", "false"):
            raise BadRequestError("counters: must be true or false")
        faults.reset()
        if counters == "true":
            faults.reset_counters()
            traffic.reset()
        return document()

    return [
        resource(
            f"{prefix}/faults",
            {"GET": get_faults, "PUT": put_faults, "DELETE": delete_faults},
            expected_body={"PUT": _PUT_EXAMPLE, "DELETE": "no body; ?counters=true also zeroes"},
        )
    ]


class _FaultOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fault: GraphFault
    count: int = Field(default=1, ge=1)
    endpoint: EndpointKind | None = None
    retry_after: int | None = Field(default=None, ge=0, le=86_400)


class _DelayOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=3600)
    count: int | None = Field(default=None, ge=1)
    endpoint: EndpointKind | None = None


class _FaultsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faults: list[_FaultOrder] | None = Field(default=None, max_length=100)
    delays: list[_DelayOrder] | None = Field(default=None, max_length=100)


_PUT_EXAMPLE = {
    "faults": [
        {
            "fault": " | ".join(fault.value for fault in GraphFault),
            "count": 1,
            "endpoint": " | ".join(kind.value for kind in EndpointKind) + " (omit for any)",
            "retry_after": "seconds (optional)",
        }
    ],
    "delays": [{"seconds": 1.5, "count": "n (omit: until reset)", "endpoint": "mail"}],
}

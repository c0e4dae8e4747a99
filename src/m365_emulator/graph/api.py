"""The emulated Microsoft Graph and Entra ID token service as one aiohttp application.

Routes: Entra ID token and discovery (`/{tenant}/...`), message trace and mailbox routes
under `/v1.0` and `/beta`. A middleware gives every Graph answer its request ids and error
shape, applies injected faults and delays, and counts answers per endpoint kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from m365_emulator.graph.faults import (
    EndpointKind,
    GraphFault,
    GraphFaults,
    GraphTraffic,
    InjectedFault,
)
from m365_emulator.graph.http_common import (
    API_VERSIONS,
    JSON_CONTENT_TYPE,
    GraphError,
    RequestIds,
    bad_request,
    expired_token_error,
    graph_error_response,
)
from m365_emulator.graph.mail import MailEndpoints
from m365_emulator.graph.throttle import RollingWindowLimiter
from m365_emulator.graph.token import (
    TokenEndpointError,
    aadsts_error_response,
    expired_secret_error,
    token_routes,
)
from m365_emulator.graph.trace import TraceEndpoints, TraceLimits
from m365_emulator.state import EmulatorState

GRAPH_FAULTS = web.AppKey("graph_faults", GraphFaults)
GRAPH_TRAFFIC = web.AppKey("graph_traffic", GraphTraffic)
TRACE_LIMITER = web.AppKey("trace_limiter", RollingWindowLimiter)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GraphSettings:
    token_lifetime: int = 3599  # seconds, like Entra ID's app tokens
    trace_requests_per_window: int = 100  # per tenant, list and detail calls together
    trace_throttle_window: float = 300.0
    trace_limits: TraceLimits = field(default_factory=TraceLimits)


def create_graph_app(
    state: EmulatorState,
    faults: GraphFaults | None = None,
    *,
    public_base_url: Callable[[], str],
    authority_url: Callable[[], str] | None = None,
    traffic: GraphTraffic | None = None,
    settings: GraphSettings | None = None,
    sleep: Sleep = asyncio.sleep,
) -> web.Application:
    """The Graph + token application.

    `public_base_url()` is how clients reach this application (absolute `@odata.nextLink`s
    are built from it); `authority_url()` is the https base of the token routes for the
    discovery document (defaults to `public_base_url`). Faults and traffic counters are
    reachable as `app[GRAPH_FAULTS]` and `app[GRAPH_TRAFFIC]`.
    """
    settings = settings or GraphSettings()
    faults = faults or GraphFaults()
    traffic = traffic or GraphTraffic()
    limiter = RollingWindowLimiter(
        settings.trace_requests_per_window, settings.trace_throttle_window, state.clock
    )
    app = web.Application(middlewares=[_graph_middleware(state, faults, traffic, sleep)])
    app[GRAPH_FAULTS] = faults
    app[GRAPH_TRAFFIC] = traffic
    app[TRACE_LIMITER] = limiter
    app.add_routes(
        token_routes(
            state,
            authority_url=authority_url or public_base_url,
            token_lifetime=settings.token_lifetime,
        )
    )
    trace = TraceEndpoints(
        state, limiter, public_base_url=public_base_url, limits=settings.trace_limits
    )
    app.add_routes(trace.routes())
    app.add_routes(MailEndpoints(state, public_base_url=public_base_url).routes())
    return app


def _graph_middleware(
    state: EmulatorState, faults: GraphFaults, traffic: GraphTraffic, sleep: Sleep
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = _endpoint_kind(request)
        if endpoint is None:
            if _is_unknown_graph_path(request):
                segment = request.path.rstrip("/").rsplit("/", 1)[-1]
                error = bad_request(f"Resource not found for the segment '{segment}'.")
                return graph_error_response(error, RequestIds.for_request(request), state.clock())
            return await handler(request)

        ids = RequestIds.for_request(request)
        delay = faults.take_delay(endpoint)
        if delay > 0:
            await sleep(delay)
        injected = faults.take_fault(endpoint)
        try:
            if injected is not None and injected.fault is not GraphFault.MALFORMED_JSON:
                raise _fault_error(injected, endpoint)
            response = await handler(request)
        except GraphError as error:
            response = graph_error_response(error, ids, state.clock())
        except TokenEndpointError as error:
            response = aadsts_error_response(
                error,
                now=state.clock(),
                correlation_id=request.headers.get("client-request-id"),
            )
        if injected is not None and injected.fault is GraphFault.MALFORMED_JSON:
            response = _truncated(response)
        if endpoint is not EndpointKind.TOKEN:
            response.headers.update(ids.headers())
        traffic.record(endpoint, response.status)
        return response

    return middleware


def _endpoint_kind(request: web.Request) -> EndpointKind | None:
    name = request.match_info.route.name
    if name is None:
        return None
    return EndpointKind(name.split(".", 1)[0])


def _is_unknown_graph_path(request: web.Request) -> bool:
    not_found = isinstance(request.match_info.http_exception, web.HTTPNotFound)
    return not_found and request.path.split("/", 2)[1] in API_VERSIONS


def _fault_error(injected: InjectedFault, endpoint: EndpointKind) -> Exception:
    retry_after = {"Retry-After": str(injected.retry_after)}
    if endpoint is EndpointKind.TOKEN:
        if injected.fault is GraphFault.EXPIRED_TOKEN:
            return expired_secret_error()
        if injected.fault is GraphFault.THROTTLED:
            return TokenEndpointError(
                429,
                "temporarily_unavailable",
                90055,
                "TenantThrottlingError: There are too many incoming requests.",
                retry_after,
            )
        return TokenEndpointError(
            503,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            retry_after,
        )
    if injected.fault is GraphFault.EXPIRED_TOKEN:
        return expired_token_error()
    if injected.fault is GraphFault.THROTTLED:
        if endpoint is EndpointKind.MAIL:
            message = "Application is over its MailboxConcurrency limit."
            return GraphError(429, "ApplicationThrottled", message, retry_after)
        return GraphError(429, "TooManyRequests", "Too many requests.", retry_after)
    return GraphError(
        503,
        "ServiceUnavailable",
        "The service is temporarily unavailable. Please retry later.",
        retry_after,
    )


def _truncated(response: web.StreamResponse) -> web.Response:
    """A 200 whose JSON body stops halfway, as a dropped connection behind a proxy leaves it."""
    body = response.body if isinstance(response, web.Response) else None
    raw = bytes(body) if isinstance(body, bytes | bytearray) else b""
    if len(raw) < 4:
        raw = b'{"value": [{"id": "'
    return web.Response(
        body=raw[: len(raw) // 2], status=200, headers={"Content-Type": JSON_CONTENT_TYPE}
    )

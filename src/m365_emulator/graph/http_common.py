"""What every emulated Graph answer shares: JSON encoding, error shapes, bearer-token checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiohttp import web

from m365_emulator.state import EmulatorState, IssuedToken

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_METADATA = "https://graph.microsoft.com/{version}/$metadata#"
API_VERSIONS = ("v1.0", "beta")

# What graph.microsoft.com sends; kiota only looks at the media type.
JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


@dataclass(frozen=True, slots=True)
class RequestIds:
    """Graph's per-request correlation ids (echoed in headers and error bodies)."""

    request_id: str
    client_request_id: str

    @classmethod
    def for_request(cls, request: web.Request) -> RequestIds:
        request_id = str(uuid.uuid4())
        return cls(request_id, request.headers.get("client-request-id", request_id))

    def headers(self) -> dict[str, str]:
        return {"request-id": self.request_id, "client-request-id": self.client_request_id}


@dataclass
class GraphError(Exception):
    """An answer in Graph's error shape: `{"error": {"code", "message", "innerError"}}`."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def graph_error_response(error: GraphError, ids: RequestIds, now: float) -> web.Response:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {
                # Graph writes this one timestamp without a zone designator.
                "date": datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": ids.request_id,
                "client-request-id": ids.client_request_id,
            },
        }
    }
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", _WWW_AUTHENTICATE)
    return json_response(body, status=error.status, headers=headers)


def json_response(
    payload: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"Content-Type": JSON_CONTENT_TYPE} | (headers or {})
    return web.Response(body=orjson.dumps(payload), status=status, headers=all_headers)


def api_version(request: web.Request) -> str:
    """`v1.0` or `beta`: the first path segment of a Graph request."""
    return request.path.split("/", 2)[1]


def metadata_url(version: str, fragment: str) -> str:
    """An `@odata.context` value as graph.microsoft.com writes it."""
    return GRAPH_METADATA.format(version=version) + fragment


def require_graph_token(request: web.Request, state: EmulatorState) -> IssuedToken:
    """The grant behind the request's bearer token, or a 401 as Graph words it."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid_token("Access token is empty.")
    grant = state.tokens.get(token)
    if grant is None:
        raise _invalid_token("Access token validation failure.")
    if grant.expires_at <= state.clock():
        raise _invalid_token("Lifetime validation failed, the token is expired.")
    if state.check_token(token, GRAPH_RESOURCE) is None:
        raise _invalid_token("Invalid audience.")
    return grant


def expired_token_error() -> GraphError:
    return _invalid_token("Lifetime validation failed, the token is expired.")


def _invalid_token(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message)

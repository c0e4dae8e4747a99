"""Entra ID's client-credentials token endpoint and OpenID discovery document.

Answers as login.microsoftonline.com does: a token document on success, otherwise the
AADSTS error document (`error`, `error_description`, `error_codes`, `timestamp`,
`trace_id`, `correlation_id`, `error_uri`). Tokens are opaque strings recorded in the
emulator state with the requested scope, which the Graph API and the SMTP server check.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from m365_emulator.state import EmulatorState, Tenant

SMTP_SCOPE = "https://outlook.office365.com/.default"
# Resources whose `/.default` scope the emulated tenant grants.
KNOWN_RESOURCES = frozenset(
    {"https://graph.microsoft.com", "https://outlook.office365.com", "https://outlook.office.com"}
)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_TOKEN_HEADERS = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass
class TokenEndpointError(Exception):
    """An Entra ID error answer; `description` never contains the submitted credential."""

    status: int
    error: str
    code: int
    description: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.error}: AADSTS{self.code}"


def aadsts_error_response(
    error: TokenEndpointError, *, now: float, correlation_id: str | None = None
) -> web.Response:
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    timestamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error.error,
        "error_description": (
            f"AADSTS{error.code}: {error.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [error.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={error.code}",
    }
    return web.json_response(body, status=error.status, headers=_TOKEN_HEADERS | error.headers)


def expired_secret_error() -> TokenEndpointError:
    return TokenEndpointError(
        401,
        "invalid_client",
        7000222,
        "The provided client secret keys for app are expired. Visit the Azure portal to "
        "create new keys for your app or consider using certificate credentials for added "
        "security.",
    )


def token_routes(
    state: EmulatorState,
    *,
    authority_url: Callable[[], str],
    token_lifetime: int = 3599,
) -> list[web.RouteDef]:
    """`POST /{tenant}/oauth2/v2.0/token` and `GET /{tenant}/v2.0/.well-known/openid-configuration`.

    `authority_url()` is the public base URL of these routes (https: azure-identity refuses
    plain-http authorities), used in the discovery document.
    """

    async def token(request: web.Request) -> web.Response:
        tenant = _tenant(state, request.match_info["tenant"])
        form = {
            key: value for key, value in (await request.post()).items() if isinstance(value, str)
        }
        client_id = _client_credentials_client(form, tenant)
        scope = _single_default_scope(form, tenant)
        access_token = state.issue_token(tenant.name, client_id, scope, token_lifetime)
        body = {
            "token_type": "Bearer",
            "expires_in": token_lifetime,
            "ext_expires_in": token_lifetime,
            "access_token": access_token,
        }
        return web.json_response(body, headers=_TOKEN_HEADERS)

    async def openid_configuration(request: web.Request) -> web.Response:
        tenant = _tenant(state, request.match_info["tenant"])
        return web.json_response(_discovery_document(authority_url().rstrip("/"), tenant))

    return [
        web.post("/{tenant}/oauth2/v2.0/token", token, name="token.issue"),
        web.get(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            openid_configuration,
            name="token.discovery",
        ),
    ]


def _tenant(state: EmulatorState, tenant_id: str) -> Tenant:
    tenant = state.tenant_by_id(tenant_id)
    if tenant is None:
        raise TokenEndpointError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant "
            "ID and are signing into the correct cloud.",
        )
    return tenant


def _client_credentials_client(form: dict[str, str], tenant: Tenant) -> str:
    """The authenticated client id of a client-credentials request."""
    grant_type = _required(form, "grant_type")
    if grant_type != "client_credentials":
        raise TokenEndpointError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    client_id = _required(form, "client_id")
    if client_id != tenant.client_id:
        raise TokenEndpointError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.name}'. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You "
            "may have sent your authentication request to the wrong tenant.",
        )
    secret = form.get("client_secret")
    assertion = form.get("client_assertion")
    if secret:
        if not hmac.compare_digest(secret.encode(), tenant.client_secret.encode()):
            raise TokenEndpointError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
            )
    elif assertion:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise TokenEndpointError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: "
                f"'client_assertion_type' with the value '{CLIENT_ASSERTION_TYPE}'.",
            )
        _check_assertion(assertion, client_id)
    else:
        raise TokenEndpointError(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.",
        )
    return client_id


def _check_assertion(assertion: str, client_id: str) -> None:
    """A well-formed JWT whose subject is the client; the signature is not checked."""
    malformed = TokenEndpointError(
        401, "invalid_client", 50027, "JWT token is invalid or malformed."
    )
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        raise malformed
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error):
        raise malformed from None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(claims, dict):
        raise malformed
    if claims.get("sub") != client_id or claims.get("iss") != client_id:
        raise TokenEndpointError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _single_default_scope(form: dict[str, str], tenant: Tenant) -> str:
    raw = _required(form, "scope")
    scopes = [scope for scope in raw.split() if scope not in _RESERVED_SCOPES]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise TokenEndpointError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {raw} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    resource = scopes[0].removesuffix("/.default")
    if resource not in KNOWN_RESOURCES:
        raise TokenEndpointError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{tenant.name}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You "
            "might have sent your authentication request to the wrong tenant.",
        )
    return scopes[0]


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise TokenEndpointError(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
        )
    return value


def _discovery_document(base: str, tenant: Tenant) -> dict[str, object]:
    tenant_base = f"{base}/{tenant.tenant_id}"
    return {
        "token_endpoint": f"{tenant_base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{tenant_base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{tenant_base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{tenant_base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{tenant_base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{tenant_base}/oauth2/v2.0/logout",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }

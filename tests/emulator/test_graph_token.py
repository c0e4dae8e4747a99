"""The emulated Entra ID token endpoint, by hand and through azure-identity."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import trustme
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.graph.token import CLIENT_ASSERTION_TYPE, SMTP_SCOPE
from m365_emulator.state import EmulatorState
from tests.support.clock import ManualClock
from tests.support.graph import CONTOSO, FABRIKAM, GraphService

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _form(tenant_secret: str = CONTOSO.client_secret, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": CONTOSO.client_id,
        "client_secret": tenant_secret,
        "scope": GRAPH_SCOPE,
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value}


def _jwt(claims: dict[str, object]) -> str:
    def segment(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{segment({'alg': 'RS256', 'typ': 'JWT'})}.{segment(claims)}.c2lnbmF0dXJl"


async def _post_token(
    session: aiohttp.ClientSession,
    service: GraphService,
    form: dict[str, str],
    tenant: str = CONTOSO.tenant_id,
) -> tuple[int, dict[str, object]]:
    response = await session.post(
        f"{service.base_url}/{tenant}/oauth2/v2.0/token",
        data=form,
        headers={"client-request-id": "7b0f0c57-6f9e-4f73-9e0b-1b1c6c1a2d3e"},
    )
    return response.status, await response.json()


@pytest.mark.parametrize("scope", [GRAPH_SCOPE, SMTP_SCOPE])
async def test_client_secret_gets_a_token_for_the_scope(
    session: aiohttp.ClientSession,
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    scope: str,
) -> None:
    status, document = await _post_token(session, service, _form(scope=scope))

    assert status == 200
    assert document.keys() == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert document["token_type"] == "Bearer"
    assert document["expires_in"] == document["ext_expires_in"] == 3599
    grant = graph_state.tokens[str(document["access_token"])]
    assert (grant.tenant, grant.client_id, grant.scope) == (CONTOSO.name, CONTOSO.client_id, scope)
    assert grant.expires_at == clock() + 3599


async def test_tenant_may_be_named_by_its_name(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    status, _ = await _post_token(session, service, _form(), tenant=CONTOSO.name)

    assert status == 200


async def test_a_well_formed_client_assertion_is_accepted(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    claims = {"aud": "x", "iss": CONTOSO.client_id, "sub": CONTOSO.client_id, "exp": 1}
    form = _form(
        "",
        client_assertion=_jwt(claims),
        client_assertion_type=CLIENT_ASSERTION_TYPE,
    )

    status, document = await _post_token(session, service, form)

    assert status == 200 and document["access_token"]


_HOME = CONTOSO.tenant_id
_OTHER_CLIENT_JWT = _jwt({"iss": "other", "sub": "other"})
_OWN_JWT = _jwt({"iss": CONTOSO.client_id, "sub": CONTOSO.client_id})
_ERROR_CASES = [
    ("secret", _form("wrong-secret"), _HOME, 401, "invalid_client", 7000215),
    ("tenant", _form(), "no-such-tenant", 400, "invalid_tenant", 90002),
    ("other-tenant", _form(), FABRIKAM.tenant_id, 400, "unauthorized_client", 700016),
    ("no-grant", _form(grant_type=""), _HOME, 400, "invalid_request", 900144),
    ("grant", _form(grant_type="password"), _HOME, 400, "unsupported_grant_type", 70003),
    ("no-credential", _form(""), _HOME, 401, "invalid_client", 7000216),
    ("no-scope", _form(scope=""), _HOME, 400, "invalid_request", 900144),
    ("not-default", _form(scope="Mail.Read"), _HOME, 400, "invalid_scope", 1002012),
    (
        "two-resources",
        _form(scope=f"{GRAPH_SCOPE} {SMTP_SCOPE}"),
        _HOME, 400, "invalid_scope", 1002012,
    ),
    (
        "resource",
        _form(scope="https://vault.azure.net/.default"),
        _HOME, 400, "invalid_resource", 500011,
    ),
    (
        "malformed-assertion",
        _form("", client_assertion="abc.def", client_assertion_type=CLIENT_ASSERTION_TYPE),
        _HOME, 401, "invalid_client", 50027,
    ),
    (
        "assertion-of-other-client",
        _form("", client_assertion=_OTHER_CLIENT_JWT, client_assertion_type=CLIENT_ASSERTION_TYPE),
        _HOME, 401, "invalid_client", 700021,
    ),
    (
        "assertion-without-type",
        _form("", client_assertion=_OWN_JWT),
        _HOME, 400, "invalid_request", 900144,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("form", "tenant", "status", "error", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in _ERROR_CASES],
)
async def test_errors_have_entra_id_shape(
    session: aiohttp.ClientSession,
    service: GraphService,
    graph_state: EmulatorState,
    form: dict[str, str],
    tenant: str,
    status: int,
    error: str,
    code: int,
) -> None:
    answered, document = await _post_token(session, service, form, tenant)

    assert (answered, document["error"], document["error_codes"]) == (status, error, [code])
    description = str(document["error_description"])
    assert description.startswith(f"AADSTS{code}: ")
    assert document["timestamp"] == "2026-01-21 12:53:20Z"  # the emulated clock
    assert UUID.match(str(document["trace_id"]))
    assert document["correlation_id"] == "7b0f0c57-6f9e-4f73-9e0b-1b1c6c1a2d3e"
    assert document["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    assert "wrong-secret" not in description and CONTOSO.client_secret not in description
    assert graph_state.tokens == {}


async def test_discovery_document_points_at_this_token_endpoint(
    session: aiohttp.ClientSession, service: GraphService
) -> None:
    response = await session.get(
        f"{service.base_url}/{CONTOSO.name}/v2.0/.well-known/openid-configuration"
    )
    document = await response.json()

    assert response.status == 200
    base = f"{service.base_url}/{CONTOSO.tenant_id}"
    assert document["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert document["issuer"] == f"{base}/v2.0"
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]


# -- azure-identity


async def test_azure_identity_secret_credential_over_tls(
    tls_service: GraphService, ca_file: Path, graph_state: EmulatorState
) -> None:
    async with ClientSecretCredential(
        CONTOSO.tenant_id,
        CONTOSO.client_id,
        CONTOSO.client_secret,
        authority=tls_service.base_url.removeprefix("https://"),
        connection_verify=str(ca_file),
    ) as credential:
        token = await credential.get_token(SMTP_SCOPE)

    assert graph_state.tokens[token.token].scope == SMTP_SCOPE
    # azure-identity computes expiry from its own (real) clock plus expires_in
    assert token.expires_on - datetime.now(tz=UTC).timestamp() == pytest.approx(3599, abs=60)


async def test_azure_identity_certificate_credential_over_tls(
    tls_service: GraphService, ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    certificate = tmp_path / "app.pem"
    leaf = ca.issue_cert("probe-app.contoso.com", key_type=trustme.KeyType.RSA)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certificate))
    async with CertificateCredential(
        CONTOSO.tenant_id,
        CONTOSO.client_id,
        certificate_path=str(certificate),
        authority=tls_service.base_url.removeprefix("https://"),
        connection_verify=str(ca_file),
    ) as credential:
        token = await credential.get_token(GRAPH_SCOPE)

    assert tls_service.state.check_token(token.token, "https://graph.microsoft.com")


async def test_azure_identity_sync_credential_uses_the_discovery_document(
    tls_service: GraphService, ca_file: Path
) -> None:
    """The synchronous credential goes through MSAL, which reads openid-configuration first."""
    credential = SyncClientSecretCredential(
        CONTOSO.tenant_id,
        CONTOSO.client_id,
        CONTOSO.client_secret,
        authority=tls_service.base_url.removeprefix("https://"),
        connection_verify=str(ca_file),
        disable_instance_discovery=True,  # otherwise MSAL asks login.microsoftonline.com
    )
    with credential:
        token = await asyncio.to_thread(credential.get_token, GRAPH_SCOPE)

    assert tls_service.state.check_token(token.token, "https://graph.microsoft.com")
    assert tls_service.traffic.responses() == {"token.200": 2}  # discovery, then token


async def test_azure_identity_reports_a_wrong_secret_without_echoing_it(
    tls_service: GraphService, ca_file: Path
) -> None:
    async with ClientSecretCredential(
        CONTOSO.tenant_id,
        CONTOSO.client_id,
        "a-wrong-secret",
        authority=tls_service.base_url.removeprefix("https://"),
        connection_verify=str(ca_file),
    ) as credential:
        with pytest.raises(ClientAuthenticationError) as raised:
            await credential.get_token(GRAPH_SCOPE)

    assert "AADSTS7000215" in str(raised.value)
    assert "a-wrong-secret" not in str(raised.value)


def test_azure_identity_refuses_a_plain_http_authority() -> None:
    with pytest.raises(ValueError, match="TLS protected"):
        ClientSecretCredential(
            CONTOSO.tenant_id,
            CONTOSO.client_id,
            CONTOSO.client_secret,
            authority="http://127.0.0.1:8080",
        )

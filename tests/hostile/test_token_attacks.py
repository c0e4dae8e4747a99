"""A token endpoint that echoes what it was sent: the client secret must not come back
out through the error the exporter shows (console, `probe` stderr, logs)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from m365_smtp_exporter.auth import AzureTokenProvider, TokenError
from m365_smtp_exporter.config import TenantConfig

from .promises import assert_no_secret, assert_safe_text

SECRET = "canary~client~secret~66120"


async def echoing_token_endpoint(request: web.Request) -> web.Response:
    form = await request.post()
    sent = str(form.get("client_secret", ""))
    client_id = str(form.get("client_id", ""))
    encoded = base64.b64encode(f"{client_id}:{sent}".encode()).decode()
    return web.json_response(
        {
            "error": "invalid_client",
            "error_description": (
                f"AADSTS7000215: Invalid client secret provided: '{sent}' ({encoded}) "
                "\x1b]0;owned\x07 Trace ID: 1"
            ),
            "error_codes": [7000215],
        },
        status=401,
    )


@pytest.mark.parametrize("tenant_id", ["contoso"])
async def test_an_echoed_client_secret_never_shows(tmp_path: Path, tenant_id: str) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    app = web.Application()
    app.router.add_post("/{tenant}/oauth2/v2.0/token", echoing_token_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tenant = TenantConfig(
        tenant_id=tenant_id,
        client_id="app-id",
        client_secret=SECRET,
        authority=f"https://127.0.0.1:{port}",
        ca_file=tmp_path / "ca.pem",
    )
    provider = AzureTokenProvider(tenant)
    try:
        with pytest.raises(TokenError) as raised:
            await provider.get_token("https://outlook.office365.com/.default")
    finally:
        await provider.close()
        await runner.cleanup()
    shown = str(raised.value)
    assert "AADSTS7000215" in shown  # the useful part stays
    assert_no_secret(shown, SECRET)
    assert_safe_text(shown)

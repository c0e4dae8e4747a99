"""The emulated Graph service on a real port, a small world of its own, and token helpers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import httpx
import trustme
from aiohttp import web

from m365_emulator.graph.api import (
    GRAPH_FAULTS,
    GRAPH_TRAFFIC,
    GraphSettings,
    Sleep,
    create_graph_app,
)
from m365_emulator.graph.faults import GraphFaults, GraphTraffic, graph_control_routes
from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import Clock, EmulatorState, Mailbox, Tenant
from m365_smtp_exporter.graph.client import GraphClient

CONTOSO = Tenant(
    name="contoso",
    tenant_id="2f6a8b3c-1d4e-4f5a-9b6c-7d8e9f0a1b2c",
    client_id="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    client_secret="contoso-client-secret-value",
    accepted_domains=["contoso.com"],
)
FABRIKAM = Tenant(
    name="fabrikam",
    tenant_id="9c8b7a6d-5e4f-4a3b-2c1d-0f9e8d7c6b5a",
    client_id="f0e1d2c3-b4a5-4968-8776-655443322110",
    client_secret="fabrikam-client-secret-value",
    accepted_domains=["fabrikam.com"],
)
PROBE = "probe@contoso.com"
FABRIKAM_USER = "user@fabrikam.com"
CONTROL_PREFIX = "/_emulator/graph"


def new_state(clock: Clock) -> EmulatorState:
    state = EmulatorState(clock)
    state.add_tenant(CONTOSO)
    state.add_tenant(FABRIKAM)
    state.add_mailbox(Mailbox(PROBE, CONTOSO.name))
    state.add_mailbox(Mailbox(FABRIKAM_USER, FABRIKAM.name))
    return state


@dataclass
class GraphService:
    """An emulated Graph service listening on 127.0.0.1."""

    base_url: str
    state: EmulatorState
    faults: GraphFaults
    traffic: GraphTraffic

    @property
    def control_url(self) -> str:
        return self.base_url + CONTROL_PREFIX


@asynccontextmanager
async def graph_service(
    state: EmulatorState,
    *,
    settings: GraphSettings | None = None,
    tls: trustme.CA | None = None,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[GraphService]:
    """Serve the Graph application (over TLS signed by `tls` if given) on a free port."""
    base_urls: list[str] = []
    app = create_graph_app(
        state, public_base_url=lambda: base_urls[0], settings=settings, sleep=sleep
    )
    app.add_routes(graph_control_routes(app[GRAPH_FAULTS], app[GRAPH_TRAFFIC]))
    ssl_context = None
    if tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.issue_cert("127.0.0.1").configure_cert(ssl_context)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        base_urls.append(f"{'https' if tls else 'http'}://127.0.0.1:{port}")
        yield GraphService(base_urls[0], state, app[GRAPH_FAULTS], app[GRAPH_TRAFFIC])
    finally:
        await runner.cleanup()


async def fetch_token(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    tenant: Tenant = CONTOSO,
    scope: str = GRAPH_SCOPE,
) -> str:
    """A token from the emulated token endpoint (client secret flow)."""
    response = await session.post(
        f"{base_url}/{tenant.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
            "scope": scope,
        },
    )
    response.raise_for_status()
    document = await response.json()
    return str(document["access_token"])


class EmulatorTokens:
    """A TokenProvider minting a fresh emulator token per call (no real token endpoint)."""

    def __init__(self, state: EmulatorState, lifetime: float = 3599) -> None:
        self._state = state
        self._lifetime = lifetime
        self.issued: list[str] = []

    async def get_token(self, scope: str) -> str:
        token = self._state.issue_token(CONTOSO.name, CONTOSO.client_id, scope, self._lifetime)
        self.issued.append(token)
        return token

    async def close(self) -> None:
        return None


class HookTransport(httpx.AsyncBaseTransport):
    """A real HTTP transport that calls `before` with each request first (to arm faults at
    an exact request)."""

    def __init__(self, before: Callable[[httpx.Request], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._before = before

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._before(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


ClientFactory = Callable[..., GraphClient]

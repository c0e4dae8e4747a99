"""A running emulated Graph service and a small world of its own for the Graph tests."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
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
from m365_emulator.state import (
    Clock,
    EmulatorState,
    Mailbox,
    StoredMessage,
    Tenant,
    TraceRow,
)

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


def trace_row(
    received_at: float,
    *,
    tenant: str = CONTOSO.name,
    sender: str = "sender@contoso.com",
    recipient: str = "someone@example.net",
    status: str = "delivered",
    subject: str = "weekly report",
    message_id: str | None = None,
    visible_at: float | None = None,
    row_id: str | None = None,
) -> TraceRow:
    external = not recipient.endswith("@contoso.com")
    return TraceRow(
        id=row_id or str(uuid.uuid4()),
        tenant=tenant,
        sender=sender,
        recipient=recipient,
        message_id=message_id or f"<{uuid.uuid4()}@contoso.com>",
        received_at=received_at,
        subject=subject,
        size=4321,
        from_ip="203.0.113.7",
        to_ip="198.51.100.25" if external else "",
        status=status,
        visible_at=received_at if visible_at is None else visible_at,
    )


def stored_message(
    received_at: float,
    *,
    folder: str = "inbox",
    subject: str = "probe 1",
    internet_message_id: str | None = None,
    message_id: str | None = None,
) -> StoredMessage:
    internet_message_id = internet_message_id or f"<{uuid.uuid4()}@probe-host>"
    return StoredMessage(
        id=message_id or f"AAMkAD{uuid.uuid4().hex}=",
        internet_message_id=internet_message_id,
        subject=subject,
        sender="Probe Sender <sender@contoso.com>",
        received_at=received_at,
        sent_at=received_at - 2,
        folder=folder,
        headers=[
            ("From", "Probe Sender <sender@contoso.com>"),
            ("To", "Probe <probe@contoso.com>, second@contoso.com"),
            ("Subject", subject),
            ("Message-ID", internet_message_id),
            ("Authentication-Results", "spf=pass smtp.mailfrom=contoso.com; dkim=pass"),
        ],
        body=f"body of {subject}",
    )


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

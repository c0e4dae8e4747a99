"""A running emulator (all send paths) and the exporter's clients for it, through real sockets:
fixtures for tests/probes and tests/health, and the probe builders their tests share."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.service import DEMO_HVE_ACCOUNT, Emulator
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.world import CONTOSO_CLIENT_ID, DEMO_PASSWORD
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient

OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
INBOX = "probe-inbox@contoso.com"
HVE_ACCOUNT = DEMO_HVE_ACCOUNT
PASSWORD = DEMO_PASSWORD


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    running = Emulator(delivery=DeliveryBehaviour(delay_seconds=0.0, trace_lag_seconds=0.0))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def control(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the emulator's control API (its HTTPS, trusting its CA)."""
    connector = aiohttp.TCPConnector(ssl=_ssl(emulator))
    async with aiohttp.ClientSession(emulator.http_url, connector=connector) as session:
        yield session


def _ssl(emulator: Emulator) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(emulator.ca_file))


def outlook_token(emulator: Emulator, client_id: str = CONTOSO_CLIENT_ID) -> StaticTokenProvider:
    return StaticTokenProvider(emulator.state.issue_token("contoso", client_id, OUTLOOK_SCOPE))


@pytest.fixture
async def graph(emulator: Emulator) -> AsyncIterator[GraphClient]:
    token = emulator.state.issue_token("contoso", CONTOSO_CLIENT_ID, GRAPH_SCOPE)
    client = GraphClient(
        "contoso",
        base_url=emulator.graph_base_url,
        scope=GRAPH_SCOPE,
        tokens=StaticTokenProvider(token),
        budget=RequestBudget(),
        ca_file=emulator.ca_file,
    )
    async with client:
        yield client


def probe(emulator: Emulator, kind: str, **overrides: Any) -> ProbeConfig:
    """A probe of `kind` aimed at the emulator's listener for it."""
    fields: dict[str, Any] = {
        "name": f"{kind}-probe",
        "kind": kind,
        "host": "127.0.0.1",
        "ca_file": emulator.ca_file,
        "mail_from": "probe@contoso.com",
        "rcpt_to": [INBOX],
        "interval": 60,
        "timeout": 5,
    }
    if kind in ("smtp", "basic_auth_check"):
        fields["port"] = emulator.smtp_port
        fields["auth"] = {
            "mechanism": "login",
            "username": "probe@contoso.com",
            "password": PASSWORD,
        }
    elif kind == "hve":
        fields["port"] = emulator.hve_port
        fields["mail_from"] = HVE_ACCOUNT
        fields["auth"] = {"mechanism": "login", "username": HVE_ACCOUNT, "password": PASSWORD}
    elif kind == "direct_send":
        fields["port"] = emulator.mx_port
    elif kind == "graph_sendmail":
        fields["tenant"] = "contoso"
        del fields["host"], fields["ca_file"]
    fields.update(overrides)
    return ProbeConfig.model_validate(fields)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose accept queue is full, so new SYNs are dropped (a connect timeout), the way
    a firewall that drops outbound port 25 looks from here."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; later connects hang
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()

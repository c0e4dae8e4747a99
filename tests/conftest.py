"""Fixtures shared by every test package: a manual clock, the emulated Graph service on a
real port (plain, or HTTPS with its CA), tokens and Graph clients on it; and the Hypothesis
profiles.

Helpers that tests import live in `tests/support/`; no test imports a conftest."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from hypothesis import settings

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from tests.support.clock import ManualClock
from tests.support.examples import BASE_EXAMPLES
from tests.support.graph import (
    CONTOSO,
    ClientFactory,
    EmulatorTokens,
    GraphService,
    fetch_token,
    graph_service,
    new_state,
)

# `dev` (the local default) tries a quarter of Hypothesis' usual examples: a broken property
# fails within them, and the search for rarer cases is CI's job. `ci` tries twice the usual
# count (eight times dev's), with no per-example deadline on a shared runner, and prints the
# blob that replays a failure. HYPOTHESIS_PROFILE names one; CI=true picks `ci`. Tests that
# set their own max_examples scale it with `tests.support.examples.examples()`.
settings.register_profile("dev", max_examples=BASE_EXAMPLES // 4)
settings.register_profile("ci", max_examples=BASE_EXAMPLES * 2, deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev"
)
settings.load_profile(PROFILE)


def pytest_report_header() -> str:
    return f"hypothesis profile: {PROFILE} (max_examples={settings().max_examples})"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def graph_state(clock: ManualClock) -> EmulatorState:
    return new_state(clock)


@pytest.fixture
async def service(graph_state: EmulatorState) -> AsyncIterator[GraphService]:
    """The emulator's Graph application (token endpoint included) on 127.0.0.1:<free port>."""
    async with graph_service(graph_state) as running:
        yield running


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA as a PEM file, for clients that take a path."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_service(graph_state: EmulatorState, ca: trustme.CA) -> AsyncIterator[GraphService]:
    """The same Graph application over HTTPS, its certificate signed by `ca`."""
    async with graph_service(graph_state, tls=ca) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def token(session: aiohttp.ClientSession, service: GraphService) -> str:
    """A Graph token from the emulated token endpoint (client secret flow)."""
    return await fetch_token(session, service.base_url)


@pytest.fixture
def tokens(graph_state: EmulatorState) -> EmulatorTokens:
    return EmulatorTokens(graph_state)


@pytest.fixture
async def make_client(
    service: GraphService, tokens: EmulatorTokens
) -> AsyncIterator[ClientFactory]:
    """GraphClients on the emulator (v1.0 unless `version`, no SDK retries unless
    `max_retries`), closed after the test."""
    made: list[GraphClient] = []

    def make(
        *,
        budget: RequestBudget | None = None,
        version: str = "v1.0",
        max_retries: int = 0,
        **options: Any,
    ) -> GraphClient:
        options.setdefault("tokens", tokens)
        options.setdefault("base_url", f"{service.base_url}/{version}")
        client = GraphClient(
            CONTOSO.name,
            scope=GRAPH_SCOPE,
            budget=budget or RequestBudget(limit=80, clock=time.monotonic),
            max_retries=max_retries,
            **options,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()

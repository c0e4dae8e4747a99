"""Fixtures for delivery tracking: the emulated Graph service, clients and a tracker on them.

The emulator and the tracker share one manual clock, so look-up times, deadlines and
`receivedDateTime` are exact and no test waits for wall time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import EmulatorState, StoredMessage
from m365_smtp_exporter.config import DeliveryConfig, ProbeConfig
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.smtp.result import ProbeResult
from tests.emulator.conftest import ManualClock
from tests.emulator.graph_fixtures import CONTOSO, PROBE, GraphService, graph_service, new_state
from tests.graph.conftest import EmulatorTokens
from tests.support.prom import value

TENANT = CONTOSO.name
MAILBOX = PROBE
TIMEOUT = 60.0
POLL = 10.0
PASSING_AUTH = (
    "spf=pass (sender IP is 203.0.113.7) smtp.mailfrom=contoso.com; dkim=pass (signature was "
    "verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;"
    "compauth=pass reason=100"
)


def probe_config(
    name: str = "submission", *, delivery: bool = True, cleanup: bool = True, **settings: Any
) -> ProbeConfig:
    return ProbeConfig(
        name=name,
        tenant=TENANT,
        host="smtp.office365.com",
        mail_from="sender@contoso.com",
        rcpt_to=[MAILBOX],
        delivery=(
            DeliveryConfig(
                mailbox=MAILBOX,
                timeout=settings.pop("timeout", TIMEOUT),
                poll_interval=settings.pop("poll_interval", POLL),
                cleanup=cleanup,
            )
            if delivery
            else None
        ),
        **settings,
    )


def sent(probe: ProbeConfig, at: float, *, success: bool = True) -> ProbeResult:
    """A probe result whose SMTP transaction ended at `at`, with a fresh Message-ID."""
    return ProbeResult(
        probe=probe.name,
        target=probe.target,
        started_at=at - 1.25,
        duration=1.25,
        success=success,
        message_id=f"<{uuid.uuid4()}@probe.contoso.com>" if success else "",
    )


def deliver(
    state: EmulatorState,
    message_id: str,
    received_at: float,
    *,
    folder: str = "inbox",
    auth: str | None = PASSING_AUTH,
    mailbox: str = MAILBOX,
) -> StoredMessage:
    """Put a probe mail into the emulated mailbox as Exchange would have delivered it."""
    headers = [("Message-ID", message_id), ("Subject", "m365-smtp-exporter probe")]
    if auth is not None:
        headers.insert(0, ("Authentication-Results", auth))
    message = StoredMessage(
        id=f"AAMkAD{uuid.uuid4().hex}=",
        internet_message_id=message_id,
        subject="m365-smtp-exporter probe",
        sender="sender@contoso.com",
        received_at=received_at,
        sent_at=received_at - 1,
        folder=folder,
        headers=headers,
        body="probe",
    )
    box = state.mailbox(mailbox)
    assert box is not None
    box.messages.append(message)
    return message


def exposition(tracker: DeliveryTracker) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(tracker)
    return generate_latest(registry)


def metric(tracker: DeliveryTracker, name: str, **labels: str) -> float | None:
    return value(exposition(tracker), name, **labels)


def outcomes(tracker: DeliveryTracker, probe: str = "submission") -> dict[str, float | None]:
    text = exposition(tracker)
    return {
        outcome: value(text, "m365_delivery_outcomes_total", probe=probe, outcome=outcome)
        for outcome in ("delivered", "junk", "lost", "late")
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def graph_state(clock: ManualClock) -> EmulatorState:
    return new_state(clock)


@pytest.fixture
async def service(graph_state: EmulatorState) -> AsyncIterator[GraphService]:
    async with graph_service(graph_state) as running:
        yield running


ClientFactory = Callable[..., GraphClient]


@pytest.fixture
async def make_client(
    service: GraphService, graph_state: EmulatorState
) -> AsyncIterator[ClientFactory]:
    """GraphClients on the emulator without SDK retries, closed after the test."""
    made: list[GraphClient] = []

    def make(*, budget: RequestBudget | None = None, **options: Any) -> GraphClient:
        client = GraphClient(
            TENANT,
            base_url=f"{service.base_url}/v1.0",
            scope=GRAPH_SCOPE,
            tokens=EmulatorTokens(graph_state),
            budget=budget or RequestBudget(limit=80, clock=time.monotonic),
            max_retries=0,
            **options,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> GraphClient:
    return make_client()


TrackerFactory = Callable[..., DeliveryTracker]


@pytest.fixture
async def make_tracker(client: GraphClient, clock: ManualClock) -> AsyncIterator[TrackerFactory]:
    """Trackers on the emulator client and the manual clock, closed after the test."""
    made: list[DeliveryTracker] = []

    def make(probes: list[ProbeConfig] | None = None, **options: Any) -> DeliveryTracker:
        options.setdefault("clock", clock)
        clients = options.pop("clients", {TENANT: client})
        tracker = DeliveryTracker(clients, probes or [probe_config()], **options)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        await tracker.close()

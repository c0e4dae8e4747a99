"""Fixtures for delivery tracking: a tracker on the emulated Graph service.

The emulator and the tracker share one manual clock (the root `clock` fixture), so look-up
times, deadlines and `receivedDateTime` are exact and no test waits for wall time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.graph.client import GraphClient
from tests.support.clock import ManualClock
from tests.support.delivery import TENANT, TrackerFactory, probe_config
from tests.support.graph import ClientFactory


@pytest.fixture
async def client(make_client: ClientFactory) -> GraphClient:
    return make_client()


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

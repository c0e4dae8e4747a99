"""A factory for trace pullers on the emulated Graph service (clients: the root conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from m365_smtp_exporter.config import TraceConfig
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.trace import GraphTracePages, TracePuller
from tests.support.clock import ManualClock
from tests.support.trace import DOMAINS, PullerFactory, Sink


@pytest.fixture
def make_puller(clock: ManualClock) -> PullerFactory:
    def make(client: GraphClient, sink: Sink, **settings: Any) -> TracePuller:
        options = {
            key: settings.pop(key)
            for key in ("on_change", "end_margin", "max_window")
            if key in settings
        }
        options.setdefault("end_margin", 0.0)
        return TracePuller(
            client.tenant,
            GraphTracePages(client, DOMAINS),
            sink,
            settings=TraceConfig(**settings),
            clock=clock,
            **options,
        )

    return make

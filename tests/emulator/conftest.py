"""Fixtures for the emulator tests: the demo world and a running SMTP emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from m365_emulator.control import control_routes
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.smtp.server import SmtpEmulator, SmtpSettings
from m365_emulator.state import EmulatorState
from m365_emulator.world import default_world, populate
from tests.support.clock import ManualClock
from tests.support.smtp_emulator import EmulatorFactory


@pytest.fixture
def state(clock: ManualClock) -> EmulatorState:
    state = EmulatorState(clock)
    populate(state, default_world())
    return state


@pytest.fixture
async def make_emulator(state: EmulatorState, tmp_path: Path) -> AsyncIterator[EmulatorFactory]:
    started: list[SmtpEmulator] = []

    async def make(
        settings: SmtpSettings | None = None, delivery: DeliveryBehaviour | None = None
    ) -> SmtpEmulator:
        emulator = SmtpEmulator(
            state,
            settings=settings,
            delivery=delivery or DeliveryBehaviour(delay_seconds=0.01, trace_lag_seconds=300),
            tls_dir=tmp_path / f"tls{len(started)}",
        )
        await emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        await emulator.stop()


@pytest.fixture
async def emulator(make_emulator: EmulatorFactory) -> SmtpEmulator:
    return await make_emulator()


@pytest.fixture
async def control_url(emulator: SmtpEmulator) -> AsyncIterator[str]:
    """Base URL of a real HTTP server serving the emulator's control routes."""
    app = web.Application()
    app.add_routes(control_routes(emulator))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/_emulator/smtp"
    await runner.cleanup()

"""Fixtures for the emulator tests: a manual clock, the demo world, a running SMTP emulator."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp import web

from m365_emulator.control import control_routes
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.smtp.server import SmtpEmulator, SmtpSettings
from m365_emulator.state import EmulatorState
from m365_emulator.world import DEMO_PASSWORD, default_world, populate

START = 1_769_000_000.0  # 2026-01-21, a fixed emulated "now"
PASSWORD = DEMO_PASSWORD


class ManualClock:
    """Emulated wall time that moves only when a test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> EmulatorState:
    state = EmulatorState(clock)
    populate(state, default_world())
    return state


EmulatorFactory = Callable[..., Coroutine[Any, Any, SmtpEmulator]]


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


def client_context(emulator: SmtpEmulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emulator.ca_file))


def smtp_client(
    emulator: SmtpEmulator, *, start_tls: bool = True, timeout: float = 10.0
) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=emulator.port,
        start_tls=start_tls,
        tls_context=client_context(emulator),
        local_hostname="probe-host",
        timeout=timeout,
    )


async def connected(emulator: SmtpEmulator) -> aiosmtplib.SMTP:
    """A client past STARTTLS and the EHLO that must follow it."""
    client = smtp_client(emulator)
    await client.connect()
    await client.ehlo()
    return client


async def logged_in(
    emulator: SmtpEmulator, user: str = "probe@contoso.com", password: str = PASSWORD
) -> aiosmtplib.SMTP:
    client = await connected(emulator)
    await client.login(user, password)
    return client


def message(sender: str, recipients: list[str], subject: str = "probe") -> bytes:
    return (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@probe-host>\r\n\r\nbody of {subject}\r\n"
    ).encode()


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

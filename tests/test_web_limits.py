"""Slowloris and connection floods: /metrics keeps answering, idle half-requests are closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.web import WebLimits
from tests.support.poll import eventually


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    running = Exporter(
        Config(),
        listen_address="127.0.0.1:0",
        web_limits=WebLimits(header_timeout=1.0, max_connections=250),
    )
    await running.start()
    yield running
    await running.stop()


async def half_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A slowloris client: a request line and one header, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    return reader, writer


async def scrape(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        await response.read()
        return response.status


async def closed_by_server(reader: asyncio.StreamReader, deadline: float) -> bool:
    try:
        async with asyncio.timeout(max(0.0, deadline - asyncio.get_running_loop().time())):
            while await reader.read(4096):
                pass  # an error answer may come before the close
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_half_open_connections_are_closed_and_metrics_keeps_answering(
    exporter: Exporter,
) -> None:
    port = exporter.bound_port
    assert port is not None
    clients = [await half_open(port) for _ in range(200)]
    try:
        assert await asyncio.wait_for(scrape(port), 5) == 200
        deadline = asyncio.get_running_loop().time() + 10.0
        closed = await asyncio.gather(*(closed_by_server(r, deadline) for r, _ in clients))
        assert all(closed), f"{closed.count(False)} half-open connections still open"
        assert await asyncio.wait_for(scrape(port), 5) == 200
    finally:
        for _, writer in clients:
            writer.close()


async def test_connections_past_the_cap_are_closed_at_once() -> None:
    exporter = Exporter(
        Config(),
        listen_address="127.0.0.1:0",
        web_limits=WebLimits(header_timeout=30.0, max_connections=20),
    )
    await exporter.start()
    port = exporter.bound_port
    assert port is not None
    clients = [await half_open(port) for _ in range(20)]
    try:
        reader, writer = await half_open(port)  # the 21st
        deadline = asyncio.get_running_loop().time() + 5.0
        assert await closed_by_server(reader, deadline)
        writer.close()
        for _, held in clients[:5]:
            held.close()
            await held.wait_closed()

        # room again once some went away
        answered = await eventually(
            lambda: scrape(port), timeout=5, ignoring=(aiohttp.ClientError,)
        )
        assert answered == 200
    finally:
        for _, held in clients:
            held.close()
        await exporter.stop()

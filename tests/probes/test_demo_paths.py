"""The demo shows every send path, a Basic-auth check and Microsoft's injected incident."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from m365_smtp_exporter.demo import Demo
from tests.support.prom import value

NEW_PATHS = ("submission-session", "hve", "direct-send", "graph-sendmail", "basic-auth-check")


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    running = Demo(listen_address="127.0.0.1:0", work_dir=tmp_path, traffic=False)
    await running.start()
    yield running
    await running.stop()


async def scrape(port: int | None) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


async def test_every_path_of_the_demo_succeeds_and_is_exported(demo: Demo) -> None:
    exporter = demo.exporter
    assert exporter is not None
    for name in NEW_PATHS:
        probe = exporter.config.probe(name)
        assert probe is not None, name
        result = await exporter.run_probe(probe)
        assert result.success, f"{name}: {result.detail}"
    assert await exporter.scheduler.run_now("health:contoso")
    text = await scrape(exporter.bound_port)
    for name in NEW_PATHS:
        assert value(text, "m365_smtp_probe_success", probe=name) == 1.0, name
    assert value(text, "m365_smtp_probe_auth_info", probe="hve", mechanism="xoauth2") == 1.0
    assert value(text, "m365_smtp_probe_auth_info", probe="direct-send", mechanism="none") == 1.0
    assert (
        value(text, "m365_smtp_probe_auth_info", probe="campaign-mailbox", mechanism="login") == 1.0
    )
    assert value(text, "m365_smtp_basic_auth_accepted", tenant="contoso") == 1.0
    [incident] = demo.emulator.health.issues.values()
    assert value(text, "m365_service_health_active_issues", id=incident.id) == 1.0
    assert (
        value(text, "m365_service_health_status", tenant="contoso", status="serviceDegradation")
        == 1.0
    )

"""`demo`: emulator + exporter in one process, reachable over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from m365_smtp_exporter.demo import Demo
from tests.support.poll import eventually
from tests.support.prom import promtool_check_metrics, value

SRC = Path(__file__).parent.parent / "src" / "m365_smtp_exporter"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    running = Demo(listen_address="127.0.0.1:0", work_dir=tmp_path, traffic=False)
    await running.start()
    yield running
    await running.stop()


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


@pytest.mark.slow
async def test_demo_probes_report_success_and_microsoft_rejections(demo: Demo) -> None:
    assert demo.exporter is not None and demo.exporter.bound_port is not None
    port = demo.exporter.bound_port
    wanted = {
        ("m365_smtp_probe_success", "submission"): 1.0,  # XOAUTH2 via the token endpoint
        ("m365_smtp_probe_success", "fabrikam-submission"): 1.0,
        ("m365_smtp_probe_success", "smtp-auth-disabled"): 0.0,
    }
    seen: dict[tuple[str, str], float | None] = {}

    async def all_wanted() -> str:
        text = await scrape(port)
        seen.update({key: value(text, key[0], probe=key[1]) for key in wanted})
        return text if seen == wanted else ""

    text = await eventually(all_wanted, timeout=30, interval=0.2, message=lambda: str(seen))
    assert value(
        text,
        "m365_smtp_replies_total",
        probe="smtp-auth-disabled",
        code="535",
        enhanced_code="5.7.139",
        category="auth",
    )
    assert value(text, "m365_smtp_probe_phase_seconds", probe="submission", phase="auth")
    assert promtool_check_metrics(text.encode()) == ""
    # the emulator received and delivered the probe mail
    inbox = demo.emulator.state.mailbox("probe-inbox@contoso.com")
    assert inbox is not None
    await demo.emulator.smtp.delivery.wait_idle()
    assert any("m365probe" in message.internet_message_id for message in inbox.messages)

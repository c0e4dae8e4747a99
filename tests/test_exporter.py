"""The exporter end to end: config -> scheduled probe -> /metrics, reload, failure and recovery."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from m365_smtp_exporter.app import GIL_SWITCH_INTERVAL, Exporter, parse_listen_address
from m365_smtp_exporter.config import Config, load_config
from m365_smtp_exporter.logs import Redactor, configure_logging
from tests.support.poll import eventually
from tests.support.prom import promtool_check_metrics, value
from tests.support.smtpd import SubmissionServer, submission_server

CANARY = "canary-Pa55w0rd-7f3e9c"


def config_text(port: int, ca_file: Path, interval: str = "1s") -> str:
    return f"""
probes:
  - name: local
    host: 127.0.0.1
    port: {port}
    ca_file: {ca_file}
    auth: {{mechanism: login, username: probe@example.test, password: "{CANARY}"}}
    mail_from: probe@example.test
    rcpt_to: [inbox@example.test]
    interval: {interval}
    timeout: 1s
    jitter: 0s
    allow_quota_exhaustion: true  # a local test server, no real mailbox
"""


@pytest.fixture
async def smtp_server() -> AsyncIterator[SubmissionServer]:
    async with submission_server(CANARY) as server:
        yield server


@pytest.fixture
def logs() -> tuple[io.StringIO, Redactor]:
    stream = io.StringIO()
    return stream, configure_logging("debug", "json", stream=stream)


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def wait_for(port: int, name: str, expected: float, **labels: str) -> str:
    """Scrape until `name{labels}` equals `expected`; returns that exposition."""
    last = [""]

    async def scraped() -> str:
        _, last[0] = await scrape(port)
        return last[0] if value(last[0], name, **labels) == expected else ""

    return await eventually(
        scraped,
        timeout=15.0,
        interval=0.1,
        message=lambda: f"{name}{labels} never became {expected}:\n{last[0]}",
    )


async def test_probe_success_failure_recovery_and_reload(
    smtp_server: SubmissionServer, tmp_path: Path, logs: tuple[io.StringIO, Redactor]
) -> None:
    log_stream, redactor = logs
    ca_file = smtp_server.write_ca(tmp_path)
    config_path = tmp_path / "config.yml"
    config_path.write_text(config_text(smtp_server.port, ca_file))
    exporter = Exporter(
        load_config(config_path),
        config_path=config_path,
        listen_address="127.0.0.1:0",
        redactor=redactor,
        enable_lifecycle=True,
    )
    await exporter.start()
    port = exporter.bound_port
    assert port is not None
    try:
        text = await wait_for(port, "m365_smtp_probe_success", 1.0, probe="local")
        assert promtool_check_metrics(text.encode()) == ""
        # phase times add up to the whole transaction (within 5 %)
        total = value(text, "m365_smtp_probe_duration_seconds_sum", probe="local")
        count = value(text, "m365_smtp_probe_duration_seconds_count", probe="local")
        assert total is not None and count is not None and count >= 1
        assert smtp_server.mailbox.received, "the server never got the probe mail"
        last = exporter.store.probes["local"].last
        assert last is not None and last.success
        assert abs(sum(last.phases.values()) - last.duration) <= 0.05 * last.duration
        assert (
            value(
                text,
                "m365_smtp_tls_info",
                probe="local",
                version=last.tls.version if last.tls else "",
            )
            == 1
        )

        # the server goes away: the next run reports connect_refused, /metrics keeps answering
        await smtp_server.stop()
        text = await wait_for(port, "m365_smtp_probe_success", 0.0, probe="local")
        assert (
            value(
                text,
                "m365_smtp_probe_failures_total",
                probe="local",
                phase="connect",
                reason="connect_refused",
            )
            is not None
        )
        status, _ = await scrape(port, "/-/healthy")
        assert status == 200

        # and comes back on the same port: recovery without restarting the exporter
        await smtp_server.start()
        await wait_for(port, "m365_smtp_probe_success", 1.0, probe="local")

        # a bad config on reload keeps the old one and says so
        config_path.write_text("probes: [{name: broken}]\n")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/-/reload") as response,
        ):
            assert response.status == 500
            # no web authentication: the reasons go to the log, not to whoever asked
            answer = await response.text()
            assert "see the exporter log" in answer and "probes[0]" not in answer
        assert "probes[0].host: Field required" in log_stream.getvalue()
        _, text = await scrape(port)
        assert value(text, "m365_exporter_config_last_reload_successful") == 0
        assert value(text, "m365_smtp_probe_success", probe="local") == 1

        # a good reload renames the probe: the old series disappears
        config_path.write_text(
            config_text(smtp_server.port, ca_file).replace("name: local", "name: renamed")
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/-/reload") as response,
        ):
            assert response.status == 200
        text = await wait_for(port, "m365_smtp_probe_success", 1.0, probe="renamed")
        assert value(text, "m365_exporter_config_last_reload_successful") == 1
        assert value(text, "m365_smtp_probe_success", probe="local") is None

        status, page = await scrape(port, "/")
        assert status == 200 and "renamed" in page and "EHLO" in page
        status, _ = await scrape(port, "/-/ready")
        assert status == 200
    finally:
        await exporter.stop()

    # the password was used for AUTH, and never written anywhere we expose
    written = log_stream.getvalue()
    assert "probe finished" in written
    assert CANARY not in written
    assert CANARY not in text
    assert CANARY not in page


def test_listen_address_parsing() -> None:
    assert parse_listen_address(":9587") == (None, 9587)
    assert parse_listen_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen_address("[::1]:9587") == ("::1", 9587)
    with pytest.raises(ValueError, match="expected"):
        parse_listen_address("9587")


async def test_run_gives_the_event_loop_the_gil_sooner_and_freezes_start_up_objects() -> None:
    switch_interval = sys.getswitchinterval()
    exporter = Exporter(Config(), listen_address="127.0.0.1:0")
    stop = asyncio.Event()
    running = asyncio.ensure_future(exporter.serve_forever(stop))
    try:
        await eventually(lambda: exporter.bound_port is not None or running.done())
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL)
        assert switch_interval > GIL_SWITCH_INTERVAL  # CPython's default is 5 ms
        await eventually(lambda: gc.get_freeze_count() > 0)
    finally:
        stop.set()
        await running
        sys.setswitchinterval(switch_interval)
        gc.unfreeze()

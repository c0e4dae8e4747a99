"""Reload is all-or-nothing, start-up fails with one clear line, the schedule keeps its phase."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from m365_smtp_exporter.app import Exporter, ReloadError
from m365_smtp_exporter.cli import check_config
from m365_smtp_exporter.config import load_config
from m365_smtp_exporter.scheduler import JobScheduler, JobSpec
from m365_smtp_exporter.store import ResultsStore
from tests.support.clock import ManualClock
from tests.support.prom import value

PASSWORD = "cert-password-5e1f"


def write_certificate(directory: Path, password: str = PASSWORD) -> Path:
    """An app registration's certificate: RSA key (RS256) encrypted with `password`."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    issued = ca.issue_cert("app.example", key_type=trustme.KeyType.RSA)
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    path = directory / "app.pem"
    path.write_bytes(encrypted + issued.cert_chain_pems[0].bytes())
    return path


def config_text(certificate: Path, password: str) -> str:
    return f"""
tenants:
  contoso:
    tenant_id: 00000000-0000-0000-0000-000000000001
    client_id: 00000000-0000-0000-0000-000000000002
    certificate_file: {certificate}
    certificate_password: {password}
    trace: {{enabled: false}}
"""


async def post_reload(port: int) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/-/reload") as response,
    ):
        return response.status, await response.text()


async def test_unusable_credentials_on_reload_keep_the_running_tenant(tmp_path: Path) -> None:
    certificate = write_certificate(tmp_path)
    path = tmp_path / "config.yml"
    path.write_text(config_text(certificate, PASSWORD))
    exporter = Exporter(
        load_config(path), config_path=path, listen_address="127.0.0.1:0", enable_lifecycle=True
    )
    await exporter.start()
    try:
        running = exporter.tenants["contoso"]
        assert running.tokens is not None and running.graph is not None
        path.write_text(config_text(certificate, "wrong-password"))
        port = exporter.bound_port
        assert port is not None
        status, text = await post_reload(port)
        assert status == 500 and "see the exporter log" in text
        assert "wrong-password" not in text and "Traceback" not in text
        ok, errors = await exporter.reload()
        assert not ok
        assert errors == [
            "tenants.contoso: credentials unusable: Incorrect password, could not decrypt key"
        ]
        # the old services keep running, untouched, and the metric says the reload failed
        assert exporter.tenants["contoso"] is running
        assert exporter.token_provider("contoso") is running.tokens
        assert exporter.scheduler.next_run_at("quota:contoso") is not None
        text = exporter.exposition.render().decode()
        assert value(text, "m365_exporter_config_last_reload_successful") == 0
        # a good file again: accepted, and the unchanged tenant keeps its services
        path.write_text(config_text(certificate, PASSWORD))
        assert await post_reload(port) == (200, "Configuration reloaded.\n")
        assert exporter.tenants["contoso"] is running
        text = exporter.exposition.render().decode()
        assert value(text, "m365_exporter_config_last_reload_successful") == 1
    finally:
        await exporter.stop()


async def test_unusable_credentials_at_start_fail_cleanly(tmp_path: Path) -> None:
    certificate = write_certificate(tmp_path)
    path = tmp_path / "config.yml"
    path.write_text(config_text(certificate, "wrong-password"))
    exporter = Exporter(load_config(path), config_path=path, listen_address="127.0.0.1:0")
    with pytest.raises(ReloadError, match=r"tenants\.contoso: credentials unusable"):
        await exporter.start()
    port = exporter.bound_port
    assert port is not None
    with pytest.raises(aiohttp.ClientConnectionError):  # it stopped listening
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/"):
            pass


def test_check_config_loads_credentials_like_the_exporter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    certificate = write_certificate(tmp_path)
    path = tmp_path / "config.yml"
    path.write_text(config_text(certificate, "wrong-password"))
    out = io.StringIO()
    assert check_config(path, out, env={}) == 2
    assert "tenants.contoso: credentials unusable: Incorrect password" in out.getvalue()
    assert "wrong-password" not in out.getvalue()
    path.write_text(config_text(certificate, PASSWORD))
    out = io.StringIO()
    assert check_config(path, out, env={}) == 0, out.getvalue()


async def test_run_with_unusable_credentials_exits_2_with_one_line(tmp_path: Path) -> None:
    certificate = write_certificate(tmp_path)
    path = tmp_path / "config.yml"
    path.write_text(config_text(certificate, "wrong-password"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        "run",
        f"--config.file={path}",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    errors = [line for line in stderr.decode().splitlines() if not line.startswith("{")]
    assert errors == [
        f"configuration error in {path}: tenants.contoso: credentials unusable: "
        "Incorrect password, could not decrypt key"
    ]
    assert "Traceback" not in stderr.decode() and "wrong-password" not in stderr.decode()


# The smallest configuration that does something (an empty one is refused): one probe of a
# closed port on loopback (refused at once, nothing leaves the machine).
IDLE_PROBE = """\
probes:
  - name: idle
    host: 127.0.0.1
    port: 1
    tls: none
    mail_from: probe@contoso.com
    rcpt_to: [probe@contoso.com]
    interval: 1h
"""


async def test_reload_endpoint_needs_the_lifecycle_flag(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(IDLE_PROBE)
    exporter = Exporter(load_config(path), config_path=path, listen_address="127.0.0.1:0")
    await exporter.start()
    try:
        assert exporter.bound_port is not None
        status, text = await post_reload(exporter.bound_port)
        assert status == 403 and "--web.enable-lifecycle" in text
        assert await exporter.reload() == (True, [])  # what SIGHUP does still works
    finally:
        await exporter.stop()


def spec(interval: float, runs: list[float], clock: Callable[[], float]) -> JobSpec:
    async def job() -> bool:
        runs.append(clock())
        return True

    return JobSpec("probe:p", job, interval, 0.0, 0.0)


async def test_a_reload_storm_changing_the_interval_keeps_the_phase() -> None:
    # a day ahead of the real time APScheduler fires on: nothing runs unless asked
    clock = ManualClock(time.time() + 86_400.0)
    runs: list[float] = []
    scheduler = JobScheduler(ResultsStore(), clock=clock)
    scheduler.sync([spec(60.0, runs, clock)])
    scheduler.start()
    # never ran: a new interval keeps the planned first run
    first = scheduler.next_run_at("probe:p")
    scheduler.sync([spec(30.0, runs, clock)])
    assert scheduler.next_run_at("probe:p") == first
    assert await scheduler.run_now("probe:p")
    last_run = clock()
    for step in range(55):  # SIGHUPs every 0.2 s, each with another interval
        clock.advance(0.2)
        interval = 60.0 - step % 7
        scheduler.sync([spec(interval, runs, clock)])
        planned = scheduler.next_run_at("probe:p")
        assert planned is not None and planned >= last_run + interval - 1e-6
    # an interval shorter than the time already waited: run now, not in the past
    clock.set(last_run + 100.0)
    scheduler.sync([spec(10.0, runs, clock)])
    assert scheduler.next_run_at("probe:p") == pytest.approx(clock())
    assert runs == [last_run]
    await scheduler.stop()


def test_check_config_writes_no_state_file(tmp_path: Path) -> None:
    import io

    state = tmp_path / "delivery-state.json"
    path = tmp_path / "config.yml"
    path.write_text(f"state_file: {state}\n{IDLE_PROBE}")
    out = io.StringIO()
    assert check_config(path, out, env={}) == 0, out.getvalue()
    assert not state.exists()

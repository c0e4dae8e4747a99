"""The installed command: `probe` transcripts and exit codes, `run` with signals."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme

from tests.support.poll import eventually
from tests.support.prom import value
from tests.support.smtpd import SubmissionServer, submission_server

CANARY = "canary-cli-secret-2b8d"


@pytest.fixture
async def smtp_server() -> AsyncIterator[SubmissionServer]:
    async with submission_server(CANARY) as server:
        yield server


def write_config(path: Path, port: int, ca_file: Path, password: str = CANARY) -> Path:
    path.write_text(
        f"""
probes:
  - name: local
    host: 127.0.0.1
    port: {port}
    ca_file: {ca_file}
    auth: {{mechanism: login, username: probe@example.test, password_file: {path.parent / "pw"}}}
    mail_from: probe@example.test
    rcpt_to: [inbox@example.test]
    interval: 2s
    timeout: 2s
    jitter: 0s
    allow_quota_exhaustion: true  # a local test server, no real mailbox
"""
    )
    (path.parent / "pw").write_text(password + "\n")
    return path


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_probe_command_success(smtp_server: SubmissionServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", smtp_server.port, smtp_server.write_ca(tmp_path))
    code, out, err = await run_cli("probe", "local", "--config.file", str(config))
    assert code == 0, out + err
    assert "result: OK" in out
    assert "STARTTLS" in out and "AUTH LOGIN" in out
    assert "phase times:" in out and "total" in out
    assert CANARY not in out + err


async def test_probe_command_failure_shows_reason_and_hint(
    smtp_server: SubmissionServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yml", smtp_server.port, smtp_server.write_ca(tmp_path), "wrong-password"
    )
    code, out, err = await run_cli("probe", "local", "--config.file", str(config))
    assert code == 1, out + err
    assert "result: FAILED in phase auth, reason auth_failed" in out
    assert "reply:  535" in out


async def test_probe_command_refused_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = write_config(tmp_path / "c.yml", port, ca)
    code, out, _ = await run_cli("probe", "local", "--config.file", str(config))
    assert code == 1
    assert "reason connect_refused" in out
    assert "hint:" in out


async def test_probe_command_unknown_probe(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = write_config(tmp_path / "c.yml", 25, ca)
    code, out, _ = await run_cli("probe", "nope", "--config.file", str(config))
    assert code == 2
    assert "no probe named 'nope'" in out and "local" in out


async def test_config_error_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("probes: [{name: x, host: h, port: 0, mail_from: a@b.cd, rcpt_to: [a@b.cd]}]")
    code, _, err = await run_cli("--config.file", str(bad), "--web.listen-address", "127.0.0.1:0")
    assert code == 2
    assert "probes[0].port: Input should be greater than or equal to 1" in err


async def test_run_serves_reloads_on_sighup_and_stops_on_sigterm(
    smtp_server: SubmissionServer, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path / "c.yml", smtp_server.port, smtp_server.write_ca(tmp_path))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        text = await scrape_until(port, lambda t: value(t, "m365_smtp_probe_success") == 1)
        config.write_text(config.read_text().replace("name: local", "name: after-hup"))
        process.send_signal(signal.SIGHUP)
        text = await scrape_until(
            port, lambda t: value(t, "m365_smtp_probe_success", probe="after-hup") == 1
        )
        assert value(text, "m365_smtp_probe_success", probe="local") is None
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    logs = stderr.decode()
    assert '"event": "config reloaded"' in logs
    assert '"event": "shutting down"' in logs
    assert CANARY not in logs


async def scrape_until(port: int, ok: Callable[[str], bool]) -> str:
    async def scraped() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
            return text if ok(text) else ""

    return await eventually(
        scraped, timeout=30, interval=0.2, ignoring=(aiohttp.ClientConnectionError,)
    )


@pytest.mark.parametrize("command", ["", "run", "probe", "check-config", "demo"])
async def test_help_of_every_command(command: str) -> None:
    code, out, err = await run_cli(*([command] if command else []), "--help")
    assert code == 0, err
    assert "--config.file" in out and "--web.listen-address" in out


async def test_emulator_help_lists_only_emulator_flags() -> None:
    code, out, err = await run_cli("emulator", "--help")
    assert code == 0, err
    assert "--emulator.dns-port" in out and "--emulator.world" in out and "--log.level" in out
    for exporter_flag in ("--config.file", "--web.listen-address", "--web.config.file", "--shard"):
        assert exporter_flag not in out


async def test_probe_help_says_it_sends_a_real_mail() -> None:
    code, out, err = await run_cli("probe", "--help")
    assert code == 0, err
    assert "sends a real mail" in " ".join(out.split())


def test_demo_without_the_emulator_extra_says_what_to_install() -> None:
    # aiosmtpd comes with the `demo` extra only; sys.modules[...] = None hides it.
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "from m365_smtp_exporter.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "pip install 'm365-smtp-exporter[demo]'" in done.stderr

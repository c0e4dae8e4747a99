"""`m365-smtp-exporter emulator` as a user runs it: its own process, its ports, curl on the
control API exactly as docs/emulator.md shows (HTTPS with --cacert)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

DEADLINE = 30.0


@dataclass
class RunningEmulator:
    process: asyncio.subprocess.Process
    endpoints: dict[str, str]

    @property
    def base(self) -> str:
        return self.endpoints["emulator Graph"].removesuffix("/v1.0")

    @property
    def ca(self) -> str:
        return self.endpoints["emulator CA"]


def free_dns_port() -> int:
    """A port free for both UDP and TCP: the emulator's DNS serves both, and a port picked
    for UDP alone may be some other test's TCP listener."""
    while True:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def start(*args: str, ready: bool = True) -> RunningEmulator:
    """The `emulator` command in its own process, once it printed its endpoints (`ready`)
    or ended."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        "emulator",
        "--emulator.smtp-port",
        "0",
        "--emulator.http-port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    endpoints: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), DEADLINE)).decode()
        if not line and ready:
            # ended before saying it is ready: show why (a port in use, ...)
            assert process.stderr is not None
            stderr = await asyncio.wait_for(process.stderr.read(), DEADLINE)
            raise AssertionError(f"the emulator ended at start: {stderr.decode()[-2000:]}")
        if not line or line.startswith("press Ctrl-C"):
            break
        name, _, value = line.partition(":")
        endpoints[name.strip()] = value.strip()
    return RunningEmulator(process, endpoints)


@pytest.fixture
async def dns_port() -> int:
    return free_dns_port()


@pytest.fixture
async def running(dns_port: int) -> AsyncIterator[RunningEmulator]:
    emulator = await start("--emulator.dns-port", str(dns_port))
    yield emulator
    if emulator.process.returncode is None:
        emulator.process.send_signal(signal.SIGINT)
        await asyncio.wait_for(emulator.process.wait(), DEADLINE)


async def curl(*args: str) -> tuple[int, dict[str, object], str]:
    """curl's HTTP status, JSON body and response headers."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-D", "-", "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode == 0, err.decode()
    text, _, status = out.decode().rpartition("\n")
    headers, _, body = text.partition("\r\n\r\n")
    return int(status), json.loads(body), headers.lower()


async def test_dns_port_flag_is_honoured(running: RunningEmulator, dns_port: int) -> None:
    query = dns.message.make_query("contoso.com", "TXT")
    answer = await dns.asyncquery.udp(query, "127.0.0.1", port=dns_port, timeout=10)
    texts = [b"".join(record.strings) for rrset in answer.answer for record in rrset]
    assert running.endpoints["emulator DNS"] == f"127.0.0.1:{dns_port} (UDP and TCP)"
    assert any(text.startswith(b"v=spf1") for text in texts)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_control_api_with_curl_as_documented(running: RunningEmulator) -> None:
    smtp = f"{running.base}/_emulator/smtp/faults"
    graph = f"{running.base}/_emulator/graph/faults"
    json_header = ("-H", "Content-Type: application/json")

    read = await curl("--cacert", running.ca, smtp)
    refuse = await curl(
        "--cacert", running.ca, "-X", "PUT", *json_header, "-d", '{"outage": "refuse"}', smtp
    )
    arm = await curl(
        "--cacert", running.ca, "-X", "PUT", *json_header,
        "-d", '{"faults": [{"fault": "throttled", "count": 2, "endpoint": "trace"}]}', graph,
    )  # fmt: skip
    wrong = await curl("--cacert", running.ca, "-X", "POST", *json_header, "-d", "{}", smtp)
    cleared = await curl("--cacert", running.ca, "-X", "DELETE", smtp)
    graph_cleared = await curl("--cacert", running.ca, "-X", "DELETE", f"{graph}?counters=true")

    assert read[0] == 200 and read[1]["outage"] == "none"
    assert refuse[0] == 200 and refuse[1]["outage"] == "refuse"
    assert arm[0] == 200 and arm[1]["armed"] == [
        {"fault": "throttled", "remaining": 2, "endpoint": "trace", "retry_after": 1}
    ]
    assert wrong[0] == 405 and "allow: get, put, delete" in wrong[2]
    assert "expected_body" in wrong[1]
    assert cleared[0] == 200 and cleared[1]["outage"] == "none"
    assert graph_cleared[1] == {"armed": [], "delays": [], "injected": {}, "responses": {}}


async def test_unusable_world_file_names_the_field(tmp_path: Path) -> None:
    world = tmp_path / "world.yml"
    world.write_text("tenants:\n  - name: t\n    tenant_id: x\n", encoding="utf-8")
    emulator = await start("--emulator.dns-port", "0", "--emulator.world", str(world), ready=False)
    code = await asyncio.wait_for(emulator.process.wait(), DEADLINE)
    assert emulator.process.stderr is not None
    err = (await emulator.process.stderr.read()).decode()
    assert code == 2
    assert "cannot load the emulator world" in err and "tenants.0.client_id" in err
    assert "Traceback" not in err


def test_world_example_in_the_documentation_loads(tmp_path: Path) -> None:
    from m365_emulator.state import EmulatorState
    from m365_emulator.world import load_world, populate

    text = (Path(__file__).parents[2] / "docs" / "emulator.md").read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    world_file = tmp_path / "world.yml"
    world_file.write_text(example, encoding="utf-8")
    state = EmulatorState()
    populate(state, load_world(world_file))
    assert state.tenants["tailspin"].external_recipient_limit == 5000
    assert state.mailbox("bulk12@tailspin-mail.example") is not None
    assert state.expand_list("everyone@tailspin.example") == [
        "monitor@tailspin.example",
        "partner@outside.example",
    ]

"""The web port under attack: a bcrypt flood must not starve the real Prometheus, and the
web configuration follows file changes (rotated passwords, renewed certificates)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import trustme

from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.web_auth import BasicAuthGuard
from m365_smtp_exporter.web_config import WebSecurity
from m365_smtp_exporter.web_config_watch import WebConfigWatcher
from tests.support.clock import ManualClock
from tests.support.poll import eventually
from tests.support.web import Pki, bcrypt_hash, fetch, server_pki, serving

USER = "prometheus"
PASSWORD = "canary-flood-Pw-7731"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return server_pki(tmp_path)


async def test_a_flood_of_wrong_passwords_is_bounded_and_prometheus_gets_in() -> None:
    guard = BasicAuthGuard({USER: bcrypt_hash(PASSWORD, cost=8)})
    async with serving(WebSecurity(), middlewares=[guard.middleware()]) as base:
        attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        # the real Prometheus scrapes from another address (loopback has a whole /8)
        prometheus = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        )
        async with attacker, prometheus:

            async def attempt(session: aiohttp.ClientSession, user: str, password: str) -> int:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                headers = {"Authorization": f"Basic {token}"}
                async with session.get(base + "/metrics", headers=headers) as response:
                    await response.read()
                    return response.status

            started = time.monotonic()
            flood = asyncio.gather(
                *(attempt(attacker, USER, f"wrong-{i}") for i in range(120)),
                *(attempt(attacker, f"nobody-{i}", "x") for i in range(30)),
            )
            # the flood has filled the attacker's share
            await eventually(lambda: guard.refused_busy > 0, timeout=30, interval=0.01)
            # while the flood goes on, Prometheus still gets its own slot
            assert await attempt(prometheus, USER, PASSWORD) == 200
            statuses = Counter(await asyncio.wait_for(flood, 60))
            assert time.monotonic() - started < 60
            assert set(statuses) <= {401, 429}
            assert statuses[429] > 0  # refused at once when the checks are busy
            assert guard.refused_busy == statuses[429]
            assert await attempt(prometheus, USER, PASSWORD) == 200  # remembered
    guard.close()


def write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)  # as a config manager or a Kubernetes secret update does


async def test_rotated_passwords_apply_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    write(path, f"basic_auth_users: {{{USER}: '{bcrypt_hash('old-password')}'}}\n")
    clock = ManualClock()
    watcher = WebConfigWatcher(path, clock=clock)
    async with serving(WebSecurity(), middlewares=[watcher.middleware()]) as base:
        assert (await fetch(base + "/metrics", auth=(USER, "old-password"))).status == 200

        write(path, f"basic_auth_users: {{{USER}: '{bcrypt_hash('new-password')}'}}\n")
        assert (await fetch(base + "/metrics", auth=(USER, "old-password"))).status == 200
        clock.advance(1.5)  # checked at most once per second
        assert (await fetch(base + "/metrics", auth=(USER, "old-password"))).status == 401
        assert (await fetch(base + "/metrics", auth=(USER, "new-password"))).status == 200

        write(path, "basic_auth_users: {prometheus: not-a-bcrypt-hash}\nunknown: 1\n")
        clock.advance(1.5)
        # a broken file keeps the previous settings in force
        assert (await fetch(base + "/metrics", auth=(USER, "new-password"))).status == 200
        assert (watcher.reloads, watcher.failures) == (1, 1)


async def test_a_renewed_certificate_is_served_without_a_restart(
    pki: Pki,
    tmp_path: Path,
) -> None:
    path = tmp_path / "web.yml"
    write(path, "tls_server_config: {cert_file: tls/server.pem, key_file: tls/server.key}\n")
    clock = ManualClock()
    watcher = WebConfigWatcher(path, clock=clock)
    exporter = Exporter(
        Config(),
        listen_address="127.0.0.1:0",
        middlewares=[watcher.middleware()],
        ssl_context=watcher.ssl_context,
    )
    await exporter.start()
    base = f"https://127.0.0.1:{exporter.bound_port}"
    try:
        assert (await fetch(base + "/-/healthy", tls=pki.client_context())).status == 200
        renewed_ca = trustme.CA()
        leaf = renewed_ca.issue_cert("127.0.0.1")
        (pki.directory / "server.pem").write_bytes(
            b"".join(p.bytes() for p in leaf.cert_chain_pems)
        )
        leaf.private_key_pem.write_to_path(str(pki.directory / "server.key"))
        clock.advance(1.5)
        trusting_renewed = ssl.create_default_context()
        renewed_ca.configure_trust(trusting_renewed)
        assert (await fetch(base + "/-/healthy", tls=trusting_renewed)).status == 200
        assert watcher.reloads == 1
    finally:
        await exporter.stop()

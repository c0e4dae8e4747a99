"""The running exporter against a hostile SMTP server: `/` and `/metrics` keep answering,
the console shows the reply safely and without the echoed password."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import load_config
from tests.support.poll import eventually

from .promises import UNSAFE, assert_no_secret
from .smtp_server import LATIN1_BANNER, conversation, echoing_auth, hostile_smtp

PASSWORD = "canary-Status-Pw-55031"


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_status_page_survives_latin1_escapes_and_echoed_secrets(tmp_path: Path) -> None:
    async with hostile_smtp(conversation(LATIN1_BANNER, echoing_auth())) as smtp_port:
        config = tmp_path / "c.yml"
        config.write_text(
            f"""
probes:
  - name: hostile
    host: 127.0.0.1
    port: {smtp_port}
    tls: none
    allow_insecure_auth: true
    auth: {{mechanism: plain, username: probe@contoso.test, password: "{PASSWORD}"}}
    mail_from: probe@contoso.test
    rcpt_to: [inbox@contoso.test]
    interval: 1s
    timeout: 1s
    jitter: 0s
    allow_quota_exhaustion: true  # a local test server, no real mailbox
"""
        )
        exporter = Exporter(load_config(config), listen_address="127.0.0.1:0")
        await exporter.start()
        port = exporter.bound_port
        assert port is not None
        try:

            async def probe_exported() -> str:
                status, metrics = await get(port, "/metrics")
                assert status == 200
                return metrics if 'm365_smtp_probe_success{probe="hostile"' in metrics else ""

            metrics = await eventually(probe_exported, timeout=15, interval=0.1)
            status, page = await get(port, "/")
        finally:
            await exporter.stop()
    assert status == 200
    assert "535" in page and "caf\ufffd" in page
    assert not UNSAFE.search(page.replace("\t", "").replace("\r", ""))
    assert_no_secret(page + metrics, PASSWORD)

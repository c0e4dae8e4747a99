"""The Graph SDK (msgraph-sdk, kiota, httpx, azure-identity, msal) is loaded only when a tenant
needs it: an exporter with probes and no tenant saves its import time and ~14 MB of RSS.

Checked in a fresh interpreter (this test process has long imported everything): it imports
the app, starts the exporter with one real SMTP probe against a local STARTTLS server, runs the
probe, renders /metrics, stops, and reports what `sys.modules` holds."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.smtpd import submission_server

SDK_MODULES = (
    *("msgraph", "msgraph_core", "kiota_http", "kiota_abstractions", "httpx"),
    *("azure.identity", "msal"),
)

RUN_EXPORTER = f"""
import asyncio, json, sys
from pathlib import Path

import m365_smtp_exporter.app as app
from m365_smtp_exporter.config import load_config
from m365_smtp_exporter.probes.subsystem import ProbesSubsystem

after_import = [m for m in {SDK_MODULES!r} if m in sys.modules]


async def main() -> None:
    config = load_config(Path(sys.argv[1]), env={{}})
    exporter = app.Exporter(config, listen_address="127.0.0.1:0")
    await exporter.start()
    try:
        result = await exporter.subsystem(ProbesSubsystem).run(config.probes[0])
        exporter.exposition.render()
    finally:
        await exporter.stop()
    print(json.dumps({{
        "success": result.success,
        "detail": result.detail,
        "after_import": after_import,
        "after_run": [m for m in {SDK_MODULES!r} if m in sys.modules],
    }}))


asyncio.run(main())
"""


async def run_exporter(config: dict[str, Any], directory: Path) -> dict[str, Any]:
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_EXPORTER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    report: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return report


def probe_config(port: int, ca_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "submission",
        "host": "127.0.0.1",
        "port": port,
        "ca_file": str(ca_file),
        "auth": {"mechanism": "login", "username": "probe@example.test", "password": "s3cret"},
        "mail_from": "probe@example.test",
        "rcpt_to": ["inbox@example.test"],
        "interval": "1h",
        **extra,
    }


async def test_an_exporter_without_a_tenant_never_imports_the_graph_sdk(tmp_path: Path) -> None:
    async with submission_server("s3cret") as server:
        ca_file = server.write_ca(tmp_path)
        report = await run_exporter({"probes": [probe_config(server.port, ca_file)]}, tmp_path)
    assert report["success"], report["detail"]
    assert report["after_import"] == []
    assert report["after_run"] == []


async def test_a_tenant_with_credentials_loads_it(tmp_path: Path) -> None:
    """The check above can fail: the same run with a tenant has the SDK in sys.modules."""
    tenant = {
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "client_id": "00000000-0000-0000-0000-000000000002",
        "client_secret": "not-used",
        "accepted_domains": ["example.test"],
        "trace": {"enabled": False},  # nothing leaves the machine
    }
    async with submission_server("s3cret") as server:
        ca_file = server.write_ca(tmp_path)
        config = {
            "tenants": {"contoso": tenant},
            "probes": [probe_config(server.port, ca_file, tenant="contoso")],
        }
        report = await run_exporter(config, tmp_path)
    assert report["success"], report["detail"]
    assert report["after_import"] == []  # importing the app alone still loads nothing
    assert set(report["after_run"]) == set(SDK_MODULES)

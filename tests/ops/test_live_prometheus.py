"""The demo exporter scraped by a real Prometheus with the repository's rules loaded: every
dashboard query and every rule expression parses and finds data.

Recording rules and dashboard queries must return series. An alert expression returns series
only while its alert fires, so for alerts every series it reads must exist instead (and the
expression itself must run). A few inputs only exist under rare conditions; they are listed
in RARE with the reason.
"""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from m365_smtp_exporter.demo import Demo
from tests.ops.known_metrics import EXPORTED_METRICS
from tests.ops.promql import names
from tests.ops.queries import (
    alerting_rules,
    all_dashboard_queries,
    recording_rule_names,
    rule_files,
)
from tests.support.poll import eventually, poll
from tests.support.prom import require_tool

# Inputs that only exist under conditions the demo does not create in a short run.
RARE: dict[str, str] = {
    "ALERTS": "only while some alert is pending or firing; covered by the rule unit tests",
    "ALERTS_FOR_STATE": "only while some alert is pending or firing",
}
# Known metrics the demo does not produce, and why.
NOT_IN_DEMO: dict[str, str] = {
    "m365_exporter_series_folded_total": "only when a server invents more reply codes than the "
    "series cap (tests/test_exposition.py)",
}
# How long the demo may run until every query finds data (scrapes and rules every second).
WARM_UP_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    running = Demo(listen_address="127.0.0.1:0", work_dir=tmp_path / "demo")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def prometheus(demo: Demo, tmp_path: Path) -> Iterator[PrometheusServer]:
    binary = require_tool("prometheus")
    assert demo.exporter is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in rule_files()],
                "scrape_configs": [
                    {
                        "job_name": "m365-smtp-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{demo.exporter.bound_port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield PrometheusServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def query(session: aiohttp.ClientSession, server: PrometheusServer, expr: str) -> Any:
    url = f"{server.url}/api/v1/query?query={urllib.parse.quote(expr)}"
    async with session.get(url) as response:
        body = await response.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


async def wait_until_ready(session: aiohttp.ClientSession, server: PrometheusServer) -> None:
    async def ready() -> bool:
        assert server.process.poll() is None, "prometheus exited"
        async with session.get(f"{server.url}/-/ready") as response:
            return response.status == 200

    await eventually(
        ready,
        timeout=60,
        interval=0.5,
        ignoring=(aiohttp.ClientConnectionError,),
        message="prometheus never became ready",
    )


async def queries_without_data(
    session: aiohttp.ClientSession, prometheus: PrometheusServer
) -> list[str]:
    """Dashboard queries, recording rules and alert inputs that return nothing yet."""
    empty: list[str] = []
    for title, expr in all_dashboard_queries():
        if not await query(session, prometheus, expr) and not rare_only(expr):
            empty.append(f"{title}: {expr}")
    for name in sorted(recording_rule_names()):
        if not await query(session, prometheus, name):
            empty.append(f"recording rule {name}")
    for rule in alerting_rules():
        await query(session, prometheus, rule["expr"])  # must run
        for metric in sorted(selected_metrics(rule["expr"])):
            if metric not in RARE and not await query(session, prometheus, metric):
                empty.append(f"alert {rule['alert']}: input {metric}")
    return empty


@pytest.mark.slow
async def test_every_query_runs_and_finds_data(demo: Demo, prometheus: PrometheusServer) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_until_ready(session, prometheus)
        empty: list[str] = []

        async def every_query_has_data() -> bool:
            empty[:] = await queries_without_data(session, prometheus)
            return not empty

        # as long as the demo needs to produce every input, and no longer
        await poll(every_query_has_data, timeout=WARM_UP_SECONDS, interval=2.0)
        up = await query(session, prometheus, 'up{job="m365-smtp-exporter"}')
        assert up and up[0]["value"][1] == "1"
        assert not empty, "no data for:\n" + "\n".join(empty)

        # every m365_ metric the demo exports is one the operational files know of
        known = {metric.name for metric in EXPORTED_METRICS}
        exported = await query(session, prometheus, 'count by (__name__) ({__name__=~"m365_.*"})')
        unknown = {family(series["metric"]["__name__"]) for series in exported} - known
        assert not unknown, f"exported but not in known_metrics.py: {sorted(unknown)}"
        names_seen = {series["metric"]["__name__"] for series in exported}
        missing = [
            metric.name
            for metric in EXPORTED_METRICS
            if not set(metric.samples()) & names_seen and metric.name not in NOT_IN_DEMO
        ]
        assert not missing, f"in known_metrics.py but not exported by the demo: {missing}"


def family(sample_name: str) -> str:
    """The metric family of a sample name (histogram series carry a suffix)."""
    known = {metric.name for metric in EXPORTED_METRICS}
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in known:
            return base
    return sample_name


def selected_metrics(expr: str) -> set[str]:
    return {selector.metric for selector in names(expr).selectors if selector.metric}


def rare_only(expr: str) -> bool:
    """A query reading only inputs from RARE may come back empty."""
    metrics = selected_metrics(expr)
    return bool(metrics) and metrics <= set(RARE)

"""`m365-smtp-exporter plan`, both ways: through a running exporter, and with one trace pull.

The command runs in its own process, as an operator would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from m365_smtp_exporter.demo import DEMO_DELIVERY
from tests.console.live_demo import LiveDemo, live_demo
from tests.support.trace import add_rows, trace_row

# Trace rows show at once instead of after the demo's 20 s lag: `plan` pulls them itself.
NO_TRACE_LAG = DEMO_DELIVERY.model_copy(update={"trace_lag_seconds": 0.0})


# The module's demo starts once: its tests share a test worker.
pytestmark = pytest.mark.xdist_group("console-plan")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDemo]:
    with live_demo(
        tmp_path_factory.mktemp("demo"), traffic=False, delivery=NO_TRACE_LAG
    ) as running:
        yield running


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "m365_smtp_exporter", "plan", "--log.format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_through_a_running_exporter(live: LiveDemo) -> None:
    args = ["--tenant", "fabrikam", "--sender", "newsletter@fabrikam.com"]
    done = plan(*args, "--recipients", "10000", "--exporter.url", live.base)
    assert done.returncode == 0, done.stderr
    assert "Can start now: yes; 10000 recipients can go" in done.stdout
    assert "mostly held by messages_per_minute" in done.stdout and "(after 5 h 3" in done.stdout
    refused = plan(*args, "--recipients", "0", "--exporter.url", live.base)
    assert refused.returncode == 2 and "recipients" in refused.stderr


def test_plan_with_one_trace_pull(live: LiveDemo) -> None:
    assert live.demo.config_path is not None

    state = live.demo.emulator.state
    # A row sent two minutes ago: old enough for a pull, which reaches up to its end margin
    # before now (the demo's own probe mail would take its 1-8 s delivery delay and that
    # margin to show up).
    sent = trace_row(
        time.time() - 120,
        tenant="contoso",
        sender="probe@contoso.com",
        recipient="probe-inbox@contoso.com",
    )
    live.on_loop(lambda: add_rows(state, [sent]))
    config = ["--config.file", str(live.demo.config_path)]
    query = ["--tenant", "contoso", "--sender", "probe@contoso.com", "--recipients", "500"]
    done = plan(*config, *query, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["tenant"] == "contoso" and document["now"]["recipients"] == 500
    assert any("newest trace row" in note for note in document["notes"])
    names = {limit["name"] for limit in document["limits"]}
    assert names >= {"recipients_per_day", "external_recipients_per_day", "spam_external_per_hour"}
    unknown = plan(*config, "--tenant", "x", "--sender", "a@b.c", "--recipients", "5")
    assert unknown.returncode == 2 and "tenant" in unknown.stderr

"""Probe mails delivered by the emulator's own DeliveryAgent (as its SMTP server does), found
again through Graph, and matched with the message-trace rows the agent wrote."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from m365_emulator.smtp.delivery import AcceptedMessage, DeliveryAgent, DeliveryBehaviour
from m365_emulator.state import EmulatorState
from m365_smtp_exporter.config import ProbeConfig, TraceConfig
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.graph.trace import GraphTracePages, TracePuller
from m365_smtp_exporter.smtp.message import build_probe_message
from m365_smtp_exporter.smtp.result import ProbeResult
from tests.support.clock import ManualClock
from tests.support.delivery import (
    MAILBOX,
    POLL,
    TENANT,
    TIMEOUT,
    TrackerFactory,
    metric,
    outcomes,
    probe_config,
)

SENDER = "sender@contoso.com"


async def send_through_agent(
    agent: DeliveryAgent,
    clock: ManualClock,
    tracker: DeliveryTracker,
    *,
    delay: float,
    probe: ProbeConfig | None = None,
) -> str:
    """The probe's SMTP transaction ends now; the mail reaches the mailbox `delay` seconds of
    emulated time later. Returns its Message-ID."""
    probe = probe or probe_config()
    content, message_id = build_probe_message(probe, now=clock.now(), token="t0k3n")
    tracker.track(
        probe,
        TENANT,
        ProbeResult(
            probe=probe.name,
            target=probe.target,
            started_at=clock.now() - 0.8,
            duration=0.8,
            success=True,
            message_id=message_id,
        ),
    )
    agent.accept(AcceptedMessage(SENDER, [MAILBOX], content, "203.0.113.7", clock.now()))
    clock.advance(delay)  # the agent stamps receivedDateTime from the emulator's clock
    await agent.wait_idle()
    return message_id


def agent(state: EmulatorState, **behaviour: float) -> DeliveryAgent:
    return DeliveryAgent(
        state, DeliveryBehaviour(delay_seconds=0.01, trace_lag_seconds=0.0, **behaviour)
    )


@pytest.mark.parametrize("delay", [3.0, 37.0, 290.0])
async def test_latency_is_the_delivery_delay(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState, delay: float
) -> None:
    probe = probe_config(timeout=600)
    tracker = make_tracker([probe])
    start = clock.now()
    await send_through_agent(agent(graph_state), clock, tracker, delay=delay, probe=probe)
    while not outcomes(tracker)["delivered"] and clock.now() - start < 600:
        clock.advance(1)
        assert await tracker.poll()
    assert outcomes(tracker) == {"delivered": 1, "junk": 0, "lost": 0, "late": 0}
    assert metric(tracker, "m365_delivery_latency_seconds_sum") == delay
    assert metric(tracker, "m365_delivery_latency_seconds_count") == 1


async def test_junk_placement_and_failing_spf(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    tracker = make_tracker()
    emulator = agent(graph_state, junk_probability=1.0, spf_fail_probability=1.0)
    await send_through_agent(emulator, clock, tracker, delay=POLL)
    assert await tracker.poll()
    assert outcomes(tracker) == {"delivered": 0, "junk": 1, "lost": 0, "late": 0}
    assert metric(tracker, "m365_delivery_junk_total") == 1
    assert metric(tracker, "m365_delivery_success") == 0
    verdicts = {
        check: result
        for check, result in [
            ("spf", "fail"),
            ("dkim", "pass"),
            ("dmarc", "pass"),
            ("compauth", "pass"),
        ]
        if metric(tracker, "m365_delivery_auth_result", check=check, result=result) == 1
    }
    assert verdicts == {"spf": "fail", "dkim": "pass", "dmarc": "pass", "compauth": "pass"}


async def test_dropped_mail_is_lost(
    make_tracker: TrackerFactory, clock: ManualClock, graph_state: EmulatorState
) -> None:
    tracker = make_tracker()
    await send_through_agent(agent(graph_state, drop_probability=1.0), clock, tracker, delay=1)
    for _ in range(int(TIMEOUT)):
        clock.advance(1)
        assert await tracker.poll()
    assert outcomes(tracker) == {"delivered": 0, "junk": 0, "lost": 1, "late": 0}


class TraceSink:
    """The owner's chain: another sink first (quota), then the tracker."""

    def __init__(self, tracker: DeliveryTracker) -> None:
        self.tracker = tracker
        self.rows: list[TraceRecord] = []

    def __call__(self, records: Sequence[TraceRecord]) -> None:
        self.rows.extend(records)
        self.tracker.on_trace_rows(TENANT, records)


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [({}, "delivered"), ({"drop_probability": 1.0}, "pending"), ({"spam_probability": 1.0}, None)],
)
async def test_trace_status_of_the_probe_mail(
    make_tracker: TrackerFactory,
    client: GraphClient,
    clock: ManualClock,
    graph_state: EmulatorState,
    behaviour: dict[str, float],
    status: str | None,
) -> None:
    tracker = make_tracker()
    sink = TraceSink(tracker)
    puller = TracePuller(
        TENANT,
        GraphTracePages(client, ["contoso.com"]),
        sink,
        settings=TraceConfig(lookback=3600),
        clock=clock,
        end_margin=0.0,
    )
    await send_through_agent(agent(graph_state, **behaviour), clock, tracker, delay=5)
    assert (await puller.pull()).ok
    assert len(sink.rows) == 1
    status = status or "filteredasspam"
    assert metric(tracker, "m365_delivery_trace_status", status=status) == 1
    assert metric(tracker, "m365_delivery_trace_status") == 1  # exactly one status shown

"""Probe configurations, sent probes, delivered mails and metric readers for the delivery
tracker tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from m365_emulator.state import EmulatorState, StoredMessage
from m365_smtp_exporter.config import DeliveryConfig, ProbeConfig
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.smtp.result import ProbeResult
from tests.support.graph import CONTOSO, PROBE
from tests.support.prom import value

TENANT = CONTOSO.name
MAILBOX = PROBE
TIMEOUT = 60.0
POLL = 10.0
PASSING_AUTH = (
    "spf=pass (sender IP is 203.0.113.7) smtp.mailfrom=contoso.com; dkim=pass (signature was "
    "verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;"
    "compauth=pass reason=100"
)


def probe_config(
    name: str = "submission", *, delivery: bool = True, cleanup: bool = True, **settings: Any
) -> ProbeConfig:
    return ProbeConfig(
        name=name,
        tenant=TENANT,
        host="smtp.office365.com",
        mail_from="sender@contoso.com",
        rcpt_to=[MAILBOX],
        delivery=(
            DeliveryConfig(
                mailbox=MAILBOX,
                timeout=settings.pop("timeout", TIMEOUT),
                poll_interval=settings.pop("poll_interval", POLL),
                cleanup=cleanup,
            )
            if delivery
            else None
        ),
        **settings,
    )


def sent(probe: ProbeConfig, at: float, *, success: bool = True) -> ProbeResult:
    """A probe result whose SMTP transaction ended at `at`, with a fresh Message-ID."""
    return ProbeResult(
        probe=probe.name,
        target=probe.target,
        started_at=at - 1.25,
        duration=1.25,
        success=success,
        message_id=f"<{uuid.uuid4()}@probe.contoso.com>" if success else "",
    )


def deliver(
    state: EmulatorState,
    message_id: str,
    received_at: float,
    *,
    folder: str = "inbox",
    auth: str | None = PASSING_AUTH,
    mailbox: str = MAILBOX,
) -> StoredMessage:
    """Put a probe mail into the emulated mailbox as Exchange would have delivered it."""
    headers = [("Message-ID", message_id), ("Subject", "m365-smtp-exporter probe")]
    if auth is not None:
        headers.insert(0, ("Authentication-Results", auth))
    message = StoredMessage(
        id=f"AAMkAD{uuid.uuid4().hex}=",
        internet_message_id=message_id,
        subject="m365-smtp-exporter probe",
        sender="sender@contoso.com",
        received_at=received_at,
        sent_at=received_at - 1,
        folder=folder,
        headers=headers,
        body="probe",
    )
    box = state.mailbox(mailbox)
    assert box is not None
    box.messages.append(message)
    return message


def exposition(tracker: DeliveryTracker) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(tracker)
    return generate_latest(registry)


def metric(tracker: DeliveryTracker, name: str, **labels: str) -> float | None:
    return value(exposition(tracker), name, **labels)


def outcomes(tracker: DeliveryTracker, probe: str = "submission") -> dict[str, float | None]:
    text = exposition(tracker)
    return {
        outcome: value(text, "m365_delivery_outcomes_total", probe=probe, outcome=outcome)
        for outcome in ("delivered", "junk", "lost", "late")
    }


def row(message_id: str, status: str, *, recipient: str = MAILBOX) -> TraceRecord:
    return TraceRecord(
        id=str(uuid.uuid4()),
        sender="sender@contoso.com",
        recipient=recipient,
        message_id=message_id,
        received_at=1_769_000_000.0,
        status=status,
        direction="internal",
    )


TrackerFactory = Callable[..., DeliveryTracker]

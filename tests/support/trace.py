"""Builders for message-trace rows and mailbox messages, and a sink for what a puller
delivers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence

from m365_emulator.state import EmulatorState, StoredMessage, TraceRow
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.graph.trace import TracePuller
from tests.support.graph import CONTOSO

DOMAINS = ["contoso.com"]


def trace_row(
    received_at: float,
    *,
    tenant: str = CONTOSO.name,
    sender: str = "sender@contoso.com",
    recipient: str = "someone@example.net",
    status: str = "delivered",
    subject: str = "weekly report",
    message_id: str | None = None,
    visible_at: float | None = None,
    row_id: str | None = None,
) -> TraceRow:
    external = not recipient.endswith("@contoso.com")
    return TraceRow(
        id=row_id or str(uuid.uuid4()),
        tenant=tenant,
        sender=sender,
        recipient=recipient,
        message_id=message_id or f"<{uuid.uuid4()}@contoso.com>",
        received_at=received_at,
        subject=subject,
        size=4321,
        from_ip="203.0.113.7",
        to_ip="198.51.100.25" if external else "",
        status=status,
        visible_at=received_at if visible_at is None else visible_at,
    )


def stored_message(
    received_at: float,
    *,
    folder: str = "inbox",
    subject: str = "probe 1",
    internet_message_id: str | None = None,
    message_id: str | None = None,
) -> StoredMessage:
    internet_message_id = internet_message_id or f"<{uuid.uuid4()}@probe-host>"
    return StoredMessage(
        id=message_id or f"AAMkAD{uuid.uuid4().hex}=",
        internet_message_id=internet_message_id,
        subject=subject,
        sender="Probe Sender <sender@contoso.com>",
        received_at=received_at,
        sent_at=received_at - 2,
        folder=folder,
        headers=[
            ("From", "Probe Sender <sender@contoso.com>"),
            ("To", "Probe <probe@contoso.com>, second@contoso.com"),
            ("Subject", subject),
            ("Message-ID", internet_message_id),
            ("Authentication-Results", "spf=pass smtp.mailfrom=contoso.com; dkim=pass"),
        ],
        body=f"body of {subject}",
    )


def add_rows(state: EmulatorState, rows: Sequence[TraceRow]) -> list[TraceRow]:
    for row in rows:
        state.add_trace_row(row)
    return list(rows)


class Sink:
    """Collects what a puller delivers, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[TraceRecord]] = []

    def __call__(self, records: Sequence[TraceRecord]) -> None:
        self.batches.append(list(records))

    @property
    def records(self) -> list[TraceRecord]:
        return [record for batch in self.batches for record in batch]

    def id_counts(self) -> Counter[str]:
        return Counter(record.id for record in self.records)


PullerFactory = Callable[..., TracePuller]

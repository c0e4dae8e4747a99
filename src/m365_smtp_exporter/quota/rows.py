"""The engine's input row, address normalisation and message direction."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple


class QuotaRow(NamedTuple):
    """One message-trace row: one message to one recipient."""

    sender: str
    recipient: str
    message_id: str
    received_at: float  # epoch seconds
    status: str


# QuotaRow's fields in its order as a plain tuple: what the engine reads, by position, so a
# caller holding other records can hand over their fields without building QuotaRows.
RowFields = tuple[str, str, str, float, str]


class Direction(enum.StrEnum):
    """Where a row goes, judged by the tenant's accepted domains."""

    OUTBOUND = "outbound"  # our sender, recipient outside
    INTERNAL = "internal"  # our sender, our recipient
    INBOUND = "inbound"  # outside sender, our recipient
    RELAY = "relay"  # neither address in an accepted domain


def normalize_address(address: str) -> str:
    return address.strip().lower()


def domain_of(address: str) -> str:
    """The part after the last '@', or '' when there is none (e.g. a null sender)."""
    return address.rpartition("@")[2] if "@" in address else ""


def normalize_message_id(message_id: str) -> str:
    """Message-ID without surrounding blanks and angle brackets, so `<a@b>` equals `a@b`."""
    return message_id.strip().removeprefix("<").removesuffix(">")


def direction_of(sender: str, recipient: str, internal_domains: Collection[str]) -> Direction:
    """Direction of a row; both addresses must already be normalised."""
    if domain_of(sender) in internal_domains:
        return (
            Direction.INTERNAL if domain_of(recipient) in internal_domains else Direction.OUTBOUND
        )
    return Direction.INBOUND if domain_of(recipient) in internal_domains else Direction.RELAY


def row_from_graph(record: Mapping[str, Any]) -> QuotaRow:
    """A `QuotaRow` from one parsed Graph `messageTrace` record.

    `receivedDateTime` is UTC ("2026-01-20T10:30:00Z", fractions allowed); a value
    without an offset is read as UTC too.
    """
    received = datetime.fromisoformat(str(record["receivedDateTime"]))
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    return QuotaRow(
        sender=str(record.get("senderAddress") or ""),
        recipient=str(record.get("recipientAddress") or ""),
        message_id=str(record.get("messageId") or ""),
        received_at=received.timestamp(),
        status=str(record.get("status") or ""),
    )

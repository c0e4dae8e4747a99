"""The engine's input row, address normalisation and message direction."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress
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


class ExcludedReason(enum.StrEnum):
    """Why a trace row is left out of quota counting: a system sender, no mailbox's sending.

    Microsoft's tenant external recipient limit excludes NDRs, journaling and automatic
    replies; of those, only system senders can be recognised in a trace row."""

    NULL_SENDER = "null_sender"  # empty or "<>": bounces and other DSNs
    POSTMASTER = "postmaster"  # postmaster@ / mailer-daemon@ any domain
    EXCHANGE_SYSTEM = "exchange_system"  # MicrosoftExchange<guid>@<tenant>: Exchange's NDRs


_SYSTEM_LOCAL_PARTS = {
    "postmaster": ExcludedReason.POSTMASTER,
    "mailer-daemon": ExcludedReason.POSTMASTER,
}


def excluded_reason(sender: str) -> ExcludedReason | None:
    """Why rows from `sender` (normalised) are not counted against quota; None: counted."""
    if sender in ("", "<>"):
        return ExcludedReason.NULL_SENDER
    local = sender.rpartition("@")[0] if "@" in sender else sender
    reason = _SYSTEM_LOCAL_PARTS.get(local)
    if reason is not None:
        return reason
    if local.startswith("microsoftexchange"):
        return ExcludedReason.EXCHANGE_SYSTEM
    return None


def without_system_senders(
    rows: Iterable[RowFields], excluded: Counter[ExcludedReason]
) -> list[RowFields] | RowColumns:
    """`rows` minus those of system senders, each left out counted in `excluded` by reason.

    Each distinct sender is judged once (and remembered across batches), and a batch with no
    system sender (the usual case) is handed on as it came, without a per-row Python step."""
    batch: list[RowFields] | RowColumns = (
        rows if isinstance(rows, list | RowColumns) else RowColumns.of(rows)
    )
    columns = RowColumns.of(batch)
    reasons = _SYSTEM_SENDERS
    if len(reasons) > _SYSTEM_SENDERS_LIMIT:  # bounded: senders come from the network
        reasons.clear()
    judged = list(map(reasons.__getitem__, columns.senders))
    if not any(judged):
        return batch
    excluded.update(filter(None, judged))
    return columns.select([reason is None for reason in judged])


class _SenderReasons(dict[str, "ExcludedReason | None"]):
    """raw sender -> why its rows are excluded (None: counted), judged on first sight."""

    def __missing__(self, sender: str) -> ExcludedReason | None:
        reason = self[sender] = excluded_reason(normalize_address(sender))
        return reason


_SYSTEM_SENDERS = _SenderReasons()
_SYSTEM_SENDERS_LIMIT = 1 << 17


@dataclass(slots=True, eq=False)
class RowColumns:
    """Rows as columns, in `QuotaRow`'s field order: what the engine counts a column at a
    time. Iterated, it gives each row's fields as a plain tuple."""

    senders: Sequence[str]
    recipients: Sequence[str]
    message_ids: Sequence[str]
    received_at: Sequence[float]
    statuses: Sequence[str]

    @classmethod
    def of(cls, rows: Iterable[RowFields]) -> RowColumns:
        """`rows` as columns (as they are when they already are)."""
        if isinstance(rows, RowColumns):
            return rows
        columns = list(zip(*rows, strict=True))
        if not columns:
            return cls((), (), (), (), ())
        senders, recipients, message_ids, received_at, statuses = columns
        return cls(senders, recipients, message_ids, received_at, statuses)

    def __len__(self) -> int:
        return len(self.senders)

    def __iter__(self) -> Iterator[RowFields]:
        return zip(
            self.senders,
            self.recipients,
            self.message_ids,
            self.received_at,
            self.statuses,
            strict=True,
        )

    def select(self, keep: Sequence[bool]) -> RowColumns:
        """The rows whose flag in `keep` is true, in order."""
        return RowColumns(
            list(compress(self.senders, keep)),
            list(compress(self.recipients, keep)),
            list(compress(self.message_ids, keep)),
            list(compress(self.received_at, keep)),
            list(compress(self.statuses, keep)),
        )


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

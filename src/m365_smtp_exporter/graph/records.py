"""Message-trace pages parsed with orjson into small records (the fast path).

Kiota's typed models parse a few hundred trace rows per second; orjson plus a tuple per row
parses hundreds of thousands. Only the fields the exporter uses are kept.

- `status` is lower-cased; values outside Graph's enum (including `unknownFutureValue`) become
  `unknown`. Such rows are kept and counted, never dropped.
- `direction` comes from the tenant's accepted domains (`quota.rows.direction_of`):
  `outbound` (our sender, outside recipient), `internal` (both ours), `inbound` (outside
  sender, our recipient) and `relay` (neither address in an accepted domain, e.g. mail
  relayed through the tenant's connectors).
- Addresses are stripped and lower-cased.
- A page that is not JSON, not an object, has no `value` array, or holds a row without an
  `id` or a readable `receivedDateTime` raises `MalformedPageError`: the pull fails rather than
  losing rows silently.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from m365_smtp_exporter.graph.errors import MalformedPageError
from m365_smtp_exporter.quota.rows import RowFields, direction_of, domain_of

UNKNOWN_STATUS = "unknown"
# Graph's exchangeMessageTraceStatus members (recalled only with include-unknown-enum-members).
TRACE_STATUSES = (
    "gettingStatus",
    "pending",
    "failed",
    "delivered",
    "expanded",
    "quarantined",
    "filteredAsSpam",
    "recalled",
)
_STATUS_LABELS = {status.lower(): status.lower() for status in TRACE_STATUSES}


class TraceRecord(NamedTuple):
    """One trace row: one message to one recipient."""

    id: str  # Graph's message trace id
    sender: str
    recipient: str
    message_id: str  # Internet Message-ID as Graph wrote it, e.g. "<...@contoso.com>"
    received_at: float  # epoch seconds
    status: str  # lower-cased Graph status, or "unknown"
    direction: str  # outbound, internal, inbound, relay


class TracePage(NamedTuple):
    records: list[TraceRecord]
    next_link: str | None  # absolute `@odata.nextLink`, to be followed exactly as given


def status_label(raw: object) -> str:
    if isinstance(raw, str):
        return _STATUS_LABELS.get(raw.lower(), UNKNOWN_STATUS)
    return UNKNOWN_STATUS


def parse_trace_page(body: bytes, internal_domains: Collection[str]) -> TracePage:
    """Parse one `messageTraces` answer; `internal_domains` lower-cased accepted domains."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedPageError(f"trace page is not valid JSON ({len(body)} bytes)") from None
    if not isinstance(document, dict):
        raise MalformedPageError("trace page is not a JSON object")
    values = document.get("value")
    if not isinstance(values, list):
        raise MalformedPageError("trace page has no 'value' array")
    next_link = document.get("@odata.nextLink")
    if next_link is not None and (not isinstance(next_link, str) or not next_link):
        raise MalformedPageError("trace page has an unusable '@odata.nextLink'")
    return TracePage(_records(values, internal_domains), next_link)


# The row fields we read, fetched per row in one C call; Graph writes every property (null
# when empty), so a missing optional one sends the page through the lenient getter.
_FIELDS = itemgetter(
    "id", "receivedDateTime", "senderAddress", "recipientAddress", "messageId", "status"
)
_Fields = tuple[Any, Any, Any, Any, Any, Any]


def _fields_leniently(value: Any) -> _Fields:
    return (
        value["id"],
        value["receivedDateTime"],
        value.get("senderAddress"),
        value.get("recipientAddress"),
        value.get("messageId"),
        value.get("status"),
    )


def _records(values: list[Any], internal_domains: Collection[str]) -> list[TraceRecord]:
    try:
        try:
            return _build(map(_FIELDS, values), internal_domains)
        except KeyError:
            return _build(map(_fields_leniently, values), internal_domains)
    except (KeyError, TypeError, AttributeError):
        # a row that is not an object, lacks `id`/`receivedDateTime`, or has odd value types
        raise MalformedPageError("trace page with an unusable row") from None


def _build(rows: Iterable[_Fields], internal_domains: Collection[str]) -> list[TraceRecord]:
    # Busy tenants repeat timestamps (second precision), addresses, domain pairs and statuses
    # within a page: the caches save the work and let repeated values share one object.
    stamps: dict[Any, float] = {}
    addresses: dict[Any, tuple[str, str]] = {}  # raw -> (normalised address, domain)
    directions: dict[tuple[str, str], str] = {}  # (sender domain, recipient domain)
    statuses: dict[Any, str] = {}
    records: list[TraceRecord] = []
    append = records.append
    new_record = tuple.__new__  # what TraceRecord(...) does, minus a Python-level call
    for trace_id, stamp, raw_sender, raw_recipient, raw_message_id, raw_status in rows:
        if trace_id.__class__ is not str or not trace_id:
            raise MalformedPageError("trace row with an empty or non-string 'id'")
        received = stamps.get(stamp)
        if received is None:
            received = stamps[stamp] = _epoch(stamp)
        sender = addresses.get(raw_sender)
        if sender is None:
            sender = addresses[raw_sender] = _address(raw_sender)
        recipient = addresses.get(raw_recipient)
        if recipient is None:
            recipient = addresses[raw_recipient] = _address(raw_recipient)
        pair = (sender[1], recipient[1])
        direction = directions.get(pair)
        if direction is None:
            direction = directions[pair] = direction_of(
                sender[0], recipient[0], internal_domains
            ).value
        status = statuses.get(raw_status)
        if status is None:
            status = statuses[raw_status] = status_label(raw_status)
        message_id = raw_message_id if raw_message_id.__class__ is str else ""
        append(
            new_record(
                TraceRecord,
                (trace_id, sender[0], recipient[0], message_id, received, status, direction),
            )
        )
    return records


@lru_cache(maxsize=1 << 16)  # a tenant's correspondents recur from page to page
def _address(raw: object) -> tuple[str, str]:
    """(stripped lower-case address, its domain); ('', '') for a missing one."""
    if not isinstance(raw, str):
        return ("", "")
    address = raw.strip().lower()
    return (address, domain_of(address))


def _epoch(stamp: object) -> float:
    """`2026-01-20T10:30:00Z` (fractions allowed; no offset means UTC) as epoch seconds."""
    if not isinstance(stamp, str):
        raise MalformedPageError("trace row with a non-string 'receivedDateTime'")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise MalformedPageError(
            f"trace row with an unreadable receivedDateTime {stamp[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_QUOTA_FIELDS = itemgetter(1, 2, 3, 4, 5)  # sender, recipient, message_id, received_at, status


def to_quota_rows(records: Iterable[TraceRecord]) -> Iterator[RowFields]:
    """The quota engine's view of trace records, for `QuotaEngine.add_rows`: lazily, the
    fields of a `QuotaRow` in its order as plain tuples, each picked out in one C call."""
    return map(_QUOTA_FIELDS, records)

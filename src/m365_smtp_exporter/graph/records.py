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

from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache, partial
from operator import attrgetter, itemgetter, methodcaller
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


# Column by column: each field is fetched for the whole page in one C-level `map`, and each
# distinct raw value is converted once per page through a dict whose `__missing__` does the
# work, so repeated values (timestamps to the second, correspondents, statuses) cost a
# C-level lookup and share one object. Graph writes every property (null when empty); a
# missing optional one is read leniently.
_ID = itemgetter("id")
_RECEIVED = itemgetter("receivedDateTime")
_OPTIONAL = ("senderAddress", "recipientAddress", "messageId", "status")
_GETTERS = {name: itemgetter(name) for name in _OPTIONAL}
_LENIENT = {name: methodcaller("get", name) for name in _OPTIONAL}


class _Converted(dict[Any, Any]):
    """raw value -> converted value, computed on first sight."""

    __slots__ = ("_convert",)

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, raw: Any) -> Any:
        value = self[raw] = self._convert(raw)
        return value


def _column(values: list[Any], name: str) -> list[Any]:
    try:
        return list(map(_GETTERS[name], values))
    except KeyError:
        return list(map(_LENIENT[name], values))


def _records(values: list[Any], internal_domains: Collection[str]) -> list[TraceRecord]:
    if not values:
        return []
    try:
        ids = list(map(_ID, values))
        stamps = list(map(_RECEIVED, values))
        senders, recipients, message_ids, statuses = (_column(values, n) for n in _OPTIONAL)
    except (KeyError, TypeError, AttributeError):
        # a row that is not an object or lacks `id`/`receivedDateTime`
        raise MalformedPageError("trace page with an unusable row") from None
    if set(map(type, ids)) != {str} or "" in ids:
        raise MalformedPageError("trace row with an empty or non-string 'id'")
    if set(map(type, message_ids)) != {str}:
        message_ids = [m if m.__class__ is str else "" for m in message_ids]
    try:
        return _build(
            ids=ids,
            stamps=stamps,
            senders=senders,
            recipients=recipients,
            message_ids=message_ids,
            statuses=statuses,
            internal_domains=internal_domains,
        )
    except TypeError:  # an unhashable value (an object or array where a string belongs)
        raise MalformedPageError("trace page with an unusable row") from None


def _build(
    *,
    ids: list[str],
    stamps: list[Any],
    senders: list[Any],
    recipients: list[Any],
    message_ids: list[str],
    statuses: list[Any],
    internal_domains: Collection[str],
) -> list[TraceRecord]:
    addresses = _ADDRESSES
    if len(addresses) > _ADDRESS_CACHE_LIMIT:  # bounded: trace pages are hostile input
        addresses.clear()
    sender_pairs = list(map(addresses.__getitem__, senders))
    recipient_pairs = list(map(addresses.__getitem__, recipients))

    def direction(domains: tuple[str, str]) -> str:
        # direction_of reads only the domains: hand it one address of each
        return direction_of(f"@{domains[0]}", f"@{domains[1]}", internal_domains).value

    directions = _Converted(direction)  # keyed by (sender domain, recipient domain)
    return list(
        map(
            _new_record,
            zip(
                ids,
                map(_FIRST, sender_pairs),
                map(_FIRST, recipient_pairs),
                message_ids,
                _epochs(stamps),
                map(_Converted(status_label).__getitem__, statuses),
                map(
                    directions.__getitem__,
                    zip(map(_SECOND, sender_pairs), map(_SECOND, recipient_pairs), strict=True),
                ),
                strict=True,
            ),
        )
    )


_ADDRESS_CACHE_LIMIT = 1 << 17
_TZINFO = attrgetter("tzinfo")


def _epochs(stamps: list[Any]) -> list[float]:
    """Epoch seconds of `receivedDateTime` values, converted in C when all are well-formed
    UTC stamps; otherwise one by one, with an error naming the bad value."""
    try:
        moments = list(map(datetime.fromisoformat, stamps))
    except (TypeError, ValueError):
        moments = None
    if moments is None or None in set(map(_TZINFO, moments)):
        return list(map(_Converted(_epoch).__getitem__, stamps))
    return list(map(datetime.timestamp, moments))


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
# what TraceRecord(*fields) does, minus a Python-level call
_new_record = partial(tuple.__new__, TraceRecord)


@lru_cache(maxsize=1 << 16)  # a tenant's correspondents recur from page to page
def _address(raw: object) -> tuple[str, str]:
    """(stripped lower-case address, its domain); ('', '') for a missing one."""
    if not isinstance(raw, str):
        return ("", "")
    address = raw.strip().lower()
    return (address, domain_of(address))


_ADDRESSES = _Converted(_address)  # raw -> (address, domain), for all pages


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

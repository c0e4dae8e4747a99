"""Message-trace pages decoded with msgspec into columns of the few fields the exporter uses.

A page is decoded in one C call against a typed schema (`_Page`): only `id`,
`senderAddress`, `recipientAddress`, `messageId`, `receivedDateTime`, `status` and
`@odata.nextLink` are read, the other properties are skipped without building objects,
and every type and length is checked on the way. The rows then become columns
(`TraceRows`), one list per field, each converted for the whole page by C-level `map`s over
caches keyed by the raw value, so a tenant's repeated senders, correspondents, statuses and
minutes cost a dict lookup each.

- `status` is lower-cased; values outside Graph's enum (including `unknownFutureValue`) become
  `unknown`. Such rows are kept and counted, never dropped.
- `direction` comes from the tenant's accepted domains (`quota.rows.direction_of`):
  `outbound` (our sender, outside recipient), `internal` (both ours), `inbound` (outside
  sender, our recipient) and `relay` (neither address in an accepted domain, e.g. mail
  relayed through the tenant's connectors).
- Addresses are stripped and lower-cased. Graph writes every property (null when empty); a
  missing or non-string scalar address, message id or status reads as empty / `unknown`.
- A page that is not JSON (or not UTF-8), not an object, has no `value` array, holds a row
  that is not an object, without a non-empty string `id` or a readable `receivedDateTime`,
  an object or array where a scalar belongs, or a string over its bound raises
  `MalformedPageError` naming the field: the pull fails rather than losing rows silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import compress, repeat
from operator import add, attrgetter, itemgetter, truediv
from typing import Annotated, Any, NamedTuple, overload

import msgspec

from m365_smtp_exporter.graph.errors import MalformedPageError
from m365_smtp_exporter.quota.rows import RowColumns, direction_of, domain_of

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

# Bounds on the strings of a row: generous for real values (a trace id is a GUID, an address
# at most 320 characters, a Message-ID one header line), small enough that a hostile page
# cannot hand the engine megabyte-long senders.
MAX_ID_CHARS = 256
MAX_ADDRESS_CHARS = 512
MAX_MESSAGE_ID_CHARS = 2048
MAX_STATUS_CHARS = 64
MAX_TIMESTAMP_CHARS = 64


class TraceRecord(NamedTuple):
    """One trace row: one message to one recipient."""

    id: str  # Graph's message trace id
    sender: str
    recipient: str
    message_id: str  # Internet Message-ID as Graph wrote it, e.g. "<...@contoso.com>"
    received_at: float  # epoch seconds
    status: str  # lower-cased Graph status, or "unknown"
    direction: str  # outbound, internal, inbound, relay


# what TraceRecord(*fields) does, minus a Python-level call
_new_record = partial(tuple.__new__, TraceRecord)


@dataclass(slots=True, eq=False)
class TraceRows(Sequence[TraceRecord]):
    """Trace rows column by column: what the pipeline (de-dup, counts, the quota engine)
    works on, a whole column at a time. Read row by row, it is a sequence of `TraceRecord`s
    (built on demand). The columns are in `TraceRecord`'s field order."""

    ids: list[str]
    senders: list[str]
    recipients: list[str]
    message_ids: list[str]
    received_at: list[float]
    statuses: list[str]
    directions: list[str]

    @classmethod
    def from_records(cls, records: Iterable[TraceRecord]) -> TraceRows:
        if isinstance(records, TraceRows):
            return records
        columns = list(zip(*records, strict=True))
        if not columns:
            return cls([], [], [], [], [], [], [])
        return cls(*map(list, columns))

    def columns(
        self,
    ) -> tuple[list[str], list[str], list[str], list[str], list[float], list[str], list[str]]:
        """The columns in `TraceRecord`'s field order."""
        return (
            self.ids,
            self.senders,
            self.recipients,
            self.message_ids,
            self.received_at,
            self.statuses,
            self.directions,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> TraceRecord: ...

    @overload
    def __getitem__(self, index: slice) -> TraceRows: ...

    def __getitem__(self, index: int | slice) -> TraceRecord | TraceRows:
        if isinstance(index, slice):
            return TraceRows(
                self.ids[index],
                self.senders[index],
                self.recipients[index],
                self.message_ids[index],
                self.received_at[index],
                self.statuses[index],
                self.directions[index],
            )
        return _new_record(column[index] for column in self.columns())

    def __iter__(self) -> Iterator[TraceRecord]:
        return map(_new_record, zip(*self.columns(), strict=True))

    def __repr__(self) -> str:
        return f"TraceRows({list(self)!r})"

    def select(self, keep: Sequence[bool]) -> TraceRows:
        """The rows whose flag in `keep` is true, in order."""
        return TraceRows(
            list(compress(self.ids, keep)),
            list(compress(self.senders, keep)),
            list(compress(self.recipients, keep)),
            list(compress(self.message_ids, keep)),
            list(compress(self.received_at, keep)),
            list(compress(self.statuses, keep)),
            list(compress(self.directions, keep)),
        )

    def keys(self) -> list[tuple[str, str]]:
        """(trace id, recipient) of each row: what identifies a row across pages."""
        return list(zip(self.ids, self.recipients, strict=True))

    def quota_rows(self) -> RowColumns:
        """The quota engine's view of these rows (see `QuotaEngine.add_rows`)."""
        return RowColumns(
            self.senders, self.recipients, self.message_ids, self.received_at, self.statuses
        )


class TracePage(NamedTuple):
    records: TraceRows
    next_link: str | None  # absolute `@odata.nextLink`, to be followed exactly as given


# ---- the schema: what is read of a page, with its types and bounds ----------------------

# A scalar read leniently: a string within its bound, or a number, bool or null (which read
# as empty); an object or array is refused.
_Address = Annotated[str, msgspec.Meta(max_length=MAX_ADDRESS_CHARS)] | int | float | bool | None
_MessageId = (
    Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_ID_CHARS)] | int | float | bool | None
)
_Status = Annotated[str, msgspec.Meta(max_length=MAX_STATUS_CHARS)] | int | float | bool | None


class _Row(msgspec.Struct, rename="camel", gc=False):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
    received_date_time: Annotated[str, msgspec.Meta(max_length=MAX_TIMESTAMP_CHARS)]
    sender_address: _Address = None
    recipient_address: _Address = None
    message_id: _MessageId = None
    status: _Status = None


class _Page(msgspec.Struct, gc=False):
    value: list[_Row]
    next_link: Annotated[str, msgspec.Meta(min_length=1)] | None = msgspec.field(
        default=None, name="@odata.nextLink"
    )


_DECODER = msgspec.json.Decoder(_Page)


def status_label(raw: object) -> str:
    if isinstance(raw, str):
        return _STATUS_LABELS.get(raw.lower(), UNKNOWN_STATUS)
    return UNKNOWN_STATUS


def parse_trace_page(body: bytes, internal_domains: Collection[str]) -> TracePage:
    """Parse one `messageTraces` answer; `internal_domains` lower-cased accepted domains."""
    try:
        page = _DECODER.decode(body)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError)
        # msgspec names the type expected and the path, e.g. "Expected `str`, got `null` -
        # at `$.value[3].id`", never the value itself
        raise MalformedPageError(f"trace page rejected: {str(exc)[:200]}") from None
    except msgspec.DecodeError:
        raise MalformedPageError(f"trace page is not valid JSON ({len(body)} bytes)") from None
    return TracePage(_columns(page.value, internal_domains), page.next_link)


class _Converted(dict[Any, Any]):
    """raw value -> converted value, computed on first sight."""

    __slots__ = ("_convert",)

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, raw: Any) -> Any:
        value = self[raw] = self._convert(raw)
        return value


_ID = attrgetter("id")
_RECEIVED = attrgetter("received_date_time")
_SENDER = attrgetter("sender_address")
_RECIPIENT = attrgetter("recipient_address")
_MESSAGE_ID = attrgetter("message_id")
_STATUS = attrgetter("status")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


def _columns(rows: list[_Row], internal_domains: Collection[str]) -> TraceRows:
    if not rows:
        return TraceRows([], [], [], [], [], [], [])
    addresses = _ADDRESSES
    if len(addresses) > _CACHE_LIMIT or len(_STATUS_LABELS_OF) > _CACHE_LIMIT:
        addresses.clear()  # bounded: trace pages are hostile input
        _STATUS_LABELS_OF.clear()
    sender_pairs = list(map(addresses.__getitem__, map(_SENDER, rows)))
    recipient_pairs = list(map(addresses.__getitem__, map(_RECIPIENT, rows)))

    def direction(domains: tuple[str, str]) -> str:
        # direction_of reads only the domains: hand it one address of each
        return direction_of(f"@{domains[0]}", f"@{domains[1]}", internal_domains).value

    directions = _Converted(direction)  # keyed by (sender domain, recipient domain)
    message_ids = list(map(_MESSAGE_ID, rows))
    if set(map(type, message_ids)) != {str}:
        message_ids = [m if m.__class__ is str else "" for m in message_ids]
    return TraceRows(
        ids=list(map(_ID, rows)),
        senders=list(map(_FIRST, sender_pairs)),
        recipients=list(map(_FIRST, recipient_pairs)),
        message_ids=message_ids,
        received_at=_epochs(list(map(_RECEIVED, rows))),
        statuses=list(map(_STATUS_LABELS_OF.__getitem__, map(_STATUS, rows))),
        directions=list(
            map(
                directions.__getitem__,
                zip(map(_SECOND, sender_pairs), map(_SECOND, recipient_pairs), strict=True),
            )
        ),
    )


_CACHE_LIMIT = 1 << 17
_STATUS_LABELS_OF = _Converted(status_label)  # raw status -> label, for all pages


def _address(raw: object) -> tuple[str, str]:
    """(stripped lower-case address, its domain); ('', '') for a missing one."""
    if not isinstance(raw, str):
        return ("", "")
    address = raw.strip().lower()
    return (address, domain_of(address))


# raw -> (address, domain), for all pages: a tenant's correspondents recur from page to page
_ADDRESSES = _Converted(_address)


# ---- receivedDateTime -------------------------------------------------------------------
#
# Graph writes `2026-01-20T10:30:00Z`. A stamp is cut after its minute: the head
# (`2026-01-20T10:30`) repeats for every row of that minute and the tail (`:00Z`) is one of
# 60 for whole seconds, so each is parsed once (with datetime.fromisoformat, which checks
# it) and cached as integer microseconds; their sum over 10**6 is exactly the float
# `datetime.timestamp()` gives. A page with any other shape is read one stamp at a time.

_HEAD_CHARS = 16
_HEAD_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")
_US = 1_000_000


def _head_us(head: str) -> int | None:
    """Microseconds since the epoch at a `YYYY-MM-DDTHH:MM` head (UTC); None otherwise."""
    if not _HEAD_SHAPE.fullmatch(head):
        return None
    try:
        moment = datetime.fromisoformat(head)
    except ValueError:
        return None
    return _whole_us(moment.replace(tzinfo=UTC))


def _tail_us(tail: str) -> int | None:
    """Microseconds a tail (`:SS`, fraction, offset) adds to its minute; None if unreadable."""
    if tail and tail[0] != ":":
        return None
    try:
        moment = datetime.fromisoformat("1970-01-01T00:00" + tail)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _whole_us(moment)


def _whole_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_US


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = datetime.resolution
_HEADS = _Converted(_head_us)
_TAILS = _Converted(_tail_us)
_HEAD = itemgetter(slice(None, _HEAD_CHARS))
_TAIL = itemgetter(slice(_HEAD_CHARS, None))


def _epochs(stamps: list[str]) -> list[float]:
    """Epoch seconds of `receivedDateTime` values; an error names an unreadable one."""
    if len(_TAILS) > _CACHE_LIMIT or len(_HEADS) > _CACHE_LIMIT:
        _TAILS.clear()  # fractions of seconds make many tails: bounded
        _HEADS.clear()
    heads = list(map(_HEADS.__getitem__, map(_HEAD, stamps)))
    tails = list(map(_TAILS.__getitem__, map(_TAIL, stamps)))
    if None in heads or None in tails:
        return list(map(_epoch, stamps))
    return list(map(truediv, map(add, heads, tails), repeat(_US)))


def _epoch(stamp: str) -> float:
    """`2026-01-20T10:30:00Z` (fractions allowed; no offset means UTC) as epoch seconds."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise MalformedPageError(
            f"trace row with an unreadable receivedDateTime {stamp[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def to_quota_rows(records: Iterable[TraceRecord]) -> RowColumns:
    """The quota engine's view of trace records, for `QuotaEngine.add_rows`: the fields of
    a `QuotaRow`, column by column."""
    return TraceRows.from_records(records).quota_rows()

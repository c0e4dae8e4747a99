"""Parsing trace pages: fields, statuses, directions, timestamps and malformed bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365_smtp_exporter.graph.errors import FailureReason, MalformedPageError
from m365_smtp_exporter.graph.records import (
    MAX_ADDRESS_CHARS,
    MAX_ID_CHARS,
    MAX_MESSAGE_ID_CHARS,
    MAX_STATUS_CHARS,
    TraceRecord,
    TraceRows,
    parse_trace_page,
    status_label,
    to_quota_rows,
)
from m365_smtp_exporter.quota import QuotaRow

DOMAINS = frozenset({"contoso.com"})
NEXT = "https://graph.microsoft.com/v1.0/admin/exchange/tracing/messageTraces?$skiptoken=abc"


def row(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "4451a062-48cb-e80d-e8c0-196330437ae6",
        "senderAddress": "Sender@Contoso.com",
        "recipientAddress": "recipient@fabrikam.com ",
        "messageId": "<d9683b4c@contoso.com>",
        "receivedDateTime": "2025-06-13T10:30:00Z",
        "subject": "Quarterly Report",
        "size": 45678,
        "fromIP": "192.168.1.100",
        "toIP": "",
        "status": "delivered",
    }
    document.update(overrides)
    return document


def page(*rows: Any, next_link: str | None = None) -> bytes:
    document: dict[str, Any] = {"@odata.context": "ctx", "value": list(rows)}
    if next_link is not None:
        document["@odata.nextLink"] = next_link
    return orjson.dumps(document)


def test_a_graph_row_becomes_a_record() -> None:
    parsed = parse_trace_page(page(row(), next_link=NEXT), DOMAINS)

    assert parsed.next_link == NEXT
    assert list(parsed.records) == [
        TraceRecord(
            id="4451a062-48cb-e80d-e8c0-196330437ae6",
            sender="sender@contoso.com",
            recipient="recipient@fabrikam.com",
            message_id="<d9683b4c@contoso.com>",
            received_at=1749810600.0,
            status="delivered",
            direction="outbound",
        )
    ]


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("delivered", "delivered"),
        ("Delivered", "delivered"),
        ("filteredAsSpam", "filteredasspam"),
        ("FilteredAsSpam", "filteredasspam"),
        ("GettingStatus", "gettingstatus"),
        ("recalled", "recalled"),
        ("unknownFutureValue", "unknown"),
        ("SomethingMicrosoftAddsLater", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (7, "unknown"),
    ],
)
def test_statuses_are_lower_cased_and_unknown_values_kept(raw: object, label: str) -> None:
    parsed = parse_trace_page(page(row(status=raw)), DOMAINS)

    assert [record.status for record in parsed.records] == [label]
    assert status_label(raw) == label


@pytest.mark.parametrize(
    ("sender", "recipient", "direction"),
    [
        ("a@contoso.com", "b@example.net", "outbound"),
        ("a@contoso.com", "B@CONTOSO.COM", "internal"),
        ("a@example.net", "b@contoso.com", "inbound"),
        ("a@example.net", "b@example.org", "relay"),
        ("", "b@contoso.com", "inbound"),  # null sender (bounces)
    ],
)
def test_direction_follows_the_accepted_domains(
    sender: str, recipient: str, direction: str
) -> None:
    parsed = parse_trace_page(page(row(senderAddress=sender, recipientAddress=recipient)), DOMAINS)

    assert parsed.records[0].direction == direction


def test_fractional_and_offsetless_timestamps_are_utc() -> None:
    parsed = parse_trace_page(
        page(
            row(receivedDateTime="2025-06-13T10:30:00.1234567Z"),
            row(id="b", receivedDateTime="2025-06-13T10:30:00"),
        ),
        DOMAINS,
    )

    assert [record.received_at for record in parsed.records] == [1749810600.123456, 1749810600.0]


def test_missing_optional_fields_become_empty() -> None:
    bare = {"id": "x", "receivedDateTime": "2025-06-13T10:30:00Z"}

    (record,) = parse_trace_page(page(bare), DOMAINS).records

    assert (record.sender, record.recipient, record.message_id) == ("", "", "")
    assert (record.status, record.direction) == ("unknown", "relay")


@pytest.mark.parametrize(
    "body",
    [
        b'{"value": [{"id": "',  # cut in half
        b"",
        b"[]",
        b'{"error": {"code": "x"}}',  # no value array
        b'{"value": {}}',
        b'{"value": [], "@odata.nextLink": 5}',
        page(row(id="")),
        page(row(id=None)),
        page({"receivedDateTime": "2025-06-13T10:30:00Z"}),
        page(row(receivedDateTime="yesterday")),
        page(row(receivedDateTime=None)),
        page(row(senderAddress=["a", "b"])),
        page("not a row"),
    ],
)
def test_malformed_pages_raise(body: bytes) -> None:
    with pytest.raises(MalformedPageError) as raised:
        parse_trace_page(body, DOMAINS)

    assert raised.value.reason is FailureReason.MALFORMED


def test_records_feed_the_quota_engine() -> None:
    records = parse_trace_page(page(row(status="Failed")), DOMAINS).records

    assert list(to_quota_rows(records)) == [
        QuotaRow(
            "sender@contoso.com",
            "recipient@fabrikam.com",
            "<d9683b4c@contoso.com>",
            1749810600.0,
            "failed",
        )
    ]


# ---- the typed decoder's bounds and types ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (page(row(id="x" * (MAX_ID_CHARS + 1))), "$.value[0].id"),
        (page(row(id=7)), "$.value[0].id"),
        (page(row(senderAddress="a" * (MAX_ADDRESS_CHARS + 1))), "$.value[0].senderAddress"),
        (page(row(recipientAddress={"address": "a@b"})), "$.value[0].recipientAddress"),
        (page(row(messageId="<" + "m" * MAX_MESSAGE_ID_CHARS + ">")), "$.value[0].messageId"),
        (page(row(messageId=["<a@b>"])), "$.value[0].messageId"),
        (page(row(status="d" * (MAX_STATUS_CHARS + 1))), "$.value[0].status"),
        (page(row(status={"value": "delivered"})), "$.value[0].status"),
        (page(row(receivedDateTime="2025-06-13T10:30:00Z" + " " * 64)), "receivedDateTime"),
        (page(row(receivedDateTime=1749810600)), "$.value[0].receivedDateTime"),
        (page(row(), ["not", "a", "row"]), "$.value[1]"),
        (b'{"value": [], "@odata.nextLink": ""}', "@odata.nextLink"),
    ],
)
def test_a_field_of_the_wrong_type_or_size_is_named_not_echoed(body: bytes, field: str) -> None:
    with pytest.raises(MalformedPageError) as raised:
        parse_trace_page(body, DOMAINS)

    message = str(raised.value)
    assert field in message
    assert "xxxxxxxx" not in message and "aaaaaaaa" not in message and "dddddddd" not in message
    assert raised.value.reason is FailureReason.MALFORMED


@pytest.mark.parametrize(
    "body",
    [
        b'{"value": [{"id": "\xff\xfe", "receivedDateTime": "2025-06-13T10:30:00Z"}]}',
        b'{"value": [{"id": "a", "receivedDateTime": "2025-06-13T10:30:00Z"}]} trailing',
        b'{"value": [{"id": "a", "receivedDateTime": "2025-06-13T10:30:00Z",}]}',
        b"\x00" * 64,
    ],
)
def test_bytes_that_are_not_json_text_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPageError, match="not valid JSON"):
        parse_trace_page(body, DOMAINS)


def test_scalars_of_another_type_read_as_empty_and_unknown_properties_are_skipped() -> None:
    odd = row(
        senderAddress=5,
        recipientAddress=True,
        messageId=3.5,
        status=None,
        subject={"nested": ["anything", 1]},
        extra=[1, 2, 3],
    )

    (record,) = parse_trace_page(page(odd), DOMAINS).records

    assert (record.sender, record.recipient, record.message_id) == ("", "", "")
    assert (record.status, record.direction) == ("unknown", "relay")


@pytest.mark.parametrize(
    "stamp",
    [
        "2025-06-13T10:30:59Z",
        "2025-06-13T10:30:00.5Z",
        "2025-06-13T10:30:07.1234567Z",
        "2025-06-13T10:30:07+02:00",
        "2025-06-13T10:30:07-05:30",
        "2025-06-13T10:30:07",
        "2025-06-13T10:30",
        "2025-06-13 10:30:07Z",  # another shape: read one by one
        "2025-06-13",
        "20250613T103007Z",
    ],
)
def test_timestamps_read_as_datetime_fromisoformat_reads_them(stamp: str) -> None:
    moment = datetime.fromisoformat(stamp)
    expected = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    (record,) = parse_trace_page(page(row(receivedDateTime=stamp)), DOMAINS).records

    assert record.received_at == expected


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.one_of(st.none(), st.timezones()),
    ),
    st.sampled_from(["seconds", "milliseconds", "microseconds", "minutes"]),
    st.booleans(),
)
def test_any_iso_stamp_reads_exactly_as_its_datetime(
    moment: datetime, precision: str, zulu: bool
) -> None:
    stamp = moment.isoformat(timespec=precision)
    if zulu and moment.tzinfo is None:
        stamp += "Z"
    parsed = datetime.fromisoformat(stamp)
    expected = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

    (record,) = parse_trace_page(page(row(receivedDateTime=stamp)), DOMAINS).records

    assert record.received_at == expected


@pytest.mark.parametrize(
    "stamp",
    ["2025-13-13T10:30:00Z", "2025-06-13T24:61:00Z", "2025-06-13T10:30:99Z", "2025-06-13T10:30:0"],
)
def test_impossible_timestamps_are_malformed_and_named(stamp: str) -> None:
    with pytest.raises(MalformedPageError, match="receivedDateTime"):
        parse_trace_page(page(row(), row(id="b", receivedDateTime=stamp)), DOMAINS)


def test_rows_read_as_columns_and_as_records_alike() -> None:
    rows = [
        row(id="a", senderAddress="A@contoso.com", recipientAddress="x@example.net"),
        row(id="b", senderAddress="b@example.net", recipientAddress="y@contoso.com"),
        row(id="c", status="Failed", receivedDateTime="2025-06-13T10:31:00Z"),
    ]

    parsed = parse_trace_page(page(*rows), DOMAINS).records

    assert len(parsed) == 3 and [r.id for r in parsed] == ["a", "b", "c"]
    assert parsed[1] == TraceRecord(
        "b",
        "b@example.net",
        "y@contoso.com",
        "<d9683b4c@contoso.com>",
        1749810600.0,
        "delivered",
        "inbound",
    )
    assert list(parsed[1:]) == list(parsed)[1:]
    assert list(parsed.select([True, False, True])) == [parsed[0], parsed[2]]
    assert parsed.keys() == [(r.id, r.recipient) for r in parsed]
    assert TraceRows.from_records(list(parsed)).columns() == parsed.columns()
    assert list(to_quota_rows(list(parsed))) == list(to_quota_rows(parsed))


def test_an_empty_page_has_no_rows() -> None:
    parsed = parse_trace_page(page(), DOMAINS)

    assert len(parsed.records) == 0 and list(parsed.records) == [] and parsed.next_link is None

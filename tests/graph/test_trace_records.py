"""Parsing trace pages with orjson: fields, statuses, directions and malformed bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from m365_smtp_exporter.graph.errors import FailureReason, MalformedPageError
from m365_smtp_exporter.graph.records import (
    TraceRecord,
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

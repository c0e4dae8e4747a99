"""Row helpers: direction, normalisation, and building rows from Graph records."""

from __future__ import annotations

import orjson
import pytest

from m365_smtp_exporter.quota import Direction, QuotaRow, direction_of, row_from_graph
from m365_smtp_exporter.quota.rows import domain_of, normalize_message_id

OURS = frozenset({"contoso.com", "fabrikam.com"})


@pytest.mark.parametrize(
    ("sender", "recipient", "expected"),
    [
        ("a@contoso.com", "b@fabrikam.com", Direction.INTERNAL),
        ("a@contoso.com", "x@partner.example", Direction.OUTBOUND),
        ("x@partner.example", "a@contoso.com", Direction.INBOUND),
        ("x@partner.example", "y@else.example", Direction.RELAY),
        ("", "a@contoso.com", Direction.INBOUND),  # null sender (bounce)
        ("a@sub.contoso.com", "b@contoso.com", Direction.INBOUND),  # subdomains are not listed
    ],
)
def test_direction(sender: str, recipient: str, expected: Direction) -> None:
    assert direction_of(sender, recipient, OURS) is expected


def test_domain_needs_an_at_sign() -> None:
    assert domain_of("contoso.com") == ""
    assert domain_of("odd@name@contoso.com") == "contoso.com"


def test_message_ids_compare_without_angle_brackets() -> None:
    assert normalize_message_id(" <abc@contoso.com> ") == "abc@contoso.com"
    assert normalize_message_id("abc@contoso.com") == "abc@contoso.com"


def test_row_from_the_documented_graph_record() -> None:
    body = b"""{"value": [{"id": "4451a062-48cb-e80d-e8c0-196330437ae6",
        "senderAddress": "sender@contoso.com", "recipientAddress": "recipient@contoso.com",
        "messageId": "<d9683b4c-127b-413a-ae2e-fa7dfb32c69d@contoso.com>",
        "receivedDateTime": "2025-06-13T10:30:00Z", "subject": "Quarterly Report",
        "size": 45678, "fromIP": "192.168.1.100", "toIP": "", "status": "delivered"}]}"""
    row = row_from_graph(orjson.loads(body)["value"][0])
    assert row == QuotaRow(
        sender="sender@contoso.com",
        recipient="recipient@contoso.com",
        message_id="<d9683b4c-127b-413a-ae2e-fa7dfb32c69d@contoso.com>",
        received_at=1_749_810_600.0,  # 2025-06-13T10:30:00Z
        status="delivered",
    )


def test_row_from_graph_reads_fractions_and_naive_times_as_utc() -> None:
    record = {"receivedDateTime": "2025-06-13T10:30:00.1234567Z", "status": "Delivered"}
    assert row_from_graph(record).received_at == pytest.approx(1_749_810_600.123456)
    naive = {"receivedDateTime": "2025-06-13T10:30:00"}
    assert row_from_graph(naive).received_at == 1_749_810_600.0
    assert row_from_graph(naive).sender == ""

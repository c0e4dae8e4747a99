"""The small pure parts: pull windows, the request budget, de-duplication keys, endpoints."""

from __future__ import annotations

from itertools import pairwise

import httpx
import pytest

from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.dedup import SeenRows, row_keys
from m365_smtp_exporter.graph.endpoints import EndpointKind, endpoint_of
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.graph.transport import retry_after_seconds
from m365_smtp_exporter.graph.windows import (
    DAY,
    RETENTION,
    RETENTION_MARGIN,
    PullWindow,
    graph_timestamp,
    plan_windows,
)
from tests.support.clock import ManualClock

NOW = 1_769_000_000.75  # 2026-01-21T12:53:20.75Z


def test_window_filter_is_graph_form() -> None:
    window = PullWindow(1_768_996_400, 1_769_000_000)

    assert window.filter() == (
        "receivedDateTime ge 2026-01-21T11:53:20Z and receivedDateTime le 2026-01-21T12:53:20Z"
    )
    assert graph_timestamp(0) == "1970-01-01T00:00:00Z"


def test_first_pull_backfills_the_lookback() -> None:
    windows = plan_windows(cursor=None, now=NOW, lookback=DAY, overlap=900)

    assert windows == [PullWindow(1_769_000_000 - DAY, 1_769_000_000)]


def test_later_pulls_start_an_overlap_before_the_cursor_and_end_now() -> None:
    windows = plan_windows(cursor=1_768_999_700, now=NOW, lookback=DAY, overlap=900)

    assert windows == [PullWindow(1_768_998_800, 1_769_000_000)]


def test_end_margin_keeps_the_end_behind_our_clock() -> None:
    (window,) = plan_windows(cursor=None, now=NOW, lookback=3600, overlap=900, end_margin=5)

    assert window.end == 1_768_999_995


def test_long_ranges_split_into_consecutive_windows_of_at_most_ten_days() -> None:
    windows = plan_windows(cursor=None, now=NOW, lookback=25 * DAY, overlap=900)

    assert [w.end - w.start for w in windows] == [10 * DAY, 10 * DAY, 5 * DAY]
    assert all(a.end == b.start for a, b in pairwise(windows))
    assert windows[-1].end == 1_769_000_000


def test_windows_never_reach_past_the_retention() -> None:
    windows = plan_windows(cursor=int(NOW) - 200 * DAY, now=NOW, lookback=DAY, overlap=900)

    assert windows[0].start == int(NOW) + 1 - RETENTION + RETENTION_MARGIN
    assert windows[-1].end == int(NOW)


def test_no_window_when_the_clock_has_not_moved_past_the_start() -> None:
    assert plan_windows(cursor=int(NOW) + 600, now=NOW, lookback=DAY, overlap=60) == []


def test_budget_counts_a_rolling_window() -> None:
    clock = ManualClock(0.0)
    budget = RequestBudget(limit=2, window=300, clock=clock)

    assert budget.try_acquire() and budget.try_acquire()
    assert not budget.try_acquire()
    assert budget.seconds_until_available() == 300
    clock.advance(300)
    assert budget.remaining() == 2


def test_budget_retries_spend_beyond_the_limit_and_delay_the_next_slot() -> None:
    clock = ManualClock(0.0)
    budget = RequestBudget(limit=2, window=300, clock=clock)
    budget.try_acquire()
    clock.advance(10)
    budget.record_extra()
    budget.record_extra()

    assert budget.spent() == 3 and budget.remaining() == 0
    assert budget.seconds_until_available() == 300  # two must expire, the last at t=310


def test_budget_blocks_for_retry_after_and_refunds_unsent_slots() -> None:
    clock = ManualClock(0.0)
    budget = RequestBudget(limit=5, clock=clock)
    budget.try_acquire()
    budget.refund()
    budget.block_for(30)

    assert budget.spent() == 0
    assert budget.remaining() == 0 and budget.seconds_until_available() == 30
    clock.advance(30)
    assert budget.remaining() == 5


def test_budget_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestBudget(limit=0)


def record(trace_id: str, received_at: float, recipient: str = "a@example.net") -> TraceRecord:
    return TraceRecord(trace_id, "s@contoso.com", recipient, "<m@x>", received_at, "delivered", "")


def test_seen_rows_forget_whole_minutes_before_the_horizon() -> None:
    seen = SeenRows()
    rows = [record("id-1", 6_000.0), record("id-1", 6_000.0), record("id-2", 6_059.0)]
    seen.add(row_keys(rows), rows, since=0.0)
    (first, _, _) = row_keys(rows)

    assert len(seen) == 2 and seen.has(first, 6_000.0)
    assert not seen.has(row_keys([record("id-1", 6_000.0, "b@example.net")])[0], 6_000.0)
    seen.forget_before(6_059.0)  # the minute [6000, 6060) is not entirely before it
    assert len(seen) == 2
    seen.forget_before(6_060.0)
    assert len(seen) == 0 and not seen and not seen.has(first, 6_000.0)


def test_seen_rows_remember_only_rows_since_the_horizon() -> None:
    seen = SeenRows()
    rows = [record("old", 1_000.0), record("new", 6_000.0)]
    seen.add(row_keys(rows), rows, since=5_000.0)

    assert len(seen) == 1 and seen.has(("new", "a@example.net"), 6_000.0)


def test_unseen_keeps_one_row_per_trace_id_and_recipient() -> None:
    seen = SeenRows()
    delivered = [record("old", 6_000.0)]
    seen.add(row_keys(delivered), delivered, since=0.0)

    page = [record("old", 6_000.0), record("a", 6_010.0), record("a", 6_010.0)]
    fresh, keys = seen.unseen(page)
    seen.add(keys, fresh, since=0.0)
    later, _ = seen.unseen([record("a", 6_010.0), record("a", 6_010.0, "b@example.net")])

    assert [(r.id, r.recipient) for r in [*fresh, *later]] == [
        ("a", "a@example.net"),
        ("a", "b@example.net"),
    ]
    assert keys == row_keys(fresh)


def test_unseen_takes_a_page_outside_remembered_minutes_whole() -> None:
    seen = SeenRows()
    delivered = [record("old", 60.0)]
    seen.add(row_keys(delivered), delivered, since=0.0)
    page = [record("a", 1_000.0), record("b", 2_000.0)]

    fresh, keys = seen.unseen(page)

    assert list(fresh) == page and keys == [("a", "a@example.net"), ("b", "a@example.net")]


def test_seen_rows_round_trip_through_their_buckets() -> None:
    seen = SeenRows()
    rows = [record("a", 60.0), record("b", 130.0)]
    seen.add(row_keys(rows), rows, since=0.0)
    copy = SeenRows()

    copy.restore(seen.buckets())

    assert list(copy.buckets()) == [(1, [("a", "a@example.net")]), (2, [("b", "a@example.net")])]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1.0/admin/exchange/tracing/messageTraces", EndpointKind.TRACE),
        ("/beta/admin/exchange/tracing/messageTraces/", EndpointKind.TRACE),
        ("/v1.0/admin/exchange/tracing/messageTraces/$count", EndpointKind.TRACE),
        (
            "/v1.0/admin/exchange/tracing/messageTraces/abc/"
            "getDetailsByRecipient(recipientAddress='a@b.c')",
            EndpointKind.TRACE_DETAILS,
        ),
        ("/v1.0/users/probe@contoso.com/messages", EndpointKind.MAIL),
        ("/v1.0/users/probe@contoso.com/mailFolders/junkemail", EndpointKind.MAIL),
        ("/v1.0/me/messages", EndpointKind.MAIL),
        ("/v1.0/organization", EndpointKind.OTHER),
    ],
)
def test_endpoint_kinds(path: str, kind: EndpointKind) -> None:
    assert endpoint_of(path) is kind


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Wed, 21 Jan 2026 12:55:20 GMT", 120.0),
        ("Wed, 21 Jan 2026 12:50:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_values(value: str, seconds: float | None) -> None:
    headers = httpx.Headers({"Retry-After": value} if value else {})

    assert retry_after_seconds(headers, now=1_769_000_000.0) == seconds

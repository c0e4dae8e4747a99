"""Trace pulls through msgraph-sdk against the emulated Graph: paging, windows, overlap."""

from __future__ import annotations

from m365_emulator.state import EmulatorState
from m365_smtp_exporter.graph.records import TraceRecord
from tests.support.clock import ManualClock
from tests.support.graph import ClientFactory, GraphService
from tests.support.trace import PullerFactory, Sink, add_rows, trace_row

DAY = 86_400.0


async def test_pull_follows_next_links_and_delivers_every_row_once(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    rows = add_rows(graph_state, [trace_row(clock() - 60 * i - 1) for i in range(23)])
    sink = Sink()
    puller = make_puller(make_client(), sink, page_size=5)

    result = await puller.pull()

    assert result.ok and result.rows == 23 and result.windows == 1
    assert sink.id_counts() == {row.id: 1 for row in rows}
    assert len(sink.batches) == 5  # page by page, as they were read
    assert service.traffic.responses() == {"trace.200": 5}  # ceil(23 / 5) pages
    assert puller.cursor == int(clock())


async def test_records_carry_the_row_fields_and_direction(
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    outbound = trace_row(clock() - 120, sender="Boss@Contoso.com", recipient="a@example.net")
    internal = trace_row(clock() - 110, recipient="colleague@contoso.com", status="failed")
    inbound = trace_row(clock() - 100, sender="x@example.org", recipient="boss@contoso.com")
    relay = trace_row(clock() - 90, sender="x@example.org", recipient="y@example.net")
    add_rows(graph_state, [outbound, internal, inbound, relay])
    sink = Sink()

    await make_puller(make_client(), sink).pull()

    by_id = {record.id: record for record in sink.records}
    assert by_id[outbound.id] == TraceRecord(
        id=outbound.id,
        sender="boss@contoso.com",
        recipient="a@example.net",
        message_id=outbound.message_id,
        received_at=outbound.received_at,
        status="delivered",
        direction="outbound",
    )
    assert (by_id[internal.id].direction, by_id[internal.id].status) == ("internal", "failed")
    assert by_id[inbound.id].direction == "inbound"
    assert by_id[relay.id].direction == "relay"


async def test_first_pull_backfills_lookback_in_windows_of_at_most_ten_days(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    ages = [0.5, 4.0, 9.9, 10.5, 16.0, 21.0, 24.9]  # days; the emulator refuses > 10-day windows
    inside = add_rows(graph_state, [trace_row(clock() - age * DAY) for age in ages])
    add_rows(graph_state, [trace_row(clock() - 25.5 * DAY)])  # older than the lookback
    sink = Sink()
    puller = make_puller(make_client(), sink, lookback="25d")

    result = await puller.pull()

    assert result.ok and result.windows == 3  # 25 days: 10 + 10 + 5
    assert service.traffic.responses() == {"trace.200": 3}
    assert sink.id_counts() == {row.id: 1 for row in inside}
    assert len(sink.batches) == 3  # one per window, oldest first
    oldest_first = [min(r.received_at for r in batch) for batch in sink.batches]
    assert oldest_first == sorted(oldest_first)


async def test_ninety_day_lookback_stays_inside_the_retention(
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    old = add_rows(graph_state, [trace_row(clock() - 89 * DAY)])
    sink = Sink()

    result = await make_puller(make_client(), sink, lookback="90d").pull()

    assert result.ok and result.windows == 9
    assert [record.id for record in sink.records] == [old[0].id]


async def test_overlap_rereads_late_rows_without_counting_any_twice(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    early = add_rows(graph_state, [trace_row(clock() - 400 + i) for i in range(4)])
    # handled 200 s ago but, as trace rows do, it shows up only 7 minutes after that
    late = add_rows(graph_state, [trace_row(clock() - 200, visible_at=clock() + 220)])
    sink = Sink()
    puller = make_puller(make_client(), sink, overlap="15m", page_size=3)

    first = await puller.pull()
    delivered_first = len(sink.records)
    clock.advance(300)
    fresh = add_rows(graph_state, [trace_row(clock() - 30)])
    second = await puller.pull()

    assert first.ok and first.rows == 4
    assert second.ok and second.rows == 2
    assert {r.id for r in sink.records[delivered_first:]} == {late[0].id, fresh[0].id}
    assert sink.id_counts() == {row.id: 1 for row in early + late + fresh}
    # the second window re-read the overlap: the early rows came back and were skipped
    assert service.traffic.responses() == {"trace.200": 2 + 2}
    assert puller.stats.lag_seconds == 30.0
    assert puller.rows_window == 6


async def test_rows_older_than_the_overlap_are_forgotten(
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 3000), trace_row(clock() - 100)])
    sink = Sink()
    puller = make_puller(make_client(), sink, overlap="15m")

    await puller.pull()
    held_after_backfill = puller.rows_window
    clock.advance(600)
    await puller.pull()

    # kept: rows the next pull can re-read (cursor - overlap - slack); the old one is gone
    assert held_after_backfill == 1
    assert puller.rows_window == 1
    assert len(sink.records) == 2


async def test_a_clock_stepping_back_asks_for_no_window(
    service: GraphService,
    graph_state: EmulatorState,
    clock: ManualClock,
    make_client: ClientFactory,
    make_puller: PullerFactory,
) -> None:
    add_rows(graph_state, [trace_row(clock() - 10)])
    sink = Sink()
    puller = make_puller(make_client(), sink, overlap=1)
    await puller.pull()

    clock.advance(-5)  # the wall clock stepped back
    result = await puller.pull()

    assert result.ok and result.windows == 0
    assert service.traffic.responses() == {"trace.200": 1}
    assert len(sink.records) == 1

"""SeriesSelector (series selection maintained by delta) against `select_series` from scratch."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.quota import (
    LimitName,
    QuotaEngine,
    QuotaFigure,
    QuotaLimits,
    QuotaRow,
    QuotaSnapshot,
    SenderSelection,
    select_series,
)
from m365_smtp_exporter.quota.cardinality import SeriesSelector
from tests.support.clock import ManualClock
from tests.support.examples import examples
from tests.support.senders import colliding_senders

T0 = 1_767_225_600.0
OURS = frozenset({"contoso.com"})
POOL = [f"s{i:02d}@contoso.com" for i in range(14)]
RECIPIENTS = ["in@contoso.com", "out1@partner.example", "out2@partner.example"]
# clock moves: none, within the minute, across one, around the hour and the day window
ADVANCES = st.sampled_from([0, 1, 30, 60, 61, 600, 3_540, 3_660, 43_200, 86_400, 86_460])
OFFSETS = st.one_of(
    st.integers(-120, 0), st.integers(-3_700, -3_500), st.integers(-86_460, -86_300)
)


@st.composite
def batches(draw: st.DrawFn, step: int) -> list[QuotaRow]:
    rows = []
    for n in range(draw(st.integers(0, 6))):
        sender = draw(st.sampled_from(POOL))
        for recipient in draw(st.lists(st.sampled_from(RECIPIENTS), min_size=1, unique=True)):
            at = draw(OFFSETS)  # relative to the clock, fixed when fed
            rows.append(QuotaRow(sender, recipient, f"<m{step}.{n}@contoso.com>", at, "delivered"))
    return rows


@st.composite
def histories(draw: st.DrawFn) -> tuple[QuotaLimits, list[tuple[int, list[QuotaRow]]]]:
    limits = QuotaLimits(
        internal_domains=OURS,
        recipients_per_day=draw(st.integers(1, 8)),
        recipients_per_day_overrides={POOL[0]: draw(st.integers(1, 8))},
        messages_per_minute=draw(st.integers(1, 3)),
        spam_external_per_hour=draw(st.none() | st.integers(1, 4)),
        recovery_threshold=draw(st.sampled_from([0.5, 1.0])),
    )
    steps = [(draw(ADVANCES), draw(batches(step))) for step in range(draw(st.integers(1, 25)))]
    return limits, steps


SETTINGS = settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(
    histories(),
    st.frozensets(st.sampled_from(POOL), max_size=3),
    st.integers(0, 8),
    st.booleans(),
)
def test_the_selection_by_delta_equals_select_series_from_scratch(
    history: tuple[QuotaLimits, list[tuple[int, list[QuotaRow]]]],
    configured: frozenset[str],
    top_n: int,
    hashed: bool,
) -> None:
    """After every batch of rows and clock move (senders rising, falling, recovering,
    expiring, crossing the top-N boundary), the maintained selection and `__other__` sums
    equal `select_series` of the same snapshot, figure for figure and in order."""
    limits, steps = history
    clock = ManualClock(T0)
    engine = QuotaEngine(limits, clock)
    selection = SenderSelection(configured, top_n, hash_senders=hashed, hash_salt="s")
    selector = SeriesSelector(selection)
    for advance, rows in steps:
        clock.advance(advance)
        engine.add_rows(row._replace(received_at=clock() + row.received_at) for row in rows)
        snapshot = engine.snapshot()
        groups = selector.update(snapshot, selection)
        assert tuple(f for group in groups for f in group) == select_series(snapshot, selection)
    assert selector.rebuilds == 1  # the first snapshot; every later one by delta


@SETTINGS
@given(histories(), st.lists(st.integers(0, 8), min_size=1), st.integers(0, 3))
def test_a_new_selection_or_a_missed_snapshot_is_taken_from_scratch(
    history: tuple[QuotaLimits, list[tuple[int, list[QuotaRow]]]],
    top_ns: list[int],
    skip_every: int,
) -> None:
    limits, steps = history
    clock = ManualClock(T0)
    engine = QuotaEngine(limits, clock)
    selector = SeriesSelector(SenderSelection())
    for number, (advance, rows) in enumerate(steps):
        clock.advance(advance)
        engine.add_rows(row._replace(received_at=clock() + row.received_at) for row in rows)
        snapshot = engine.snapshot()
        if skip_every and number % skip_every == 0:
            continue  # a snapshot the selector never sees: the next delta does not follow
        selection = SenderSelection(top_n=top_ns[number % len(top_ns)])
        groups = selector.update(snapshot, selection)
        assert tuple(f for group in groups for f in group) == select_series(snapshot, selection)


def test_labels_lengthen_and_shorten_as_a_colliding_sender_comes_and_goes() -> None:
    first, second = colliding_senders("s")
    limits = QuotaLimits(internal_domains=OURS)

    def figures(sender: str, used: int) -> tuple[QuotaFigure, ...]:
        return (QuotaFigure(sender, LimitName.RECIPIENTS_PER_DAY, used, 10_000, 0.0),)

    tenant = (QuotaFigure("", LimitName.EXTERNAL_RECIPIENTS_PER_DAY, 3, 100, 0.0),)
    steps = [
        ({first: figures(first, 1), "x@contoso.com": figures("x@contoso.com", 2)}, None),
        ({first: figures(first, 1), second: figures(second, 2)}, {second, "x@contoso.com"}),
        ({first: figures(first, 1)}, {second}),
    ]
    selection = SenderSelection(top_n=5, hash_senders=True, hash_salt="s")
    selector = SeriesSelector(selection)
    lengths = []
    for generation, (senders, changed) in enumerate(steps, 1):
        snapshot = QuotaSnapshot(
            0.0,
            limits,
            senders,
            tenant,
            generation=generation,
            delta_base=generation - 1,
            changed=None if changed is None else frozenset(changed),
        )
        groups = selector.update(snapshot, selection)
        assert tuple(f for group in groups for f in group) == select_series(snapshot, selection)
        lengths.append({len(group[0].sender) for group in groups[:-1]})
    assert lengths == [{10}, {18}, {10}]  # "h:" and 8, then 16 hex digits, then 8 again
    assert selector.rebuilds == 1

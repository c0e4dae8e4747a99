"""Buckets, windows and the two counters, against hand-computed numbers and a plain model."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.quota.message_rate import MessageRateCounter
from m365_smtp_exporter.quota.window import (
    DAY,
    HOUR,
    BucketCounter,
    Window,
    bucket_of,
    bucket_to_expire_for,
)
from tests.support.examples import examples


def test_buckets_are_aligned_minutes() -> None:
    assert bucket_of(0) == 0
    assert bucket_of(59.999) == 0
    assert bucket_of(60) == 1
    assert bucket_of(1_767_225_600) == 29_453_760


def test_window_holds_the_current_bucket_and_the_window_before_it() -> None:
    # now = 10:00:30 -> bucket 600; the 24 h window keeps buckets 600 - 1440 = -840 on,
    # floored at 0; an hour keeps 540..600 (61 buckets).
    assert DAY.cutoff(600) == 0
    assert HOUR.cutoff(600) == 540
    # bucket 540 (09:00-09:01) leaves the hour window at 10:01:00
    assert HOUR.expires_at(540) == 601 * 60
    assert Window(900).buckets == 15


def test_counter_counts_out_of_order_and_retracts() -> None:
    counter = BucketCounter()
    for bucket, amount in [(10, 2), (5, 1), (10, 1), (7, 4), (5, 1)]:
        counter.add(bucket, amount, cutoff=0)
    assert list(counter.buckets()) == [(5, 2), (7, 4), (10, 3)]
    assert counter.total == 9
    counter.add(7, -1, cutoff=0)
    counter.add(6, -1, cutoff=0)  # nothing there: a no-op, never negative
    assert list(counter.buckets()) == [(5, 2), (7, 3), (10, 3)]
    counter.add(10, -3, cutoff=0)
    assert list(counter.buckets()) == [(5, 2), (7, 3)]
    assert counter.total == 5


def test_counter_expires_lazily_and_ignores_stale_buckets() -> None:
    counter = BucketCounter()
    counter.add(5, 2, cutoff=0)
    counter.add(9, 1, cutoff=0)
    counter.add(4, 7, cutoff=6)  # older than the cutoff: out of the window
    assert list(counter.buckets()) == [(9, 1)]  # and bucket 5 expired on the way
    assert counter.total == 1
    counter.prune(10)
    assert not counter
    assert counter.total == 0


def test_total_since_sums_the_tail() -> None:
    counter = BucketCounter()
    for bucket in (1, 2, 2, 8, 9):
        counter.add(bucket, 1, cutoff=0)
    assert counter.total_since(0) == 5
    assert counter.total_since(2) == 4
    assert counter.total_since(3) == 2
    assert counter.total_since(10) == 0
    assert list(counter.buckets(8)) == [(8, 1), (9, 1)]


def test_bucket_to_expire_for_walks_oldest_first() -> None:
    a, b = BucketCounter(), BucketCounter()
    a.add(1, 3, cutoff=0)
    a.add(4, 2, cutoff=0)
    b.add(2, 4, cutoff=0)
    # usage 9: dropping bucket 1 leaves 6, bucket 2 leaves 2, bucket 4 leaves 0
    assert bucket_to_expire_for(10, [a, b]) is None
    assert bucket_to_expire_for(9, [a, b]) == 1
    assert bucket_to_expire_for(6, [a, b]) == 2
    assert bucket_to_expire_for(2, [a, b]) == 4
    # only buckets from 2 on: usage 6
    assert bucket_to_expire_for(6, [a, b], first_bucket=2) == 2
    assert bucket_to_expire_for(2.5, [a, b], first_bucket=2) == 2


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-2, 5), st.integers(0, 30)), max_size=60))
def test_counter_matches_a_plain_dict(ops: list[tuple[int, int, int]]) -> None:
    counter = BucketCounter()
    model: Counter[int] = Counter()
    cutoff = 0
    for bucket, amount, raise_cutoff in ops:
        cutoff = max(cutoff, raise_cutoff)
        counter.add(bucket, amount, cutoff)
        model = Counter({b: n for b, n in model.items() if b >= cutoff})
        if bucket >= cutoff and (amount > 0 or model[bucket] > 0):
            model[bucket] = max(0, model[bucket] + amount)
        model = +model  # drop empty buckets
        stored = dict(counter.buckets())
        assert {b: n for b, n in stored.items() if b >= cutoff} == dict(model)
        assert counter.total_since(cutoff) == sum(model.values())


def test_message_counter_counts_distinct_messages_per_bucket() -> None:
    counter = MessageRateCounter()
    for message_id in ("m1", "m1", "m1", "m2"):  # m1 has three recipients
        counter.add(100, message_id, 1, cutoff=0)
    counter.add(101, "m3", 1, cutoff=0)
    assert counter.counts() == {100: 2, 101: 1}
    assert counter.peak() == 2
    counter.add(100, "m1", -1, cutoff=0)  # one of m1's rows retracted: m1 still there
    assert counter.counts() == {100: 2, 101: 1}
    counter.add(100, "m1", -2, cutoff=0)
    assert counter.counts() == {100: 1, 101: 1}
    assert counter.last_bucket_reaching(1) == 101
    assert counter.last_bucket_reaching(2) is None
    counter.add(102, "m4", 1, cutoff=101)  # bucket 100 expires
    assert counter.counts() == {101: 1, 102: 1}
    counter.prune(103)
    assert not counter
    assert counter.peak() == 0


bucket_counts = st.dictionaries(st.integers(0, 40), st.integers(1, 5), max_size=12)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(-2, 5)), max_size=30),
    bucket_counts,
    st.integers(0, 30),
)
def test_adding_counts_at_once_equals_adding_them_one_by_one(
    earlier: list[tuple[int, int]], counts: dict[int, int], cutoff: int
) -> None:
    at_once, one_by_one = BucketCounter(), BucketCounter()
    for bucket, amount in earlier:
        at_once.add(bucket, amount, 0)
        one_by_one.add(bucket, amount, 0)
    at_once.add_counts(counts, cutoff)
    for bucket, count in counts.items():
        one_by_one.add(bucket, count, cutoff)
    assert list(at_once.buckets(cutoff)) == list(one_by_one.buckets(cutoff))
    assert at_once.total_since(cutoff) == one_by_one.total_since(cutoff)


@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from("abc"), st.integers(-2, 3)), max_size=20
    ),
    st.integers(0, 20),
    st.dictionaries(st.sampled_from("abcd"), st.integers(1, 4), max_size=4),
    st.integers(0, 15),
)
def test_adding_a_bucket_of_messages_equals_adding_each(
    earlier: list[tuple[int, str, int]], bucket: int, rows: dict[str, int], cutoff: int
) -> None:
    at_once, one_by_one = MessageRateCounter(), MessageRateCounter()
    for earlier_bucket, message_id, amount in earlier:
        at_once.add(earlier_bucket, message_id, amount, 0)
        one_by_one.add(earlier_bucket, message_id, amount, 0)
    at_once.add_messages(bucket, rows, cutoff)
    for message_id, count in rows.items():
        one_by_one.add(bucket, message_id, count, cutoff)
    one_by_one.prune(cutoff)  # add_messages prunes even when given no rows
    assert at_once.counts() == one_by_one.counts()
    # later retractions see the same per-message row counts
    for message_id in "abcd":
        at_once.add(bucket, message_id, -1, cutoff)
        one_by_one.add(bucket, message_id, -1, cutoff)
    assert at_once.counts() == one_by_one.counts()


@settings(max_examples=examples(400))  # expiry bugs need a few steps in the right order to show
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.sampled_from("abc"),
            st.integers(-2, 3),
            st.integers(0, 25),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_message_counter_matches_a_plain_model(
    ops: list[tuple[int, str, int, int, bool]],
) -> None:
    counter = MessageRateCounter()
    model: dict[int, Counter[str]] = {}
    cutoff = 0
    for bucket, message_id, amount, raise_cutoff, as_batch in ops:
        cutoff = max(cutoff, raise_cutoff)
        if as_batch and amount > 0:
            counter.add_messages(bucket, {message_id: amount}, cutoff)
        else:
            counter.add(bucket, message_id, amount, cutoff)
        model = {b: rows for b, rows in model.items() if b >= cutoff}
        if bucket >= cutoff:
            rows = model.setdefault(bucket, Counter())
            rows[message_id] = max(0, rows[message_id] + amount)
            model = {b: +rows for b, rows in model.items() if +rows}
        # every add expires what is out of the window: peak() reads all buckets held
        assert counter.counts() == {b: len(rows) for b, rows in model.items()}

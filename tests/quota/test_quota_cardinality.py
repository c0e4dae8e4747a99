"""select_series: configured senders, top N, `__other__`, hashing."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.quota import (
    OTHER_SENDER,
    TENANT_SENDER,
    LimitName,
    QuotaFigure,
    QuotaLimits,
    QuotaSnapshot,
    SenderSelection,
    hash_sender,
    select_series,
)
from tests.support.examples import examples
from tests.support.senders import colliding_senders

RPD, MPM = LimitName.RECIPIENTS_PER_DAY, LimitName.MESSAGES_PER_MINUTE
LIMITS = QuotaLimits(internal_domains=frozenset({"contoso.com"}))
TENANT = QuotaFigure(TENANT_SENDER, LimitName.EXTERNAL_RECIPIENTS_PER_DAY, 50, 10_000, 0.0)


def snapshot_of(usage: dict[str, tuple[int, int, float]]) -> QuotaSnapshot:
    """sender -> (recipients used, messages used, recovery) against the default limits."""
    senders = {
        s: (QuotaFigure(s, RPD, rcpt, 10_000, recovery), QuotaFigure(s, MPM, msgs, 30, 0.0))
        for s, (rcpt, msgs, recovery) in usage.items()
    }
    return QuotaSnapshot(taken_at=0.0, limits=LIMITS, senders=senders, tenant=(TENANT,))


def by_label(figures: tuple[QuotaFigure, ...], name: LimitName) -> dict[str, QuotaFigure]:
    return {f.sender: f for f in figures if f.limit_name == name}


def test_top_n_by_peak_utilization_and_the_rest_summed() -> None:
    snapshot = snapshot_of(
        {
            "a@contoso.com": (9_000, 1, 100.0),  # 0.90 on recipients
            "b@contoso.com": (100, 27, 0.0),  # 0.90 on messages: ties with a, sorts after
            "c@contoso.com": (5_000, 0, 50.0),  # 0.50
            "d@contoso.com": (2_000, 3, 70.0),  # 0.20
            "e@contoso.com": (10, 0, 0.0),
        }
    )
    selection = SenderSelection(
        configured=frozenset({"E@contoso.com", "idle@contoso.com"}), top_n=2
    )
    series = select_series(snapshot, selection)
    recipients = by_label(series, RPD)
    assert list(recipients) == [
        "e@contoso.com",  # configured first, sorted
        "idle@contoso.com",  # configured and idle: zero usage
        "a@contoso.com",
        "b@contoso.com",
        OTHER_SENDER,
    ]
    other = recipients[OTHER_SENDER]
    assert (other.used, other.limit, other.recovery_seconds) == (7_000, 20_000, 70.0)
    assert other.utilization == 0.35
    idle = recipients["idle@contoso.com"]
    assert (idle.used, idle.limit, idle.remaining) == (0, 10_000, 10_000)
    assert series[-1] == TENANT
    assert by_label(series, MPM)[OTHER_SENDER].used == 3


def test_no_other_series_when_everyone_fits() -> None:
    series = select_series(snapshot_of({"a@contoso.com": (1, 1, 0.0)}), SenderSelection(top_n=1))
    assert [f.sender for f in series] == ["a@contoso.com", "a@contoso.com", TENANT_SENDER]


def test_top_zero_sums_every_unconfigured_sender() -> None:
    snapshot = snapshot_of({"a@contoso.com": (1, 1, 0.0), "b@contoso.com": (2, 0, 0.0)})
    series = select_series(snapshot, SenderSelection(top_n=0))
    assert {f.sender for f in series} == {OTHER_SENDER, TENANT_SENDER}
    assert by_label(series, RPD)[OTHER_SENDER].used == 3


def test_hashed_labels_are_salted_hmac_prefixes() -> None:
    expected = hmac.new(b"pepper", b"a@contoso.com", hashlib.sha256).hexdigest()[:8]
    assert hash_sender("A@Contoso.com", "pepper") == f"h:{expected}"
    assert hash_sender("a@contoso.com", "pepper") == hash_sender("a@contoso.com", "pepper")
    assert hash_sender("a@contoso.com", "pepper") != hash_sender("a@contoso.com", "salt")
    assert hash_sender("a@contoso.com", "pepper") != hash_sender("b@contoso.com", "pepper")

    snapshot = snapshot_of({"a@contoso.com": (5, 1, 0.0), "b@contoso.com": (1, 0, 0.0)})
    selection = SenderSelection(top_n=1, hash_senders=True, hash_salt="pepper")
    labels = [f.sender for f in select_series(snapshot, selection)]
    assert labels == [f"h:{expected}"] * 2 + [OTHER_SENDER] * 2 + [TENANT_SENDER]


def test_colliding_hash_prefixes_get_longer_labels() -> None:
    pair = colliding_senders("s")
    snapshot = snapshot_of({pair[0]: (1, 0, 0.0), pair[1]: (2, 0, 0.0)})
    series = select_series(snapshot, SenderSelection(top_n=5, hash_senders=True, hash_salt="s"))
    labels = list(by_label(series, RPD))
    assert len(labels) == 2
    assert all(re.fullmatch(r"h:[0-9a-f]{16}", label) for label in labels)


def test_the_salt_stays_out_of_the_repr() -> None:
    selection = SenderSelection(hash_senders=True, hash_salt="very-secret-salt")
    assert "very-secret-salt" not in repr(selection)
    with pytest.raises(ValueError, match="top_n must be >= 0"):
        SenderSelection(top_n=-1)


POOL = [f"s{i}@contoso.com" for i in range(12)]


@settings(max_examples=examples(200), deadline=None)
@given(
    usage=st.dictionaries(
        st.sampled_from(POOL),
        st.tuples(st.integers(0, 12_000), st.integers(0, 40), st.floats(0, 86_460)),
        max_size=len(POOL),
    ),
    configured=st.frozensets(st.sampled_from(POOL), max_size=4),
    top_n=st.integers(0, 6),
    hashed=st.booleans(),
)
def test_cardinality_invariants(
    usage: dict[str, tuple[int, int, float]], configured: frozenset[str], top_n: int, hashed: bool
) -> None:
    snapshot = snapshot_of(usage)
    selection = SenderSelection(configured=configured, top_n=top_n, hash_senders=hashed)
    series = select_series(snapshot, selection)
    senders = set(usage) | configured

    def label(sender: str) -> str:
        return hash_sender(sender, "") if hashed else sender

    assert [f for f in series if f.sender == TENANT_SENDER] == [TENANT]
    for name in (RPD, MPM):
        out = [f for f in series if f.limit_name == name and f.sender != TENANT_SENDER]
        every = [snapshot.figure(s, name) for s in senders]
        # nothing lost or counted twice
        assert sum(f.used for f in out) == sum(f.used for f in every)
        assert sum(f.limit for f in out) == sum(f.limit for f in every)
        labels = [f.sender for f in out]
        assert len(labels) == len(set(labels))
        assert len(out) <= top_n + len(configured) + 1
        assert {label(s) for s in configured} <= set(labels)
        unconfigured = set(usage) - configured
        assert (OTHER_SENDER in labels) == (len(unconfigured) > top_n)
        if hashed:
            assert not any("@" in lab for lab in labels)
        # the recovery of __other__ is the longest among the senders summed into it
        kept = {s for s in unconfigured if label(s) in labels}
        summed = unconfigured - kept
        if summed:
            other = next(f for f in out if f.sender == OTHER_SENDER)
            assert other.recovery_seconds == max(
                snapshot.figure(s, name).recovery_seconds for s in summed
            )

    # every kept unconfigured sender is at least as utilized as any summed one
    def peak(sender: str) -> float:
        return max(f.utilization for f in snapshot.figures_for(sender))

    unconfigured = set(usage) - configured
    all_labels = {f.sender for f in series}
    kept = {s for s in unconfigured if label(s) in all_labels}
    assert len(kept) == min(top_n, len(unconfigured))
    for winner, loser in itertools.product(kept, unconfigured - kept):
        assert peak(winner) >= peak(loser)


def test_output_per_limit_is_grouped_for_a_collector() -> None:
    snapshot = snapshot_of({s: (i, i, 0.0) for i, s in enumerate(POOL)})
    series = select_series(snapshot, SenderSelection(top_n=3))
    counts: defaultdict[LimitName, int] = defaultdict(int)
    for f in series:
        counts[f.limit_name] += 1
    assert counts == {RPD: 4, MPM: 4, LimitName.EXTERNAL_RECIPIENTS_PER_DAY: 1}

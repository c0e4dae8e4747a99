"""System senders recognisable in trace rows are left out of quota counting."""

from __future__ import annotations

from collections import Counter

import pytest

from m365_smtp_exporter.quota.rows import (
    ExcludedReason,
    RowFields,
    excluded_reason,
    without_system_senders,
)


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("", ExcludedReason.NULL_SENDER),
        ("<>", ExcludedReason.NULL_SENDER),
        ("postmaster@contoso.com", ExcludedReason.POSTMASTER),
        ("postmaster@contoso.onmicrosoft.com", ExcludedReason.POSTMASTER),
        ("mailer-daemon@example.net", ExcludedReason.POSTMASTER),
        (
            "microsoftexchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com",
            ExcludedReason.EXCHANGE_SYSTEM,
        ),
        ("user001@contoso.com", None),
        ("postmaster.team@contoso.com", None),
        ("not-postmaster@contoso.com", None),
        ("exchange@contoso.com", None),
    ],
)
def test_excluded_reason(sender: str, reason: ExcludedReason | None) -> None:
    assert excluded_reason(sender) is reason


def row(sender: str, i: int) -> RowFields:
    return (sender, f"r{i}@example.net", f"<m{i}@contoso.com>", 1000.0 + i, "delivered")


def test_rows_of_system_senders_are_removed_and_counted() -> None:
    senders = ["a@contoso.com", "", "PostMaster@Contoso.com", "a@contoso.com", "<>"]
    excluded: Counter[ExcludedReason] = Counter()

    kept = without_system_senders(iter([row(s, i) for i, s in enumerate(senders)]), excluded)

    assert [r[0] for r in kept] == ["a@contoso.com", "a@contoso.com"]
    assert excluded == {ExcludedReason.NULL_SENDER: 2, ExcludedReason.POSTMASTER: 1}


def test_a_batch_without_system_senders_is_handed_on_as_it_came() -> None:
    batch = [row("a@contoso.com", i) for i in range(3)]
    excluded: Counter[ExcludedReason] = Counter()

    assert without_system_senders(batch, excluded) is batch
    assert not excluded

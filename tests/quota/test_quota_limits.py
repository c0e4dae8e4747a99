"""QuotaLimits: defaults, TERRL, precedence, normalisation and validation."""

from __future__ import annotations

import pytest

from m365_smtp_exporter.quota import LimitName, QuotaLimits, terrl_limit


@pytest.mark.parametrize(
    ("licenses", "expected"),
    # Microsoft's published examples: 500 * n^0.7 + 9500, rounded (10,000 -> 324,978.67)
    [(1, 10_000), (100, 22_059), (1_000, 72_446), (10_000, 324_979)],
)
def test_terrl_formula_is_floored(licenses: int, expected: int) -> None:
    assert terrl_limit(licenses) == expected


def test_terrl_rejects_zero_licenses() -> None:
    with pytest.raises(ValueError, match="licenses must be >= 1"):
        terrl_limit(0)


def test_tenant_external_limit_precedence() -> None:
    assert QuotaLimits(licenses=100).tenant_external_limit == 22_059
    assert QuotaLimits(licenses=100, trial_tenant=True).tenant_external_limit == 5_000
    explicit = QuotaLimits(licenses=100, trial_tenant=True, external_recipients_per_day=7_777)
    assert explicit.tenant_external_limit == 7_777


def test_defaults_follow_exchange_online() -> None:
    limits = QuotaLimits()
    assert limits.recipients_per_day == 10_000
    assert limits.messages_per_minute == 30
    assert limits.tenant_external_limit == 10_000
    assert limits.recovery_threshold == 0.8
    assert [name for name, _ in limits.sender_limits("a@contoso.com")] == [
        LimitName.RECIPIENTS_PER_DAY,
        LimitName.MESSAGES_PER_MINUTE,
    ]


def test_overrides_and_domains_are_lower_cased() -> None:
    limits = QuotaLimits(
        internal_domains=frozenset({" Contoso.COM "}),
        recipients_per_day_overrides={"Bulk@Contoso.com": 2_000},
        ignored_statuses=frozenset({"Failed"}),
    )
    assert limits.internal_domains == frozenset({"contoso.com"})
    assert limits.ignored_statuses == frozenset({"failed"})
    assert limits.recipients_per_day_for("bulk@contoso.com") == 2_000
    assert limits.recipients_per_day_for("BULK@contoso.com") == 2_000
    assert limits.recipients_per_day_for("other@contoso.com") == 10_000


def test_spam_caps_are_reported_only_when_configured() -> None:
    limits = QuotaLimits(
        spam_external_per_hour=400, spam_internal_per_hour=900, spam_recipients_per_day=3_000
    )
    assert dict(limits.sender_limits("a@contoso.com")) == {
        LimitName.RECIPIENTS_PER_DAY: 10_000,
        LimitName.MESSAGES_PER_MINUTE: 30,
        LimitName.SPAM_EXTERNAL_PER_HOUR: 400,
        LimitName.SPAM_INTERNAL_PER_HOUR: 900,
        LimitName.SPAM_RECIPIENTS_PER_DAY: 3_000,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipients_per_day": 0}, "recipients_per_day must be >= 1"),
        ({"messages_per_minute": -1}, "messages_per_minute must be >= 1"),
        ({"spam_external_per_hour": 0}, "spam_external_per_hour must be >= 1"),
        ({"external_recipients_per_day": 0}, "external_recipients_per_day must be >= 1"),
        ({"recipients_per_day_overrides": {"a@b.c": 0}}, "override for a@b.c must be >= 1"),
        ({"recovery_threshold": 0.0}, r"recovery_threshold must be in \(0, 1\]"),
        ({"recovery_threshold": 1.5}, r"recovery_threshold must be in \(0, 1\]"),
        ({"message_rate_lookback_seconds": 90}, "positive multiple of 60"),
        ({"message_rate_lookback_seconds": 0}, "positive multiple of 60"),
    ],
)
def test_invalid_limits_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuotaLimits(**kwargs)  # type: ignore[arg-type]


def test_overrides_cannot_be_mutated_afterwards() -> None:
    source = {"a@contoso.com": 5}
    limits = QuotaLimits(recipients_per_day_overrides=source)
    source["a@contoso.com"] = 50
    assert limits.recipients_per_day_for("a@contoso.com") == 5
    with pytest.raises(TypeError):
        limits.recipients_per_day_overrides["a@contoso.com"] = 1  # type: ignore[index]

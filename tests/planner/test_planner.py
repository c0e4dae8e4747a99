"""The planner's answers on hand-checked cases, and its input validation."""

from __future__ import annotations

import pytest

from m365_smtp_exporter.planner import (
    PlanInputError,
    TraceFreshness,
    parse_plan_request,
    plan_campaign,
    plan_to_json,
    plan_to_text,
)
from m365_smtp_exporter.quota import QuotaEngine, QuotaLimits, QuotaRow

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, top of a minute
CONTOSO = frozenset({"contoso.com"})


def engine(limits: QuotaLimits | None = None, rows: list[QuotaRow] | None = None) -> QuotaEngine:
    quota = QuotaEngine(limits or QuotaLimits(internal_domains=CONTOSO), lambda: NOW)
    quota.add_rows(rows or [])
    return quota


def request(**values: str) -> dict[str, str]:
    return {"tenant": "contoso", "sender": "news@contoso.com", **values}


def test_ten_thousand_at_one_per_message_takes_five_and_a_half_hours() -> None:
    plan = plan_campaign(parse_plan_request(request(recipients="10000")), engine(), now=NOW)
    assert plan.can_start_now and plan.now_recipients == 10_000 and plan.now_binding is None
    assert plan.schedule_binding == "messages_per_minute"
    assert plan.finish_at is not None
    assert plan.finish_at - NOW == 334 * 60  # 333 minutes of 30 messages, then the last 10
    document = plan_to_json(plan)
    assert document["duration_seconds"] == 20_040.0
    assert document["schedule"][0]["recipients_per_minute"] == 30
    assert "5 h 34 min" in plan_to_text(document)


def test_used_quota_binds_now_and_the_rest_waits_for_the_window_to_roll() -> None:
    # 9,950 recipients 23 h ago: 50 can go now, the rest when those rows leave the window
    rows = [
        QuotaRow("news@contoso.com", f"r{i}@contoso.com", f"<m{i}@x>", NOW - 23 * 3600, "ok")
        for i in range(9_950)
    ]
    plan = plan_campaign(
        parse_plan_request(request(recipients="100", per_message="50")),
        engine(rows=rows),
        now=NOW,
    )
    assert plan.now_recipients == 50 and plan.now_binding == "recipients_per_day"
    first, wait, rest = plan.segments
    assert (first.recipients, first.binding) == (50, "recipients_per_day")
    assert (wait.recipients_per_minute, wait.binding) == (0, "recipients_per_day")
    # the rows' minute leaves the window 24 h + 1 min after it began (window.py)
    assert rest.start_at == NOW - 23 * 3600 + 86_400 + 60
    assert rest.recipients == 50 and plan.finish_at == rest.end_at


def test_tenant_external_limit_used_by_other_senders_binds_external_only() -> None:
    limits = QuotaLimits(internal_domains=CONTOSO, external_recipients_per_day=100)
    rows = [
        QuotaRow("other@contoso.com", f"r{i}@partner.example", f"<o{i}@x>", NOW - 600, "ok")
        for i in range(90)
    ]
    plan = plan_campaign(
        parse_plan_request(request(recipients="40", external="20", per_message="40")),
        engine(limits, rows),
        now=NOW,
    )
    tenant = next(limit for limit in plan.limits if limit.scope == "tenant")
    assert (tenant.used, tenant.remaining) == (90, 10)
    assert plan.now_recipients == 30 and plan.now_binding == "external_recipients_per_day"


def test_too_many_recipients_per_message_cannot_start() -> None:
    plan = plan_campaign(
        parse_plan_request(request(recipients="600", per_message="600")), engine(), now=NOW
    )
    assert not plan.can_start_now and plan.now_binding == "recipients_per_message"
    assert plan.unscheduled == 600 and plan.finish_at is None
    assert any("RecipientLimits" in note for note in plan.notes)


def test_future_start_counts_what_has_aged_out_by_then() -> None:
    rows = [QuotaRow("news@contoso.com", "a@contoso.com", "<m@x>", NOW - 86_000, "ok")] * 1
    quota = engine(QuotaLimits(internal_domains=CONTOSO, recipients_per_day=1), rows)
    now_plan = plan_campaign(parse_plan_request(request(recipients="1")), quota, now=NOW)
    assert now_plan.now_recipients == 0
    later = parse_plan_request(request(recipients="1", start="2026-01-01T01:00:00Z"))
    assert plan_campaign(later, quota, now=NOW).now_recipients == 1


def test_confidence_notes_name_the_trace_age_and_probe_sends() -> None:
    freshness = TraceFreshness(
        last_pull_ok=True, last_success_at=NOW, newest_row_at=NOW - 480, probe_recipients=7
    )
    plan = plan_campaign(
        parse_plan_request(request(recipients="5", external="5")),
        engine(),
        now=NOW,
        freshness=freshness,
    )
    text = " ".join(plan.notes)
    assert "8 min old" in text and "5-10 minutes" in text
    assert "7 recipients of this exporter's own probe" in text
    assert "distribution list" in text and "shared by every sender" in text


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"recipients": "0"}, "recipients"),
        ({"recipients": "ten"}, "recipients"),
        ({"recipients": "5", "external": "6"}, "external"),
        ({"recipients": "5", "per_message": "0"}, "per_message"),
        ({"recipients": "5", "start": "tomorrow"}, "start"),
        ({"recipients": "5", "sender": "not-an-address"}, "sender"),
        ({"recipients": "5", "tenant": "<script>"}, "tenant"),
        ({"recipients": "5", "colour": "red"}, "colour"),
        ({"recipients": "5" * 600}, "recipients"),
    ],
)
def test_bad_input_names_the_field(values: dict[str, str], field: str) -> None:
    with pytest.raises(PlanInputError) as raised:
        parse_plan_request(request(**values))
    assert raised.value.field == field


def test_start_in_the_past_or_too_far_ahead_is_refused() -> None:
    for start, message in (("2025-12-31T23:50:00Z", "past"), ("2026-02-01T00:00:00Z", "7 days")):
        with pytest.raises(PlanInputError, match=message) as raised:
            plan_campaign(
                parse_plan_request(request(recipients="1", start=start)), engine(), now=NOW
            )
        assert raised.value.field == "start"

"""`/api/v1/status`, `/api/v1/plan` and the server-rendered console against the demo."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from m365_smtp_exporter.console.routes import CONTENT_SECURITY_POLICY
from tests.console.live_demo import LiveDemo, live_demo, wait_for
from tests.support.prom import value

HOSTILE = "550 5.7.1 <img src=x onerror=\"document.title='pwned'\"> & <script>alert(1)</script>"


# The module's demo starts once: its tests share a test worker.
pytestmark = pytest.mark.xdist_group("console-api")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDemo]:
    with live_demo(tmp_path_factory.mktemp("demo"), traffic=False) as running:
        yield running


def test_status_document_has_every_area_and_matches_metrics(live: LiveDemo) -> None:
    def settled() -> Any:
        status = live.get_json("/api/v1/status")
        probes = {p["name"]: p for p in status["probes"]}
        return status if probes["submission"]["state"] == "ok" else None

    status = wait_for(settled, 40, "the submission probe to succeed")
    assert status["version"] == 1 and set(status) >= {"tenants", "probes", "delivery", "domains"}
    contoso = next(t for t in status["tenants"] if t["name"] == "contoso")
    assert contoso["trace"] is not None and contoso["graph_budget"]["limit"] > 0
    disabled = next(p for p in status["probes"] if p["name"] == "smtp-auth-disabled")

    def disabled_failed() -> Any:
        found = live.get_json("/api/v1/status")
        probe = next(p for p in found["probes"] if p["name"] == "smtp-auth-disabled")
        return probe if probe["state"] == "failing" else None

    disabled = wait_for(disabled_failed, 40, "the AUTH-disabled probe to fail")
    assert disabled["reply"]["enhanced_code"] == "5.7.139" and disabled["failing_since"]
    assert "SmtpClientAuthentication" in disabled["reply"]["text"] and disabled["hint"]
    assert disabled["tls"]["cert_days_left"] > 0

    def same_as_metrics() -> bool:
        status = live.get_json("/api/v1/status")
        _, _, text = live.get("/metrics")
        rows = [(t["name"], row) for t in status["tenants"] for row in t["quota"]]
        return bool(rows) and all(
            value(
                text,
                "m365_quota_used",
                tenant=tenant,
                sender=row["sender"] or "",
                limit=row["limit"],
            )
            == row["used"]
            and value(
                text,
                "m365_quota_remaining",
                tenant=tenant,
                sender=row["sender"] or "",
                limit=row["limit"],
            )
            == row["remaining"]
            for tenant, row in rows
        )

    wait_for(same_as_metrics, 30, "quota figures equal to /metrics")


def test_plan_answers_and_names_bad_fields(live: LiveDemo) -> None:
    query = "tenant=fabrikam&sender=newsletter@fabrikam.com&recipients=10000"
    status, headers, _ = live.get("/api/v1/plan?" + query)
    plan = live.get_json("/api/v1/plan?" + query)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert plan["can_start_now"] and plan["now"]["recipients"] == 10_000
    assert plan["binding"] == "messages_per_minute"
    assert 333 * 60 <= plan["duration_seconds"] <= 334 * 60  # ~5.5 h at 30 messages/minute
    for bad, field in (
        ("tenant=nowhere&sender=a@b.c&recipients=5", "tenant"),
        ("tenant=contoso&sender=a@b.c&recipients=-5", "recipients"),
        ("tenant=contoso&sender=a@b.c&recipients=5&external=9", "external"),
        ("tenant=contoso&sender=a@b.c&recipients=5&recipients=6", "recipients"),
        ("tenant=contoso&recipients=5", "sender"),
        ("tenant=contoso&sender=a@b.c&recipients=5&start=" + urllib.parse.quote("<x>"), "start"),
    ):
        status, _, body = live.get("/api/v1/plan?" + bad)
        assert status == 400, bad
        assert f'"field":"{field}"' in body, body


def test_console_is_escaped_and_locked_down(live: LiveDemo) -> None:
    replies = [{"reply": HOSTILE, "count": 20, "command": "MAIL"}]
    live.fault("PUT", "/faults", {"scripted_replies": replies})
    try:
        live.run_job("probe:submission")  # rather than wait up to 20 s for its next turn

        def hostile_seen() -> str | None:
            status, headers, page = live.get("/")
            assert status == 200
            assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            return page if "onerror" in page else None

        page = wait_for(hostile_seen, 60, "the hostile reply on the console")
    finally:
        live.fault("DELETE", "/faults")
    assert "&lt;img src=x onerror=" in page and "<img" not in page and "<script>" not in page
    assert '<script src="/static/console.js" defer></script>' in page
    _, headers, script = live.get("/static/console.js")
    assert headers["Content-Type"].startswith("text/javascript") and "innerHTML" not in script
    status, _, _ = live.get("/static/../../pyproject.toml")
    assert status == 404


def test_microsofts_open_incident_is_shown_next_to_the_tenant(live: LiveDemo) -> None:
    """The demo opens an Exchange Online incident in the emulator: "us or Microsoft?"."""

    def incident_read() -> Any:
        _, _, body = live.get("/api/v1/status")
        document = json.loads(body)
        contoso = next(t for t in document["tenants"] if t["name"] == "contoso")
        microsoft = contoso["microsoft"]
        return microsoft if microsoft and microsoft["issues"] else None

    microsoft = wait_for(incident_read, 60, "the demo's Exchange Online incident")
    issue = microsoft["issues"][0]
    assert microsoft["pull_ok"] is True
    assert issue["classification"] == "incident"
    assert issue["title"] == "Some users can't send email through SMTP AUTH client submission"
    _, _, metrics = live.get("/metrics")
    assert value(metrics, "m365_service_health_active_issues", tenant="contoso", id=issue["id"])
    _, _, page = live.get("/")
    assert f"open incident {issue['id']}: Some users can&#x27;t send email" in page
    # a tenant without service health says so rather than "no incident"
    fabrikam = next(
        t for t in json.loads(live.get("/api/v1/status")[2])["tenants"] if t["name"] == "fabrikam"
    )
    assert fabrikam["microsoft"] is None

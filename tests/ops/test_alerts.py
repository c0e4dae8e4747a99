"""The alerting and recording rules: promtool checks, unit tests, and their conventions."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.lint import metric_problems
from tests.ops.promql import names
from tests.ops.queries import (
    REPO,
    RULE_TEST_DIR,
    alerting_rules,
    all_dashboard_queries,
    all_rule_expressions,
    recording_rule_names,
    rule_files,
    rules,
)
from tests.support.prom import require_tool

SEVERITIES = ("page", "critical", "warning", "info")
RUNBOOK_URL = "https://github.com/m365-smtp-exporter/m365-smtp-exporter/blob/main/docs/runbooks.md#"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# Unit-test groups that pin the detection behaviour the rules promise (smtp-alerts.yml).
PINNED_BEHAVIOUR = (
    "outage of a tenant pages within 3 minutes and holds until 10 minutes after recovery",
    "outage of a single-probe tenant pages after two failed runs",
    "one isolated failed probe never alerts",
    "flapping probe warns continuously and never pages",
    "outage with intermittent successes stays one continuous page",
    "SMTP AUTH disabled pages on the first failed probe",
)

ALERTS = alerting_rules()
ALERT_IDS = [rule["alert"] for rule in ALERTS]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def _rule_tests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, yaml.safe_load(path.read_text(encoding="utf-8")))
        for path in sorted(RULE_TEST_DIR.glob("*.yml"))
    ]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown document."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.prometheus
def test_promtool_check_rules_passes() -> None:
    done = _promtool("check", "rules", *rule_files())
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.prometheus
@pytest.mark.slow
def test_promtool_rule_unit_tests_pass() -> None:
    done = _promtool("test", "rules", *sorted(RULE_TEST_DIR.glob("*.yml")))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(_rule_tests())


def test_alert_and_record_names_are_unique() -> None:
    counts = Counter(rule.get("alert") or rule["record"] for _, _, rule in rules())
    assert [name for name, count in counts.items() if count > 1] == []


def test_recording_rule_names_follow_the_level_metric_operation_pattern() -> None:
    for name in recording_rule_names():
        assert re.fullmatch(r"m365:[a-z0-9_]+:[a-z0-9_]+", name) or re.fullmatch(
            r"m365:[a-z0-9_]+", name
        ), name


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_IDS)
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("M365")
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{rule['alert']} has no {key}"
    assert annotations["runbook_url"] == RUNBOOK_URL + rule["alert"].lower()
    assert "{{" in annotations["summary"] + annotations["description"], "no templated detail"


def test_every_runbook_anchor_exists() -> None:
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    missing = [
        rule["alert"]
        for rule in ALERTS
        if rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL) not in anchors
    ]
    assert missing == []


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = re.findall(r"^### (M365\w+)$", RUNBOOKS.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(sections) == sorted(ALERT_IDS)


def test_runbooks_say_what_to_check_in_microsoft_365() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    for needle in (
        "Set-CASMailbox -Identity probe@contoso.com -SmtpClientAuthenticationDisabled $false",
        "Get-CASMailbox",
        "Get-LimitsEnforcementStatus",
        "Restricted entities",
        "Get-MessageTraceV2",
        "_dmarc.contoso.com",
        "Service health",
    ):
        assert needle in text


def test_page_alerts_keep_firing_through_flapping() -> None:
    pages = [rule for rule in ALERTS if rule["labels"]["severity"] == "page"]
    assert pages
    assert all("keep_firing_for" in rule for rule in pages)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for _, content in _rule_tests():
        for group in content["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert sorted(set(ALERT_IDS) - firing) == [], "alerts without a firing test"
    assert sorted(set(ALERT_IDS) - quiet) == [], "alerts without a not-firing test"
    assert sorted((firing | quiet) - set(ALERT_IDS)) == [], "tests of unknown alerts"


def test_every_recording_rule_has_an_expression_test() -> None:
    tested: set[str] = set()
    for _, content in _rule_tests():
        for group in content["tests"]:
            for case in group.get("promql_expr_test", []):
                tested |= {selector.metric for selector in names(case["expr"]).selectors}
    assert sorted(recording_rule_names() - tested) == []


def test_every_recording_rule_is_used() -> None:
    used: set[str] = set()
    for _, expr in [*all_rule_expressions(), *all_dashboard_queries()]:
        used |= {selector.metric for selector in names(expr).selectors}
    assert sorted(recording_rule_names() - used) == []


def test_unit_tests_load_every_rule_file() -> None:
    loaded = {
        (path.parent / rule_file).resolve()
        for path, content in _rule_tests()
        for rule_file in content["rule_files"]
    }
    assert {path.resolve() for path in rule_files()} <= loaded


def test_detection_behaviour_is_pinned() -> None:
    test_names = {group["name"] for _, content in _rule_tests() for group in content["tests"]}
    assert sorted(set(PINNED_BEHAVIOUR) - test_names) == []


@pytest.mark.parametrize(("where", "expr"), all_rule_expressions(), ids=lambda v: str(v)[:60])
def test_rule_expression_uses_known_metrics_and_labels(where: str, expr: str) -> None:
    assert metric_problems(expr) == [], where

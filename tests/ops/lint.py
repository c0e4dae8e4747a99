"""Checks shared by the rule and dashboard tests: metric and label names in queries."""

from __future__ import annotations

from tests.ops.known_metrics import queryable_series
from tests.ops.promql import names
from tests.ops.queries import recording_rule_names

# Labels that ALERTS carries besides the alert's own labels.
_ALERT_LABELS = frozenset({"alertname", "alertstate"})


def known_label_names() -> frozenset[str]:
    labels: set[str] = set(_ALERT_LABELS)
    for series_labels in queryable_series().values():
        labels |= series_labels or set()
    return frozenset(labels)


def metric_problems(expr: str) -> list[str]:
    """Unknown metric names, and label names a selected metric does not have."""
    known = queryable_series()
    records = recording_rule_names()
    found = names(expr)
    problems = []
    for selector in found.selectors:
        if selector.metric in records:
            continue
        if selector.metric not in known:
            problems.append(f"unknown metric {selector.metric!r}")
            continue
        allowed = known[selector.metric]
        if allowed is not None and not selector.labels <= allowed:
            problems.append(f"{selector.metric} has no label {sorted(selector.labels - allowed)}")
    unknown_grouping = found.grouping_labels - known_label_names()
    if unknown_grouping:
        problems.append(f"grouping by unknown labels {sorted(unknown_grouping)}")
    return problems

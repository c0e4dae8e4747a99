"""Every PromQL expression the dashboards and rule files contain, ready to run.

`all_dashboard_queries()` substitutes Grafana variables so that a plain Prometheus can
execute the expressions: multi-value variables (used only inside regex matchers) become
`.*`, and the interval variables become fixed durations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards"
RULE_DIR = REPO / "alerts"
RULE_TEST_DIR = RULE_DIR / "tests"

# Grafana's own variables, replaced by fixed values a query can run with.
BUILTIN_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
}
# Multi-value template variables (tenant, probe, sender) all match everything.
ANY_VALUE = ".*"
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
_INSIDE_REGEX_MATCHER = re.compile(r'[=!]~\s*"[^"]*$')

Json = dict[str, Any]


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    return data


def iter_panels(panels: list[Json]) -> Iterator[Json]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def variables_in(expr: str) -> list[tuple[str, int]]:
    """(variable name, offset) of every Grafana variable reference in `expr`."""
    return [
        (next(group for group in match.groups() if group), match.start())
        for match in _VARIABLE.finditer(expr)
    ]


def misplaced_variables(expr: str) -> list[str]:
    """Template variables used outside a regex matcher's value (where `.*` would break)."""
    return [
        name
        for name, offset in variables_in(expr)
        if name not in BUILTIN_VARIABLES and not _INSIDE_REGEX_MATCHER.search(expr[:offset])
    ]


def substitute(expr: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return BUILTIN_VARIABLES.get(name, ANY_VALUE)

    return _VARIABLE.sub(replace, expr)


def _label_values_selector(query: str) -> str | None:
    """The series selector of a `label_values(selector, label)` variable query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.DOTALL)
    return match.group(1) if match else None


def raw_dashboard_queries(dashboard: Json) -> list[tuple[str, str]]:
    """(where, expr) for every panel target, annotation and label_values() variable."""
    title = dashboard["title"]
    found: list[tuple[str, str]] = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"{title} / {panel['title']} [{target['refId']}]"
                found.append((where, target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            found.append((f"{title} / annotation {annotation['name']}", annotation["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            selector = _label_values_selector(text)
            if selector is not None:
                found.append((f"{title} / variable {variable['name']}", selector))
    return found


def all_dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard / panel title [refId], runnable expr) for every query of every dashboard."""
    return [
        (where, substitute(expr))
        for path in dashboard_files()
        for where, expr in raw_dashboard_queries(load_dashboard(path))
    ]


def rule_files() -> list[Path]:
    return sorted(RULE_DIR.glob("*.yml"))


def rules() -> Iterator[tuple[Path, str, Json]]:
    """(file, group name, rule) for every rule of every rule file."""
    for path in rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield path, group["name"], rule


def all_rule_expressions() -> list[tuple[str, str]]:
    """(file: group / alert or record name, expr) for every alerting and recording rule."""
    return [
        (f"{path.name}: {group} / {rule.get('alert') or rule['record']}", rule["expr"].strip())
        for path, group, rule in rules()
    ]


def recording_rule_names() -> set[str]:
    return {rule["record"] for _, _, rule in rules() if "record" in rule}


def alerting_rules() -> list[Json]:
    return [rule for _, _, rule in rules() if "alert" in rule]

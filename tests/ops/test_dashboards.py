"""Dashboard lint: structure Grafana needs, conventions, and queries that parse and name
only metrics the exporter (or Prometheus) provides."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.smtp.result import (
    Phase,
    ProbeResult,
    Reason,
    RejectedReply,
    Reply,
    TlsFacts,
)
from m365_smtp_exporter.store import ResultsStore
from tests.ops.known_metrics import EXPORTED_METRICS
from tests.ops.lint import metric_problems
from tests.ops.promql import names
from tests.ops.queries import (
    DASHBOARD_DIR,
    all_dashboard_queries,
    dashboard_files,
    iter_panels,
    load_dashboard,
    misplaced_variables,
    raw_dashboard_queries,
    variables_in,
)
from tests.support.prom import require_tool, samples

DASHBOARDS = {
    "m365-noc-overview.json",
    "m365-smtp-probes.json",
    "m365-quota.json",
    "m365-delivery-trace.json",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
QUERYLESS_PANELS = {"row", "text"}
PATHS = dashboard_files()

Json = dict[str, Any]


def _panels(dashboard: Json) -> list[Json]:
    return list(iter_panels(dashboard["panels"]))


def _variables(dashboard: Json) -> dict[str, Json]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def _datasource_references(node: object, path: str = "") -> list[tuple[str, object]]:
    """Every value of a "datasource" key anywhere in the dashboard."""
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}/{key}", value))
            found += _datasource_references(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _datasource_references(value, f"{path}/{index}")
    return found


def test_the_four_dashboards_exist() -> None:
    assert {path.name for path in PATHS} == DASHBOARDS


@pytest.fixture(params=PATHS, ids=lambda path: path.stem)
def dashboard(request: pytest.FixtureRequest) -> Json:
    path: Path = request.param
    data = load_dashboard(path)  # raises on invalid JSON
    data["__file__"] = path
    return data


def test_dashboard_metadata(dashboard: Json) -> None:
    assert dashboard["uid"] == dashboard["__file__"].stem
    assert dashboard["id"] is None  # importable into any Grafana
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"].startswith("Microsoft 365 mail / ")
    assert "m365-smtp-exporter" in dashboard["tags"]
    assert dashboard["description"]
    assert any(link.get("tags") == ["m365-smtp-exporter"] for link in dashboard["links"])


def test_panel_ids_are_unique(dashboard: Json) -> None:
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping(dashboard: Json) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken.get((x, y))}"
                taken[(x, y)] = panel["title"]


def test_every_datasource_is_the_variable(dashboard: Json) -> None:
    references = _datasource_references({k: v for k, v in dashboard.items() if k != "__file__"})
    assert references
    assert [(path, value) for path, value in references if value != DATASOURCE] == []
    for panel in _panels(dashboard):
        if panel["type"] in QUERYLESS_PANELS:
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"])


def test_templating_has_datasource_tenant_and_probe(dashboard: Json) -> None:
    variables = _variables(dashboard)
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for name in ("tenant", "probe"):
        variable = variables[name]
        query = variable["query"]["query"]
        assert variable["type"] == "query"
        assert query.startswith("label_values(") and query.endswith(f", {name})")
        assert variable["datasource"] == DATASOURCE
        # queries match these with =~, so "All" must be a regex matching everything
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"


def test_every_panel_has_description_unit_and_thresholds(dashboard: Json) -> None:
    for panel in _panels(dashboard):
        if panel["type"] in QUERYLESS_PANELS:
            continue  # Grafana shows no description or unit for rows and text
        assert panel.get("description", "").strip(), f"{panel['title']}: no description"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{panel['title']}: no unit"
        steps = defaults["thresholds"]["steps"]
        assert steps and steps[0]["value"] is None, f"{panel['title']}: no base threshold"


def test_variables_exist_and_sit_only_in_regex_matchers(dashboard: Json) -> None:
    defined = set(_variables(dashboard))
    for where, expr in raw_dashboard_queries(dashboard):
        used = {name for name, _ in variables_in(expr) if not name.startswith("__")}
        assert used <= defined, f"{where}: undefined {used - defined}"
        assert misplaced_variables(expr) == [], where


def test_dashboards_cover_what_their_audience_asks() -> None:
    wanted = {
        "Microsoft 365 mail / NOC overview": {
            "m365:tenant_smtp_probe_success:max",
            "m365:tenant_delivery_latency_seconds:p95_rate30m",
            "m365:smtp_replies:rate5m",
            "m365:quota_sender_headroom_ratio:min",
            "m365:quota_terrl_headroom_ratio",
            "ALERTS",
        },
        "Microsoft 365 mail / SMTP probes": {
            "m365_smtp_probe_phase_seconds",
            "m365:smtp_probe_success:ratio_rate5m",
            "m365_smtp_tls_info",
            "m365_smtp_tls_cert_expiry_timestamp_seconds",
            "m365_smtp_replies_total",
        },
        "Microsoft 365 mail / Sending quota": {
            "m365_quota_used",
            "m365_quota_limit",
            "m365_quota_remaining",
            "m365_quota_recovery_seconds",
            "m365_quota_utilization_ratio",
            "m365_quota_probe_recipients",
        },
        "Microsoft 365 mail / Delivery and message trace": {
            "m365_delivery_latency_seconds_bucket",
            "m365:delivery_outcomes:ratio_rate1h",
            "m365_delivery_auth_result",
            "m365_delivery_trace_status",
            "m365_trace_messages_total",
            "m365_trace_lag_seconds",
            "m365_graph_budget_remaining",
            "m365_graph_throttled_total",
        },
    }
    used: dict[str, set[str]] = {}
    for where, expr in all_dashboard_queries():
        title = where.split(" / ")[0] + " / " + where.split(" / ")[1]
        used.setdefault(title, set()).update(s.metric for s in names(expr).selectors)
    assert {title: metrics - used.get(title, set()) for title, metrics in wanted.items()} == {
        title: set() for title in wanted
    }


@pytest.mark.parametrize(("where", "expr"), all_dashboard_queries(), ids=lambda v: str(v)[:70])
def test_query_uses_known_metrics_and_labels(where: str, expr: str) -> None:
    assert metric_problems(expr) == [], where


@pytest.mark.prometheus
def test_every_query_parses(tmp_path: Path) -> None:
    """promtool type-checks each expression as a recording rule of a throwaway rule file."""
    queries = all_dashboard_queries()
    rules = [{"record": f"lint:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "lint", "rules": rules}]}))
    done = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert f"SUCCESS: {len(queries)} rules found" in report


def test_lint_catches_mistakes() -> None:
    assert metric_problems('m365_smtp_probe_sucess{tenant=~".*"}') == [
        "unknown metric 'm365_smtp_probe_sucess'"
    ]
    assert metric_problems('m365_smtp_probe_success{tennant="a"}') == [
        "m365_smtp_probe_success has no label ['tennant']"
    ]
    assert metric_problems("sum by (tennant) (m365_smtp_probe_success)") == [
        "grouping by unknown labels ['tennant']"
    ]
    # the exporter's jobs are labelled `task`; `job` is the scrape job
    assert metric_problems('m365_exporter_job_runs_total{task="probe:a", job="x"}') == []
    assert metric_problems("m365:tenant_smtp_probe_success:max and up") == []
    assert misplaced_variables('m365_smtp_probe_success{tenant="$tenant"}') == ["tenant"]
    assert misplaced_variables('rate(x{tenant=~"$tenant"}[$__rate_interval])') == []


# Rendered by m365_smtp_exporter.probes.posture, not by the store's collector.
POSTURE_METRICS = frozenset(
    {"m365_smtp_probe_info", "m365_smtp_probe_auth_info", "m365_smtp_basic_auth_accepted"}
)


def test_collector_renders_exactly_its_known_metrics() -> None:
    """known_metrics.py must follow collector.py (probe and exporter metrics): same names,
    same labels. The other subsystems are checked against a live exporter in
    test_live_prometheus.py."""
    # a cap of 0 folds the one reply below: the folded-series counter shows up too
    store = ResultsStore(clock=lambda: 1_700_000_000.0, series_cap=0)
    store.sync_probes([("contoso", "submission", "smtp.office365.com:587")])
    store.record_probe(
        ProbeResult(
            probe="submission",
            target="smtp.office365.com:587",
            started_at=1_700_000_000.0,
            duration=1.5,
            phases={Phase.CONNECT: 0.1, Phase.AUTH: 0.4},
            failed_phase=Phase.AUTH,
            reason=Reason.AUTH_DISABLED,
            rejections=[
                RejectedReply(Phase.AUTH, Reply(535, "5.7.139", "disabled"), "auth", False)
            ],
            tls=TlsFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", 1_800_000_000.0),
        )
    )
    store.record_job("probe:submission", "failure", 1.5)
    registry = CollectorRegistry(auto_describe=False)
    store.probe_intervals = {"submission": 60.0}
    registry.register(StoreCollector(store))
    rendered: dict[str, frozenset[str]] = {}
    for name, labels in samples(generate_latest(registry)):
        rendered[name] = frozenset(label for label, _ in labels)
    expected = {
        name: labels
        for metric in EXPORTED_METRICS
        if metric.name.startswith(("m365_smtp_", "m365_exporter_"))
        and metric.name not in POSTURE_METRICS
        for name, labels in metric.samples().items()
    }
    assert rendered == expected


def test_provisioning_files() -> None:
    provider = yaml.safe_load((DASHBOARD_DIR / "provisioning" / "dashboards.yml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert (entry["type"], entry["folder"]) == ("file", "Microsoft 365 mail")
    assert entry["options"]["path"]
    sources = yaml.safe_load((DASHBOARD_DIR / "provisioning" / "datasources.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["jsonData"]["timeInterval"] == "15s"

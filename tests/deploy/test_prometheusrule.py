"""deploy/kubernetes/prometheusrule.yaml is alerts/*.yml, generated, never edited by hand."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    GENERATOR,
    KUSTOMIZE_DIR,
    RULE_DIR,
    Json,
    load_yaml,
    load_yaml_documents,
)
from tests.support.prom import require_tool

COMMITTED = KUSTOMIZE_DIR / "prometheusrule.yaml"


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def rule() -> Json:
    (document,) = load_yaml_documents(COMMITTED)
    return document


def test_committed_file_is_what_the_generator_writes_now(tmp_path: Path) -> None:
    output = tmp_path / "prometheusrule.yaml"
    done = generate("--output", str(output))
    assert done.returncode == 0, done.stderr
    assert COMMITTED.read_text(encoding="utf-8") == output.read_text(encoding="utf-8"), (
        "run: .venv/bin/python scripts/generate-prometheusrule.py"
    )


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("for: 2m", "for: 3m", 1))
    done = generate("--check", "--output", str(stale))
    assert done.returncode == 1
    assert "out of date" in done.stderr
    assert generate("--check", "--output", str(COMMITTED)).returncode == 0


def test_groups_are_the_rule_files_groups_evaluated_every_15s(rule: Json) -> None:
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    source: list[dict[str, Any]] = [
        group for path in sorted(RULE_DIR.glob("*.yml")) for group in load_yaml(path)["groups"]
    ]
    generated = copy.deepcopy(rule["spec"]["groups"])
    assert [group.pop("interval") for group in generated] == ["15s"] * len(source)
    assert generated == source


def test_generator_refuses_duplicate_group_names(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = "groups:\n  - name: same\n    rules:\n      - record: a:b\n        expr: up\n"
    (rules / "one.yml").write_text(text)
    (rules / "two.yml").write_text(text)
    done = generate("--rules", str(rules), "--output", "-")
    assert done.returncode != 0
    assert "same" in done.stderr


def test_promtool_accepts_the_generated_rules(rule: Json, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "rules.yml"
    # promtool reads plain rule files: the spec of a PrometheusRule is one.
    rules.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout

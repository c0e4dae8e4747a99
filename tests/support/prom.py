"""Helpers for asserting on Prometheus output and running the Prometheus tools."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families


def require_tool(name: str) -> str:
    """Path of a Prometheus tool; skip locally when missing, fail in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("M365_EXPORTER_REQUIRE_PROMETHEUS"):
            pytest.fail(
                f"{name} is required in CI (apt-get install prometheus prometheus-alertmanager)"
            )
        pytest.skip(f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


def promtool_check_metrics(exposition: bytes) -> str:
    """Run `promtool check metrics`; returns its complaints ('' when clean)."""
    promtool = require_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).decode().strip()


def samples(exposition: bytes | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """All samples keyed by (name, labels)."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    result: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result


def value(exposition: bytes | str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`."""
    found = [
        v
        for (sample_name, sample_labels), v in samples(exposition).items()
        if sample_name == name and set(labels.items()) <= sample_labels
    ]
    if not found:
        return None
    assert len(found) == 1, f"{name} {labels} matches {len(found)} samples"
    return found[0]

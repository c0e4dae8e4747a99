"""The figures of a resilience run: a table for the terminal and a JSON document."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from tests.resilience.faults import FaultKind
from tests.resilience.observers import ResourceSample, ScrapeLog
from tests.resilience.timeline import PhaseRecord, Verdicts

MB = 1024 * 1024


def thirds(samples: list[ResourceSample]) -> tuple[list[ResourceSample], list[ResourceSample]]:
    """The first and the last third of the samples."""
    third = max(1, len(samples) // 3)
    return samples[:third], samples[-third:]


def resource_figures(samples: list[ResourceSample]) -> dict[str, float]:
    first, last = thirds(samples)
    return {
        "fds_before": statistics.median(s.fds for s in first),
        "fds_after": statistics.median(s.fds for s in last),
        "fds_max": max(s.fds for s in samples),
        "rss_mb_before": round(statistics.median(s.rss for s in first) / MB, 1),
        "rss_mb_after": round(statistics.median(s.rss for s in last) / MB, 1),
        "rss_mb_max": round(max(s.rss for s in samples) / MB, 1),
    }


def _verdict_figures(verdicts: Verdicts) -> dict[str, Any]:
    return {
        "classified_correctly": verdicts.total_correct,
        "total": verdicts.total,
        "straddling": verdicts.straddling,
        "straddling_explained": verdicts.straddling_explained,
        "by_fault": {
            kind.value: {
                "correct": verdicts.correct[kind],
                "total": verdicts.contained[kind],
                "showed_fault": verdicts.showed_fault[kind],
            }
            for kind in FaultKind
            if verdicts.contained[kind]
        },
    }


def build_figures(
    *,
    seed: int,
    seconds: float,
    phases: list[PhaseRecord],
    probes: Verdicts,
    pulls: Verdicts,
    pull_outcomes: Counter[str],
    scrapes: ScrapeLog,
    resources: list[ResourceSample],
    trace_rows: tuple[int, int],
    loop_errors: int,
    elapsed: float,
) -> dict[str, Any]:
    faults: dict[str, dict[str, Any]] = {}
    for phase in phases:
        entry = faults.setdefault(phase.fault.kind.value, {"phases": 0, "injected": Counter()})
        entry["phases"] += 1
        entry["injected"].update(phase.injected)
    return {
        "seed": seed,
        "seconds_requested": seconds,
        "elapsed_seconds": round(elapsed, 1),
        "schedule": [phase.fault.describe() for phase in phases],
        "faults": {
            kind: {"phases": entry["phases"], "injected": dict(sorted(entry["injected"].items()))}
            for kind, entry in faults.items()
        },
        "probes": _verdict_figures(probes),
        "trace_pulls": _verdict_figures(pulls) | {"outcomes": dict(pull_outcomes)},
        "scrape": {
            "count": len(scrapes.latencies),
            "failures": len(scrapes.failures),
            "max_ms": round(max(scrapes.latencies) * 1000, 1),
            "p99_ms": round(scrapes.percentile(0.99) * 1000, 1),
        },
        "resources": resource_figures(resources),
        "trace_rows": {"exporter": trace_rows[0], "emulator": trace_rows[1]},
        "loop_errors": loop_errors,
    }


def render_table(figures: dict[str, Any]) -> str:
    probes, pulls = figures["probes"], figures["trace_pulls"]
    lines = [
        f"resilience run: seed {figures['seed']}, {figures['seconds_requested']:g} s requested, "
        f"{figures['elapsed_seconds']:g} s elapsed, {len(figures['schedule'])} fault phases",
        f"{'fault':<26}{'phases':>7}{'injected':>10}{'probes ok/n':>13}{'pulls ok/n':>12}",
    ]
    for kind, entry in figures["faults"].items():
        probe = probes["by_fault"].get(kind, {"correct": 0, "total": 0})
        pull = pulls["by_fault"].get(kind, {"correct": 0, "total": 0})
        lines.append(
            f"{kind:<26}{entry['phases']:>7}{sum(entry['injected'].values()):>10}"
            f"{probe['correct']:>7}/{probe['total']:<5}{pull['correct']:>6}/{pull['total']:<5}"
        )
    scrape, resources, rows = figures["scrape"], figures["resources"], figures["trace_rows"]
    lines += [
        f"probe results classified correctly: {probes['classified_correctly']}/{probes['total']}"
        f" (+{probes['straddling_explained']}/{probes['straddling']} across a phase boundary)",
        f"trace pulls classified correctly: {pulls['classified_correctly']}/{pulls['total']}"
        f" (+{pulls['straddling_explained']}/{pulls['straddling']} across a phase boundary);"
        f" outcomes {pulls['outcomes']}",
        f"/metrics: {scrape['count']} scrapes, {scrape['failures']} failed, "
        f"max {scrape['max_ms']} ms, p99 {scrape['p99_ms']} ms",
        f"fds: {resources['fds_before']:g} -> {resources['fds_after']:g} "
        f"(max {resources['fds_max']}); RSS: {resources['rss_mb_before']} MB -> "
        f"{resources['rss_mb_after']} MB (max {resources['rss_mb_max']} MB)",
        f"trace rows: exporter {rows['exporter']}, emulator ground truth {rows['emulator']}; "
        f"loop errors: {figures['loop_errors']}",
    ]
    return "\n".join(lines)


def write_report(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")

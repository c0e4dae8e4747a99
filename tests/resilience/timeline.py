"""Phases as they really ran, and each probe run or trace pull judged against them.

A run lying wholly inside one phase must report that phase's fault. A run that overlaps
several phases (started before a fault was armed, or ended after it was cleared) is
accepted if any of those phases explains it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from tests.resilience.faults import (
    FaultKind,
    PlannedFault,
    ProbeOutcome,
    expected_probe,
    expected_pull,
    probe_shows_fault,
    pull_shows_fault,
)
from tests.resilience.observers import ProbeRun, PullRun


@dataclass(slots=True)
class PhaseRecord:
    """One phase on the monotonic clock. The fault may act from `started` (arming begins)
    to `ended` (clearing done) and surely acts from `active_from` (armed) to `active_until`
    (clearing begins); consecutive records share their boundary instants."""

    fault: PlannedFault
    started: float
    active_from: float
    active_until: float = math.inf
    ended: float = math.inf
    injected: Counter[str] = field(default_factory=Counter)  # emulator's tally, this phase

    def contains(self, started: float, ended: float) -> bool:
        return self.active_from <= started and ended <= self.active_until

    def overlaps(self, started: float, ended: float) -> bool:
        return started <= self.ended and self.started <= ended


@dataclass(slots=True)
class Verdicts:
    """Per fault kind: runs inside a phase, how many were right, which were wrong."""

    contained: Counter[FaultKind] = field(default_factory=Counter)
    correct: Counter[FaultKind] = field(default_factory=Counter)
    showed_fault: Counter[FaultKind] = field(default_factory=Counter)
    straddling: int = 0
    straddling_explained: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.contained.values())

    @property
    def total_correct(self) -> int:
        return sum(self.correct.values())


def _overlapping(phases: list[PhaseRecord], started: float, ended: float) -> list[PhaseRecord]:
    return [phase for phase in phases if phase.overlaps(started, ended)]


def _started_in(around: list[PhaseRecord], started: float) -> PhaseRecord | None:
    """The phase whose fault was armed when the run began (its first request met it)."""
    return next((phase for phase in around if phase.contains(started, started)), None)


def judge_probes(phases: list[PhaseRecord], runs: list[ProbeRun]) -> Verdicts:
    verdicts = Verdicts()
    for run in runs:
        around = _overlapping(phases, run.started, run.ended)
        inside = [phase for phase in around if phase.contains(run.started, run.ended)]
        if len(inside) == 1:
            phase = inside[0]
            kind = phase.fault.kind
            verdicts.contained[kind] += 1
            if expected_probe(phase.fault).accepts(run.outcome):
                verdicts.correct[kind] += 1
                verdicts.showed_fault[kind] += probe_shows_fault(phase.fault, run.outcome)
            else:
                verdicts.wrong.append(_explain(run.probe, run.outcome, phase))
            continue
        verdicts.straddling += 1
        if any(expected_probe(phase.fault).accepts(run.outcome) for phase in around):
            verdicts.straddling_explained += 1
            first = _started_in(around, run.started)
            if first is not None and expected_probe(first.fault).accepts(run.outcome):
                # a slow faulty run (retries, Retry-After) may end after its phase
                verdicts.showed_fault[first.fault.kind] += probe_shows_fault(
                    first.fault, run.outcome
                )
        else:
            faults = ", ".join(phase.fault.describe() for phase in around)
            verdicts.wrong.append(
                f"{run.probe}: {run.outcome.describe()} across [{faults}] fits none of them"
            )
    return verdicts


def judge_pulls(phases: list[PhaseRecord], runs: list[PullRun]) -> Verdicts:
    verdicts = Verdicts()
    for run in runs:
        around = _overlapping(phases, run.started, run.ended)
        inside = [phase for phase in around if phase.contains(run.started, run.ended)]
        if len(inside) == 1:
            phase = inside[0]
            kind = phase.fault.kind
            verdicts.contained[kind] += 1
            if run.outcome in expected_pull(phase.fault):
                verdicts.correct[kind] += 1
                verdicts.showed_fault[kind] += pull_shows_fault(phase.fault, run.outcome)
            else:
                verdicts.wrong.append(
                    f"trace pull: {run.outcome} during {phase.fault.describe()}, expected "
                    f"{' | '.join(sorted(expected_pull(phase.fault)))}"
                )
            continue
        verdicts.straddling += 1
        if any(run.outcome in expected_pull(phase.fault) for phase in around):
            verdicts.straddling_explained += 1
            first = _started_in(around, run.started)
            if first is not None and run.outcome in expected_pull(first.fault):
                # a 429 pull waits out Retry-After and its retries: it may end after its phase
                verdicts.showed_fault[first.fault.kind] += pull_shows_fault(
                    first.fault, run.outcome
                )
        else:
            faults = ", ".join(phase.fault.describe() for phase in around)
            verdicts.wrong.append(f"trace pull: {run.outcome} across [{faults}] fits none")
    return verdicts


def _explain(probe: str, outcome: ProbeOutcome, phase: PhaseRecord) -> str:
    return (
        f"{probe}: {outcome.describe()} during {phase.fault.describe()}, "
        f"expected {expected_probe(phase.fault).describe()}"
    )

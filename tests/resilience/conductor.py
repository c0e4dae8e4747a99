"""Plays a fault schedule on the emulator, one fault at a time, recording each phase."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from m365_emulator.service import Emulator
from tests.resilience.faults import FaultKind, PlannedFault, Timings, arm, clear
from tests.resilience.observers import Clock, ProbeLog
from tests.resilience.timeline import PhaseRecord


def no_fault(seconds: float = 0.0) -> PlannedFault:
    return PlannedFault(FaultKind.NONE, seconds, 0.0)


def injected_tally(emulator: Emulator) -> Counter[str]:
    """Everything the emulator has injected so far, `smtp.*` and `graph.*`."""
    tally: Counter[str] = Counter()
    tally.update({f"smtp.{key}": n for key, n in emulator.smtp.faults.injected.items()})
    tally.update({f"graph.{key}": n for key, n in emulator.graph_faults.injected().items()})
    return tally


class Conductor:
    def __init__(
        self,
        emulator: Emulator,
        probes: ProbeLog,
        timings: Timings,
        clock: Clock = time.monotonic,
    ) -> None:
        self.phases: list[PhaseRecord] = []
        self._emulator = emulator
        self._probes = probes
        self._timings = timings
        self._clock = clock

    def begin(self) -> None:
        """Open the first fault-free phase (before the exporter starts)."""
        now = self._clock()
        self.phases.append(PhaseRecord(no_fault(), started=now, active_from=now))

    def finish(self) -> None:
        now = self._clock()
        self.phases[-1].active_until = self.phases[-1].ended = now

    @property
    def last_cleared(self) -> float:
        return self.phases[-1].started

    async def play(self, schedule: list[PlannedFault]) -> None:
        for fault in schedule:
            await self.play_one(fault)

    async def play_one(self, fault: PlannedFault) -> None:
        if not fault.kind.on_graph:
            # so no probe run that began fault-free meets the fault halfway
            await self._probes.wait_idle(at_most=self._timings.probe_timeout)
        before = injected_tally(self._emulator)
        gap = self.phases[-1]
        gap.active_until = gap.ended = self._clock()
        await arm(self._emulator, fault, self._timings)
        phase = PhaseRecord(fault, started=gap.ended, active_from=self._clock())
        self.phases.append(phase)
        await asyncio.sleep(fault.duration)
        phase.active_until = self._clock()
        await clear(self._emulator)
        phase.ended = self._clock()
        self.phases.append(PhaseRecord(no_fault(), started=phase.ended, active_from=phase.ended))
        await asyncio.sleep(fault.gap)
        # what arrives in the gap (a late black-holed connection...) belongs to the fault
        phase.injected = injected_tally(self._emulator) - before

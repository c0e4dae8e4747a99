"""What every probe kind shares: its inputs (`ProbeContext`), its signature, its timing.

Each kind is one module with one coroutine `(config, context) -> ProbeResult`; the result
type is the SMTP probe's `ProbeResult`, so the store, the collector and the CLI treat every
kind alike. A prober never raises (except `CancelledError`): failures are results.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.result import Phase, ProbeResult

if TYPE_CHECKING:
    from m365_smtp_exporter.graph.client import GraphClient

SMTP_SCOPE: Final = "https://outlook.office365.com/.default"


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Everything a probe may need besides its configuration; all I/O seams injectable."""

    token_provider: TokenProvider | None = None
    token_scope: str = SMTP_SCOPE
    graph_client: GraphClient | None = None  # the probe tenant's client (graph_sendmail)
    monotonic: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    ssl_context: ssl.SSLContext | None = None


Prober = Callable[[ProbeConfig, ProbeContext], Awaitable[ProbeResult]]


@dataclass(slots=True)
class Stopwatch:
    """Charges all elapsed time to the running phase, so phases sum to the total."""

    monotonic: Callable[[], float]
    phase: Phase
    start: float = 0.0
    phases: dict[Phase, float] = field(default_factory=dict)
    _mark: float = 0.0

    def __post_init__(self) -> None:
        self.start = self._mark = self.monotonic()

    def enter(self, phase: Phase) -> None:
        self._settle()
        self.phase = phase

    def stop(self) -> float:
        return self._settle() - self.start

    def _settle(self) -> float:
        now = self.monotonic()
        self.phases[self.phase] = self.phases.get(self.phase, 0.0) + (now - self._mark)
        self._mark = now
        return now


def append_note(result: ProbeResult, note: str) -> ProbeResult:
    """Add one sentence a person can act on to a failed result's detail."""
    if note and not result.success:
        result.detail = f"{result.detail} ({note})" if result.detail else note
    return result

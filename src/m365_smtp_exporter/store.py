"""Results store: the latest snapshot and the counters every scrape renders.

Jobs write here on their schedule; scrapes only read. Two parts with their own change
notices: the probe part (owned by the probes subsystem) and the exporter part (job runs,
reloads, folded series; owned by the exporter's own subsystem). Each notice invalidates only
its own cached exposition chunk.

Label values a remote server chooses (reply codes) are capped per family: past `series_cap`
series, new label sets fold into one `__other__` series and the fold is counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from m365_smtp_exporter.smtp.replies import code_label
from m365_smtp_exporter.smtp.result import ProbeResult

# Seconds; SMTP submission to Microsoft 365 usually takes 0.5-3 s, a stalled phase 30 s.
PROBE_DURATION_BUCKETS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
)
JOB_DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DEFAULT_SERIES_CAP = 500
OTHER = "__other__"
REPLIES_FAMILY = "m365_smtp_replies_total"


class Histogram:
    """Cumulative-bucket histogram state, rendered by the collector."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1

    def buckets(self) -> list[tuple[str, float]]:
        pairs = [(_float_label(b), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        pairs.append(("+Inf", float(self.count)))
        return pairs


def _nothing() -> None:
    return None


def _float_label(value: float) -> str:
    return repr(float(value))


@dataclass(slots=True)
class ProbeSeries:
    """Everything the store keeps for one configured probe."""

    tenant: str
    probe: str
    target: str
    last: ProbeResult | None = None
    last_success_at: float = 0.0
    results: Counter[str] = field(default_factory=Counter)  # success / failure
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, reason)
    replies: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    duration: Histogram = field(default_factory=lambda: Histogram(PROBE_DURATION_BUCKETS))


@dataclass(slots=True)
class JobSeries:
    runs: Counter[str] = field(default_factory=Counter)  # outcome: success/failure/skipped
    duration: Histogram = field(default_factory=lambda: Histogram(JOB_DURATION_BUCKETS))


class ResultsStore:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        series_cap: int = DEFAULT_SERIES_CAP,
        on_probes_change: Callable[[], None] = _nothing,
        on_exporter_change: Callable[[], None] = _nothing,
    ) -> None:
        self._clock = clock
        self.version = 0  # every change of either part
        self.probes: dict[str, ProbeSeries] = {}
        self.jobs: dict[str, JobSeries] = {}
        self.reload_successful = True
        self.reload_success_at = clock()
        self.series_cap = series_cap
        self.probe_intervals: dict[str, float] = {}  # probe name -> configured interval (s)
        self.folded: Counter[str] = Counter()  # family -> label sets folded into __other__
        self.on_probes_change = on_probes_change
        self.on_exporter_change = on_exporter_change

    def mark_changed(self) -> None:
        """Both parts changed (for callers that do not say which)."""
        self.version += 1
        self.on_probes_change()
        self.on_exporter_change()

    def _probes_changed(self) -> None:
        self.version += 1
        self.on_probes_change()

    def _exporter_changed(self) -> None:
        self.version += 1
        self.on_exporter_change()

    def sync_probes(self, wanted: Sequence[tuple[str, str, str]]) -> None:
        """Keep series for configured (tenant, probe, target); drop removed or changed ones."""
        keep = {probe: (tenant, target) for tenant, probe, target in wanted}
        for name in list(self.probes):
            series = self.probes[name]
            if keep.get(name) != (series.tenant, series.target):
                del self.probes[name]
        for name, (tenant, target) in keep.items():
            self.probes.setdefault(name, ProbeSeries(tenant=tenant, probe=name, target=target))
        self._probes_changed()

    def record_probe(self, result: ProbeResult) -> None:
        series = self.probes.get(result.probe)
        if series is None:  # finished after a reload removed it
            return
        series.last = result
        series.results["success" if result.success else "failure"] += 1
        series.duration.observe(result.duration)
        if result.success:
            series.last_success_at = result.started_at + result.duration
        elif result.reason is not None:
            phase = result.failed_phase.value if result.failed_phase else ""
            series.failures[(phase, result.reason.value)] += 1
        folded = False
        for rejection in result.rejections:
            reply = rejection.reply
            code = code_label(reply.code)  # "invalid" rather than a number a server made up
            key = (rejection.phase.value, code, reply.enhanced_code, rejection.category)
            if key not in series.replies and self._reply_series() >= self.series_cap:
                key = (rejection.phase.value, OTHER, OTHER, rejection.category)
                self.folded[REPLIES_FAMILY] += 1
                folded = True
            series.replies[key] += 1
        self._probes_changed()
        if folded:
            self._exporter_changed()

    def _reply_series(self) -> int:
        return sum(len(series.replies) for series in self.probes.values())

    def record_job(self, job: str, outcome: str, duration: float | None) -> None:
        series = self.jobs.setdefault(job, JobSeries())
        series.runs[outcome] += 1
        if duration is not None:
            series.duration.observe(duration)
        self._exporter_changed()

    def forget_job(self, job: str) -> None:
        if self.jobs.pop(job, None) is not None:
            self._exporter_changed()

    def record_reload(self, ok: bool) -> None:
        self.reload_successful = ok
        if ok:
            self.reload_success_at = self._clock()
        self._exporter_changed()

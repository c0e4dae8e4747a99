"""The faults of the resilience run: a seeded schedule, how each is armed on the emulator and
what the exporter must report while it is active.

What a probe run or a trace pull lying wholly inside a phase must report:

| fault                        | probe run                                  | trace pull      |
|------------------------------|--------------------------------------------|-----------------|
| none (warm-up, gaps, end)    | success, normal certificate                | success         |
| smtp_refuse                  | connect / connect_refused                  | success         |
| smtp_blackhole               | banner / banner_timeout                    | success         |
| smtp_slow (phase P)          | P / timeout (banner: banner_timeout)       | success         |
| smtp_throttle_451 (MAIL/RCPT)| that phase / throttled / throttle, success | success         |
| smtp_throttle_432 (MAIL)     | mail / throttled / throttle, or success    | success         |
| smtp_quota_554 (end of DATA) | data / quota_exceeded / quota, or success  | success         |
| smtp_unavailable_421 (cmd)   | cmd's phase / service_unavailable /        | success         |
|                              | transient, or success                      |                 |
| smtp_cert_expiring           | success, certificate expiring within days  | success         |
| smtp_data_drop               | data / disconnected, or success            | success         |
| graph_throttled_429          | success                                    | throttled       |
| graph_unavailable_503        | success                                    | unavailable     |
| graph_expired_token_401      | success                                    | auth            |
| graph_malformed              | success                                    | malformed       |
| graph_slow                   | success                                    | timeout         |

Scripted replies and dropped transfers are armed for a random number of commands (2-6):
runs after the count is spent succeed, so success is accepted for them. A trace pull may
also end `budget` anywhere: the exporter spends at most 100 Graph requests per 5 minutes
(Microsoft's per-tenant allowance), fewer than one pull every 2 s needs, and a 429 blocks
the budget for its Retry-After. Graph faults are armed on the message-trace endpoint only,
so the token endpoint (shared with XOAUTH2) keeps working and probes are unaffected.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from m365_emulator.graph.faults import EndpointKind, GraphFault
from m365_emulator.service import Emulator
from m365_emulator.smtp.faults import BANNER, DATA_END, PHASES
from m365_emulator.smtp.faults import Phase as EmulatorPhase
from m365_smtp_exporter.graph.errors import FailureReason
from m365_smtp_exporter.graph.trace import SUCCESS
from m365_smtp_exporter.smtp.replies import QUOTA, THROTTLE, TRANSIENT
from m365_smtp_exporter.smtp.result import Phase, Reason

DAY = 86_400.0

THROTTLED_451 = "451 4.7.500 Access denied, please try again later"
THROTTLED_432 = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
QUOTA_554 = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
    "process message due to a permanent exception with message [BeginDiagnosticData]Message "
    "submission quota exceeded.[EndDiagnosticData]"
)
UNAVAILABLE_421 = "421 4.3.2 Service not available, closing transmission channel"

# The probe phase a scripted reply to each command fails.
_PHASE_OF_COMMAND = {
    BANNER: Phase.BANNER,
    "EHLO": Phase.EHLO,
    "STARTTLS": Phase.STARTTLS,
    "AUTH": Phase.AUTH,
    "MAIL": Phase.MAIL,
    "RCPT": Phase.RCPT,
    "DATA": Phase.DATA,
    DATA_END: Phase.DATA,
}


class FaultKind(StrEnum):
    NONE = "none"
    SMTP_REFUSE = "smtp_refuse"
    SMTP_BLACKHOLE = "smtp_blackhole"
    SMTP_SLOW = "smtp_slow"
    SMTP_THROTTLE_451 = "smtp_throttle_451"
    SMTP_THROTTLE_432 = "smtp_throttle_432"
    SMTP_QUOTA_554 = "smtp_quota_554"
    SMTP_UNAVAILABLE_421 = "smtp_unavailable_421"
    SMTP_CERT_EXPIRING = "smtp_cert_expiring"
    SMTP_DATA_DROP = "smtp_data_drop"
    GRAPH_THROTTLED_429 = "graph_throttled_429"
    GRAPH_UNAVAILABLE_503 = "graph_unavailable_503"
    GRAPH_EXPIRED_TOKEN_401 = "graph_expired_token_401"
    GRAPH_MALFORMED = "graph_malformed"
    GRAPH_SLOW = "graph_slow"

    @property
    def on_graph(self) -> bool:
        return self.value.startswith("graph_")


FAULT_KINDS: tuple[FaultKind, ...] = tuple(k for k in FaultKind if k is not FaultKind.NONE)

_GRAPH_FAULTS = {
    FaultKind.GRAPH_THROTTLED_429: (GraphFault.THROTTLED, FailureReason.THROTTLED),
    FaultKind.GRAPH_UNAVAILABLE_503: (GraphFault.UNAVAILABLE, FailureReason.UNAVAILABLE),
    FaultKind.GRAPH_EXPIRED_TOKEN_401: (GraphFault.EXPIRED_TOKEN, FailureReason.AUTH),
    FaultKind.GRAPH_MALFORMED: (GraphFault.MALFORMED_JSON, FailureReason.MALFORMED),
}


@dataclass(frozen=True, slots=True)
class Timings:
    """Probe and pull settings, and the phase lengths they call for (seconds)."""

    probe_timeout: float = 1.5  # the longest probe timeout configured
    pull_timeout: float = 4.5  # above three 1 s Retry-After waits of the SDK's retries
    smtp_phase: float = 4.0  # two or more runs of every probe
    graph_phase: float = 6.5  # a pull of 3+ s (429/503 retries) starting within 2 s fits
    graph_slow_phase: float = 8.0  # a pull that times out starting within 3.5 s fits
    gap: float = 0.75
    retry_after: int = 1

    @property
    def smtp_latency(self) -> float:
        return self.probe_timeout + 1.0

    @property
    def graph_delay(self) -> float:
        return self.pull_timeout + 1.5

    def phase_length(self, kind: FaultKind) -> float:
        if kind is FaultKind.GRAPH_SLOW:
            return self.graph_slow_phase
        return self.graph_phase if kind.on_graph else self.smtp_phase

    def cycle_length(self) -> float:
        """One phase of every fault kind, each followed by a gap."""
        return sum(self.phase_length(kind) + self.gap for kind in FAULT_KINDS)


@dataclass(frozen=True, slots=True)
class PlannedFault:
    kind: FaultKind
    duration: float
    gap: float  # fault-free time after the phase
    command: str | None = None  # scripted replies: the command answered
    count: int | None = None  # scripted replies, dropped transfers: how many
    latency_phase: EmulatorPhase | None = None  # smtp_slow
    days_left: float | None = None  # smtp_cert_expiring

    def describe(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("command", self.command),
                ("count", self.count),
                ("phase", self.latency_phase),
                ("days_left", None if self.days_left is None else round(self.days_left, 1)),
            )
            if value is not None
        ]
        return f"{self.kind}({', '.join(details)})" if details else str(self.kind)


def plan_schedule(rng: random.Random, seconds: float, timings: Timings) -> list[PlannedFault]:
    """Shuffled cycles of every fault kind filling `seconds` (at least one whole cycle)."""
    cycle = timings.cycle_length()
    cycles = max(1, math.floor(seconds / cycle))
    scale = max(1.0, seconds / (cycles * cycle))
    planned: list[PlannedFault] = []
    for _ in range(cycles):
        planned += [_plan(kind, rng, timings, scale) for kind in _shuffled_cycle(rng)]
    return planned


def _shuffled_cycle(rng: random.Random) -> list[FaultKind]:
    """Every kind once, each Graph fault followed by an SMTP one.

    A trace pull caught by a Graph fault can run on for the pull timeout after the fault
    is cleared; the SMTP phase after it (which pulls ignore) gives it time to end, so the
    next Graph phase starts with no pull in flight.
    """
    smtp = [kind for kind in FAULT_KINDS if not kind.on_graph]
    graph = [kind for kind in FAULT_KINDS if kind.on_graph]
    rng.shuffle(smtp)
    rng.shuffle(graph)
    before = dict(zip(sorted(rng.sample(range(len(smtp)), len(graph))), graph, strict=True))
    kinds: list[FaultKind] = []
    for index, kind in enumerate(smtp):
        if index in before:
            kinds.append(before[index])
        kinds.append(kind)
    return kinds


def _plan(kind: FaultKind, rng: random.Random, timings: Timings, scale: float) -> PlannedFault:
    duration, gap = timings.phase_length(kind) * scale, timings.gap * scale
    count = rng.randint(2, 6)
    match kind:
        case FaultKind.SMTP_SLOW:
            return PlannedFault(kind, duration, gap, latency_phase=rng.choice(PHASES))
        case FaultKind.SMTP_THROTTLE_451:
            command = rng.choice(["MAIL", "RCPT"])
            return PlannedFault(kind, duration, gap, command=command, count=count)
        case FaultKind.SMTP_THROTTLE_432:
            return PlannedFault(kind, duration, gap, command="MAIL", count=count)
        case FaultKind.SMTP_QUOTA_554:
            return PlannedFault(kind, duration, gap, command=DATA_END, count=count)
        case FaultKind.SMTP_UNAVAILABLE_421:
            command = rng.choice(list(_PHASE_OF_COMMAND))
            return PlannedFault(kind, duration, gap, command=command, count=count)
        case FaultKind.SMTP_DATA_DROP:
            return PlannedFault(kind, duration, gap, count=count)
        case FaultKind.SMTP_CERT_EXPIRING:
            return PlannedFault(kind, duration, gap, days_left=rng.uniform(1.0, 10.0))
        case _:
            return PlannedFault(kind, duration, gap)


def every_smtp_variant(seconds: float = 1.0) -> list[PlannedFault]:
    """Each SMTP fault with every parameter the schedule can draw (counts of 1)."""
    variants = [
        PlannedFault(FaultKind.SMTP_REFUSE, seconds, 0.0),
        PlannedFault(FaultKind.SMTP_BLACKHOLE, seconds, 0.0),
        PlannedFault(FaultKind.SMTP_CERT_EXPIRING, seconds, 0.0, days_left=3.0),
        PlannedFault(FaultKind.SMTP_DATA_DROP, seconds, 0.0, count=1),
        PlannedFault(FaultKind.SMTP_THROTTLE_432, seconds, 0.0, command="MAIL", count=1),
        PlannedFault(FaultKind.SMTP_QUOTA_554, seconds, 0.0, command=DATA_END, count=1),
    ]
    variants += [
        PlannedFault(FaultKind.SMTP_SLOW, seconds, 0.0, latency_phase=phase) for phase in PHASES
    ]
    variants += [
        PlannedFault(FaultKind.SMTP_THROTTLE_451, seconds, 0.0, command=command, count=1)
        for command in ("MAIL", "RCPT")
    ]
    variants += [
        PlannedFault(FaultKind.SMTP_UNAVAILABLE_421, seconds, 0.0, command=command, count=1)
        for command in _PHASE_OF_COMMAND
    ]
    return variants


async def arm(emulator: Emulator, fault: PlannedFault, timings: Timings) -> None:
    smtp, graph = emulator.smtp, emulator.graph_faults
    kind = fault.kind
    if kind is FaultKind.SMTP_REFUSE:
        await smtp.set_outage("refuse")
    elif kind is FaultKind.SMTP_BLACKHOLE:
        await smtp.set_outage("blackhole")
    elif kind is FaultKind.SMTP_SLOW:
        assert fault.latency_phase is not None
        smtp.faults.set_latency(fault.latency_phase, timings.smtp_latency)
    elif kind is FaultKind.SMTP_CERT_EXPIRING:
        smtp.use_certificate(days_left=fault.days_left)
    elif kind is FaultKind.SMTP_DATA_DROP:
        smtp.faults.drop_next_data(fault.count or 1)
    elif kind in _SCRIPTED:
        smtp.faults.script_reply(_SCRIPTED[kind], fault.count or 1, fault.command)
    elif kind is FaultKind.GRAPH_SLOW:
        graph.slow_down(timings.graph_delay, endpoint=EndpointKind.TRACE)
    elif kind in _GRAPH_FAULTS:
        graph.inject(
            _GRAPH_FAULTS[kind][0],
            count=1_000_000,  # every request until the phase ends
            endpoint=EndpointKind.TRACE,
            retry_after=timings.retry_after,
        )


async def clear(emulator: Emulator) -> None:
    """Back to normal service: listener, certificate, scripted replies, Graph faults."""
    await emulator.smtp.reset_faults()
    emulator.graph_faults.reset()


_SCRIPTED = {
    FaultKind.SMTP_THROTTLE_451: THROTTLED_451,
    FaultKind.SMTP_THROTTLE_432: THROTTLED_432,
    FaultKind.SMTP_QUOTA_554: QUOTA_554,
    FaultKind.SMTP_UNAVAILABLE_421: UNAVAILABLE_421,
}


# -- what the exporter must report -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertWindow:
    """Days the server certificate a successful probe saw had left."""

    min_days: float
    max_days: float

    def holds(self, days_left: float | None) -> bool:
        return days_left is not None and self.min_days <= days_left <= self.max_days


# The emulator's normal certificate is valid for a year.
NORMAL_CERT = CertWindow(30.0, math.inf)


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe run reduced to what is classified."""

    success: bool
    failed_phase: Phase | None
    reason: Reason | None
    category: str | None  # of the last refused reply; None when no reply was refused
    cert_days_left: float | None

    def describe(self) -> str:
        if self.success:
            days = "?" if self.cert_days_left is None else f"{self.cert_days_left:.1f}"
            return f"success(cert {days} d)"
        return f"{self.failed_phase}/{self.reason}/{self.category or '-'}"


@dataclass(frozen=True, slots=True)
class ProbeExpectation:
    failure: tuple[Phase, Reason, str | None] | None  # None: the run must succeed
    success: CertWindow | None  # None: success is wrong

    def accepts(self, outcome: ProbeOutcome) -> bool:
        if outcome.success:
            return self.success is not None and self.success.holds(outcome.cert_days_left)
        got = (outcome.failed_phase, outcome.reason, outcome.category)
        return self.failure is not None and got == self.failure

    def describe(self) -> str:
        parts = []
        if self.failure is not None:
            phase, reason, category = self.failure
            parts.append(f"{phase}/{reason}/{category or '-'}")
        if self.success is not None:
            window = self.success
            days = (
                f"cert <= {window.max_days:.1f} d"
                if window.max_days < math.inf
                else f"cert >= {window.min_days:.0f} d"
            )
            parts.append(f"success({days})")
        return " | ".join(parts)


def expected_probe(fault: PlannedFault) -> ProbeExpectation:
    kind = fault.kind
    if kind is FaultKind.NONE or kind.on_graph:
        return ProbeExpectation(None, NORMAL_CERT)
    if kind is FaultKind.SMTP_REFUSE:
        return ProbeExpectation((Phase.CONNECT, Reason.CONNECT_REFUSED, None), None)
    if kind is FaultKind.SMTP_BLACKHOLE:
        return ProbeExpectation((Phase.BANNER, Reason.BANNER_TIMEOUT, None), None)
    if kind is FaultKind.SMTP_SLOW:
        assert fault.latency_phase is not None
        phase = Phase(fault.latency_phase)
        reason = Reason.BANNER_TIMEOUT if phase is Phase.BANNER else Reason.TIMEOUT
        return ProbeExpectation((phase, reason, None), None)
    if kind is FaultKind.SMTP_CERT_EXPIRING:
        assert fault.days_left is not None
        return ProbeExpectation(None, CertWindow(0.0, fault.days_left + 0.01))
    if kind is FaultKind.SMTP_DATA_DROP:
        return ProbeExpectation((Phase.DATA, Reason.DISCONNECTED, None), NORMAL_CERT)
    assert fault.command is not None
    phase = _PHASE_OF_COMMAND[fault.command]
    reason, category = _REPLY_CLASSES[kind]
    return ProbeExpectation((phase, reason, category), NORMAL_CERT)


_REPLY_CLASSES = {
    FaultKind.SMTP_THROTTLE_451: (Reason.THROTTLED, THROTTLE),
    FaultKind.SMTP_THROTTLE_432: (Reason.THROTTLED, THROTTLE),
    FaultKind.SMTP_QUOTA_554: (Reason.QUOTA_EXCEEDED, QUOTA),
    FaultKind.SMTP_UNAVAILABLE_421: (Reason.SERVICE_UNAVAILABLE, TRANSIENT),
}


def expected_pull(fault: PlannedFault) -> frozenset[str]:
    """Outcomes a trace pull may end with during `fault` (see the module docstring)."""
    kind = fault.kind
    if kind is FaultKind.GRAPH_SLOW:
        wanted = FailureReason.TIMEOUT.value
    elif kind in _GRAPH_FAULTS:
        wanted = _GRAPH_FAULTS[kind][1].value
    else:
        wanted = SUCCESS
    return frozenset({wanted, FailureReason.BUDGET.value})


def probe_shows_fault(fault: PlannedFault, outcome: ProbeOutcome) -> bool:
    """The run saw the fault itself (not just a success after its count was spent)."""
    if fault.kind is FaultKind.SMTP_CERT_EXPIRING:
        return expected_probe(fault).accepts(outcome)
    return not outcome.success and expected_probe(fault).accepts(outcome)


def pull_shows_fault(fault: PlannedFault, outcome: str) -> bool:
    return outcome in expected_pull(fault) - {SUCCESS, FailureReason.BUDGET.value}

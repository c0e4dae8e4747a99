"""Property tests: the engine against a brute-force recount over the raw rows.

Granularity, as documented in window.py: at time `now` a window of W seconds holds the rows
whose minute bucket (floor(t / 60)) is >= floor(now / 60) - W / 60. The model below keeps
every effective row in a plain list and recounts from scratch; recovery is found by
recounting at every instant a bucket leaves the window (usage only changes then).

Effective rows: trace rows from our senders with a counted status, at min(received, clock
when fed), dropped when already out of the 24 h window when fed; plus provisional probe
rows whose trace row has not arrived (a trace row replaces the provisional row with the
same sender, message id and recipient; a probe reported after its trace row, within the
match horizon, or twice, is not counted again; provisional rows out of the 24 h window are
forgotten).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.quota import (
    TENANT_SENDER,
    LimitName,
    QuotaEngine,
    QuotaFigure,
    QuotaLimits,
    QuotaRow,
    QuotaSnapshot,
)
from m365_smtp_exporter.quota.rows import domain_of, normalize_message_id
from tests.support.clock import ManualClock
from tests.support.examples import examples

T0 = 1_767_225_600.0
OURS = frozenset({"contoso.com", "fabrikam.com"})
SENDERS = [
    "a@contoso.com",
    "A@Contoso.com ",
    "b@fabrikam.com",
    "c@contoso.com",
    "x@outside.example",
]
RECIPIENTS = [
    "a@contoso.com",
    "d@fabrikam.com",
    "e@partner.example",
    "F@Partner.Example",
    "g@other.example",
]
MESSAGE_IDS = ["<m1@contoso.com>", "m1@contoso.com", "<m2@x>", "<m3@x>", "<m4@x>", "<m5@x>"]
STATUSES = ["delivered", "Failed", "filteredAsSpam", "pending", "somethingNew"]
HORIZON = 900
DAY_BUCKETS, HOUR_BUCKETS = 1440, 60

Key = tuple[str, str, str]  # (sender, message id, recipient)
Row = tuple[str, str, str, float]  # key + effective time
Usage = Callable[[list[Row], float, int], int]


def bucket(t: float) -> int:
    return int(t // 60)


@dataclass
class Model:
    """The rules, applied the slow and obvious way."""

    limits: QuotaLimits
    clock: float = float("-inf")
    counted: list[Row] = field(default_factory=list)
    pending: dict[Key, float] = field(default_factory=dict)
    traced: list[tuple[Key, float]] = field(default_factory=list)

    def _tick(self, now: float) -> None:
        self.clock = max(self.clock, now)
        day_cutoff = bucket(self.clock) - DAY_BUCKETS
        self.pending = {k: t for k, t in self.pending.items() if bucket(t) >= day_cutoff}

    def ours(self, address: str) -> bool:
        return domain_of(address) in OURS

    def add_rows(self, rows: Iterable[QuotaRow], now: float) -> None:
        self._tick(now)
        for row in rows:
            sender, recipient = row.sender.strip().lower(), row.recipient.strip().lower()
            if not self.ours(sender):
                continue
            t = min(row.received_at, self.clock)
            key = (sender, normalize_message_id(row.message_id), recipient)
            self.traced.append((key, t))
            self.pending.pop(key, None)
            stale = bucket(t) < bucket(self.clock) - DAY_BUCKETS
            if row.status.lower() not in self.limits.ignored_statuses and not stale:
                self.counted.append((*key, t))

    def probe(
        self, sender: str, message_id: str, recipients: list[str], at: float, now: float
    ) -> None:
        self._tick(now)
        sender, t = sender.strip().lower(), min(at, self.clock)
        if not self.ours(sender) or bucket(t) < bucket(self.clock) - DAY_BUCKETS:
            return
        horizon_cutoff = bucket(self.clock) - HORIZON // 60
        for recipient in {r.strip().lower() for r in recipients}:
            key = (sender, normalize_message_id(message_id), recipient)
            seen = any(k == key and bucket(tt) >= horizon_cutoff for k, tt in self.traced)
            if key not in self.pending and not seen:
                self.pending[key] = t

    def rows(self) -> list[Row]:
        return self.counted + [(*key, t) for key, t in self.pending.items()]

    def snapshot(self, now: float) -> dict[tuple[str, str], tuple[int, int, float]]:
        """(sender, limit name) -> (used, limit, recovery seconds)."""
        now = max(self.clock, now)
        rows = self.rows()
        limits = self.limits
        lookback = limits.message_rate_lookback_seconds // 60
        figures: dict[tuple[str, str], tuple[int, int, float]] = {}
        for sender in {r[0] for r in rows if bucket(r[3]) >= bucket(now) - DAY_BUCKETS}:
            mine = [r for r in rows if r[0] == sender]
            outbound = [r for r in mine if not self.ours(r[2])]
            internal = [r for r in mine if self.ours(r[2])]
            for name, limit in limits.sender_limits(sender):
                usage, chosen, width = {
                    LimitName.MESSAGES_PER_MINUTE: (busiest_minute, mine, lookback),
                    LimitName.SPAM_EXTERNAL_PER_HOUR: (row_count, outbound, HOUR_BUCKETS),
                    LimitName.SPAM_INTERNAL_PER_HOUR: (row_count, internal, HOUR_BUCKETS),
                }.get(name, (row_count, mine, DAY_BUCKETS))
                figures[sender, name] = self._figure(usage, chosen, width, limit, now)
        everyone_outbound = [r for r in rows if not self.ours(r[2])]
        figures[TENANT_SENDER, LimitName.EXTERNAL_RECIPIENTS_PER_DAY] = self._figure(
            row_count, everyone_outbound, DAY_BUCKETS, limits.tenant_external_limit, now
        )
        return figures

    def _figure(
        self, usage: Usage, rows: list[Row], width: int, limit: int, now: float
    ) -> tuple[int, int, float]:
        """Usage now, and the first instant a bucket leaves the window with usage under
        threshold * limit (usage can only drop at those instants)."""
        target = self.limits.recovery_threshold * limit
        instants = sorted({(bucket(r[3]) + width + 1) * 60.0 for r in rows} | {now})
        recovered = next(at for at in instants if at >= now and usage(rows, at, width) < target)
        return usage(rows, now, width), limit, recovered - now


def row_count(rows: list[Row], at: float, width: int) -> int:
    return sum(bucket(t) >= bucket(at) - width for *_, t in rows)


def busiest_minute(rows: list[Row], at: float, width: int) -> int:
    per_bucket: dict[int, set[str]] = {}
    for _, message_id, _, t in rows:
        if bucket(t) >= bucket(at) - width:
            per_bucket.setdefault(bucket(t), set()).add(message_id)
    return max(map(len, per_bucket.values()), default=0)


def engine_figures(snapshot: QuotaSnapshot) -> dict[tuple[str, str], tuple[int, int, float]]:
    def values(f: QuotaFigure) -> tuple[int, int, float]:
        return f.used, f.limit, f.recovery_seconds

    return {(f.sender, f.limit_name): values(f) for f in snapshot.all_figures()}


# --- strategies -----------------------------------------------------------------------

offsets = st.one_of(
    st.integers(-600, 120),  # recent, a little late or a little in the future
    st.integers(-4_000, 0),  # around the hour window
    st.integers(-87_000, -85_000),  # around the day window
)


@st.composite
def trace_rows(draw: st.DrawFn, clock: float) -> list[QuotaRow]:
    sender = draw(st.sampled_from(SENDERS))
    message_id = draw(st.sampled_from(MESSAGE_IDS))
    at = clock + draw(offsets) + draw(st.sampled_from([0.0, 0.5, 59.75]))
    recipients = draw(st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=3, unique=True))
    return [
        QuotaRow(
            sender,
            r,
            message_id,
            at + draw(st.sampled_from([0.0, 30.0])),
            draw(st.sampled_from(STATUSES)),
        )
        for r in recipients
    ]


@st.composite
def limit_sets(draw: st.DrawFn) -> QuotaLimits:
    return QuotaLimits(
        internal_domains=OURS,
        recipients_per_day=draw(st.integers(1, 12)),
        recipients_per_day_overrides={"b@fabrikam.com": draw(st.integers(1, 12))},
        messages_per_minute=draw(st.integers(1, 4)),
        message_rate_lookback_seconds=draw(st.sampled_from([60, 300, 900])),
        external_recipients_per_day=draw(st.integers(1, 20)),
        spam_external_per_hour=draw(st.none() | st.integers(1, 6)),
        spam_internal_per_hour=draw(st.none() | st.integers(1, 6)),
        spam_recipients_per_day=draw(st.none() | st.integers(1, 12)),
        recovery_threshold=draw(st.sampled_from([0.5, 0.8, 1.0])),
        ignored_statuses=draw(st.sampled_from([frozenset(), frozenset({"failed"})])),
    )


@dataclass
class Step:
    advance: int
    rows: list[QuotaRow]
    probe: tuple[str, str, list[str], float] | None


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[QuotaLimits, list[Step], int]:
    limits = draw(limit_sets())
    steps: list[Step] = []
    clock = T0
    for _ in range(draw(st.integers(1, 10))):
        advance = draw(st.integers(0, 400))
        clock += advance
        batch: list[QuotaRow] = []
        for _ in range(draw(st.integers(0, 3))):
            batch.extend(draw(trace_rows(clock)))
        probe = None
        if draw(st.booleans()):
            # a probe send, sometimes of a message some trace rows above describe
            template: QuotaRow | None = None
            use_template = draw(st.booleans())
            if batch and use_template:
                template = draw(st.sampled_from(batch))
            sender = template.sender if template else draw(st.sampled_from(SENDERS))
            message_id = template.message_id if template else draw(st.sampled_from(MESSAGE_IDS))
            at = (template.received_at if template else clock) - draw(st.integers(0, 90))
            recipients = draw(st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=3))
            probe = (sender, message_id, recipients, at)
        steps.append(Step(advance, batch, probe))
    return limits, steps, draw(st.integers(0, 90_000))


def run(
    limits: QuotaLimits, steps: Sequence[Step], rng: random.Random
) -> tuple[QuotaEngine, Model, float]:
    """Feed both, shuffling and splitting each batch, the probe report anywhere around it."""
    clock = ManualClock(T0)
    engine = QuotaEngine(limits, clock, probe_match_horizon_seconds=HORIZON)
    model = Model(limits)
    for step in steps:
        clock.advance(step.advance)
        batch = list(step.rows)
        rng.shuffle(batch)
        split = rng.randint(0, len(batch))
        parts: list[list[QuotaRow] | None] = [batch[:split], batch[split:]]
        if step.probe is not None:
            parts.insert(rng.randint(0, 2), None)  # None: the probe report
        for part in parts:
            if part is not None:
                engine.add_rows(part)
                model.add_rows(part, clock())
            elif step.probe is not None:
                engine.record_probe_send(*step.probe)
                model.probe(*step.probe, now=clock())
    return engine, model, clock()


SETTINGS = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_figures_equal_a_brute_force_recount(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random
) -> None:
    limits, steps, later = scenario
    engine, model, now = run(limits, steps, rng)
    for at in (now, now + later):
        assert engine_figures(engine.snapshot(at)) == model.snapshot(at)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_every_row_is_accounted_for_once(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random
) -> None:
    limits, steps, _ = scenario
    engine, model, now = run(limits, steps, rng)
    stats = engine.snapshot(now).stats
    fed = [row for step in steps for row in step.rows]
    not_ours = sum(not model.ours(row.sender.strip().lower()) for row in fed)
    assert stats.rows_received == len(fed)
    assert sum(stats.rows_by_direction.values()) == len(fed)
    assert stats.rows_counted + stats.rows_stale + stats.rows_ignored_status + not_ours == len(fed)
    assert stats.rows_counted == len(model.counted)
    assert stats.probe_rows_pending == len(model.pending)
    # every effective row in the day window is in exactly one sender's daily figure
    day_rows = [r for r in model.rows() if bucket(r[3]) >= bucket(now) - DAY_BUCKETS]
    snapshot = engine.snapshot(now)
    total = sum(snapshot.figure(s, LimitName.RECIPIENTS_PER_DAY).used for s in snapshot.senders)
    assert total == len(day_rows)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False), st.integers(0, 90_000))
def test_a_restarted_engine_fed_the_same_rows_in_another_order_agrees(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random, later: int
) -> None:
    limits, steps, _ = scenario
    # no probes, and clamp received times to when each batch was fed, so that the first
    # engine's history and a one-shot replay see the very same rows
    clock, replay = T0, []
    plain_steps = []
    for step in steps:
        clock += step.advance
        rows = [row._replace(received_at=min(row.received_at, clock)) for row in step.rows]
        replay.extend(rows)
        plain_steps.append(Step(step.advance, rows, None))
    first, _, now = run(limits, plain_steps, rng)
    rng.shuffle(replay)
    restarted = QuotaEngine(limits, ManualClock(now), probe_match_horizon_seconds=HORIZON)
    restarted.add_rows(replay)
    for at in (now, now + later):
        assert engine_figures(restarted.snapshot(at)) == engine_figures(first.snapshot(at))


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_probe_reports_never_add_to_their_trace_rows(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random
) -> None:
    limits, steps, _ = scenario
    # report every traced message as a probe send too, before its trace rows arrive
    with_probes = []
    for step in steps:
        advance = step.advance
        for message_id in dict.fromkeys(row.message_id for row in step.rows):
            rows = [row for row in step.rows if row.message_id == message_id]
            at = max(row.received_at for row in rows) - rng.randint(0, 90)
            for sender in dict.fromkeys(row.sender for row in rows):
                recipients = [row.recipient for row in rows if row.sender == sender]
                with_probes.append(Step(advance, [], (sender, message_id, recipients, at)))
                advance = 0
        with_probes.append(Step(advance, step.rows, None))
    rng2 = random.Random(rng.random())
    plain, _, now = run(limits, [Step(s.advance, s.rows, None) for s in steps], rng)
    probed, model, _ = run(limits, with_probes, rng2)
    assert engine_figures(probed.snapshot(now)) == model.snapshot(now)
    assert engine_figures(probed.snapshot(now)) == engine_figures(plain.snapshot(now))


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False), st.lists(st.integers(0, 4_000)))
def test_snapshots_between_batches_equal_a_recount(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random, peeks: list[int]
) -> None:
    """Snapshots are incremental (unchanged senders keep their figures): taken after every
    step, sometimes twice or a little later, each still equals a brute-force recount."""
    limits, steps, later = scenario
    clock = ManualClock(T0)
    engine = QuotaEngine(limits, clock, probe_match_horizon_seconds=HORIZON)
    model = Model(limits)
    for number, step in enumerate(steps):
        clock.advance(step.advance)
        engine.add_rows(step.rows)
        model.add_rows(step.rows, clock())
        if step.probe is not None:
            engine.record_probe_send(*step.probe)
            model.probe(*step.probe, now=clock())
        assert engine_figures(engine.snapshot()) == model.snapshot(clock())
        if peeks:
            clock.advance(peeks[number % len(peeks)])
            assert engine_figures(engine.snapshot()) == model.snapshot(clock())
    assert engine_figures(engine.snapshot(clock() + later)) == model.snapshot(clock() + later)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False), st.sampled_from([0.0, 59.5]))
def test_snapshots_at_every_expiry_instant_equal_a_recount(
    scenario: tuple[QuotaLimits, list[Step], int], rng: random.Random, offset: float
) -> None:
    """A snapshot recomputes only the senders due in its expiry index: walked forward through
    every instant a bucket leaves a window (where figures change without new rows), each
    snapshot still equals a brute-force recount."""
    limits, steps, _ = scenario
    engine, model, now = run(limits, steps, rng)
    engine.snapshot(now)
    widths = (DAY_BUCKETS, HOUR_BUCKETS, limits.message_rate_lookback_seconds // 60)
    instants = sorted(
        {
            (bucket(r[3]) + width + delta) * 60.0 + offset
            for r in model.rows()
            for width in widths
            for delta in (0, 1, 2)
        }
    )
    for at in (at for at in instants if at >= now):
        assert engine_figures(engine.snapshot(at)) == model.snapshot(at), at

"""The exporter against the emulator under every fault the emulator can inject, one at a
time in a seeded random order, for `M365_RESILIENCE_SECONDS` (default 90; at least one
phase of every fault, about 90 s, whatever the value).

Checked: no crash (the scheduler keeps running, no job dies, nothing reaches the loop's
exception handler); every probe run and trace pull inside a fault phase reports that fault
(table in `faults.py`); /metrics answers within 1 s throughout; file descriptors and memory
stay flat; at the end every trace row the emulator wrote is counted once. The figures are
printed and, with `M365_RESILIENCE_REPORT=<path>`, written as JSON.

Replay a run with `M365_RESILIENCE_SEED=<seed>` (the seed is printed first).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from statistics import median

import aiohttp
import pytest

from m365_emulator.service import Emulator
from m365_emulator.world import CONTOSO_CLIENT_ID, DEMO_PASSWORD
from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.auth import StaticTokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.graph.trace import SUCCESS, TracePuller
from m365_smtp_exporter.smtp.probe import SMTP_SCOPE, run_probe
from tests.resilience.conductor import Conductor, no_fault
from tests.resilience.faults import (
    FAULT_KINDS,
    PlannedFault,
    ProbeOutcome,
    Timings,
    arm,
    clear,
    every_smtp_variant,
    expected_probe,
    plan_schedule,
    probe_shows_fault,
)
from tests.resilience.figures import MB, build_figures, render_table, thirds, write_report
from tests.resilience.harness import (
    INBOX,
    PROBES,
    TENANT,
    TIMINGS,
    resilience_emulator,
    write_config,
)
from tests.resilience.observers import (
    CRASHED,
    LoopErrors,
    ProbeLog,
    PullWatch,
    ResourceSample,
    ScrapeLog,
    probe_outcome,
    sample_resources,
    scrape_metrics,
)
from tests.resilience.timeline import judge_probes, judge_pulls
from tests.support.poll import poll
from tests.support.prom import samples

SECONDS = float(os.environ.get("M365_RESILIENCE_SECONDS", "90"))
REPORT = os.environ.get("M365_RESILIENCE_REPORT")
WARM_UP = 5.0  # tokens fetched, first pull back-filled, caches warm
RECOVERY = 4.0  # fault-free time at the end of the schedule
SETTLE_DEADLINE = 20.0  # for the end-of-run waits (plus any Graph budget wait)
MAX_SCRAPE_SECONDS = 1.0
MAX_FD_GROWTH = 20
MAX_RSS_GROWTH = 40 * MB


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    running = resilience_emulator()
    await running.start()
    yield running
    await running.stop()


def run_seed() -> int:
    given = os.environ.get("M365_RESILIENCE_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def trace_rows_of(emulator: Emulator) -> list[float]:
    """receivedDateTime of every trace row the emulator wrote for the tenant."""
    return [row.received_at for row in emulator.state.all_trace_rows() if row.tenant == TENANT]


async def exported_trace_total(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url) as response:
        text = await response.text()
    return sum(
        value
        for (name, labels), value in samples(text).items()
        if name == "m365_trace_messages_total" and ("tenant", TENANT) in labels
    )


async def wait_for(condition: Callable[[], bool], deadline: float) -> bool:
    """Poll `condition()` every 100 ms until it holds or `deadline` (monotonic) passes."""
    return bool(await poll(condition, timeout=deadline - time.monotonic(), interval=0.1))


def budget_wait(exporter: Exporter) -> float:
    """Seconds until the tenant's Graph request budget has room again."""
    graph = exporter.tenants[TENANT].graph
    return graph.budget.seconds_until_available() if graph is not None else 0.0


@pytest.mark.slow
async def test_exporter_rides_out_every_emulated_fault(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = run_seed()
    schedule = plan_schedule(random.Random(seed), SECONDS - WARM_UP - RECOVERY, TIMINGS)
    with capsys.disabled():
        print(f"\nresilience seed {seed} (replay: M365_RESILIENCE_SEED={seed})", flush=True)
    began = time.monotonic()
    loop = asyncio.get_running_loop()
    loop_errors = LoopErrors()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(loop_errors)
    problems: list[str] = []

    config_path = tmp_path / "exporter.yml"
    probes = ProbeLog()
    exporter = Exporter(
        write_config(config_path, emulator),
        config_path=config_path,
        listen_address="127.0.0.1:0",
        probe_runner=probes,
    )
    conductor = Conductor(emulator, probes, TIMINGS)
    scrapes = ScrapeLog()
    resources: list[ResourceSample] = []
    stop = asyncio.Event()
    try:
        conductor.begin()
        await exporter.start()
        puller = exporter.tenants[TENANT].puller
        assert puller is not None
        watch = PullWatch(exporter.store, f"trace:{TENANT}", puller)
        metrics_url = f"http://127.0.0.1:{exporter.bound_port}/metrics"
        async with asyncio.timeout(SECONDS * 1.5 + 120), aiohttp.ClientSession() as session:
            async with asyncio.TaskGroup() as observers:
                observers.create_task(scrape_metrics(session, metrics_url, stop, scrapes))
                observers.create_task(watch.run(stop))
                try:
                    await asyncio.sleep(WARM_UP)
                    observers.create_task(sample_resources(stop, resources))
                    await conductor.play(schedule)
                    await asyncio.sleep(RECOVERY)
                    problems += await check_alive(exporter, probes, puller, conductor)
                finally:
                    stop.set()
            problems += check_jobs(exporter, probes, watch)
            rows, exported = await settle_trace(
                exporter, emulator, probes, puller, session, metrics_url, config_path
            )
    finally:
        await exporter.stop()
        # probes keep to their schedule while the trace settles: the last fault-free phase
        # lasts until the exporter stops, or a run begun after it would fit no phase
        conductor.finish()
        loop.set_exception_handler(previous_handler)

    phases = conductor.phases
    probe_verdicts = judge_probes(phases, probes.runs)
    pull_verdicts = judge_pulls(phases, watch.runs)
    figures = build_figures(
        seed=seed,
        seconds=SECONDS,
        phases=phases,
        probes=probe_verdicts,
        pulls=pull_verdicts,
        pull_outcomes=Counter(run.outcome for run in watch.runs),
        scrapes=scrapes,
        resources=resources,
        trace_rows=(int(exported[-1]), rows),
        loop_errors=len(loop_errors.messages),
        elapsed=time.monotonic() - began,
    )
    with capsys.disabled():
        print(render_table(figures), flush=True)
    if REPORT:
        write_report(Path(REPORT), figures)

    problems += loop_errors.messages
    problems += probe_verdicts.wrong + pull_verdicts.wrong
    for kind in FAULT_KINDS:
        shown = (pull_verdicts if kind.on_graph else probe_verdicts).showed_fault[kind]
        if not shown:
            problems.append(f"{kind}: no run inside its phases showed the fault")
    if scrapes.failures:
        problems.append(f"/metrics failed {len(scrapes.failures)} times: {scrapes.failures[:3]}")
    if max(scrapes.latencies) >= MAX_SCRAPE_SECONDS:
        problems.append(f"/metrics took {max(scrapes.latencies):.2f} s at worst")
    problems += check_resources(resources)
    if any(total != rows for total in exported):
        problems.append(f"exporter counted {exported} trace rows, the emulator wrote {rows}")
    assert not problems, "\n".join(problems[:40])


async def check_alive(
    exporter: Exporter, probes: ProbeLog, puller: TracePuller, conductor: Conductor
) -> list[str]:
    """After the last fault: the scheduler runs, every probe and the trace pull succeed."""
    cleared = conductor.last_cleared
    deadline = time.monotonic() + SETTLE_DEADLINE + budget_wait(exporter)
    problems = []
    if not (exporter.scheduler.running and exporter.ready()):
        problems.append("the scheduler stopped")

    def succeeded_since_cleared(name: str) -> Callable[[], bool]:
        return lambda: any(
            run.probe == name and run.started >= cleared and run.outcome.success
            for run in probes.runs
        )

    for probe in PROBES:
        if not await wait_for(succeeded_since_cleared(probe.name), deadline):
            problems.append(f"probe {probe.name} did not succeed again after the faults")
    before = puller.stats.pulls[SUCCESS]
    if not await wait_for(lambda: puller.stats.pulls[SUCCESS] > before, deadline):
        problems.append("no trace pull succeeded after the faults")
    return problems


def check_jobs(exporter: Exporter, probes: ProbeLog, watch: PullWatch) -> list[str]:
    """Every job run ended through its own code: nothing escaped into the scheduler."""
    problems = []
    jobs = exporter.store.jobs
    for probe in PROBES:
        runs = jobs[f"probe:{probe.name}"].runs
        logged = Counter(
            "success" if run.outcome.success else "failure"
            for run in probes.runs
            if run.probe == probe.name
        )
        if (runs["success"], runs["failure"]) != (logged["success"], logged["failure"]):
            problems.append(f"probe job {probe.name}: runs {dict(runs)}, probe results {logged}")
    crashed = [run for run in watch.runs if run.outcome == CRASHED]
    if crashed:
        problems.append(f"{len(crashed)} trace pull jobs ended without an outcome")
    return problems


async def settle_trace(
    exporter: Exporter,
    emulator: Emulator,
    probes: ProbeLog,
    puller: TracePuller,
    session: aiohttp.ClientSession,
    metrics_url: str,
    config_path: Path,
) -> tuple[int, list[float]]:
    """Stop probing (a reload without probes), let the trace catch up, and read the count
    twice: after the pull that covers the last row, and after one more pull over the same
    rows (nothing counted twice)."""
    write_config(config_path, emulator, with_probes=False)
    assert await exporter.reload() == (True, [])
    await probes.wait_idle(at_most=TIMINGS.probe_timeout + 1.0)
    received = trace_rows_of(emulator)
    newest = math.ceil(max(received, default=0.0))
    deadline = time.monotonic() + SETTLE_DEADLINE + budget_wait(exporter)
    await wait_for(
        lambda: (puller.cursor or 0) >= newest and bool(puller.stats.last_pull_ok), deadline
    )
    exported = [await exported_trace_total(session, metrics_url)]
    before = puller.stats.pulls[SUCCESS]
    await wait_for(lambda: puller.stats.pulls[SUCCESS] > before, deadline)
    exported.append(await exported_trace_total(session, metrics_url))
    return len(received), exported


def check_resources(resources: list[ResourceSample]) -> list[str]:
    first, last = thirds(resources)
    fds = (median(s.fds for s in first), median(s.fds for s in last))
    rss = (median(s.rss for s in first), median(s.rss for s in last))
    problems = []
    if fds[1] - fds[0] > MAX_FD_GROWTH:
        problems.append(f"file descriptors grew from {fds[0]:g} to {fds[1]:g}")
    if rss[1] - rss[0] > MAX_RSS_GROWTH:
        problems.append(f"RSS grew from {rss[0] / MB:.1f} MB to {rss[1] / MB:.1f} MB")
    return problems


# -- the expectation table against a real probe, for every parameter a schedule can draw

# The probe timeout bounds the cases that wait it out (slow phases, black hole); 0.5 s was
# too short for a whole connect on a busy 2-core machine running two test workers.
QUICK = Timings(probe_timeout=1.5)


async def probe_once(emulator: Emulator, mechanism: str) -> ProbeOutcome:
    spec = next(probe for probe in PROBES if probe.mechanism == mechanism)
    auth: dict[str, str] = {"mechanism": mechanism, "username": spec.mailbox}
    if mechanism == "login":
        auth["password"] = DEMO_PASSWORD
    config = ProbeConfig.model_validate(
        {
            "name": spec.name,
            "host": "127.0.0.1",
            "port": emulator.smtp_port,
            "ca_file": emulator.ca_file,
            "auth": auth,
            "mail_from": spec.mailbox,
            "rcpt_to": [INBOX],
            "timeout": QUICK.probe_timeout,
        }
    )
    token = emulator.state.issue_token(TENANT, CONTOSO_CLIENT_ID, SMTP_SCOPE)
    result = await run_probe(config, token_provider=StaticTokenProvider(token))
    return probe_outcome(result, time.time())


def table_cases() -> list[tuple[PlannedFault, str]]:
    cases = [(fault, "login") for fault in every_smtp_variant()]
    # XOAUTH2 authenticates differently: the faults that hit AUTH again, with a token
    cases += [
        (fault, "xoauth2")
        for fault in every_smtp_variant()
        if "AUTH" in (fault.command, (fault.latency_phase or "").upper())
    ]
    return cases


@pytest.mark.parametrize(
    ("fault", "mechanism"),
    table_cases(),
    ids=[f"{fault.describe()}-{mechanism}" for fault, mechanism in table_cases()],
)
async def test_each_fault_is_reported_as_the_table_says(
    emulator: Emulator, fault: PlannedFault, mechanism: str
) -> None:
    await arm(emulator, fault, QUICK)
    outcome = await probe_once(emulator, mechanism)
    assert probe_shows_fault(fault, outcome), (
        f"{outcome.describe()}, expected {expected_probe(fault).describe()}"
    )
    await clear(emulator)
    back = await probe_once(emulator, mechanism)
    assert expected_probe(no_fault()).accepts(back), back.describe()

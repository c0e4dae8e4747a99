"""End-to-end delivery of probe mails: find each one in its recipient mailbox.

One `DeliveryTracker` serves the whole exporter. After every probe run the owner calls
`track`; a scheduled job calls `poll` every few seconds; the trace pipeline hands its rows
to `on_trace_rows`; `collect` is the collector's metric source.

Life of a check (times on the exporter's wall clock):
- `track` registers a successful send: sent at `started_at + duration` (end of the SMTP
  transaction), first look-up one `poll_interval` later, deadline `sent + timeout`. A failed
  send registers nothing and changes no gauge.
- Each due look-up asks Graph for the Internet Message-ID. A miss backs off (x1.5 per miss,
  up to 4 poll intervals) but always looks once more at the deadline.
- Found in time: `delivered` (Inbox or any non-junk folder) or `junk`. A miss at or after
  the deadline: `lost`; the check is still looked up until `grace_until` (deadline plus
  `late_grace` timeouts) and, if found then, also counts `late`. A check whose look-ups all
  failed from its deadline to `grace_until` is `abandoned` without an outcome: an outage of
  Graph is not mail loss.
- Latency is `receivedDateTime` (the mailbox server's clock) minus the send time (the
  exporter's clock). Their difference includes any skew between the clocks; a negative
  latency beyond the 1 s precision of `receivedDateTime` is counted as clock skew, and
  negative latencies count as 0.
- Found mails are deleted afterwards when `cleanup` is on; a failed delete is retried twice
  in later rounds, then given up, and every failure is counted.

Gauges (`m365_delivery_success`, `_auth_result`, `_trace_status`) describe the most
recently sent mail whose fact is known; see `ProbeView`. Success is 1 only for mail found in
time outside Junk Email; junk and lost set 0; a late find leaves it as the loss set it.

Restart safety: every change batch (a `track`, a `poll` round that changed anything, a
`configure`, trace rows that changed a status) rewrites the state file atomically, from a
worker thread (`flush` waits for it; `close` writes a last time). Finished checks stay in it
for `memory` seconds, so a restart neither loses a pending check nor records an outcome
again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

import structlog
from prometheus_client.core import Metric

from m365_smtp_exporter.config import DeliveryConfig, ProbeConfig
from m365_smtp_exporter.delivery.auth_results import parse_authentication_results
from m365_smtp_exporter.delivery.checks import (
    Check,
    Cleanup,
    Folder,
    Outcome,
    ProbeView,
    Stage,
    message_key,
)
from m365_smtp_exporter.delivery.lookup import FolderIds, FoundMessage, MailboxClient
from m365_smtp_exporter.delivery.metrics import DeliveryStats, ProbeSeries, render
from m365_smtp_exporter.delivery.state_file import (
    DeliveryState,
    StateFile,
    StateFileError,
    StateWriter,
)
from m365_smtp_exporter.graph.errors import BudgetExhaustedError, FailureReason, GraphRequestError
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.smtp.result import ProbeResult

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from m365_smtp_exporter.graph.client import GraphClient

log = structlog.get_logger(__name__)

ClientSource: TypeAlias = "Mapping[str, GraphClient] | Callable[[str], GraphClient | None]"

DEFAULT_BUDGET_RESERVE = 0.25  # share of the tenant budget look-ups leave to trace pulls
DEFAULT_LATE_GRACE = 1.0  # timeouts a lost mail is still looked for
DEFAULT_MEMORY = 3600.0  # seconds finished checks are kept (trace rows come 5-10 min late)
MAX_FINISHED_PER_PROBE = 500  # bounds the state file for very frequent probes
MAX_DELETE_ATTEMPTS = 3
SKEW_TOLERANCE = 1.0  # receivedDateTime has whole seconds
# Failures that say "stop asking this tenant for now"; others affect one look-up only.
_STOP_REASONS = frozenset(
    {
        FailureReason.THROTTLED,
        FailureReason.UNAVAILABLE,
        FailureReason.AUTH,
        FailureReason.TIMEOUT,
    }
)
_NOT_FOUND = 404
_BY_NEXT_LOOKUP = attrgetter("next_lookup_at")


@dataclass(slots=True)
class _Probe:
    tenant: str
    settings: DeliveryConfig
    view: ProbeView
    stats: DeliveryStats


class _StopRoundError(Exception):
    """End this tenant's round: the budget is low or Graph asked us to back off."""

    def __init__(self, ok: bool) -> None:
        super().__init__()
        self.ok = ok


class DeliveryTracker:
    def __init__(
        self,
        clients: ClientSource,
        probes: Iterable[ProbeConfig],
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        budget_reserve: float = DEFAULT_BUDGET_RESERVE,
        late_grace: float = DEFAULT_LATE_GRACE,
        memory: float = DEFAULT_MEMORY,
    ) -> None:
        """`clients` gives each tenant's GraphClient (a mapping, or a callable returning None
        for an unknown tenant); it is asked on every round, so rebuilt clients are picked up.
        `probes` are the configured probes (those without `delivery` are ignored). The state
        file, when given, is loaded here (a bad one is logged, counted and replaced)."""
        if not 0.0 <= budget_reserve < 1.0:
            raise ValueError("budget_reserve must be in [0, 1)")
        self._clients: Callable[[str], GraphClient | None] = (
            clients.get if isinstance(clients, Mapping) else clients
        )
        self._clock = clock
        self._on_change = on_change
        self._reserve = budget_reserve
        self._late_grace = late_grace
        self._memory = memory
        self._state_file = StateFile(state_file) if state_file is not None else None
        self._writer = (
            StateWriter(self._state_file, self._save_failed) if self._state_file else None
        )
        self._probes: dict[str, _Probe] = {}
        self._checks: dict[str, Check] = {}  # by message_key
        self._cleanups: list[Cleanup] = []
        self._folders: dict[tuple[str, str], FolderIds] = {}  # (tenant, mailbox) -> ids
        self._budget_deferrals: Counter[str] = Counter()
        self._state_errors: Counter[str] = Counter()
        self._without_client: set[str] = set()
        self._lock = asyncio.Lock()
        self._dirty = False
        saved_views = self._load()
        self._configure(probes, saved_views)
        self._commit(blocking=True)

    # the owner's calls
    def configure(self, probes: Iterable[ProbeConfig]) -> None:
        """(Re)declare the probes with delivery tracking: removed probes, and probes whose
        tenant changed, lose their series, checks and queued deletes."""
        self._configure(probes, {})
        self._commit()

    def track(self, probe: ProbeConfig, tenant: str, result: ProbeResult) -> None:
        """Register the mail a probe run sent. `tenant` names the GraphClient to look with
        (the probe's tenant). Failed sends and probes without `delivery` are ignored."""
        settings = probe.delivery
        if settings is None or not result.success:
            return
        key = message_key(result.message_id)
        if not key:
            log.warning("probe mail without Message-ID, not tracked", probe=probe.name)
            return
        if key in self._checks:
            return
        entry = self._probes.get(probe.name)
        if entry is None or entry.tenant != tenant:
            entry = _Probe(tenant, settings, ProbeView(tenant), DeliveryStats())
            self._probes[probe.name] = entry
        sent_at = result.started_at + result.duration
        deadline = sent_at + settings.timeout
        self._checks[key] = Check(
            probe=probe.name,
            tenant=tenant,
            mailbox=settings.mailbox,
            message_id=_bracketed(result.message_id),
            sent_at=sent_at,
            deadline=deadline,
            grace_until=deadline + self._late_grace * settings.timeout,
            poll_interval=settings.poll_interval,
            cleanup=settings.cleanup,
            next_lookup_at=sent_at + settings.poll_interval,
            interval=settings.poll_interval,
        )
        self._dirty = True
        self._commit()

    async def poll(self) -> bool:
        """Run the look-ups and deletes that are due. False when a Graph request failed or a
        tenant had no client; a round cut short by the budget is not a failure."""
        async with self._lock:
            now = self._clock()
            self._expire(now)
            due: dict[str, list[Check]] = defaultdict(list)
            for check in self._checks.values():
                if check.stage is not Stage.DONE and check.next_lookup_at <= now:
                    due[check.tenant].append(check)
            tenants = sorted(set(due) | {cleanup.tenant for cleanup in self._cleanups})
            rounds = [self._poll_tenant(tenant, due.get(tenant, [])) for tenant in tenants]
            results = await asyncio.gather(*rounds)
            self._prune(self._clock())
            self._commit()
            return all(results)

    def on_trace_rows(self, tenant: str, records: Sequence[TraceRecord]) -> None:
        """Trace sink: remember the trace status of tracked probe mails (rows for the
        probe's mailbox; the newest mail's latest row wins)."""
        if not self._checks:
            return
        for record in records:
            check = self._checks.get(message_key(record.message_id))
            if check is None or check.tenant != tenant:
                continue
            if record.recipient and record.recipient != check.mailbox.lower():
                continue
            entry = self._probes.get(check.probe)
            if entry is not None and entry.view.set_trace_status(check.sent_at, record.status):
                self._dirty = True
        self._commit()

    async def close(self) -> None:
        """Wait for a running poll and write the state file one last time."""
        async with self._lock:
            self._dirty = True
            self._commit()
            await self.flush()

    async def flush(self) -> None:
        """Wait until the state file holds every change made so far."""
        if self._writer is not None:
            await self._writer.flush()

    def series(self) -> list[ProbeSeries]:
        """What each tracked probe's series are rendered from (read-only use)."""
        pending = Counter(c.probe for c in self._checks.values() if c.stage is Stage.PENDING)
        return [
            ProbeSeries(name, entry.tenant, entry.stats, entry.view, pending[name])
            for name, entry in self._probes.items()
        ]

    def collect(self) -> Iterator[Metric]:
        """The metric source for the collector (`StoreCollector.add_source`)."""
        series = self.series()
        tenants = {entry.tenant for entry in self._probes.values()}
        deferrals = {tenant: self._budget_deferrals[tenant] for tenant in tenants}
        return render(series, deferrals, self._state_errors)

    @property
    def checks(self) -> list[Check]:
        """The checks held now (pending, lost within grace, recently finished), oldest first."""
        return sorted(self._checks.values(), key=attrgetter("sent_at"))

    # polling
    async def _poll_tenant(self, tenant: str, due: list[Check]) -> bool:
        client = self._clients(tenant)
        if client is None:
            if tenant not in self._without_client:  # say it once, not every few seconds
                self._without_client.add(tenant)
                log.warning("no graph client for tenant, delivery checks wait", tenant=tenant)
            return False
        self._without_client.discard(tenant)
        mailbox = MailboxClient(client, self._reserve)
        ok = True
        try:
            for check in sorted(due, key=_BY_NEXT_LOOKUP):
                if self._checks.get(check.key) is check and check.stage is not Stage.DONE:
                    ok = await self._look_up(mailbox, check) and ok
            ok = await self._delete_found(tenant, mailbox) and ok
        except _StopRoundError as stop:
            return stop.ok and ok
        return ok

    async def _look_up(self, mailbox: MailboxClient, check: Check) -> bool:
        try:
            found = await mailbox.find(check.mailbox, check.message_id)
            folder = None
            if found is not None:
                folders = await self._folder_ids(mailbox, check)
                folder = folders.folder_of(found.parent_folder_id)
        except BudgetExhaustedError:
            self._defer(check.tenant)
        except GraphRequestError as exc:
            self._count_lookup_error(check, exc)
            if self._checks.get(check.key) is check:
                check.back_off(self._clock())
            if exc.reason in _STOP_REASONS:
                raise _StopRoundError(ok=False) from None
            return False
        if self._checks.get(check.key) is check:  # not dropped by a reload meanwhile
            self._record(check, found, folder, self._clock())
        return True

    async def _folder_ids(self, mailbox: MailboxClient, check: Check) -> FolderIds:
        key = (check.tenant, check.mailbox.lower())
        ids = self._folders.get(key)
        if ids is None:
            ids = self._folders[key] = await mailbox.folder_ids(check.mailbox)
        return ids

    async def _delete_found(self, tenant: str, mailbox: MailboxClient) -> bool:
        ok = True
        for cleanup in [c for c in self._cleanups if c.tenant == tenant]:
            try:
                await mailbox.delete(cleanup.mailbox, cleanup.graph_id)
            except BudgetExhaustedError:
                self._defer(tenant)
            except GraphRequestError as exc:
                if exc.status != _NOT_FOUND:  # gone already is what we wanted
                    ok = False
                    self._delete_failed(cleanup, exc)
                    if exc.reason in _STOP_REASONS:
                        raise _StopRoundError(ok=False) from None
                    continue
            self._drop_cleanup(cleanup)
        return ok

    def _delete_failed(self, cleanup: Cleanup, exc: GraphRequestError) -> None:
        cleanup.attempts += 1
        self._dirty = True
        entry = self._probes.get(cleanup.probe)
        if entry is not None:
            entry.stats.cleanup_failures += 1
        final = cleanup.attempts >= MAX_DELETE_ATTEMPTS
        log.warning(
            "could not delete probe mail",
            probe=cleanup.probe,
            mailbox=cleanup.mailbox,
            reason=exc.reason.value,
            error=str(exc),
            attempts=cleanup.attempts,
            giving_up=final,
        )
        if final:
            self._drop_cleanup(cleanup)

    def _drop_cleanup(self, cleanup: Cleanup) -> None:
        self._cleanups = [queued for queued in self._cleanups if queued is not cleanup]
        self._dirty = True

    def _defer(self, tenant: str) -> NoReturn:
        self._budget_deferrals[tenant] += 1
        self._dirty = True
        raise _StopRoundError(ok=True)

    def _count_lookup_error(self, check: Check, exc: GraphRequestError) -> None:
        entry = self._probes.get(check.probe)
        if entry is not None:
            entry.stats.lookup_errors[exc.reason.value] += 1
        self._dirty = True
        log.warning(
            "probe mail look-up failed",
            probe=check.probe,
            mailbox=check.mailbox,
            reason=exc.reason.value,
            error=str(exc),
        )

    # outcomes
    def _record(
        self, check: Check, found: FoundMessage | None, folder: Folder | None, now: float
    ) -> None:
        check.lookups += 1
        entry = self._probes.get(check.probe)
        if entry is None:  # a reload removed the probe: nothing to record for it
            return
        if found is None:
            self._missed(check, entry, now)
        else:
            self._found(check, entry, found, folder)

    def _missed(self, check: Check, entry: _Probe, now: float) -> None:
        if check.stage is Stage.PENDING and now >= check.deadline:
            check.stage = Stage.LOST
            entry.stats.outcomes[Outcome.LOST] += 1
            entry.view.set_success(check.sent_at, 0.0)
            self._dirty = True
            log.warning(
                "probe mail lost",
                probe=check.probe,
                mailbox=check.mailbox,
                message_id=check.message_id,
                waited=round(now - check.sent_at, 1),
            )
        if check.stage is Stage.LOST and now >= check.grace_until:
            check.stage = Stage.DONE
            self._dirty = True
            return
        check.back_off(now)

    def _found(
        self, check: Check, entry: _Probe, found: FoundMessage, folder: Folder | None
    ) -> None:
        stats, view = entry.stats, entry.view
        latency = found.received_at - check.sent_at
        if latency < -SKEW_TOLERANCE:
            stats.clock_skew += 1
            log.warning(
                "probe mail received before it was sent: clocks disagree",
                probe=check.probe,
                seconds=round(-latency, 1),
            )
        latency = max(0.0, latency)
        stats.latency.observe(latency)
        header = found.authentication_results
        view.set_auth(check.sent_at, parse_authentication_results(header) if header else {})
        if check.stage is Stage.LOST:
            outcome = Outcome.LATE
        else:
            outcome = Outcome.JUNK if folder is Folder.JUNK else Outcome.DELIVERED
            view.set_success(check.sent_at, 1.0 if outcome is Outcome.DELIVERED else 0.0)
        stats.outcomes[outcome] += 1
        check.stage = Stage.DONE
        if check.cleanup:
            self._cleanups.append(Cleanup(check.probe, check.tenant, check.mailbox, found.graph_id))
        self._dirty = True
        log.info(
            "probe mail found",
            probe=check.probe,
            outcome=outcome.value,
            folder=folder.value if folder else None,
            latency=round(latency, 1),
        )

    def _expire(self, now: float) -> None:
        """Finish checks whose grace period ended without a successful look-up."""
        for check in self._checks.values():
            if check.stage is Stage.DONE or now < check.grace_until:
                continue
            if check.stage is Stage.PENDING:
                entry = self._probes.get(check.probe)
                if entry is not None:
                    entry.stats.abandoned += 1
                log.warning(
                    "probe mail abandoned: no look-up succeeded after its deadline",
                    probe=check.probe,
                    message_id=check.message_id,
                )
            check.stage = Stage.DONE
            self._dirty = True

    def _prune(self, now: float) -> None:
        """Forget finished checks after `memory` (and beyond the newest few per probe)."""
        kept: dict[str, Check] = {}
        finished: Counter[str] = Counter()
        for check in sorted(self._checks.values(), key=attrgetter("sent_at"), reverse=True):
            if check.stage is Stage.DONE:
                finished[check.probe] += 1
                expired = now > max(check.sent_at + self._memory, check.grace_until)
                if expired or finished[check.probe] > MAX_FINISHED_PER_PROBE:
                    self._dirty = True
                    continue
            kept[check.key] = check
        self._checks = kept

    # configuration and state
    def _configure(self, probes: Iterable[ProbeConfig], saved_views: dict[str, ProbeView]) -> None:
        wanted = {
            probe.name: (probe.tenant or "", probe.delivery)
            for probe in probes
            if probe.delivery is not None
        }
        for name in list(self._probes):
            if name not in wanted or wanted[name][0] != self._probes[name].tenant:
                del self._probes[name]
        for name, (tenant, settings) in wanted.items():
            assert settings is not None
            entry = self._probes.get(name)
            if entry is not None:
                entry.settings = settings
                continue
            view = saved_views.get(name)
            if view is None or view.tenant != tenant:
                view = ProbeView(tenant)
            self._probes[name] = _Probe(tenant, settings, view, DeliveryStats())

        def kept(probe: str, tenant: str) -> bool:
            entry = self._probes.get(probe)
            return entry is not None and entry.tenant == tenant

        self._checks = {key: c for key, c in self._checks.items() if kept(c.probe, c.tenant)}
        self._cleanups = [c for c in self._cleanups if kept(c.probe, c.tenant)]
        self._dirty = True  # series, checks or deletes may have come or gone

    def _load(self) -> dict[str, ProbeView]:
        if self._state_file is None:
            return {}
        try:
            state = self._state_file.load()
        except StateFileError as exc:
            self._state_errors["load"] += 1
            self._dirty = True  # write a good file over the bad one
            log.error("delivery state file unusable, starting afresh", error=str(exc))
            return {}
        if state is None:
            log.info("no delivery state file yet", path=str(self._state_file.path))
            return {}
        self._checks = {check.key: check for check in state.checks}
        self._cleanups = list(state.cleanups)
        log.info(
            "delivery state loaded",
            checks=len(self._checks),
            pending=sum(check.stage is Stage.PENDING for check in self._checks.values()),
        )
        return dict(state.probes)

    def _commit(self, *, blocking: bool = False) -> None:
        """After a change batch: have the state file written and tell the owner."""
        if not self._dirty:
            return
        self._dirty = False
        if self._writer is not None:
            state = DeliveryState(
                checks=self.checks,
                cleanups=list(self._cleanups),
                probes={name: entry.view for name, entry in self._probes.items()},
            )
            self._writer.submit(state, blocking=blocking)
        if self._on_change is not None:
            self._on_change()

    def _save_failed(self, error: str) -> None:
        self._state_errors["save"] += 1
        log.error("could not write delivery state file", error=error)
        if self._on_change is not None:
            self._on_change()


def _bracketed(message_id: str) -> str:
    core = message_id.strip().removeprefix("<").removesuffix(">").strip()
    return f"<{core}>"

"""Status sources and the planner's seam over today's exporter objects.

They hold a reference to the running exporter (anything shaped like `ExporterParts`) and
read it at each request, so reloads that replace tenants or checkers are seen at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from m365_smtp_exporter.config import Config
from m365_smtp_exporter.console.status import JsonObject, StatusSource, iso
from m365_smtp_exporter.delivery import DeliveryTracker
from m365_smtp_exporter.domains import DomainChecker
from m365_smtp_exporter.health import ServiceHealth
from m365_smtp_exporter.health.monitor import HealthSnapshot
from m365_smtp_exporter.planner import (
    Plan,
    PlanInputError,
    PlanRequest,
    TraceFreshness,
    plan_campaign,
)
from m365_smtp_exporter.planner.view import FrozenView
from m365_smtp_exporter.quota.snapshot import TENANT_SENDER
from m365_smtp_exporter.smtp.hints import hint_for
from m365_smtp_exporter.smtp.result import Phase, ProbeResult
from m365_smtp_exporter.store import ProbeSeries, ResultsStore
from m365_smtp_exporter.tenants import TenantServices

MAX_QUOTA_ROWS = 12  # per tenant on the console: the busiest figures first
MAX_ISSUES = 5  # Microsoft incidents and advisories per tenant, incidents first
MAX_TRANSCRIPT_LINES = 200
_UNREACHED = (Phase.RESOLVE, Phase.CONNECT)


class ExporterParts(Protocol):
    """What the adapters read from the exporter (the `Exporter` object satisfies it)."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> ResultsStore: ...
    @property
    def tenants(self) -> dict[str, TenantServices]: ...
    @property
    def delivery(self) -> DeliveryTracker | None: ...
    @property
    def domains(self) -> DomainChecker | None: ...
    @property
    def service_health(self) -> ServiceHealth: ...


def _reply(result: ProbeResult) -> JsonObject | None:
    rejection = result.last_rejection
    if rejection is None:
        return None
    reply = rejection.reply
    return {
        "phase": rejection.phase.value,
        "code": reply.code,
        "enhanced_code": reply.enhanced_code or None,
        "text": reply.text,
        "category": rejection.category,
    }


def _transcript_note(result: ProbeResult) -> str | None:
    """Say what happened when the server never spoke, instead of an empty transcript."""
    if result.success or any(line.direction == "S" for line in result.transcript):
        return None
    if result.failed_phase in _UNREACHED:
        reason = result.reason.value if result.reason else "failed"
        return f"no connection to {result.target} ({reason})"
    return f"connected to {result.target}, nothing received from the server"


class ProbeSource:
    """Per probe: last result, Microsoft's reply and the hint, transcript, failing since."""

    area = "probes"

    def __init__(self, parts: ExporterParts) -> None:
        self._parts = parts
        # probe -> (last success it followed, first failed run seen after it): the store keeps
        # only the last result, so "failing since" is the earliest failure this process saw
        self._failing: dict[str, tuple[float, float]] = {}

    def _failing_since(self, series: ProbeSeries) -> float | None:
        last = series.last
        if last is None or last.success:
            self._failing.pop(series.probe, None)
            return None
        known = self._failing.get(series.probe)
        if known is None or known[0] != series.last_success_at:
            known = (series.last_success_at, last.started_at)
            self._failing[series.probe] = known
        return known[1]

    def items(self, now: float) -> Sequence[JsonObject]:
        probes = sorted(self._parts.store.probes.values(), key=lambda s: s.probe)
        return [self._item(series, now) for series in probes]

    def _item(self, series: ProbeSeries, now: float) -> JsonObject:
        last = series.last
        item: JsonObject = {
            "name": series.probe,
            "tenant": series.tenant or None,
            "target": series.target,
            "state": "pending" if last is None else ("ok" if last.success else "failing"),
            "last_run_at": None,
            "last_success_at": iso(series.last_success_at),
            "failing_since": iso(self._failing_since(series)),
            "runs": {"success": series.results["success"], "failure": series.results["failure"]},
            "duration_seconds": None,
            "reason": None,
            "phase": None,
            "detail": None,
            "reply": None,
            "hint": None,
            "tls": None,
            "transcript": [],
            "transcript_note": None,
        }
        if last is None:
            return item
        lines = last.transcript[-MAX_TRANSCRIPT_LINES:]
        tls = last.tls
        item.update(
            last_run_at=iso(last.started_at),
            duration_seconds=round(last.duration, 3),
            reason=last.reason.value if last.reason else None,
            phase=last.failed_phase.value if last.failed_phase else None,
            detail=last.detail or None,
            reply=_reply(last),
            hint=hint_for(last) or None,
            transcript=[
                {"elapsed": round(line.elapsed, 3), "direction": line.direction, "text": line.text}
                for line in lines
            ],
            transcript_note=_transcript_note(last),
        )
        if tls is not None:
            days = None
            if tls.cert_not_after is not None:
                days = math.floor((tls.cert_not_after - now) / 86_400)
            item["tls"] = {
                "version": tls.version,
                "cipher": tls.cipher,
                "cert_not_after": iso(tls.cert_not_after),
                "cert_days_left": days,
            }
        return item


class TenantSource:
    """Per tenant: the busiest quota figures (as exported), trace pulls, Graph budget."""

    area = "tenants"

    def __init__(self, parts: ExporterParts) -> None:
        self._parts = parts

    def items(self, now: float) -> Sequence[JsonObject]:
        probes = list(self._parts.store.probes.values())
        monitors = self._parts.service_health.monitors
        items = []
        for name, services in sorted(self._parts.tenants.items()):
            item = self._item(name, services, [p for p in probes if p.tenant == name], now)
            monitor = monitors.get(name)
            item["microsoft"] = None if monitor is None else microsoft_view(monitor.snapshot)
            items.append(item)
        return items

    @staticmethod
    def _item(
        name: str, services: TenantServices, probes: list[ProbeSeries], now: float
    ) -> JsonObject:
        figures = sorted(services.quota.figures, key=lambda f: (-f.utilization, f.sender))
        ran = [p for p in probes if p.last is not None]
        can_send = None if not ran else all(p.last is not None and p.last.success for p in ran)
        successes = [p.last_success_at for p in probes if p.last_success_at]
        item: JsonObject = {
            "name": name,
            "can_send": can_send,
            "probes_ok": sum(1 for p in ran if p.last is not None and p.last.success),
            "probes_total": len(probes),
            "last_success_at": iso(max(successes, default=0.0)),
            "quota": [
                {
                    "sender": figure.sender if figure.sender != TENANT_SENDER else None,
                    "limit": figure.limit_name.value,
                    "used": figure.used,
                    "limit_value": figure.limit,
                    "remaining": figure.remaining,
                    "utilization": round(figure.utilization, 4),
                    "recovery_seconds": round(figure.recovery_seconds),
                }
                for figure in figures[:MAX_QUOTA_ROWS]
            ],
            "probe_recipients": dict(sorted(services.quota.probe_recipients.items())),
            "trace": None,
            "graph_budget": None,
        }
        puller = services.puller
        if puller is not None:
            stats = puller.stats
            item["trace"] = {
                "last_pull_ok": stats.last_pull_ok,
                "last_success_at": iso(stats.last_success_at),
                "newest_row_at": iso(stats.newest_received_at),
                "lag_seconds": None if stats.lag_seconds is None else round(stats.lag_seconds),
                "pulls": dict(sorted(stats.pulls.items())),
            }
        if services.graph is not None:
            budget = services.graph.budget
            item["graph_budget"] = {
                "limit": budget.limit,
                "remaining": budget.remaining(),
                "window_seconds": budget.window,
            }
        return item


def microsoft_view(snapshot: HealthSnapshot) -> JsonObject:
    """Microsoft's own view of Exchange Online for a tenant: "is it us or Microsoft?"."""
    return {
        "pull_ok": snapshot.pull_success,
        "last_success_at": iso(snapshot.last_success),
        "exchange_online_status": snapshot.status,
        "issues": [
            {
                "id": issue.id,
                "classification": issue.classification,
                "feature": issue.feature,
                "status": issue.status,
                "title": issue.title,
                "start": issue.start,
            }
            for issue in snapshot.issues[:MAX_ISSUES]
        ],
    }


class DeliverySource:
    """Per tracked probe: where its mail landed, latency, SPF/DKIM/DMARC verdicts."""

    area = "delivery"

    def __init__(self, parts: ExporterParts) -> None:
        self._parts = parts

    def items(self, now: float) -> Sequence[JsonObject]:
        tracker = self._parts.delivery
        if tracker is None:
            return []
        items = []
        for series in sorted(tracker.series(), key=lambda s: s.probe):
            latency = series.stats.latency
            items.append(
                {
                    "probe": series.probe,
                    "tenant": series.tenant,
                    "success": series.view.success,
                    "outcomes": {k.value: v for k, v in sorted(series.stats.outcomes.items())},
                    "pending": series.pending,
                    "latency_count": latency.count,
                    "latency_avg_seconds": (
                        round(latency.sum / latency.count, 3) if latency.count else None
                    ),
                    "auth": dict(sorted(series.view.auth.items())),
                    "trace_status": series.view.trace_status,
                }
            )
        return items


class DomainSource:
    """Per checked domain: the SPF, DKIM and DMARC posture from DNS."""

    area = "domains"

    def __init__(self, parts: ExporterParts) -> None:
        self._parts = parts

    def items(self, now: float) -> Sequence[JsonObject]:
        checker = self._parts.domains
        if checker is None:
            return []
        items = []
        for domain, status in sorted(checker.statuses.items()):
            spf, dmarc = status.spf, status.dmarc
            items.append(
                {
                    "domain": domain,
                    "checked_at": iso(status.checked_at),
                    "lookups_ok": status.ok,
                    "spf": None
                    if spf is None
                    else {
                        "valid": spf.valid,
                        "includes_microsoft": spf.includes_microsoft,
                        "all": spf.all_qualifier.value if spf.all_qualifier else None,
                        "lookups": spf.lookups,
                        "problems": list(spf.problems),
                    },
                    "dkim": None
                    if status.dkim is None
                    else [{"selector": d.selector, "enabled": d.enabled} for d in status.dkim],
                    "dmarc": None
                    if dmarc is None
                    else {
                        "policy": dmarc.policy.value,
                        "pct": dmarc.pct,
                        "problems": list(dmarc.problems),
                    },
                }
            )
        return items


def exporter_sources(parts: ExporterParts) -> list[StatusSource]:
    return [TenantSource(parts), ProbeSource(parts), DeliverySource(parts), DomainSource(parts)]


class ExporterPlanner:
    """Plans against a running tenant's quota engine (the same one `/metrics` reads)."""

    def __init__(self, parts: ExporterParts) -> None:
        self._parts = parts

    def tenants(self) -> list[str]:
        return sorted(self._parts.tenants)

    async def plan(self, request: PlanRequest, now: float) -> Plan:
        services = self._parts.tenants.get(request.tenant)
        if services is None:
            raise PlanInputError("tenant", "no such tenant in the configuration")
        # copy the buckets here, on the loop; a long campaign takes up to ~1 s to project,
        # which must not hold up /metrics
        view = FrozenView.of(services.quota.engine, request.sender)
        return await asyncio.to_thread(
            partial(plan_campaign, request, view, now=now, freshness=freshness(services, request))
        )


def freshness(services: TenantServices, request: PlanRequest) -> TraceFreshness:
    probes: Mapping[str, int] = services.quota.probe_recipients
    stats: Any = services.puller.stats if services.puller is not None else None
    return TraceFreshness(
        last_pull_ok=None if stats is None else stats.last_pull_ok,
        last_success_at=None if stats is None else stats.last_success_at or None,
        newest_row_at=None if stats is None else stats.newest_received_at,
        probe_recipients=probes.get(request.sender, 0),
    )

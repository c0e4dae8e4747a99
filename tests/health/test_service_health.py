"""Service health pulls against the emulated Graph: incidents opened and resolved through the
emulator's control API, bounded metrics, failures kept apart from "no incident"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from m365_emulator.graph.health import HealthIssue
from m365_emulator.service import Emulator
from m365_smtp_exporter.config import ServiceHealthConfig, TenantConfig
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.health import ServiceHealth
from m365_smtp_exporter.health.model import active_issues, parse_page
from tests.support.prom import samples, value

OPEN = "/_emulator/health/issues"


def tenant(**health: Any) -> TenantConfig:
    return TenantConfig(
        tenant_id="t",
        client_id="c",
        client_secret="s",
        service_health=ServiceHealthConfig(enabled=True, **health),
    )


def exposition(health: ServiceHealth) -> str:
    class _Source(Collector):
        def collect(self) -> Iterable[Metric]:
            return health.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Source())
    return generate_latest(registry).decode()


@pytest.fixture
async def health(graph: GraphClient) -> AsyncIterator[ServiceHealth]:
    subsystem = ServiceHealth(lambda name: graph if name == "contoso" else None)
    subsystem.configure({"contoso": tenant()})
    yield subsystem


async def _open(control: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    async with control.post(OPEN, json=fields) as answer:
        assert answer.status == 201, await answer.text()
        opened: dict[str, Any] = await answer.json()
        return opened


async def _run(health: ServiceHealth) -> bool:
    [(job_id, job, interval)] = health.jobs()
    assert (job_id, interval) == ("health:contoso", 300.0)
    return await job()


async def test_operational_tenant_has_no_active_issue(health: ServiceHealth) -> None:
    assert await _run(health)
    text = exposition(health)
    assert value(text, "m365_service_health_status", status="serviceOperational") == 1.0
    assert value(text, "m365_service_health_status", status="serviceDegradation") == 0.0
    assert value(text, "m365_service_health_pull_success", tenant="contoso") == 1.0
    assert "m365_service_health_active_issues{" not in text
    assert value(text, "m365_service_health_requests_total", endpoint="issues") == 1.0


async def test_an_opened_incident_shows_until_it_is_resolved(
    health: ServiceHealth, control: aiohttp.ClientSession
) -> None:
    opened = await _open(control, title="Users can't send email", status="serviceInterruption")
    await _open(control, title="Teams chat delays", service="Microsoft Teams")
    assert await _run(health)
    text = exposition(health)
    assert value(text, "m365_service_health_status", status="serviceInterruption") == 1.0
    assert (
        value(
            text,
            "m365_service_health_active_issues",
            id=opened["id"],
            classification="incident",
            feature="E-Mail and calendar access",
        )
        == 1.0
    )
    assert text.count("m365_service_health_active_issues{") == 1  # Teams is not Exchange

    async with control.post(f"{OPEN}/{opened['id']}/resolve") as answer:
        assert answer.status == 200
    assert await _run(health)
    text = exposition(health)
    assert value(text, "m365_service_health_status", status="serviceOperational") == 1.0
    assert "m365_service_health_active_issues{" not in text


async def test_issues_are_capped_incidents_first(
    emulator: Emulator, graph: GraphClient, control: aiohttp.ClientSession
) -> None:
    health = ServiceHealth(lambda name: graph)
    health.configure({"contoso": tenant(max_issues=2)})
    for number in range(3):
        await _open(control, title=f"advisory {number}", classification="advisory")
    incident = await _open(control, title="the incident")
    assert await _run(health)
    text = exposition(health)
    assert text.count("m365_service_health_active_issues{") == 2
    assert value(text, "m365_service_health_active_issues", id=incident["id"]) == 1.0
    assert value(text, "m365_service_health_active_issues_dropped", tenant="contoso") == 2.0


async def test_a_failed_pull_is_not_reported_as_no_incident(
    health: ServiceHealth, control: aiohttp.ClientSession
) -> None:
    await _open(control, title="Users can't send email")
    assert await _run(health)
    fault = {"fault": "unavailable", "endpoint": "health", "count": 10}
    async with control.put("/_emulator/graph/faults", json={"faults": [fault]}) as answer:
        assert answer.status == 200, await answer.text()
    assert not await _run(health)
    text = exposition(health)
    assert value(text, "m365_service_health_pull_success", tenant="contoso") == 0.0
    # the last good snapshot stays: the incident is still shown
    assert text.count("m365_service_health_active_issues{") == 1
    assert (
        value(
            text, "m365_service_health_requests_total", endpoint="overviews", outcome="unavailable"
        )
        == 1.0
    )


async def test_health_requests_do_not_spend_the_trace_budget(
    health: ServiceHealth, graph: GraphClient
) -> None:
    assert await _run(health)
    assert graph.budget.spent() == 0


def test_hostile_answers_cannot_mint_label_values() -> None:
    body = orjson.dumps(
        {
            "value": [
                {
                    "service": "Exchange Online",
                    "id": "EX1' OR 1=1 " + "x" * 500,
                    "classification": "catastrophe",
                    "feature": 'Mail\nflow{evil="1"}',
                    "status": "onFire",
                    "isResolved": False,
                    "title": "\x1b[31mred" + "t" * 1000,
                },
                {"service": "Exchange Online", "id": "EX42", "isResolved": True},
                "not an object",
            ]
        }
    )
    items, link = parse_page(body)
    [issue] = active_issues(items)
    assert (issue.id, issue.classification, issue.feature, issue.status) == (
        "other",
        "other",
        "other",
        "unknownFutureValue",
    )
    assert len(issue.title) <= 300 and "\x1b" not in issue.title
    assert link is None


async def test_tenants_without_health_enabled_get_no_job(graph: GraphClient) -> None:
    health = ServiceHealth(lambda name: graph)
    health.configure({"contoso": TenantConfig(tenant_id="t", client_id="c", client_secret="s")})
    assert health.jobs() == [] and samples(exposition(health)) == {}


def test_emulated_issue_has_microsofts_fields() -> None:
    issue = HealthIssue(
        id="EX1",
        title="t",
        service="Exchange Online",
        feature="f",
        feature_group="g",
        classification="incident",
        status="investigating",
        impact_description="i",
        start=0.0,
        last_modified=0.0,
    )
    assert set(issue.to_graph()) >= {
        "id", "service", "feature", "featureGroup", "classification", "status", "isResolved",
        "startDateTime", "endDateTime", "impactDescription", "posts",
    }  # fmt: skip

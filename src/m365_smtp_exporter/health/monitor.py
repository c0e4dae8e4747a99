"""One tenant's service-health pulls: Exchange Online's overview and its open issues.

A pull is two requests (more only when the issues list pages) through the tenant's Graph
client; they are not message-trace calls, so they spend nothing of the trace budget, and
they are counted here on their own. A failed pull keeps the last good snapshot and says so
(`m365_service_health_pull_success` 0) instead of reporting "no incident".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog

from m365_smtp_exporter.config import ServiceHealthConfig
from m365_smtp_exporter.graph.errors import GraphRequestError
from m365_smtp_exporter.health.model import (
    EXCHANGE_ONLINE,
    HealthAnswerError,
    Issue,
    active_issues,
    overview_status,
    parse_page,
)

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from m365_smtp_exporter.graph.client import GraphClient

log = structlog.get_logger(__name__)

OVERVIEWS = "overviews"
ISSUES = "issues"
_MAX_PAGES = 5
_SERVICE_FILTER = f"service eq '{EXCHANGE_ONLINE}'"


@dataclass(slots=True)
class HealthSnapshot:
    status: str | None = None  # Exchange Online's overview status; None until known
    issues: list[Issue] = field(default_factory=list)  # all active ones, uncapped
    pull_success: bool | None = None  # None: never pulled
    last_success: float | None = None  # unix seconds


class ServiceHealthMonitor:
    def __init__(
        self,
        tenant: str,
        config: ServiceHealthConfig,
        graph_client: Callable[[], GraphClient | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant = tenant
        self.config = config
        self._graph_client = graph_client
        self._clock = clock
        self.snapshot = HealthSnapshot()
        self.requests: Counter[tuple[str, str]] = Counter()  # (endpoint, outcome)

    async def run(self) -> bool:
        """One scheduled pull; True when both answers were read."""
        client = self._graph_client()
        if client is None:
            self.snapshot.pull_success = False
            return False
        try:
            async with asyncio.timeout(self.config.timeout):
                status = await self._overview(client)
                issues = await self._issues(client)
        except (GraphRequestError, HealthAnswerError, TimeoutError) as exc:
            self.snapshot.pull_success = False
            log.warning("service health pull failed", tenant=self.tenant, error=str(exc)[:300])
            return False
        self.snapshot = HealthSnapshot(status, issues, True, self._clock())
        return True

    async def _overview(self, client: GraphClient) -> str | None:
        url = f"{client.base_url}/admin/serviceAnnouncement/healthOverviews"
        url += f"?$filter={quote(_SERVICE_FILTER)}"
        items, _ = await self._page(client, OVERVIEWS, url)
        return overview_status(items)

    async def _issues(self, client: GraphClient) -> list[Issue]:
        query = quote(f"{_SERVICE_FILTER} and isResolved eq false")
        url: str | None = f"{client.base_url}/admin/serviceAnnouncement/issues?$filter={query}"
        items: list[dict[str, Any]] = []
        pages = 0
        while url is not None and pages < _MAX_PAGES:
            if not url.startswith(client.base_url + "/"):
                raise HealthAnswerError("nextLink points away from the Graph base URL")
            page, url = await self._page(client, ISSUES, url)
            items += page
            pages += 1
        return active_issues(items)

    async def _page(
        self, client: GraphClient, endpoint: str, url: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One answer, counted by outcome: success, malformed, or the Graph failure reason."""
        try:
            page = parse_page(await client.get_bytes(client.request_for_url(url)))
        except GraphRequestError as exc:
            self.requests[(endpoint, exc.reason.value)] += 1
            raise
        except HealthAnswerError:
            self.requests[(endpoint, "malformed")] += 1
            raise
        self.requests[(endpoint, "success")] += 1
        return page

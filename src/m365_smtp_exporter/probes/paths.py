"""The exporter's probe runner: the kinds' dispatch plus what they need from the composition
root (each tenant's Graph client), and the authentication posture metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes import SMTP_SCOPE, run_probe
from m365_smtp_exporter.probes.posture import AuthPosture
from m365_smtp_exporter.smtp.result import ProbeResult

if TYPE_CHECKING:
    from m365_smtp_exporter.graph.client import GraphClient


class ProbePaths:
    """The probe runner of the exporter: dispatch, each tenant's Graph client, posture metrics.

    `graph_client_for(tenant)` returns that tenant's client (None when it has none).
    """

    def __init__(self, graph_client_for: Callable[[str], GraphClient | None]) -> None:
        self._graph_client_for = graph_client_for
        self.posture = AuthPosture()

    def configure(self, probes: Sequence[ProbeConfig]) -> None:
        self.posture.configure(probes)

    async def run_probe(
        self,
        config: ProbeConfig,
        *,
        token_provider: TokenProvider | None = None,
        token_scope: str = SMTP_SCOPE,
        **options: object,
    ) -> ProbeResult:
        graph = (
            self._graph_client_for(config.tenant or "") if config.kind == "graph_sendmail" else None
        )
        result = await run_probe(
            config,
            token_provider=token_provider,
            token_scope=token_scope,
            graph_client=graph,
            **options,  # type: ignore[arg-type]
        )
        self.posture.observe(config, result)
        return result

    def collect(self) -> Iterable[Metric]:
        return self.posture.collect()

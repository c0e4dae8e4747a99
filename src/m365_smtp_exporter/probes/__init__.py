"""Probe kinds: one module per way mail leaves a Microsoft 365 tenant, one dispatch table.

`run_probe` has the signature of `m365_smtp_exporter.smtp.probe.run_probe` (plus an optional
`graph_client`), so it replaces it as the exporter's probe runner. `ProbePaths` adds what
the kinds need from the composition root (each tenant's Graph client) and exports the
authentication posture metrics.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from m365_smtp_exporter.auth import TokenProvider
from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import SMTP_SCOPE, ProbeContext, Prober
from m365_smtp_exporter.probes.basic_auth import probe_basic_auth
from m365_smtp_exporter.probes.direct_send import probe_direct_send
from m365_smtp_exporter.probes.hve import probe_hve
from m365_smtp_exporter.probes.smtp import probe_smtp
from m365_smtp_exporter.smtp.result import ProbeResult

if TYPE_CHECKING:
    from m365_smtp_exporter.graph.client import GraphClient

__all__ = ["PROBERS", "SMTP_SCOPE", "ProbeContext", "run_probe"]


async def probe_graph_sendmail(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    """Kind `graph_sendmail`, imported on its first run: it needs httpx, kiota and msgraph,
    which an exporter without such a probe (or without a tenant) never loads."""
    from m365_smtp_exporter.probes import graph_sendmail

    return await graph_sendmail.probe_graph_sendmail(config, context)


PROBERS: dict[str, Prober] = {
    "smtp": probe_smtp,
    "hve": probe_hve,
    "direct_send": probe_direct_send,
    "graph_sendmail": probe_graph_sendmail,
    "basic_auth_check": probe_basic_auth,
}


async def run_probe(
    config: ProbeConfig,
    *,
    token_provider: TokenProvider | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    ssl_context: ssl.SSLContext | None = None,
    token_scope: str = SMTP_SCOPE,
    graph_client: GraphClient | None = None,
) -> ProbeResult:
    """Run one probe of any kind; like every prober it reports failures, never raises."""
    context = ProbeContext(
        token_provider=token_provider,
        token_scope=token_scope,
        graph_client=graph_client,
        monotonic=monotonic,
        wall_clock=wall_clock,
        ssl_context=ssl_context,
    )
    return await PROBERS[config.kind](config, context)

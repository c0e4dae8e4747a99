"""Kind `smtp`: client submission (smtp.office365.com:587), `mode: send` or `mode: session`.

The SMTP transaction itself lives in `m365_smtp_exporter.smtp.probe`; session mode stops
after AUTH with RSET and QUIT, so a high-frequency reachability probe spends no quota.
"""

from __future__ import annotations

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import ProbeContext
from m365_smtp_exporter.smtp import probe as smtp_probe
from m365_smtp_exporter.smtp.result import ProbeResult


async def probe_smtp(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    return await smtp_probe.run_probe(
        config,
        token_provider=context.token_provider,
        token_scope=context.token_scope,
        monotonic=context.monotonic,
        wall_clock=context.wall_clock,
        ssl_context=context.ssl_context,
    )

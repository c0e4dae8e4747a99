"""`m365-smtp-exporter probe NAME`: one probe now, with a transcript a human can act on."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TextIO

from m365_smtp_exporter.app import config_secrets
from m365_smtp_exporter.auth import AzureTokenProvider, TokenProvider
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.graph.client import GraphClient
from m365_smtp_exporter.logs import redact, register_secret
from m365_smtp_exporter.probes import run_probe
from m365_smtp_exporter.smtp.hints import hint_for
from m365_smtp_exporter.smtp.probe import SMTP_SCOPE
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, TlsFacts
from m365_smtp_exporter.smtp.transcript import NOTE, SERVER
from m365_smtp_exporter.text_safety import printable

NOTHING_RECEIVED = "connected, nothing received: the server accepted the connection but never spoke"


def _shown(lines: list[str]) -> str:
    """Every line as a person may see it: no secret, no control character."""
    return "".join(redact(printable(line)) + "\n" for line in lines)


def _encodable(text: str, out: TextIO) -> str:
    """`text` in what `out` can encode (PYTHONIOENCODING=ascii:strict, a C locale):
    anything else shown as a backslash escape rather than a crash with no output."""
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    except LookupError:
        return text.encode("ascii", "backslashreplace").decode("ascii")


def conversation_lines(result: ProbeResult) -> list[str]:
    """The transcript for a person: lines sent inside TLS are marked `tls`, the prober's own
    remarks `--`, and a server that never greeted is said so plainly."""
    lines: list[str] = []
    encrypted = False
    for line in result.transcript:
        if line.direction == NOTE:
            lines.append(f"{line.elapsed:8.3f}s  -- {line.text}")
            encrypted = encrypted or line.text.startswith("TLS established")
            continue
        marker = "tls" if encrypted else "   "
        lines.append(f"{line.elapsed:8.3f}s  {marker} {line.direction}: {line.text}")
    spoke = any(line.direction == SERVER for line in result.transcript)
    if not result.success and result.failed_phase is Phase.BANNER and not spoke:
        lines.append(f"{'':10}-- {NOTHING_RECEIVED}")
    return lines


def certificate_lines(tls: TlsFacts, now: float) -> list[str]:
    """Who the server's certificate names, who issued it and when it expires."""
    lines = [f"tls: {tls.version} {tls.cipher}"]
    if tls.cert_subject:
        lines.append(f"certificate subject: {tls.cert_subject}")
    if tls.cert_issuer:
        lines.append(f"certificate issuer:  {tls.cert_issuer}")
    if tls.cert_not_after is not None:
        expires = datetime.fromtimestamp(tls.cert_not_after, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        days = (tls.cert_not_after - now) / 86_400
        when = f"in {days:.0f} days" if days >= 0 else f"{-days:.0f} days ago"
        lines.append(f"certificate expires: {expires} ({when})")
    return lines


def format_result(result: ProbeResult, now: float | None = None) -> str:
    lines = [f"probe {result.probe} -> {result.target}", ""]
    lines.extend(conversation_lines(result))
    lines.append("")
    lines.append("phase times:")
    for phase, seconds in result.phases.items():
        lines.append(f"  {phase.value:<9} {seconds * 1000:9.1f} ms")
    lines.append(f"  {'total':<9} {result.duration * 1000:9.1f} ms")
    if result.tls is not None:
        lines.extend(certificate_lines(result.tls, time.time() if now is None else now))
    lines.append("")
    if result.success:
        lines.append(
            f"result: OK, message {result.message_id} accepted for "
            f"{result.recipients_accepted} recipient(s)"
        )
    else:
        failed = result.failed_phase.value if result.failed_phase else "?"
        reason = result.reason.value if result.reason else "unknown"
        lines.append(f"result: FAILED in phase {failed}, reason {reason}")
        if result.detail:
            lines.append(f"detail: {result.detail}")
        for rejection in result.rejections:
            reply = rejection.reply
            lines.append(
                f"reply:  {reply.code} {reply.enhanced_code} ({rejection.category}, "
                f"{'recoverable' if rejection.recoverable else 'needs an admin'})"
            )
        hint = hint_for(result)
        if hint:
            lines.append(f"hint:   {hint}")
    return _shown(lines)


async def run_probe_command(config: Config, name: str, out: TextIO) -> int:
    probe = config.probe(name)
    if probe is None:
        known = ", ".join(p.name for p in config.probes) or "none"
        print(f"no probe named {name!r} in the configuration (configured: {known})", file=out)
        return 2
    # Whatever the server echoes (password, XOAUTH2 token, in plain or base64) is removed.
    register_secret(*config_secrets(config))
    provider: TokenProvider | None = None
    scope = SMTP_SCOPE
    if probe.auth.mechanism == "xoauth2" and probe.tenant is not None:
        provider = AzureTokenProvider(config.tenants[probe.tenant])
        scope = config.tenants[probe.tenant].smtp_scope
    graph: GraphClient | None = None
    if probe.kind == "graph_sendmail" and probe.tenant is not None:
        provider = AzureTokenProvider(config.tenants[probe.tenant])
        graph = GraphClient.for_tenant(probe.tenant, config.tenants[probe.tenant], provider)
    try:
        result = await run_probe(
            probe, token_provider=provider, token_scope=scope, graph_client=graph
        )
    finally:
        if graph is not None:
            await graph.aclose()
        if provider is not None:
            await provider.close()
    out.write(_encodable(format_result(result), out))
    return 0 if result.success else 1

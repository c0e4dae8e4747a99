"""`m365-smtp-exporter probe NAME`: one probe now, with a transcript a human can act on."""

from __future__ import annotations

from typing import TextIO

from m365_smtp_exporter.app import config_secrets
from m365_smtp_exporter.auth import AzureTokenProvider, TokenProvider
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.logs import redact, register_secret
from m365_smtp_exporter.smtp.hints import hint_for
from m365_smtp_exporter.smtp.probe import SMTP_SCOPE, run_probe
from m365_smtp_exporter.smtp.result import ProbeResult
from m365_smtp_exporter.text_safety import printable


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


def format_result(result: ProbeResult) -> str:
    lines = [f"probe {result.probe} -> {result.target}", ""]
    for line in result.transcript:
        lines.append(f"{line.elapsed:8.3f}s  {line.direction}: {line.text}")
    lines.append("")
    lines.append("phase times:")
    for phase, seconds in result.phases.items():
        lines.append(f"  {phase.value:<9} {seconds * 1000:9.1f} ms")
    lines.append(f"  {'total':<9} {result.duration * 1000:9.1f} ms")
    if result.tls is not None:
        lines.append(f"tls: {result.tls.version} {result.tls.cipher}")
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
    try:
        result = await run_probe(probe, token_provider=provider, token_scope=scope)
    finally:
        if provider is not None:
            await provider.close()
    out.write(_encodable(format_result(result), out))
    return 0 if result.success else 1

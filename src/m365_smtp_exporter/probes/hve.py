"""Kind `hve`: High Volume Email, `smtp.hve.mx.microsoft:587`, TLS required.

An SMTP preset (host and TLS rules come from the configuration defaults of the kind) with
its own reading of the replies: HVE accounts are not mailboxes, OAuth apps need
`Add-HVEAppAccess`, and only internal recipients are accepted.
"""

from __future__ import annotations

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import ProbeContext, append_note
from m365_smtp_exporter.probes.smtp import probe_smtp
from m365_smtp_exporter.smtp.result import ProbeResult

# Enhanced status code -> what it means on the HVE endpoint in particular.
HVE_NOTES: dict[str, str] = {
    "5.7.3": "on HVE: check the HVE account's password, or for XOAUTH2 that the app was "
    "granted access with Add-HVEAppAccess (up to 5 minutes to apply)",
    "5.7.139": "on HVE: the HVE account is disabled or SMTP AUTH is off for it",
    "5.7.57": "on HVE: every submission must authenticate with an HVE account",
    "5.5.105": "on HVE: external recipients are not accepted",
    "5.7.54": "on HVE: external recipients are not accepted",
}


async def probe_hve(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    result = await probe_smtp(config, context)
    rejection = result.last_rejection
    if rejection is not None:
        append_note(result, HVE_NOTES.get(rejection.reply.enhanced_code, ""))
    return result

"""Kind `basic_auth_check`: does the tenant still accept a Basic (LOGIN/PLAIN) credential?

An SMTP session probe (connect, STARTTLS, AUTH, RSET, QUIT: no mail) with a Basic credential.
Microsoft turns Basic off by default for SMTP AUTH at the end of December 2026 and answers
`550 5.7.30 Basic authentication is not supported for Client Submission`; only that reply
(matched by its text, since other servers use 5.7.30 for DKIM) means "not accepted". Any
other failure says nothing about Basic auth and leaves the last verdict as it was.
"""

from __future__ import annotations

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import ProbeContext, append_note
from m365_smtp_exporter.probes.smtp import probe_smtp
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason

BASIC_AUTH_CODE = "5.7.30"


async def probe_basic_auth(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    result = await probe_smtp(config, context)
    if basic_auth_verdict(result) is False:
        append_note(result, "Basic authentication is off: move every probe to XOAUTH2")
    return result


def basic_auth_verdict(result: ProbeResult) -> bool | None:
    """True: AUTH with the Basic credential succeeded; False: Microsoft refused Basic auth
    (5.7.30 with its text); None: the check could not tell (network, other refusals)."""
    if result.success:
        return True
    rejection = result.last_rejection
    if (
        result.failed_phase is Phase.AUTH
        and result.reason is Reason.AUTH_DISABLED
        and rejection is not None
        and rejection.reply.enhanced_code == BASIC_AUTH_CODE
    ):
        return False
    return None

"""Kind `direct_send`: port 25 to the tenant's MX (`<domain>.mail.protection.outlook.com`),
STARTTLS, no AUTH, to an internal recipient.

It answers two questions: can this network reach port 25 at all (a timeout means something
drops the packets, a refusal that something answers "no"), and does the tenant still accept
direct send (`550 5.7.68` once `RejectDirectSend` is on). The replies table classifies
5.7.68, the 5.7.606-649 banned-IP range and 4.7.500 throttling.
"""

from __future__ import annotations

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.probes.base import ProbeContext, append_note
from m365_smtp_exporter.probes.smtp import probe_smtp
from m365_smtp_exporter.smtp.result import ProbeResult, Reason

CONNECT_NOTES: dict[Reason, str] = {
    Reason.CONNECT_TIMEOUT: "no answer on port 25: a firewall on this network (or the ISP) "
    "drops outbound port 25",
    Reason.CONNECT_REFUSED: "port 25 actively refused: a firewall rejects it or nothing "
    "listens at this address",
}


async def probe_direct_send(config: ProbeConfig, context: ProbeContext) -> ProbeResult:
    result = await probe_smtp(config, context)
    if result.reason is not None:
        append_note(result, CONNECT_NOTES.get(result.reason, ""))
    return result

"""What to check next for a failed probe, for people reading `probe` output."""

from __future__ import annotations

from m365_smtp_exporter.smtp.replies import classify
from m365_smtp_exporter.smtp.result import ProbeResult, Reason

_REASON_HINTS: dict[Reason, str] = {
    Reason.DNS: "The host name does not resolve: check the spelling and the DNS resolver.",
    Reason.CONNECT_REFUSED: "Nothing listens on that port, or a firewall rejects it.",
    Reason.CONNECT_TIMEOUT: "No answer to the TCP connection: a firewall or proxy is dropping it.",
    Reason.BANNER_TIMEOUT: "The server accepted the connection but never greeted: an "
    "intercepting proxy or an overloaded server.",
    Reason.TLS_VERIFY: "The server certificate is not trusted for this name: check ca_file, "
    "server_name, or a TLS-intercepting proxy.",
    Reason.TLS_HANDSHAKE: "The TLS handshake failed: check min_version and that the port "
    "speaks the configured tls mode (587 starttls, 465 implicit).",
    Reason.TLS_VERSION: "Microsoft 365 requires TLS 1.2 or newer.",
    Reason.STARTTLS_UNSUPPORTED: "The server did not offer STARTTLS: use port 587, or "
    "tls: implicit on port 465.",
    Reason.AUTH_UNSUPPORTED: "The server did not offer the configured AUTH mechanism: "
    "for Microsoft 365, AUTH is only offered after STARTTLS.",
    Reason.AUTH_INSECURE: "AUTH over an unencrypted connection was refused: use tls: starttls, "
    "or set allow_insecure_auth: true on a trusted test network.",
    Reason.AUTH_TOKEN: "No OAuth2 token: check tenant_id, client_id and the client secret or "
    "certificate of the tenant, and the app's SMTP.SendAsApp permission.",
    Reason.TIMEOUT: "The whole transaction took longer than the probe timeout.",
    Reason.DISCONNECTED: "The server closed the connection in the middle of the transaction.",
}


def hint_for(result: ProbeResult) -> str:
    if result.success:
        return ""
    rejection = result.last_rejection
    if rejection is not None:
        hint = classify(rejection.reply).hint
        if hint:
            return hint
    if result.reason == Reason.CONNECT_TIMEOUT and result.target.endswith(":25"):
        return (
            "Port 25 is blocked on many networks; client submission to Microsoft 365 "
            "uses smtp.office365.com:587 with STARTTLS."
        )
    return _REASON_HINTS.get(result.reason, "") if result.reason else ""

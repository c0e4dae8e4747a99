"""Kinds `smtp` (send and session modes), `hve` and `basic_auth_check` against the emulator."""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from m365_emulator.service import Emulator
from m365_smtp_exporter.probes import run_probe
from m365_smtp_exporter.probes.paths import ProbePaths
from m365_smtp_exporter.smtp.replies import classify, parse_reply
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason
from tests.support.prom import value
from tests.support.send_paths import HVE_ACCOUNT, INBOX, PASSWORD, outlook_token, probe


def assert_refused(
    result: ProbeResult, phase: Phase, reason: Reason, code: str, category: str
) -> None:
    assert not result.success, result
    assert (result.failed_phase, result.reason) == (phase, reason), result.detail
    rejection = result.last_rejection
    assert rejection is not None
    assert (rejection.reply.enhanced_code, rejection.category) == (code, category)


async def test_send_mode_delivers_the_probe_mail(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "smtp"))
    assert result.success, result.detail
    assert result.message_id
    assert [r.message_id for r in emulator.smtp.delivery.records] == [result.message_id]


async def test_session_mode_authenticates_and_sends_nothing(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "smtp", mode="session"))
    assert result.success, result.detail
    sent = [line.text for line in result.transcript if line.direction == "C"]
    assert "RSET" in sent and not any(text.startswith(("MAIL", "RCPT", "DATA")) for text in sent)
    assert result.message_id == ""
    assert list(emulator.smtp.delivery.records) == []
    assert emulator.smtp.ledger.recipients_last_day("probe@contoso.com") == 0
    assert Phase.AUTH in result.phases and Phase.MAIL not in result.phases


async def test_session_mode_still_reports_auth_refusals(emulator: Emulator) -> None:
    config = probe(
        emulator,
        "smtp",
        mode="session",
        mail_from="oauth-only@contoso.com",
        auth={"mechanism": "login", "username": "oauth-only@contoso.com", "password": PASSWORD},
    )
    result = await run_probe(config)
    assert_refused(result, Phase.AUTH, Reason.AUTH_DISABLED, "5.7.30", "auth")


async def test_hve_success_with_the_account_password(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "hve"))
    assert result.success, result.detail
    assert result.tls is not None
    assert emulator.hve_rules.accepted == 1
    assert [r.recipient for r in emulator.smtp.delivery.records] == [INBOX]


async def test_hve_success_with_xoauth2_for_a_granted_app(emulator: Emulator) -> None:
    config = probe(emulator, "hve", auth={"mechanism": "xoauth2", "username": HVE_ACCOUNT})
    result = await run_probe(config, token_provider=outlook_token(emulator))
    assert result.success, result.detail


async def test_hve_refuses_an_app_without_hve_access(emulator: Emulator) -> None:
    config = probe(emulator, "hve", auth={"mechanism": "xoauth2", "username": HVE_ACCOUNT})
    result = await run_probe(config, token_provider=outlook_token(emulator, "other-app"))
    assert_refused(result, Phase.AUTH, Reason.AUTH_FAILED, "5.7.3", "auth")
    assert "Add-HVEAppAccess" in result.detail


async def test_hve_refuses_a_mailbox_that_is_not_an_hve_account(emulator: Emulator) -> None:
    config = probe(
        emulator,
        "hve",
        mail_from="probe@contoso.com",
        auth={"mechanism": "login", "username": "probe@contoso.com", "password": PASSWORD},
    )
    result = await run_probe(config)
    assert_refused(result, Phase.AUTH, Reason.AUTH_FAILED, "5.7.3", "auth")


async def test_hve_refuses_external_recipients(emulator: Emulator) -> None:
    result = await run_probe(probe(emulator, "hve", rcpt_to=["someone@example.net"]))
    assert_refused(result, Phase.RCPT, Reason.RCPT_REJECTED, "5.5.105", "policy")
    assert "external recipients are not accepted" in result.detail


async def test_hve_requires_tls_before_anything_else(emulator: Emulator) -> None:
    # a plain smtp probe at the HVE port, without STARTTLS: refused before MAIL FROM
    config = probe(emulator, "smtp", port=emulator.hve_port, tls="none", auth={"mechanism": "none"})
    result = await run_probe(config)
    assert not result.success and result.failed_phase is Phase.MAIL, result.detail


async def test_basic_auth_check_sees_basic_auth_accepted(emulator: Emulator) -> None:
    paths = ProbePaths(lambda tenant: None)
    config = probe(emulator, "basic_auth_check", tenant="contoso")
    result = await paths.run_probe(config)
    assert result.success, result.detail
    assert list(emulator.smtp.delivery.records) == []
    assert _metric(paths, "m365_smtp_basic_auth_accepted", tenant="contoso") == 1.0


async def test_basic_auth_check_sees_5_7_30(emulator: Emulator) -> None:
    paths = ProbePaths(lambda tenant: None)
    config = probe(
        emulator,
        "basic_auth_check",
        tenant="contoso",
        mail_from="oauth-only@contoso.com",
        auth={"mechanism": "plain", "username": "oauth-only@contoso.com", "password": PASSWORD},
    )
    result = await paths.run_probe(config)
    assert_refused(result, Phase.AUTH, Reason.AUTH_DISABLED, "5.7.30", "auth")
    assert "XOAUTH2" in result.detail
    assert _metric(paths, "m365_smtp_basic_auth_accepted", tenant="contoso") == 0.0


async def test_basic_auth_check_ignores_a_5_7_30_without_microsofts_text(
    emulator: Emulator, control: aiohttp.ClientSession
) -> None:
    # Google's 5.7.30 is a DKIM failure: it says nothing about Basic auth
    reply = {"reply": "550 5.7.30 DKIM signature did not verify", "command": "AUTH"}
    async with control.put("/_emulator/smtp/faults", json={"scripted_replies": [reply]}) as answer:
        assert answer.status == 200
    paths = ProbePaths(lambda tenant: None)
    result = await paths.run_probe(probe(emulator, "basic_auth_check", tenant="contoso"))
    assert not result.success and result.reason is Reason.AUTH_FAILED
    assert result.last_rejection is not None
    assert result.last_rejection.category == "permanent_security"
    assert _metric(paths, "m365_smtp_basic_auth_accepted", tenant="contoso") is None


def test_5_7_30_is_basic_auth_only_with_microsofts_text() -> None:
    microsoft = classify(
        parse_reply(550, "5.7.30 Basic authentication is not supported for Client Submission.")
    )
    other = classify(parse_reply(550, "5.7.30 DKIM signature did not verify"))
    assert (microsoft.category, microsoft.reason) == ("auth", Reason.AUTH_DISABLED)
    assert (other.category, other.reason) == ("permanent_security", None)


async def test_auth_info_names_each_probes_mechanism(emulator: Emulator) -> None:
    paths = ProbePaths(lambda tenant: None)
    basic = probe(emulator, "smtp", name="basic", tenant="contoso")
    oauth = probe(
        emulator,
        "smtp",
        name="oauth",
        tenant="contoso",
        auth={"mechanism": "xoauth2", "username": "probe@contoso.com"},
    )
    graph = probe(emulator, "graph_sendmail", name="graph")
    check = probe(emulator, "basic_auth_check", name="check", tenant="contoso")
    paths.configure([basic, oauth, graph, check])
    assert _metric(paths, "m365_smtp_probe_auth_info", probe="basic", mechanism="login") == 1
    assert _metric(paths, "m365_smtp_probe_auth_info", probe="oauth", mechanism="xoauth2") == 1
    assert _metric(paths, "m365_smtp_probe_auth_info", probe="graph", mechanism="graph_app") == 1
    assert _metric(paths, "m365_smtp_probe_auth_info", probe="check") is None
    assert _metric(paths, "m365_smtp_probe_info", probe="check", mode="session") == 1
    assert _metric(paths, "m365_smtp_probe_info", probe="graph", kind="graph_sendmail") == 1
    paths.configure([oauth])
    assert _metric(paths, "m365_smtp_probe_auth_info", probe="basic") is None


def _metric(paths: ProbePaths, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry(auto_describe=False)

    class _Source(Collector):
        def collect(self) -> Iterable[Metric]:
            return paths.collect()

    registry.register(_Source())
    return value(generate_latest(registry).decode(), name, **labels)

"""The client TLS context a probe config asks for, and how handshake failures are named."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.result import Phase, Reason
from m365_smtp_exporter.smtp.tls import (
    build_ssl_context,
    handshake_failure,
    server_hostname,
    tls_facts,
)
from tests.support.smtp_servers import SERVER_NAME, Pki, SmtpServers

MakeConfig = Callable[..., ProbeConfig]


def test_verification_is_on_by_default(make_config: MakeConfig) -> None:
    context = build_ssl_context(make_config(25, ca_file=None))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] > 0  # the system store


def test_ca_file_replaces_the_system_store(make_config: MakeConfig, pki: Pki) -> None:
    context = build_ssl_context(make_config(25, ca_file=pki.ca_file))
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_verification_can_be_turned_off(make_config: MakeConfig) -> None:
    context = build_ssl_context(make_config(25, tls_verify=False, min_version="TLSv1.3"))
    assert context.verify_mode is ssl.CERT_NONE
    assert not context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3


def test_server_name_defaults_to_the_host(make_config: MakeConfig) -> None:
    assert server_hostname(make_config(25)) == "127.0.0.1"
    assert server_hostname(make_config(25, server_name=SERVER_NAME)) == SERVER_NAME


def test_no_session_no_facts() -> None:
    assert tls_facts(None) is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), Reason.TLS_VERIFY),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Reason.TLS_HANDSHAKE),
    ],
)
def test_handshake_failure_names(error: ssl.SSLError, reason: Reason) -> None:
    assert handshake_failure(error)[0] is reason


async def test_unreadable_ca_file_fails_the_tls_phase(
    smtp_servers: SmtpServers, make_config: MakeConfig, tmp_path: Path
) -> None:
    server = await smtp_servers.start()
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not a certificate\n")
    result = await run_probe(make_config(server.port, ca_file=bad))

    assert (result.failed_phase, result.reason) == (Phase.STARTTLS, Reason.TLS_HANDSHAKE)
    assert "cannot load CA certificates" in result.detail
    assert [line.text for line in result.transcript if line.direction == "C"][-1] == "QUIT"

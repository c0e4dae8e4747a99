"""Fixtures of the probe tests: the certificates, real SMTP servers, a closed port and a
probe configuration aimed at one (helpers in tests/support/smtp_servers.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from m365_smtp_exporter.config import ProbeConfig
from tests.support.smtp_servers import PASSWORD, RECIPIENTS, SENDER, Pki, SmtpServers, new_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return new_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def smtp_servers(pki: Pki) -> AsyncIterator[SmtpServers]:
    servers = SmtpServers(pki)
    yield servers
    await servers.aclose()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound once, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_config(pki: Pki) -> Callable[..., ProbeConfig]:
    def make(port: int, **overrides: Any) -> ProbeConfig:
        auth = overrides.pop(
            "auth", {"mechanism": "login", "username": SENDER, "password": PASSWORD}
        )
        values: dict[str, Any] = {
            "name": "test-probe",
            "host": "127.0.0.1",
            "port": port,
            "tls": "starttls",
            "ca_file": pki.ca_file,
            "auth": auth,
            "ehlo_name": "prober.contoso.test",
            "mail_from": SENDER,
            "rcpt_to": RECIPIENTS,
            "timeout": 2.0,
        }
        values.update(overrides)
        return ProbeConfig.model_validate(values)

    return make

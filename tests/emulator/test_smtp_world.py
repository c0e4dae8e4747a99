"""The emulated world's configuration and the TLS material of the SMTP server."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from pydantic import ValidationError

from m365_emulator.certs import TlsMaterial
from m365_emulator.state import EmulatorState, tenant_external_recipient_limit
from m365_emulator.world import (
    CONTOSO_TENANT_ID,
    DEMO_PASSWORD,
    WorldConfig,
    default_world,
    load_world,
    populate,
)

WORLD_YAML = """
tenants:
  - name: tailspin
    tenant_id: 0e7c1c55-0000-4000-8000-000000000001
    client_id: 0e7c1c55-0000-4000-8000-000000000002
    client_secret: yaml-client-secret
    accepted_domains: [tailspin.example, tailspin-mail.example]
    licenses: 1
    external_recipient_limit: 5000
mailboxes:
  - address: monitor@tailspin.example
    tenant: tailspin
    password: yaml-password
    basic_auth_enabled: false
    send_as: [Alerts@tailspin.example]
    limits: {recipients_per_day: 2000, messages_per_minute: 10}
sender_pools:
  - {tenant: tailspin, domain: tailspin-mail.example, count: 12, prefix: bulk, digits: 2}
"""


@pytest.mark.parametrize(
    ("licenses", "limit"),
    # Microsoft's published examples (Exchange Online limits, TERRL)
    [(1, 10_000), (100, 22_059), (1_000, 72_446), (10_000, 324_979)],
)
def test_terrl_is_microsofts_published_figure(licenses: int, limit: int) -> None:
    assert tenant_external_recipient_limit(licenses) == limit


def test_default_world() -> None:
    state = EmulatorState()
    populate(state, default_world())
    contoso = state.tenants["contoso"]
    disabled = state.mailbox("smtp-disabled@contoso.com")
    oauth_only = state.mailbox("oauth-only@contoso.com")
    senders = [a for a in state.mailboxes if a.startswith("user") and a.endswith("@contoso.com")]
    assert contoso.tenant_id == CONTOSO_TENANT_ID
    assert state.tenant_by_id(CONTOSO_TENANT_ID) is contoso
    assert (contoso.accepted_domains, contoso.licenses) == (["contoso.com"], 25)
    assert contoso.terrl == 14_259  # 500 x 25^0.7 + 9,500 = 14,259.1
    for address in ("probe@contoso.com", "probe-inbox@contoso.com", "campaign@contoso.com"):
        assert state.mailbox(address) is not None
    assert disabled is not None and not disabled.smtp_auth_enabled
    assert oauth_only is not None and not oauth_only.basic_auth_enabled
    assert len(senders) == 200
    assert {"user001@contoso.com", "user200@contoso.com"} <= set(senders)
    fabrikam_probe = state.mailbox("probe@fabrikam.com")
    assert fabrikam_probe is not None and fabrikam_probe.tenant == "fabrikam"
    assert fabrikam_probe.password == DEMO_PASSWORD


def test_world_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "world.yml"
    path.write_text(WORLD_YAML, encoding="utf-8")
    state = EmulatorState()
    world = load_world(path)
    populate(state, world)
    tenant = state.tenants["tailspin"]
    monitor = state.mailbox("MONITOR@tailspin.example")
    assert tenant.client_secret == "yaml-client-secret"
    assert tenant.terrl == 5000
    assert monitor is not None
    assert (monitor.password, monitor.basic_auth_enabled) == ("yaml-password", False)
    assert monitor.send_as == {"alerts@tailspin.example"}
    assert (monitor.recipients_per_day, monitor.messages_per_minute) == (2000, 10)
    assert monitor.recipient_limit_per_message == 500
    assert state.mailbox("bulk12@tailspin-mail.example") is not None
    assert state.mailbox("bulk13@tailspin-mail.example") is None
    assert "yaml-password" not in repr(world) and "yaml-client-secret" not in repr(world)


def _unknown_field(world: dict[str, Any]) -> None:
    world["tenants"][0]["region"] = "eu"


def _unknown_tenant(world: dict[str, Any]) -> None:
    world["mailboxes"][0]["tenant"] = "nowhere"


def _duplicate_mailbox(world: dict[str, Any]) -> None:
    world["mailboxes"].append({**world["mailboxes"][0], "address": "Monitor@tailspin.example"})


def _duplicate_tenant(world: dict[str, Any]) -> None:
    world["tenants"].append(dict(world["tenants"][0]))


def _bad_address(world: dict[str, Any]) -> None:
    world["mailboxes"][0]["address"] = "not-an-address"


def _recipient_limit_too_high(world: dict[str, Any]) -> None:
    world["mailboxes"][0]["limits"]["recipients_per_message"] = 5000


@pytest.mark.parametrize(
    "change",
    [
        _unknown_field,
        _unknown_tenant,
        _duplicate_mailbox,
        _duplicate_tenant,
        _bad_address,
        _recipient_limit_too_high,
    ],
)
def test_inconsistent_worlds_are_rejected(change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(WORLD_YAML)
    WorldConfig.model_validate(document)  # valid before the change
    change(document)
    with pytest.raises(ValidationError):
        WorldConfig.model_validate(document)


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_tls_material(tmp_path: Path) -> None:
    tls = TlsMaterial(tmp_path, ["smtp.emulator.test", "::1"], days_valid=30)
    ca, server = _certificate(tls.ca_file), _certificate(tls.cert_file)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    now = datetime.now(tz=UTC)
    server.verify_directly_issued_by(ca)
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "smtp.emulator.test"}
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ip_address("127.0.0.1"),
        ip_address("::1"),
    }
    assert timedelta(days=29) < server.not_valid_after_utc - now <= timedelta(days=30)
    assert tls.key_file.stat().st_mode & 0o077 == 0
    assert tls.server_context().minimum_version == ssl.TLSVersion.TLSv1_2


def test_certificate_reissue_close_to_expiry_and_expired(tmp_path: Path) -> None:
    tls = TlsMaterial(tmp_path)
    first = _certificate(tls.cert_file)
    near = tls.reissue(days_left=2)
    second = _certificate(tls.cert_file)
    expired = tls.reissue(days_left=-1)
    third = _certificate(tls.cert_file)
    now = time.time()
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc == near
    assert 1.9 * 86_400 < near.timestamp() - now <= 2 * 86_400
    assert expired.timestamp() < now
    assert third.not_valid_before_utc < third.not_valid_after_utc
    third.verify_directly_issued_by(_certificate(tls.ca_file))

"""The tenant external recipient limit must be known when quota is counted, and whether
Microsoft enforces it (paused for tenants over 500 licences) follows from the licences."""

from __future__ import annotations

import pytest

from m365_smtp_exporter.config import ConfigError, parse_config
from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.tenant import TenantQuota, limits_from_config

TENANT = """
tenants:
  contoso:
    tenant_id: t
    client_id: c
    client_secret: not-a-real-secret
    accepted_domains: [contoso.com]
"""


def tenant_config(extra: str) -> str:
    return TENANT + "".join(f"    {line}\n" for line in extra.strip().splitlines())


@pytest.mark.parametrize(
    ("quota", "limit", "enforced"),
    [
        pytest.param("quota: {licenses: 25}", 14_259, True, id="small tenant"),
        pytest.param("quota: {licenses: 500}", 48_248, True, id="500 licences"),
        pytest.param("quota: {licenses: 501}", 48_302, False, id="over 500: paused"),
        pytest.param(
            "quota: {licenses: 501, external_recipient_limit_enforced: true}",
            48_302,
            True,
            id="over 500, operator says enforced",
        ),
        pytest.param(
            "quota: {licenses: 25, external_recipient_limit_enforced: false}",
            14_259,
            False,
            id="small, operator says not enforced",
        ),
        pytest.param("quota: {external_recipient_limit: 42000}", 42_000, True, id="explicit limit"),
        pytest.param("quota: {trial: true}", 5_000, True, id="trial"),
    ],
)
def test_the_limit_and_whether_it_is_enforced(quota: str, limit: int, enforced: bool) -> None:
    tenant = parse_config(tenant_config(quota), env={}).tenants["contoso"]

    assert limits_from_config(tenant).tenant_external_limit == limit
    assert tenant.quota.external_limit_enforced is enforced
    assert TenantQuota("contoso", tenant).limit_enforced == {
        LimitName.EXTERNAL_RECIPIENTS_PER_DAY: enforced
    }


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("trace: {enabled: false}", id="trace off"),
        pytest.param("", id="no credentials"),
    ],
)
def test_licences_are_not_required_when_no_quota_is_counted(extra: str) -> None:
    text = tenant_config(extra)
    if not extra:
        text = text.replace("    client_secret: not-a-real-secret\n", "")
        text += "probes:\n  - {name: p, tenant: contoso, host: smtp.office365.com,"
        text += " mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}\n"

    config = parse_config(text, env={})

    assert config.tenants["contoso"].quota.licenses is None


def test_each_tenant_without_licences_is_named() -> None:
    text = TENANT + TENANT.split("tenants:\n", 1)[1].replace("contoso:", "fabrikam:")

    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})

    assert [line.split(":", 1)[0] for line in caught.value.errors] == [
        "tenants.contoso.quota.licenses",
        "tenants.fabrikam.quota.licenses",
    ]

"""Per-kind probe configuration: defaults each kind implies, and errors naming the field."""

from __future__ import annotations

import pytest

from m365_smtp_exporter.config import ConfigError, parse_config

TENANT = """
tenants:
  contoso:
    tenant_id: t
    client_id: c
    client_secret: s
    accepted_domains: [contoso.com]
    quota: {licenses: 25}
"""


def errors(probes: str, tenants: str = TENANT) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(tenants + "probes:\n" + probes, env={})
    return caught.value.errors


def test_kind_defaults_fill_in_microsofts_endpoints() -> None:
    config = parse_config(
        TENANT
        + """probes:
  - {name: hve, kind: hve, tenant: contoso, mail_from: hve@contoso.com,
     rcpt_to: [a@contoso.com], auth: {mechanism: login, username: hve@contoso.com, password: x}}
  - {name: mx, kind: direct_send, tenant: contoso, mail_from: a@contoso.com,
     rcpt_to: [b@contoso.com]}
  - {name: graph, kind: graph_sendmail, tenant: contoso, mail_from: a@contoso.com,
     rcpt_to: [b@contoso.com]}
  - {name: check, kind: basic_auth_check, tenant: contoso, host: smtp.office365.com,
     mail_from: a@contoso.com, rcpt_to: [b@contoso.com],
     auth: {mechanism: login, username: a@contoso.com, password: x}}
  - {name: plain, host: smtp.office365.com, mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}
""",
        env={},
    )
    hve, mx, graph, check, plain = config.probes
    assert (hve.target, hve.tls) == ("smtp.hve.mx.microsoft:587", "starttls")
    assert mx.target == "contoso-com.mail.protection.outlook.com:25"
    assert graph.target == "graph.microsoft.com:443"
    assert (check.mode, plain.kind, plain.mode) == ("session", "smtp", "send")


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (
            "{name: p, kind: pigeon, host: h, mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}",
            "probes[0].kind: Input should be 'smtp', 'hve', 'direct_send', 'graph_sendmail' or "
            "'basic_auth_check'",
        ),
        (
            "{name: p, kind: smtp, mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}",
            "probes[0].host: Field required",
        ),
        (
            "{name: p, kind: hve, tls: none, mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}",
            "probes[0].tls: hve requires TLS (starttls or implicit)",
        ),
        (
            "{name: p, kind: direct_send, mail_from: a@contoso.com, rcpt_to: [b@contoso.com],"
            " auth: {mechanism: login, username: a@contoso.com, password: x}}",
            "probes[0].auth.mechanism: direct_send does not use SMTP AUTH (direct_send sends "
            "unauthenticated; graph_sendmail uses the tenant's app token): use none",
        ),
        (
            "{name: p, kind: graph_sendmail, tenant: contoso, mode: session,"
            " mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}",
            "probes[0].mode: graph_sendmail only sends (there is no session to open)",
        ),
        (
            "{name: p, kind: basic_auth_check, tenant: contoso, host: h, mail_from: a@contoso.com,"
            " rcpt_to: [b@contoso.com], auth: {mechanism: xoauth2, username: a@contoso.com}}",
            "probes[0].auth.mechanism: basic_auth_check tests a Basic credential: use login or "
            "plain",
        ),
        (
            "{name: p, kind: basic_auth_check, mode: send, tenant: contoso, host: h,"
            " mail_from: a@contoso.com, rcpt_to: [b@contoso.com],"
            " auth: {mechanism: login, username: a@contoso.com, password: x}}",
            "probes[0].mode: basic_auth_check never sends mail: use session",
        ),
        (
            "{name: p, host: h, mode: session, mail_from: a@contoso.com, rcpt_to: [b@contoso.com],"
            " delivery: {mailbox: b@contoso.com}, tenant: contoso}",
            "probes[0].delivery: a session probe sends no mail to track",
        ),
        (
            "{name: p, kind: graph_sendmail, mail_from: a@contoso.com, rcpt_to: [b@contoso.com]}",
            "probes[0].tenant: graph_sendmail needs the probe's tenant (a configured tenant)",
        ),
        (
            "{name: p, kind: direct_send, tenant: contoso, mail_from: a@contoso.com,"
            " rcpt_to: [b@contoso.com, c@example.net]}",
            "probes[0].rcpt_to[1]: direct_send reaches internal recipients only; c@example.net "
            "is not in tenant 'contoso''s accepted_domains",
        ),
        (
            "{name: p, kind: pigeons, mode: fly, host: h, mail_from: a@contoso.com,"
            " rcpt_to: [b@contoso.com]}",
            "probes[0].mode: Input should be 'send' or 'session'",
        ),
    ],
)
def test_errors_name_the_field(probe: str, expected: str) -> None:
    assert expected in errors(f"  - {probe}\n")


def test_graph_sendmail_needs_app_credentials() -> None:
    tenant = "tenants:\n  contoso: {tenant_id: t, client_id: c}\n"
    probe = "  - {name: p, kind: graph_sendmail, tenant: contoso, mail_from: a@contoso.com,"
    probe += " rcpt_to: [b@contoso.com]}\n"
    assert errors(probe, tenant) == [
        "probes[0].tenant: graph_sendmail sends through Microsoft Graph: tenant 'contoso' has "
        "no client_secret, client_secret_file or certificate_file"
    ]

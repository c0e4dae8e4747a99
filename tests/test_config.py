"""Configuration loading: every invalid file names its field, secrets stay secret."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from m365_smtp_exporter.cli import EXIT_CONFIG, EXIT_OK, check_config
from m365_smtp_exporter.config import ConfigError, load_config, parse_config

TESTDATA = Path(__file__).parent.parent / "testdata"
EXAMPLES = Path(__file__).parent.parent / "examples"

INVALID: dict[str, list[str]] = {
    "invalid-address.yml": [
        "probes[0].mail_from: 'probe' is not an e-mail address",
        "probes[0].rcpt_to[1]: 'not an address' is not an e-mail address",
    ],
    "invalid-delivery-without-tenant.yml": [
        "probes[0].delivery: delivery tracking reads the mailbox through Microsoft Graph: "
        "the probe's tenant must have app credentials"
    ],
    "invalid-duplicate-name.yml": ["probes[1].name: duplicate probe name 'submission'"],
    "invalid-duration.yml": [
        "probes[0].interval: must be a duration with a unit, like 30s, 5m or 1h30m"
    ],
    "invalid-unitless-duration.yml": [
        "probes[0].interval: must be a duration with a unit, like 30s, 5m or 1h30m "
        "(got 30 without a unit)"
    ],
    "invalid-compound-duration.yml": [
        "probes[0].interval: must be a duration with a unit, like 30s, 5m or 1h30m"
    ],
    "invalid-alias-bomb.yml": [
        "{path}: aliases expand the document past 100000 values (an alias bomb?)"
    ],
    "invalid-duplicate-key.yml": ["{path}: duplicate key 'interval' at line 7 (first at line 6)"],
    "invalid-domain-names.yml": [
        "tenants.contoso.accepted_domains[1]: '-bad-.example' is not a domain name",
        "tenants.contoso.accepted_domains[2]: 'contoso..com' is not a domain name",
        "domains.names[0]: 'exämple.com' is not a domain name",
        "domains.names[1]: 'contoso.com\\n' is not a domain name",
    ],
    "invalid-empty.yml": ["{path}: the configuration is empty"],
    "invalid-host-names.yml": [
        "probes[0].host: 'smtp.office365.com\\n' is not a host name or IP address",
        "probes[0].server_name: '-bad-' is not a host name or IP address",
        "probes[0].ehlo_name: 'prober.example\\r\\nRCPT TO:<everyone@contoso.com>' is not a host "
        "name or IP address",
    ],
    "invalid-idle-tenant.yml": [
        "tenants.contoso: no client_secret, client_secret_file or certificate_file and no "
        "probe uses this tenant: it would do nothing"
    ],
    "invalid-special-secret-file.yml": [
        "probes[0].auth.password_file: /dev/zero is not a regular file"
    ],
    "invalid-trailing-newline.yml": [
        "probes[0].mail_from: 'probe@contoso.com\\n' is not an e-mail address",
        "probes[0].rcpt_to[0]: 'probe-inbox@contoso.com\\n' is not an e-mail address",
        "probes[0].subject: must not contain control characters (newline, tab, escape...)",
    ],
    "invalid-env-missing.yml": [
        "tenants.contoso.client_secret: environment variable M365_TEST_UNSET_VARIABLE is not set"
    ],
    "invalid-insecure-auth.yml": [
        "probes[0].auth.mechanism: plain over an unencrypted connection (tls: none) would send "
        "credentials in clear text; set allow_insecure_auth: true to allow it"
    ],
    "invalid-login-without-password.yml": [
        "probes[0].auth.password: mechanism login needs password or password_file"
    ],
    "invalid-missing-host.yml": ["probes[0].host: Field required"],
    "invalid-missing-secret-file.yml": [
        "tenants.contoso.client_secret_file: cannot read /nonexistent/graph-secret: "
        "No such file or directory"
    ],
    "invalid-multiple-errors.yml": [
        "tenants.bad name!: 'bad name!' is not a valid name (letters, digits, '_', '.', '-')",
        "probes[0].port: Input should be greater than or equal to 1",
        "probes[1].name: Field required",
        "probes[1].auth.mechanism: Input should be 'xoauth2', 'login', 'plain' or 'none'",
    ],
    "invalid-no-recipients.yml": [
        "probes[0].rcpt_to: List should have at least 1 item after validation, not 0"
    ],
    "invalid-probe-spend.yml": [
        "probes: the probes submission, bulk would send 145,440 recipients a day from "
        "probe@contoso.com, over its daily limit of 10,000: the mailbox would be blocked "
        "(554 5.2.0) by its own probes; send less often or to fewer recipients, use a dedicated "
        "probe mailbox, or set allow_quota_exhaustion: true on a probe that is meant to hit the "
        "limit"
    ],
    "invalid-quota-without-licenses.yml": [
        "tenants.contoso.quota.licenses: required when the tenant's quota is counted (app "
        "credentials and trace on): its licence count sets the tenant external recipient limit "
        "(500 x licenses^0.7 + 9,500); give quota.licenses, or quota.external_recipient_limit "
        "(from Get-LimitsEnforcementStatus), or quota.trial: true"
    ],
    "invalid-port.yml": ["probes[0].port: Input should be less than or equal to 65535"],
    "invalid-timeout-longer-than-interval.yml": [
        "probes[0].timeout: 60s is longer than the interval (30s)"
    ],
    "invalid-tls-mode.yml": ["probes[0].tls: Input should be 'starttls', 'implicit' or 'none'"],
    "invalid-top-level.yml": ["{path}: top level must be a mapping"],
    "invalid-two-credentials.yml": [
        "tenants.contoso.certificate_file: give only one of client_secret, client_secret_file, "
        "certificate_file (got client_secret, certificate_file)"
    ],
    "invalid-unknown-field.yml": ["probes[0].intervall: unknown field, did you mean 'interval'?"],
    "invalid-unknown-tenant.yml": ["probes[0].tenant: unknown tenant 'fabrikam'"],
    "invalid-xoauth2-without-tenant.yml": [
        "probes[0].auth.mechanism: xoauth2 needs the probe's tenant to name a configured "
        "tenant with app credentials"
    ],
    "invalid-yaml.yml": ["{path}: expected ',' or ']', but got '<stream end>' at line 4, column 1"],
}


def test_every_invalid_file_has_expected_messages() -> None:
    on_disk = {p.name for p in TESTDATA.glob("invalid-*.yml")}
    assert on_disk == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_messages(name: str) -> None:
    path = TESTDATA / name
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    expected = [line.format(path=path) for line in INVALID[name]]
    assert caught.value.errors == expected


@pytest.mark.parametrize("name", sorted(INVALID))
def test_check_config_exits_2_and_prints_each_error(name: str) -> None:
    out = io.StringIO()
    assert check_config(TESTDATA / name, out) == EXIT_CONFIG
    text = out.getvalue()
    for line in INVALID[name]:
        assert line.format(path=TESTDATA / name) in text


def test_valid_config_with_env_secrets() -> None:
    env = {"CONTOSO_SECRET": "canary-graph-secret-0451", "PROBE_PASSWORD": "canary-pw-7788"}
    config = load_config(TESTDATA / "valid-full.yml", env=env)
    tenant = config.tenants["contoso"]
    assert tenant.client_secret is not None
    assert tenant.client_secret.get_secret_value() == "canary-graph-secret-0451"
    relay = config.probe("relay-password")
    assert relay is not None
    assert relay.interval == 300.0 and relay.timeout == 45.0 and relay.tls == "implicit"
    assert relay.target == "mail.example.net:465"
    submission = config.probe("submission")
    assert submission is not None
    assert (submission.port, submission.tls, submission.tls_verify) == (587, "starttls", True)
    # secrets never show in reprs or dumps
    for text in (repr(config), str(config.model_dump()), config.model_dump_json()):
        assert "canary-graph-secret-0451" not in text
        assert "canary-pw-7788" not in text


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-canary-secret\n")
    config = parse_config(
        f"""
probes:
  - name: p
    host: mail.example.net
    auth: {{mechanism: plain, username: u@example.net, password_file: {secret}}}
    mail_from: u@example.net
    rcpt_to: [u@example.net]
""",
        env={},
    )
    password = config.probes[0].auth.password
    assert password is not None and password.get_secret_value() == "file-canary-secret"


def test_secret_values_never_in_error_messages() -> None:
    # A validation error on a secret field must not echo the secret back.
    with pytest.raises(ConfigError) as caught:
        parse_config(
            """
tenants:
  t: {tenant_id: x, client_id: y, client_secret: [canary-in-a-list-991]}
""",
            env={},
        )
    assert "canary-in-a-list-991" not in str(caught.value)
    assert caught.value.errors == ["tenants.t.client_secret: Input should be a valid string"]


def test_durations() -> None:
    config = parse_config(
        """
probes:
  - {name: a, host: h.example, mail_from: a@b.cd, rcpt_to: [a@b.cd], interval: 2h, timeout: 1500ms}
  - {name: b, host: h.example, mail_from: a@b.cd, rcpt_to: [a@b.cd], interval: 1h30m, timeout: 7.5s}
""",
        env={},
    )
    assert [(p.interval, p.timeout) for p in config.probes] == [(7200.0, 1.5), (5400.0, 7.5)]


def test_a_config_that_would_do_nothing_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("domains: {interval: 1h}", env={})
    assert caught.value.errors == [
        "config: nothing to do: configure at least one probe, tenant or domain"
    ]


def test_a_tenant_without_credentials_used_by_a_probe_is_accepted() -> None:
    config = parse_config(
        """
tenants: {contoso: {tenant_id: t, client_id: c}}
probes:
  - {name: a, host: h.example, tenant: contoso, mail_from: a@b.cd, rcpt_to: [a@b.cd]}
""",
        env={},
    )
    assert not config.tenants["contoso"].has_credentials


def test_secret_file_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text("relative-canary\n")
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        """
probes:
  - name: p
    host: mail.example.net
    auth: {mechanism: plain, username: u@example.net, password_file: secrets/pw}
    mail_from: u@example.net
    rcpt_to: [u@example.net]
"""
    )
    config = load_config(config_file, env={})
    password = config.probes[0].auth.password
    assert password is not None and password.get_secret_value() == "relative-canary"


def test_compound_and_decimal_durations() -> None:
    config = parse_config(
        """
probes:
  - {name: a, host: h.example, mail_from: a@b.cd, rcpt_to: [a@b.cd], interval: 1d2h3m4s,
     timeout: 250ms, jitter: 0}
  - {name: b, host: h.example, mail_from: a@b.cd, rcpt_to: [a@b.cd], interval: 1.5h,
     timeout: 1m30s, jitter: 0s}
""",
        env={},
    )
    assert [(p.interval, p.timeout, p.jitter) for p in config.probes] == [
        (86400 + 7200 + 180 + 4, 0.25, 0.0),
        (5400.0, 90.0, 0.0),
    ]


def test_examples_are_valid() -> None:
    examples = sorted(EXAMPLES.glob("*.yml"))
    assert examples
    env = {"M365_CLIENT_SECRET": "example-secret", "SMTP_PASSWORD": "example-password"}
    for example in examples:
        out = io.StringIO()
        assert check_config(example, out, env=env) == EXIT_OK, out.getvalue()
        assert "OK" in out.getvalue()


def test_quota_state_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "secret").write_text("s3cret-value")
    path = folder / "config.yml"
    path.write_text(
        "tenants:\n"
        "  contoso:\n"
        "    tenant_id: 00000000-0000-0000-0000-000000000001\n"
        "    client_id: 00000000-0000-0000-0000-000000000002\n"
        "    client_secret_file: secret\n"
        "    accepted_domains: [contoso.com]\n"
        "    quota: {licenses: 25}\n"
        "    quota_state_file: state/contoso.json\n"
    )
    config = load_config(path)
    assert config.tenants["contoso"].quota_state_file == folder / "state" / "contoso.json"

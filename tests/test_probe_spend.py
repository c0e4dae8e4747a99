"""Probes send real mail: what they spend of each sending mailbox's limits, shown and capped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from m365_smtp_exporter.cli import EXIT_OK, check_config, log_probe_spend
from m365_smtp_exporter.config import ConfigError, parse_config
from m365_smtp_exporter.demo import demo_config_template
from m365_smtp_exporter.probe_spend import probe_spend, spend_warnings

TENANT = """
tenants:
  contoso:
    tenant_id: t
    client_id: c
    client_secret: not-a-real-secret
    accepted_domains: [contoso.com]
    quota:
      licenses: 25
      sender_limits: {alerts@contoso.com: 2000}
"""


def probe(name: str, sender: str, recipients: int, interval: str, **extra: str) -> str:
    rcpt = ", ".join(f"r{i}@contoso.com" for i in range(recipients))
    lines = [
        f"  - name: {name}",
        "    tenant: contoso",
        "    host: smtp.office365.com",
        f"    mail_from: {sender}",
        f"    rcpt_to: [{rcpt}]",
        f"    interval: {interval}",
        "    timeout: 5s",
        *(f"    {key}: {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def config_text(*probes: str) -> str:
    return TENANT + "probes:\n" + "".join(probes)


def test_spend_per_sending_mailbox_summed_over_its_probes() -> None:
    config = parse_config(
        config_text(
            probe("a", "probe@contoso.com", 1, "60s"),
            probe("b", "PROBE@contoso.com", 2, "5m"),
            probe("session", "probe@contoso.com", 1, "10s", mode="session"),
            probe("alerts", "alerts@contoso.com", 1, "15m"),
        ),
        env={},
    )

    spends = probe_spend(config.probes, config.tenants)

    assert [spend.describe() for spend in spends] == [
        "probe@contoso.com: 2,016 recipients/day = 20.2% of 10,000; 1.20 messages/minute = "
        "4.0% of 30 (a 1,440, b 576)",
        "alerts@contoso.com: 96 recipients/day = 4.8% of 2,000; 0.07 messages/minute = "
        "0.2% of 30 (alerts 96)",
    ]
    assert spend_warnings(spends) == [
        "probe@contoso.com: probes spend 20.2% of its daily limit of 10,000 (over 10%), "
        "leaving less for its real mail: use a dedicated probe mailbox"
    ]


def test_the_mailbox_limit_is_the_senders_own_override() -> None:
    text = config_text(probe("alerts", "alerts@contoso.com", 3, "2m"))  # 2,160 > 2,000

    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})

    assert caught.value.errors == [
        "probes: the probes alerts would send 2,160 recipients a day from alerts@contoso.com, "
        "over its daily limit of 2,000: the mailbox would be blocked (554 5.2.0) by its own "
        "probes; send less often or to fewer recipients, use a dedicated probe mailbox, or set "
        "allow_quota_exhaustion: true on a probe that is meant to hit the limit"
    ]


def test_a_probe_meant_to_exhaust_its_mailbox_opts_out() -> None:
    text = config_text(
        probe("campaign", "campaign@contoso.com", 2, "10s", allow_quota_exhaustion="true")
    )

    config = parse_config(text, env={})
    spends = probe_spend(config.probes, config.tenants)

    assert spends[0].over_limit and spends[0].exhaustion_allowed
    assert spend_warnings(spends) == []


@pytest.mark.parametrize(
    ("kind", "extra", "counted"),
    [
        ("hve", {}, True),
        ("direct_send", {"port": "25"}, True),
        ("graph_sendmail", {}, True),
        ("basic_auth_check", {}, False),
    ],
)
def test_which_kinds_spend(kind: str, extra: dict[str, str], counted: bool) -> None:
    options = {"kind": kind, **extra}
    if kind == "basic_auth_check":
        options["auth"] = "{mechanism: login, username: probe@contoso.com, password: pw}"
    text = config_text(probe("p", "probe@contoso.com", 1, "1h", **options))
    if kind != "basic_auth_check":  # the kind's own endpoint
        text = text.replace("    host: smtp.office365.com\n", "")

    config = parse_config(text, env={})

    assert bool(probe_spend(config.probes, config.tenants)) is counted


def test_check_config_prints_the_spend_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(config_text(probe("a", "probe@contoso.com", 1, "60s")))
    out = io.StringIO()

    assert check_config(path, out) == EXIT_OK

    lines = out.getvalue().splitlines()
    at = lines.index(
        "  probe mail per sending mailbox (probes send real mail and spend its limits):"
    )
    assert lines[at + 1 :] == [
        "    probe@contoso.com: 1,440 recipients/day = 14.4% of 10,000; 1.00 messages/minute "
        "= 3.3% of 30 (a 1,440)",
        "  warning: probe@contoso.com: probes spend 14.4% of its daily limit of 10,000 (over "
        "10%), leaving less for its real mail: use a dedicated probe mailbox",
    ]


def test_the_demo_is_accepted_and_its_campaign_probe_opts_out(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read here\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("contoso-client-secret", "fabrikam-client-secret", "mailbox"):
        (secrets / name).write_text("demo-secret\n")
    text = demo_config_template().substitute(
        contoso_tenant_id="t1",
        contoso_client_id="c1",
        fabrikam_tenant_id="t2",
        fabrikam_client_id="c2",
        authority="https://127.0.0.1:1",
        graph_base_url="https://127.0.0.1:1/v1.0",
        ca_file=tmp_path / "ca.pem",
        smtp_port=1,
        hve_port=2,
        mx_port=3,
        http_port=4,
        dns_port=5,
        secrets=secrets,
        busy_mailbox="busy@contoso.com",
        work_dir=tmp_path,
    )

    config = parse_config(text, env={})
    spends = {spend.sender: spend for spend in probe_spend(config.probes, config.tenants)}

    campaign = spends["campaign@contoso.com"]
    assert campaign.recipients_per_day == 8_640 and campaign.exhaustion_allowed
    assert all(not spend.over_limit for spend in spends.values())


def test_start_up_logs_the_spend_and_the_warning() -> None:
    config = parse_config(config_text(probe("a", "probe@contoso.com", 1, "60s")), env={})

    with capture_logs() as logs:
        log_probe_spend(config)

    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("probe quota spend", "info"),
        ("probe quota spend high", "warning"),
    ]
    assert logs[0]["sender"] == "probe@contoso.com"
    assert (logs[0]["recipients_per_day"], logs[0]["daily_share"]) == (1440, 0.144)
    assert logs[0]["probes"] == ["a"]


def test_a_long_list_of_probes_is_cut_in_the_error() -> None:
    text = config_text(*(probe(f"p{i}", "probe@contoso.com", 1, "1m") for i in range(8)))

    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})

    assert caught.value.errors[0].startswith(
        "probes: the probes p0, p1, p2, p3, p4 and 3 more would send 11,520 recipients a day "
        "from probe@contoso.com"
    )

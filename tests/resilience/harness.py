"""The emulated tenant and the exporter configuration of the resilience run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from m365_emulator.graph.api import GraphSettings
from m365_emulator.service import Emulator
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.world import (
    CONTOSO_CLIENT_ID,
    CONTOSO_TENANT_ID,
    DEMO_PASSWORD,
    MailboxConfig,
    MailboxLimits,
    WorldConfig,
    default_world,
)
from m365_smtp_exporter.config import Config, load_config
from tests.resilience.faults import Timings

TENANT = "contoso"
INBOX = "probe-inbox@contoso.com"
TRACE_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    name: str
    mechanism: str  # xoauth2 or login
    interval: float
    timeout: float

    @property
    def mailbox(self) -> str:
        return f"{self.name}@contoso.com"


# One mailbox per probe: Exchange allows 3 connections per mailbox, and each probe's own
# runs never overlap.
PROBES = (
    ProbeSpec("oauth-fast", "xoauth2", 1.5, 1.2),
    ProbeSpec("oauth-slow", "xoauth2", 2.0, 1.5),
    ProbeSpec("login-fast", "login", 1.5, 1.2),
    ProbeSpec("login-slow", "login", 2.0, 1.5),
)
TIMINGS = Timings(probe_timeout=max(probe.timeout for probe in PROBES))


def resilience_world() -> WorldConfig:
    """Tenant contoso with one mailbox per probe and the probes' inbox.

    A probe every 1.5 s sends 40 messages a minute; the mailboxes allow more than
    Exchange's 30, so the emulator's own rate limit never mixes with the injected faults.
    """
    contoso = next(tenant for tenant in default_world().tenants if tenant.name == TENANT)
    limits = MailboxLimits(messages_per_minute=10_000)
    password = SecretStr(DEMO_PASSWORD)
    addresses = [probe.mailbox for probe in PROBES] + [INBOX]
    return WorldConfig(
        tenants=[contoso],
        mailboxes=[
            MailboxConfig(address=address, tenant=TENANT, password=password, limits=limits)
            for address in addresses
        ],
    )


def resilience_emulator() -> Emulator:
    return Emulator(
        resilience_world(),
        # trace rows visible at once: the ground truth can be compared at the end
        delivery=DeliveryBehaviour(delay_seconds=0.0, trace_lag_seconds=0.0),
        # only injected faults: the emulator's own 100-per-5-minutes throttle stays out
        graph_settings=GraphSettings(trace_requests_per_window=1_000_000),
    )


def exporter_yaml(emulator: Emulator, secret_file: Path, *, with_probes: bool = True) -> str:
    tenant = f"""
tenants:
  {TENANT}:
    tenant_id: {CONTOSO_TENANT_ID}
    client_id: {CONTOSO_CLIENT_ID}
    client_secret_file: {secret_file}
    authority: {emulator.http_url}
    graph_base_url: {emulator.graph_base_url}
    ca_file: {emulator.ca_file}
    accepted_domains: [contoso.com]
    graph_budget: 100
    quota: {{licenses: 25}}
    trace:
      interval: {TRACE_INTERVAL}s
      overlap: 2m
      lookback: 1h
      timeout: {TIMINGS.pull_timeout}s
"""
    if not with_probes:
        return tenant + "probes: []\n"
    probes = "probes:\n" + "".join(_probe_yaml(emulator, probe) for probe in PROBES)
    return tenant + probes


def _probe_yaml(emulator: Emulator, probe: ProbeSpec) -> str:
    password = f", password: '{DEMO_PASSWORD}'" if probe.mechanism == "login" else ""
    return f"""
  - name: {probe.name}
    tenant: {TENANT}
    host: 127.0.0.1
    port: {emulator.smtp_port}
    ca_file: {emulator.ca_file}
    auth: {{mechanism: {probe.mechanism}, username: {probe.mailbox}{password}}}
    mail_from: {probe.mailbox}
    rcpt_to: [{INBOX}]
    interval: {probe.interval}s
    timeout: {probe.timeout}s
    jitter: 0.2s
    allow_quota_exhaustion: true  # compressed time in the emulator, no real mailbox
"""


def write_config(path: Path, emulator: Emulator, *, with_probes: bool = True) -> Config:
    secret_file = path.parent / "client-secret"
    if not secret_file.exists():
        contoso = next(t for t in default_world().tenants if t.name == TENANT)
        secret_file.write_text(contoso.client_secret.get_secret_value())
    path.write_text(exporter_yaml(emulator, secret_file, with_probes=with_probes))
    return load_config(path)

"""DNS check configurations pointed at the loopback DNS server, and the checker's samples."""

from __future__ import annotations

import socket
from typing import Any

from prometheus_client.registry import CollectorRegistry

from m365_emulator.dns.server import HOST
from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.config import DomainChecksConfig
from m365_smtp_exporter.domains import DomainChecker
from m365_smtp_exporter.store import ResultsStore

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def checks_config(port: int, *names: str, **settings: Any) -> DomainChecksConfig:
    settings.setdefault("timeout", 3.0)
    return DomainChecksConfig(names=list(names), nameservers=[HOST], port=port, **settings)


def closed_port() -> int:
    """A loopback port nothing listens on (UDP queries to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def domain_samples(checker: DomainChecker) -> Samples:
    """The m365_domain_* samples the exporter's collector renders for `checker`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ResultsStore(), [checker.collect]))
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith("m365_domain_")
    }


def sample(name: str, value: float, **labels: str) -> Samples:
    return {(f"m365_domain_{name}", frozenset(labels.items())): value}

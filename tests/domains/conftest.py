"""A loopback DNS server and a resolver pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from m365_emulator.dns.server import DnsServer
from m365_emulator.dns.zones import MICROSOFT_SPF
from m365_smtp_exporter.domains.lookup import DnsLookup, make_resolver
from tests.support.dns_checks import checks_config


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    async with DnsServer(MICROSOFT_SPF) as server:
        yield server
    assert not server.errors


@pytest.fixture
def lookup(dns_server: DnsServer) -> DnsLookup:
    return DnsLookup(make_resolver(checks_config(dns_server.port)))

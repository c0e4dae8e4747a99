"""The loopback DNS server and the lookup layer: no record versus a failed lookup."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from m365_emulator.dns.server import HOST, DnsServer, Fault
from m365_smtp_exporter.domains.lookup import (
    DnsLookup,
    DnsLookupError,
    FailureReason,
    make_resolver,
)
from tests.support.dns_checks import checks_config, closed_port


async def rcode_of(server: DnsServer, name: str, rdtype: str) -> int:
    response = await dns.asyncquery.udp(dns.message.make_query(name, rdtype), HOST, 3, server.port)
    return response.rcode()


async def test_txt_records_come_back_whole_and_missing_ones_empty(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    long_text = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(40)) + " -all"
    dns_server.add_records(
        {
            "contoso.com": {"TXT": [long_text, "google-site-verification=abc"]},
            "x._domainkey.contoso.com": {"TXT": "v=DKIM1; p="},
        }
    )

    assert sorted(await lookup.txt("contoso.com")) == sorted(
        [long_text, "google-site-verification=abc"]
    )
    assert await lookup.txt("nowhere.contoso.com") == []  # NXDOMAIN
    assert await lookup.txt("_domainkey.contoso.com") == []  # exists, no data
    assert await lookup.cname("contoso.com") is None
    assert await rcode_of(dns_server, "nowhere.contoso.com", "TXT") == dns.rcode.NXDOMAIN
    assert await rcode_of(dns_server, "_domainkey.contoso.com", "TXT") == dns.rcode.NOERROR


async def test_cname_chains_are_followed_and_the_target_reported(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        {
            "alias.contoso.com": {"CNAME": "middle.contoso.net."},
            "middle.contoso.net": {"CNAME": "Final.Contoso.ORG."},
            "final.contoso.org": {"TXT": "hello", "A": "192.0.2.1"},
        }
    )

    assert await lookup.cname("alias.contoso.com") == "middle.contoso.net"
    assert await lookup.txt("alias.contoso.com") == ["hello"]
    assert await lookup.has_address("alias.contoso.com")
    assert not await lookup.has_address("middle.contoso.org")


async def test_answers_too_big_for_udp_are_fetched_over_tcp(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    records = [f"record {i} " + "x" * 200 for i in range(4)]
    dns_server.add_records({"big.contoso.com": {"TXT": records}})

    assert sorted(await lookup.txt("big.contoso.com")) == records
    transports = [q.transport for q in dns_server.asked("big.contoso.com", "TXT")]
    assert transports == ["udp", "tcp"]


async def test_zone_text_is_served(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_zone(
        """
        @         300 IN TXT "v=spf1 " "include:spf.protection.outlook.com -all"
        @         300 IN MX  10 mx1
        @         300 IN MX  20 mx2.fabrikam.net.
        selector1._domainkey 300 IN CNAME s1-fabrikam-com._domainkey.fabrikam.onmicrosoft.com.
        """,
        origin="fabrikam.com.",
    )

    assert await lookup.txt("fabrikam.com") == ["v=spf1 include:spf.protection.outlook.com -all"]
    assert sorted(await lookup.mx_hosts("fabrikam.com")) == ["mx1.fabrikam.com", "mx2.fabrikam.net"]
    assert (
        await lookup.cname("selector1._domainkey.fabrikam.com")
        == "s1-fabrikam-com._domainkey.fabrikam.onmicrosoft.com"
    )


async def test_servfail_is_a_lookup_failure_not_a_missing_record(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records({"contoso.com": {"TXT": "v=spf1 -all"}})
    dns_server.fail("contoso.com", Fault.SERVFAIL, rdtype="TXT")

    with pytest.raises(DnsLookupError) as failure:
        await lookup.txt("contoso.com")

    assert failure.value.reason is FailureReason.SERVER
    assert "SERVFAIL" in str(failure.value)
    assert await lookup.mx_hosts("contoso.com") == []  # only TXT was made to fail
    dns_server.heal()
    assert await lookup.txt("contoso.com") == ["v=spf1 -all"]


async def test_servfail_at_a_cname_target_fails_the_lookup(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        {"alias.contoso.com": {"CNAME": "target.contoso.net."}, "target.contoso.net": {"TXT": "x"}}
    )
    dns_server.fail("target.contoso.net", Fault.SERVFAIL)

    with pytest.raises(DnsLookupError):
        await lookup.txt("alias.contoso.com")


async def test_a_silent_server_is_a_timeout(dns_server: DnsServer) -> None:
    lookup = DnsLookup(make_resolver(checks_config(dns_server.port, timeout=0.5)))
    dns_server.add_records({"contoso.com": {"TXT": "v=spf1 -all"}})
    dns_server.fail("_dmarc.contoso.com", Fault.TIMEOUT)

    with pytest.raises(DnsLookupError) as failure:
        await lookup.txt("_dmarc.contoso.com")

    assert failure.value.reason is FailureReason.TIMEOUT
    assert await lookup.txt("contoso.com") == ["v=spf1 -all"]


async def test_an_unreachable_nameserver_is_a_lookup_failure() -> None:
    lookup = DnsLookup(make_resolver(checks_config(closed_port(), timeout=2.0)))

    with pytest.raises(DnsLookupError) as failure:
        await lookup.txt("contoso.com")

    assert failure.value.reason in (FailureReason.SERVER, FailureReason.TIMEOUT)


@pytest.mark.parametrize("nameserver", ["not-an-address", "300.1.2.3"])
def test_an_unusable_nameserver_setting_is_reported(nameserver: str) -> None:
    config = checks_config(53).model_copy(update={"nameservers": [nameserver]})

    with pytest.raises(DnsLookupError) as failure:
        make_resolver(config)

    assert failure.value.reason is FailureReason.RESOLVER


async def test_an_invalid_name_is_a_lookup_failure(lookup: DnsLookup) -> None:
    with pytest.raises(DnsLookupError) as failure:
        await lookup.txt("a" * 64 + ".contoso.com")

    assert failure.value.reason is FailureReason.INVALID_NAME

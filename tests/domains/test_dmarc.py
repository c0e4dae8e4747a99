"""DMARC records: selection, tags, policies."""

from __future__ import annotations

import pytest

from m365_emulator.dns.server import DnsServer, Fault
from m365_smtp_exporter.domains.dmarc import (
    DmarcPolicy,
    DmarcResult,
    check_dmarc,
    is_dmarc_record,
    parse_dmarc,
)
from m365_smtp_exporter.domains.lookup import DnsLookup, DnsLookupError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=none", True),
        ("v=DMARC1", True),
        ("v = DMARC1 ;p=reject", True),
        ("v=DMARC10; p=none", False),
        ("p=none; v=DMARC1", False),
        ("v=spf1 -all", False),
    ],
)
def test_only_version_dmarc1_records_count(text: str, expected: bool) -> None:
    assert is_dmarc_record(text) is expected


def test_a_full_record_is_parsed() -> None:
    text = (
        "v=DMARC1; p=quarantine; sp=reject; pct=25; adkim=s; aspf=r; "
        "rua=mailto:dmarc@contoso.com,mailto:agg@reports.example.net!10m; "
        "ruf=mailto:forensic@contoso.com; fo=1; ri=86400;"
    )

    assert parse_dmarc(text) == DmarcResult(
        DmarcPolicy.QUARANTINE,
        (text,),
        subdomain_policy=DmarcPolicy.REJECT,
        pct=25,
        rua=("mailto:dmarc@contoso.com", "mailto:agg@reports.example.net!10m"),
        adkim="s",
        aspf="r",
    )


@pytest.mark.parametrize(
    ("text", "policy"),
    [("v=DMARC1; p=none", DmarcPolicy.NONE), ("v=DMARC1;p=Reject", DmarcPolicy.REJECT)],
)
def test_defaults_apply(text: str, policy: DmarcPolicy) -> None:
    result = parse_dmarc(text)

    assert (result.policy, result.pct, result.adkim, result.aspf) == (policy, 100, "r", "r")
    assert result.subdomain_policy is None
    assert result.problems == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=DMARC1", "p tag missing"),
        ("v=DMARC1; rua=mailto:d@contoso.com", "p tag missing"),
        ("v=DMARC1; p=monitor", "p=monitor is not none, quarantine or reject"),
        ("v=DMARC1; p=reject; sp=block", "sp=block is not none, quarantine or reject"),
        ("v=DMARC1; p=reject; pct=150", "pct=150 is not 0-100"),
        ("v=DMARC1; p=reject; pct=-5", "pct=-5 is not 0-100"),
        ("v=DMARC1; p=reject; adkim=x", "adkim=x is not r or s"),
        ("v=DMARC1; p=reject; rua=dmarc@contoso.com", "rua: 'dmarc@contoso.com' is not a URI"),
        ("v=DMARC1; p=reject; p=none", "tag p appears more than once"),
        ("v=DMARC1; p reject", "malformed tag 'p reject'"),
    ],
)
def test_invalid_records_name_the_problem(text: str, problem: str) -> None:
    result = parse_dmarc(text)

    assert result.policy is DmarcPolicy.INVALID
    assert result.pct is None
    assert problem in result.problems


@pytest.mark.parametrize(
    ("records", "policy"),
    [
        (["v=DMARC1; p=reject; rua=mailto:d@contoso.com"], DmarcPolicy.REJECT),
        (["v=DMARC1; p=quarantine; pct=50"], DmarcPolicy.QUARANTINE),
        (["v=DMARC1; p=none", "some other text"], DmarcPolicy.NONE),
        (["v=DMARC1; p=reject", "v=DMARC1; p=none"], DmarcPolicy.INVALID),
        (["v=DMARC1; p=nothing"], DmarcPolicy.INVALID),
        (["some other text"], DmarcPolicy.MISSING),
        ([], DmarcPolicy.MISSING),
    ],
)
async def test_the_record_at_dmarc_subdomain_decides(
    dns_server: DnsServer, lookup: DnsLookup, records: list[str], policy: DmarcPolicy
) -> None:
    if records:
        dns_server.add_records({"_dmarc.contoso.com": {"TXT": records}})

    result = await check_dmarc(lookup, "contoso.com")

    assert result.policy is policy
    assert dns_server.asked("_dmarc.contoso.com", "TXT")


async def test_two_records_are_reported_as_such(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records(
        {"_dmarc.contoso.com": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}}
    )

    result = await check_dmarc(lookup, "contoso.com")

    assert result.problems == ("2 DMARC records",)
    assert len(result.records) == 2


async def test_a_failed_lookup_raises_instead_of_reading_as_missing(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.fail("_dmarc.contoso.com", Fault.SERVFAIL)

    with pytest.raises(DnsLookupError):
        await check_dmarc(lookup, "contoso.com")

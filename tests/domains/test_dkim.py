"""DKIM selectors: CNAMEs into Microsoft 365, key records, revoked keys."""

from __future__ import annotations

import pytest

from m365_emulator.dns.server import DnsServer, Fault
from m365_emulator.dns.zones import KEY, dkim_target, m365_domain
from m365_smtp_exporter.domains.dkim import DkimKey, DkimResult, check_dkim, key_state
from m365_smtp_exporter.domains.lookup import DnsLookup, DnsLookupError


@pytest.mark.parametrize(
    ("records", "state"),
    [
        ([f"v=DKIM1; k=rsa; p={KEY}"], DkimKey.PUBLISHED),
        ([f"k=rsa; p={KEY[:100]} {KEY[100:]}"], DkimKey.PUBLISHED),  # v= optional, FWS in p
        ([f"v=DKIM1;p={KEY};"], DkimKey.PUBLISHED),
        (["v=DKIM1; k=rsa; p="], DkimKey.REVOKED),
        (["v=DKIM1; p= ; n=revoked"], DkimKey.REVOKED),
        (["v=DKIM1; k=rsa"], DkimKey.INVALID),
        ([f"v=DKIM2; p={KEY}"], DkimKey.INVALID),
        ([f"k=rsa; v=DKIM1; p={KEY}"], DkimKey.INVALID),  # v= must come first
        (["v=DKIM1; p=not*base64"], DkimKey.INVALID),
        ([f"v=DKIM1; p={KEY}; p={KEY}"], DkimKey.INVALID),
        (["hello world"], DkimKey.INVALID),
        (["v=DKIM1; p=", f"v=DKIM1; p={KEY}"], DkimKey.PUBLISHED),
    ],
)
def test_key_records_are_classified(records: list[str], state: DkimKey) -> None:
    assert key_state(records) is state


async def test_microsoft_365_selectors_are_enabled_with_their_targets(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))

    results = [await check_dkim(lookup, "contoso.com", s) for s in ("selector1", "selector2")]

    assert results == [
        DkimResult(s, dkim_target("contoso.com", s), DkimKey.PUBLISHED)
        for s in ("selector1", "selector2")
    ]
    assert all(result.enabled for result in results)


async def test_the_newer_dkim_mail_microsoft_target_works_the_same(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    target = "selector1-contoso-com._domainkey.contoso.n-v1.dkim.mail.microsoft"
    dns_server.add_records(
        {
            "selector1._domainkey.contoso.com": {"CNAME": f"{target}."},
            target: {"TXT": f"v=DKIM1; k=rsa; p={KEY}"},
        }
    )

    result = await check_dkim(lookup, "contoso.com", "selector1")

    assert result == DkimResult("selector1", target, DkimKey.PUBLISHED)
    assert result.enabled


async def test_a_cname_to_an_empty_key_is_disabled(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    dns_server.add_records({dkim_target("contoso.com", "selector2"): {"TXT": "v=DKIM1; p="}})

    result = await check_dkim(lookup, "contoso.com", "selector2")

    assert result.cname_target == dkim_target("contoso.com", "selector2")
    assert result.key is DkimKey.REVOKED
    assert not result.enabled


async def test_a_cname_whose_target_has_no_key_yet_counts_as_enabled(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(m365_domain("contoso.com", key=None))

    result = await check_dkim(lookup, "contoso.com", "selector1")

    assert result.key is DkimKey.UNRESOLVED
    assert result.enabled


async def test_a_missing_selector_is_absent(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records(m365_domain("contoso.com"))

    result = await check_dkim(lookup, "contoso.com", "s2048")

    assert result == DkimResult("s2048", None, DkimKey.ABSENT)
    assert not result.enabled


@pytest.mark.parametrize(
    ("record", "enabled"),
    [(f"v=DKIM1; k=rsa; p={KEY}", True), ("v=DKIM1; k=rsa; p=", False), ("junk", False)],
)
async def test_a_key_published_directly_needs_no_cname(
    dns_server: DnsServer, lookup: DnsLookup, record: str, enabled: bool
) -> None:
    dns_server.add_records({"mail2024._domainkey.contoso.com": {"TXT": record}})

    result = await check_dkim(lookup, "contoso.com", "mail2024")

    assert result.cname_target is None
    assert result.enabled is enabled


@pytest.mark.parametrize("where", ["selector", "target"])
async def test_a_failed_lookup_raises_instead_of_reading_as_absent(
    dns_server: DnsServer, lookup: DnsLookup, where: str
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    name = (
        "selector1._domainkey.contoso.com"
        if where == "selector"
        else dkim_target("contoso.com", "selector1")
    )
    dns_server.fail(name, Fault.SERVFAIL)

    with pytest.raises(DnsLookupError):
        await check_dkim(lookup, "contoso.com", "selector1")

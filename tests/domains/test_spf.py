"""SPF evaluation against the loopback DNS server: includes, limits, loops, failures."""

from __future__ import annotations

import pytest

from m365_emulator.dns.server import DnsServer, Fault, ZoneData
from m365_emulator.dns.zones import MICROSOFT_LOOKUPS
from m365_smtp_exporter.domains.lookup import DnsLookup, DnsLookupError
from m365_smtp_exporter.domains.spf import LOOKUP_LIMIT, check_spf
from m365_smtp_exporter.domains.spf_syntax import Qualifier

M365_INCLUDE = "include:spf.protection.outlook.com"


def spf(records: dict[str, str]) -> ZoneData:
    return {name: {"TXT": text} for name, text in records.items()}


async def test_a_microsoft_365_record_is_valid(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records(
        {"contoso.com": {"TXT": ["MS=ms12345678", f"v=spf1 {M365_INCLUDE} -all"]}}
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.problems == ()
    assert result.valid
    assert result.records == (f"v=spf1 {M365_INCLUDE} -all",)
    assert result.lookups == MICROSOFT_LOOKUPS
    assert result.void_lookups == 0
    assert result.includes_microsoft
    assert result.all_qualifier is Qualifier.FAIL
    assert dns_server.asked("spfd.protection.outlook.com", "TXT")  # followed to the bottom


async def test_no_spf_record_is_not_valid(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records({"contoso.com": {"TXT": "google-site-verification=abc"}})

    for domain in ("contoso.com", "nowhere.contoso.com"):
        result = await check_spf(lookup, domain)

        assert not result.present
        assert not result.valid
        assert (result.lookups, result.includes_microsoft) == (0, False)
        assert result.problems == ("no SPF record",)


async def test_two_spf_records_are_a_permerror(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records(
        {"contoso.com": {"TXT": [f"v=spf1 {M365_INCLUDE} -all", "v=spf1 mx -all"]}}
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.present
    assert not result.valid
    assert len(result.records) == 2
    assert result.problems == ("2 SPF records (permerror)",)


def include_chain(depth: int) -> ZoneData:
    """contoso.com -> Microsoft plus a chain of `depth` records, each with an `a` term."""
    records = {"contoso.com": f"v=spf1 {M365_INCLUDE} include:chain1.contoso.net -all"}
    for level in range(1, depth + 1):
        below = f" include:chain{level + 1}.contoso.net" if level < depth else ""
        records[f"chain{level}.contoso.net"] = f"v=spf1 a:host.contoso.net{below} -all"
    return {**spf(records), "host.contoso.net": {"A": "192.0.2.10"}}


@pytest.mark.parametrize("depth", [4, 5])
async def test_lookups_are_counted_through_nested_includes(
    dns_server: DnsServer, lookup: DnsLookup, depth: int
) -> None:
    dns_server.add_records(include_chain(depth))

    result = await check_spf(lookup, "contoso.com")

    expected = MICROSOFT_LOOKUPS + 2 * depth  # each level: its include and its `a`
    assert result.lookups == expected
    assert result.includes_microsoft
    assert result.valid is (expected <= LOOKUP_LIMIT)
    if expected > LOOKUP_LIMIT:
        assert result.problems == (f"{expected} DNS lookups (limit {LOOKUP_LIMIT})",)


async def test_a_target_included_twice_counts_twice(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf(
            {
                "contoso.com": "v=spf1 include:a.contoso.net include:b.contoso.net -all",
                "a.contoso.net": f"v=spf1 {M365_INCLUDE} -all",
                "b.contoso.net": f"v=spf1 {M365_INCLUDE} -all",
            }
        )
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.lookups == 2 + 2 * MICROSOFT_LOOKUPS
    assert result.valid


@pytest.mark.parametrize(
    ("records", "loop"),
    [
        (
            {
                "contoso.com": "v=spf1 include:a.contoso.net -all",
                "a.contoso.net": "v=spf1 include:b.contoso.net -all",
                "b.contoso.net": "v=spf1 ip4:192.0.2.1 include:a.contoso.net -all",
            },
            "include loop: contoso.com -> a.contoso.net -> b.contoso.net -> a.contoso.net",
        ),
        (
            {"contoso.com": "v=spf1 include:contoso.com -all"},
            "include loop: contoso.com -> contoso.com",
        ),
        (
            {
                "contoso.com": "v=spf1 redirect=_spf.contoso.com",
                "_spf.contoso.com": "v=spf1 redirect=contoso.com",
            },
            "redirect loop: contoso.com -> _spf.contoso.com -> contoso.com",
        ),
    ],
    ids=["through-two-records", "self-include", "redirect"],
)
async def test_include_loops_are_detected(
    dns_server: DnsServer, lookup: DnsLookup, records: dict[str, str], loop: str
) -> None:
    dns_server.add_records(spf(records))

    result = await check_spf(lookup, "contoso.com")

    assert not result.valid
    assert result.problems == (loop,)
    assert len(dns_server.asked("contoso.com", "TXT")) == 1


async def test_a_record_without_microsoft_is_valid_but_flagged(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf(
            {
                "contoso.com": "v=spf1 include:_spf.mailhost.net ~all",
                "_spf.mailhost.net": "v=spf1 ip4:203.0.113.0/24 -all",
            }
        )
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.valid
    assert not result.includes_microsoft
    assert result.all_qualifier is Qualifier.SOFTFAIL
    assert result.lookups == 1


async def test_microsoft_is_found_behind_a_redirect_and_its_all_applies(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf(
            {
                "contoso.com": "v=spf1 ip4:192.0.2.1 redirect=_spf.contoso.com",
                "_spf.contoso.com": "v=spf1 include:_inner.contoso.com ~all",
                "_inner.contoso.com": f"v=spf1 {M365_INCLUDE} ?all",
            }
        )
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.valid
    assert result.includes_microsoft
    assert result.all_qualifier is Qualifier.SOFTFAIL  # the redirect target's own `all`
    assert result.lookups == 2 + MICROSOFT_LOOKUPS


async def test_redirect_is_ignored_when_the_record_has_all(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf({"contoso.com": f"v=spf1 {M365_INCLUDE} redirect=_spf.contoso.com -all"})
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.valid
    assert result.lookups == MICROSOFT_LOOKUPS
    assert not dns_server.asked("_spf.contoso.com")


async def test_an_include_without_spf_record_is_a_permerror_and_void(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf(
            {
                "contoso.com": f"v=spf1 {M365_INCLUDE} include:gone.contoso.net "
                "include:other.contoso.net -all",
                "other.contoso.net": "not spf",
            }
        )
    )

    result = await check_spf(lookup, "contoso.com")

    assert not result.valid
    assert result.void_lookups == 1  # other.contoso.net answers, just not with SPF
    assert set(result.problems) == {
        "include:gone.contoso.net has no SPF record",
        "include:other.contoso.net has no SPF record",
    }


@pytest.mark.parametrize("void", [2, 3])
async def test_void_lookups_over_two_are_a_permerror(
    dns_server: DnsServer, lookup: DnsLookup, void: int
) -> None:
    terms = " ".join(f"a:nx{i}.contoso.net" for i in range(void))
    dns_server.add_records(
        {
            "contoso.com": {
                "TXT": f"v=spf1 {terms} mx exists:up.contoso.net -all",
                "MX": "10 mx.contoso.com.",
            },
            "nx0.contoso.net": {"MX": "10 mx.contoso.net."},  # exists, but has no address
            "up.contoso.net": {"A": "127.0.0.2"},
        }
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.void_lookups == void
    assert result.valid is (void <= 2)
    if void > 2:
        assert result.problems == (f"{void} void lookups (limit 2)",)


async def test_mx_with_more_than_ten_hosts_is_a_permerror(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    hosts = [f"{10 + i} mx{i}.contoso.com." for i in range(11)]
    dns_server.add_records({"contoso.com": {"TXT": f"v=spf1 mx {M365_INCLUDE} -all", "MX": hosts}})

    result = await check_spf(lookup, "contoso.com")

    assert not result.valid
    assert result.problems == ("mx:contoso.com has 11 hosts (limit 10)",)


async def test_macro_terms_are_counted_but_not_followed(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf({"contoso.com": f"v=spf1 exists:%{{i}}._spf.contoso.com ptr {M365_INCLUDE} -all"})
    )

    result = await check_spf(lookup, "contoso.com")

    assert result.valid
    assert result.lookups == 2 + MICROSOFT_LOOKUPS
    asked = {query.name for query in dns_server.queries}
    assert asked == {"contoso.com", "spf.protection.outlook.com", "spfd.protection.outlook.com"}


async def test_a_syntax_error_in_an_included_record_is_reported_with_its_domain(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    dns_server.add_records(
        spf(
            {
                "contoso.com": f"v=spf1 {M365_INCLUDE} include:_spf.contoso.com -all",
                "_spf.contoso.com": "v=spf1 ip4:192.0.2.999 -all",
            }
        )
    )

    result = await check_spf(lookup, "contoso.com")

    assert not result.valid
    assert result.problems == ("_spf.contoso.com: ip4:192.0.2.999: invalid IPv4 address",)


async def test_plus_all_parses_and_is_reported(dns_server: DnsServer, lookup: DnsLookup) -> None:
    dns_server.add_records(spf({"contoso.com": f"v=spf1 {M365_INCLUDE} +all"}))

    result = await check_spf(lookup, "contoso.com")

    assert result.valid
    assert result.all_qualifier is Qualifier.PASS


@pytest.mark.parametrize("failing", ["contoso.com", "spfd.protection.outlook.com"])
async def test_a_failed_lookup_anywhere_in_the_tree_raises(
    dns_server: DnsServer, lookup: DnsLookup, failing: str
) -> None:
    dns_server.add_records(spf({"contoso.com": f"v=spf1 {M365_INCLUDE} -all"}))
    dns_server.fail(failing, Fault.SERVFAIL)

    with pytest.raises(DnsLookupError) as failure:
        await check_spf(lookup, "contoso.com")

    assert failure.value.name == failing


async def test_a_long_record_in_several_strings_is_read_whole(
    dns_server: DnsServer, lookup: DnsLookup
) -> None:
    networks = " ".join(f"ip4:198.51.100.{i}" for i in range(30))
    text = f"v=spf1 {networks} {M365_INCLUDE} -all"
    dns_server.add_records(spf({"contoso.com": text}))

    result = await check_spf(lookup, "contoso.com")

    assert len(text) > 255
    assert result.valid
    assert result.includes_microsoft

"""SPF record syntax: record selection, terms, qualifiers and domain-specs."""

from __future__ import annotations

import pytest

from m365_smtp_exporter.domains.spf_syntax import (
    Qualifier,
    Term,
    is_spf_record,
    parse_spf,
    valid_domain_spec,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=spf1 -all", True),
        ("v=spf1", True),
        ("V=SPF1 include:spf.protection.outlook.com ~all", True),
        ("v=spf10 -all", False),
        ("v=spf2.0/pra -all", False),
        (" v=spf1 -all", False),
        ("spf1 -all", False),
        ("google-site-verification=abc", False),
    ],
)
def test_only_version_spf1_records_are_spf(text: str, expected: bool) -> None:
    assert is_spf_record(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1 include:spf.protection.outlook.com -all",
        "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ip6:2001:db8::/32 ip6:2001:db8::1 ~all",
        "v=spf1 a mx a:mail.contoso.com/28 mx:contoso.com//64 a/24//64 ptr ptr:contoso.com ?all",
        "v=spf1 exists:%{i}._spf.contoso.com include:%{d2}.example.net -all",
        "v=spf1 include:_spf.contoso.com. redirect=_spf.fabrikam.com exp=explain.contoso.com",
        "v=spf1 +mx -include:bad.example.net ~a ?ip4:10.0.0.1 -all",
        "v=spf1 ra=postmaster rp=100 rr=e:f -all",  # unknown modifiers are ignored
        "v=spf1   include:spf.protection.outlook.com   -all  ",
        "v=spf1 exists:%{l1r+-}.%{d}.spf.contoso.com exists:%%%_%-.%{h} -all",
    ],
)
def test_well_formed_records_parse_without_problems(text: str) -> None:
    record = parse_spf(text)

    assert record.problems == ()
    assert record.valid


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=spf1 include -all", "include: include needs a valid domain"),
        ("v=spf1 include: -all", "include:: include needs a valid domain"),
        ("v=spf1 include:localhost -all", "include needs a valid domain"),
        ("v=spf1 include:contoso..com -all", "include needs a valid domain"),
        ("v=spf1 include:contoso.123 -all", "include needs a valid domain"),
        ("v=spf1 exists -all", "exists needs a valid domain"),
        ("v=spf1 ip4:192.0.2.300 -all", "invalid IPv4 address"),
        ("v=spf1 ip4:2001:db8::1 -all", "invalid IPv4 address"),
        ("v=spf1 ip4:192.0.2.0/33 -all", "invalid prefix length"),
        ("v=spf1 ip4:192.0.2.0/ -all", "invalid prefix length"),
        ("v=spf1 ip6:192.0.2.1 -all", "invalid IPv6 address"),
        ("v=spf1 ip6:2001:db8::/129 -all", "invalid prefix length"),
        ("v=spf1 ip4 -all", "ip4 needs an address"),
        ("v=spf1 a/33 -all", "invalid prefix length"),
        ("v=spf1 mx//129 -all", "invalid prefix length"),
        ("v=spf1 ptr/24 -all", "invalid arguments"),
        ("v=spf1 all:contoso.com", "all takes no arguments"),
        ("v=spf1 include:spf.protection.outlook.com -alll", "-alll: unknown mechanism"),
        ("v=spf1 ipv4:192.0.2.1 -all", "unknown mechanism"),
        ("v=spf1 ~~all", "not a mechanism or modifier"),
        (
            "v=spf1 redirect=a.contoso.com redirect=b.contoso.com",
            "redirect= appears more than once",
        ),
        ("v=spf1 exp=a.contoso.com exp=b.contoso.com -all", "exp= appears more than once"),
        ("v=spf1 redirect=", "invalid domain"),
        ("v=spf1 exists:%{x}.contoso.com -all", "exists needs a valid domain"),
        ("v=spf1 exists:100%.contoso.com -all", "exists needs a valid domain"),
        ("v=spf1 include:contoso.com -all ünknown", "non-ASCII"),
    ],
)
def test_malformed_records_name_the_problem(text: str, problem: str) -> None:
    record = parse_spf(text)

    assert not record.valid
    assert any(problem in found for found in record.problems), record.problems


@pytest.mark.parametrize(
    ("text", "qualifier"),
    [
        ("v=spf1 include:spf.protection.outlook.com -all", Qualifier.FAIL),
        ("v=spf1 include:spf.protection.outlook.com ~all", Qualifier.SOFTFAIL),
        ("v=spf1 ?all", Qualifier.NEUTRAL),
        ("v=spf1 +all", Qualifier.PASS),
        ("v=spf1 all", Qualifier.PASS),
        ("v=spf1 include:spf.protection.outlook.com", None),
        ("v=spf1 redirect=_spf.contoso.com", None),
    ],
)
def test_the_all_qualifier_is_read(text: str, qualifier: Qualifier | None) -> None:
    assert parse_spf(text).all_qualifier is qualifier


def test_terms_carry_names_qualifiers_and_lower_case_targets() -> None:
    record = parse_spf(
        "v=spf1 -Include:SPF.Protection.Outlook.com. a mx:Contoso.com/24 ip4:192.0.2.1 "
        "redirect=_SPF.contoso.com"
    )

    assert record.terms == (
        Term("include", Qualifier.FAIL, "spf.protection.outlook.com"),
        Term("a", Qualifier.PASS),
        Term("mx", Qualifier.PASS, "contoso.com"),
        Term("ip4", Qualifier.PASS),
        Term("redirect", None, "_spf.contoso.com"),
    )
    assert [t.queries_dns for t in record.terms] == [True, True, True, False, True]


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("contoso.com", True),
        ("contoso.com.", True),
        ("_spf.contoso.com", True),
        ("xn--bcher-kva.example", True),
        ("%{d}", True),
        ("%{ir}.%{v}._spf.%{d2}", True),
        ("_spf.%{d}.example.net", True),
        ("contoso", False),
        ("contoso.c0m1", True),
        ("contoso.123", False),
        ("contoso.-com", False),
        ("", False),
        ("%{z}.contoso.com", False),
        ("%{d", False),
        ("a" * 64 + ".contoso.com", False),
    ],
)
def test_domain_specs(spec: str, valid: bool) -> None:
    assert valid_domain_spec(spec) is valid

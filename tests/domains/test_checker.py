"""DomainChecker end to end: loopback DNS in, m365_domain_* samples out."""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import dns.resolver
import pytest

from m365_emulator.dns.server import DnsServer, Fault, ZoneData
from m365_emulator.dns.zones import (
    MICROSOFT_LOOKUPS,
    MICROSOFT_SPF,
    SELECTORS,
    dkim_target,
    m365_domain,
)
from m365_smtp_exporter.domains import Check, DomainChecker
from m365_smtp_exporter.domains.lookup import make_resolver
from tests.support.clock import ManualClock
from tests.support.dns_checks import Samples, checks_config, closed_port, domain_samples, sample

CHECKS = [check.value for check in Check]


def successes(domain: str, *, failed: tuple[str, ...] = ()) -> Samples:
    result: Samples = {}
    for check in CHECKS:
        result |= sample("check_success", check not in failed, domain=domain, check=check)
    return result


def good_posture(domain: str) -> Samples:
    """What a domain set up like `m365_domain` exports."""
    result = (
        sample("spf_valid", 1, domain=domain)
        | sample("spf_lookups", MICROSOFT_LOOKUPS, domain=domain)
        | sample("spf_void_lookups", 0, domain=domain)
        | sample("spf_includes_microsoft", 1, domain=domain)
        | sample("spf_all_qualifier_info", 1, domain=domain, qualifier="fail")
        | sample("dmarc_policy_info", 1, domain=domain, policy="reject")
        | sample("dmarc_pct", 100, domain=domain)
    )
    for selector in SELECTORS:
        target = dkim_target(domain, selector)
        result |= sample("dkim_enabled", 1, domain=domain, selector=selector)
        result |= sample("dkim_cname_info", 1, domain=domain, selector=selector, target=target)
    return result


def worse_posture(domain: str) -> ZoneData:
    """`m365_domain` with every verdict changed but the same names in place."""
    return m365_domain(
        domain,
        spf="v=spf1 a include:spf.protection.outlook.com ~all",
        dmarc="v=DMARC1; p=none",
        key="",
    )


VERDICTS = {
    "spf": ("spf_valid", "spf_lookups", "spf_void_lookups", "spf_all_qualifier_info"),
    "dkim": ("dkim_enabled", "dkim_cname_info"),
    "dmarc": ("dmarc_policy_info", "dmarc_pct"),
}


def only(samples: Samples, *names: str) -> Samples:
    wanted = {f"m365_domain_{name}" for name in names}
    return {key: value for key, value in samples.items() if key[0] in wanted}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_750_000_000.0)


async def test_a_microsoft_365_domain_exports_a_good_posture(
    dns_server: DnsServer, clock: ManualClock
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    changes: list[int] = []
    config = checks_config(dns_server.port, "Contoso.com.")
    checker = DomainChecker(config, clock=clock, on_change=lambda: changes.append(1))

    assert domain_samples(checker) == {}
    assert await checker.run() is True

    assert domain_samples(checker) == good_posture("contoso.com") | successes("contoso.com") | (
        sample("last_check_timestamp_seconds", clock(), domain="contoso.com")
    )
    assert changes == [1]


async def test_missing_records_read_as_missing_with_the_checks_succeeding(
    dns_server: DnsServer, clock: ManualClock
) -> None:
    dns_server.add_records({"contoso.com": {"TXT": "MS=ms1234", "MX": "0 mx.contoso.com."}})
    checker = DomainChecker(checks_config(dns_server.port, "contoso.com"), clock=clock)

    assert await checker.run() is True

    assert domain_samples(checker) == successes("contoso.com") | (
        sample("spf_valid", 0, domain="contoso.com")
        | sample("spf_lookups", 0, domain="contoso.com")
        | sample("spf_void_lookups", 0, domain="contoso.com")
        | sample("spf_includes_microsoft", 0, domain="contoso.com")
        | sample("dkim_enabled", 0, domain="contoso.com", selector="selector1")
        | sample("dkim_enabled", 0, domain="contoso.com", selector="selector2")
        | sample("dmarc_policy_info", 1, domain="contoso.com", policy="missing")
        | sample("last_check_timestamp_seconds", clock(), domain="contoso.com")
    )


async def test_posture_problems_show_in_the_verdicts(
    dns_server: DnsServer, clock: ManualClock
) -> None:
    dns_server.add_records(
        m365_domain(
            "contoso.com",
            spf="v=spf1 include:_spf.mailhost.net ?all",
            dmarc="v=DMARC1; p=quarantine; pct=30",
        )
    )
    dns_server.add_records(
        {
            "_spf.mailhost.net": {"TXT": "v=spf1 ip4:203.0.113.0/24 -all"},
            dkim_target("contoso.com", "selector2"): {"TXT": "v=DKIM1; k=rsa; p="},
        }
    )
    dns_server.add_records(m365_domain("fabrikam.com", dmarc="v=DMARC1; p=none"))
    dns_server.add_records(
        {
            "fabrikam.com": {
                "TXT": ["v=spf1 include:spf.protection.outlook.com -all", "v=spf1 mx"]
            },
            "_dmarc.fabrikam.com": {"TXT": "v=DMARC1; p=off"},
        }
    )
    dns_server.add_records(
        m365_domain("northwind.com", spf="v=spf1 include:spf.protection.outlook.com")
    )
    names = ["contoso.com", "fabrikam.com", "northwind.com"]
    checker = DomainChecker(checks_config(dns_server.port, *names), clock=clock)

    assert await checker.run() is True

    verdicts = only(
        domain_samples(checker),
        "spf_valid",
        "spf_includes_microsoft",
        "spf_all_qualifier_info",
        "dkim_enabled",
        "dmarc_policy_info",
        "dmarc_pct",
    )
    assert verdicts == (
        sample("spf_valid", 1, domain="contoso.com")
        | sample("spf_includes_microsoft", 0, domain="contoso.com")
        | sample("spf_all_qualifier_info", 1, domain="contoso.com", qualifier="neutral")
        | sample("dkim_enabled", 1, domain="contoso.com", selector="selector1")
        | sample("dkim_enabled", 0, domain="contoso.com", selector="selector2")
        | sample("dmarc_policy_info", 1, domain="contoso.com", policy="quarantine")
        | sample("dmarc_pct", 30, domain="contoso.com")
        | sample("spf_valid", 0, domain="fabrikam.com")  # two SPF records
        | sample("spf_includes_microsoft", 0, domain="fabrikam.com")
        | sample("dkim_enabled", 1, domain="fabrikam.com", selector="selector1")
        | sample("dkim_enabled", 1, domain="fabrikam.com", selector="selector2")
        | sample("dmarc_policy_info", 1, domain="fabrikam.com", policy="invalid")
        | only(good_posture("northwind.com"), "spf_valid", "spf_includes_microsoft")
        | sample("spf_all_qualifier_info", 1, domain="northwind.com", qualifier="none")
        | only(good_posture("northwind.com"), "dkim_enabled", "dmarc_policy_info", "dmarc_pct")
    )


@pytest.mark.parametrize(
    ("dmarc", "policy", "pct"),
    [
        ("v=DMARC1; p=none; rua=mailto:d@contoso.com", "none", 100),
        ("v=DMARC1; p=quarantine; pct=10", "quarantine", 10),
        ("v=DMARC1; p=reject", "reject", 100),
        ("v=DMARC1; p=quarantine; pct=200", "invalid", None),
    ],
)
async def test_dmarc_policy_and_pct(
    dns_server: DnsServer, dmarc: str, policy: str, pct: int | None
) -> None:
    dns_server.add_records(m365_domain("contoso.com", dmarc=dmarc))
    checker = DomainChecker(checks_config(dns_server.port, "contoso.com"))

    await checker.run()

    expected = sample("dmarc_policy_info", 1, domain="contoso.com", policy=policy)
    if pct is not None:
        expected |= sample("dmarc_pct", pct, domain="contoso.com")
    assert only(domain_samples(checker), "dmarc_policy_info", "dmarc_pct") == expected


async def test_only_the_configured_selectors_are_checked(dns_server: DnsServer) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    config = checks_config(dns_server.port, "contoso.com", dkim_selectors=["selector2", "s2024"])
    checker = DomainChecker(config)

    await checker.run()

    assert only(domain_samples(checker), "dkim_enabled") == (
        sample("dkim_enabled", 1, domain="contoso.com", selector="selector2")
        | sample("dkim_enabled", 0, domain="contoso.com", selector="s2024")
    )
    assert not dns_server.asked("selector1._domainkey.contoso.com")


@pytest.mark.parametrize(
    ("failing", "fault", "check"),
    [
        ("contoso.com", Fault.SERVFAIL, "spf"),
        ("spfd.protection.outlook.com", Fault.TIMEOUT, "spf"),
        ("selector2._domainkey.contoso.com", Fault.SERVFAIL, "dkim"),
        (dkim_target("contoso.com", "selector1"), Fault.TIMEOUT, "dkim"),
        ("_dmarc.contoso.com", Fault.SERVFAIL, "dmarc"),
        ("_dmarc.contoso.com", Fault.TIMEOUT, "dmarc"),
    ],
)
async def test_a_failed_lookup_keeps_the_previous_verdict(
    dns_server: DnsServer, clock: ManualClock, failing: str, fault: Fault, check: str
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    runs: list[int] = []
    config = checks_config(dns_server.port, "contoso.com", timeout=0.5)
    checker = DomainChecker(config, clock=clock, on_change=lambda: runs.append(1))
    assert await checker.run() is True
    before = domain_samples(checker)

    # Every verdict gets worse, but the server fails for one name: only that check fails
    # and keeps its verdict; the others follow the new records.
    dns_server.set_records({**MICROSOFT_SPF, **worse_posture("contoso.com")})
    dns_server.fail(failing, fault)
    clock.advance(3600)
    assert await checker.run() is False
    after = domain_samples(checker)

    assert runs == [1, 1]
    assert only(after, "check_success") == successes("contoso.com", failed=(check,))
    assert only(after, "last_check_timestamp_seconds") == sample(
        "last_check_timestamp_seconds", clock(), domain="contoso.com"
    )
    assert only(after, *VERDICTS[check]) == only(before, *VERDICTS[check])
    for other in (name for name in VERDICTS if name != check):
        assert only(after, *VERDICTS[other]) != only(before, *VERDICTS[other])
    assert checker.statuses["contoso.com"].success == {c: c.value != check for c in Check}

    # Once the lookups work again, the kept verdict follows DNS too.
    dns_server.heal()
    assert await checker.run() is True
    healed = domain_samples(checker)
    assert only(healed, *VERDICTS[check]) != only(before, *VERDICTS[check])
    assert only(healed, "check_success") == successes("contoso.com")


async def test_a_check_that_never_completed_has_no_verdict(
    dns_server: DnsServer, clock: ManualClock
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    dns_server.fail("_dmarc.contoso.com", Fault.SERVFAIL)
    checker = DomainChecker(checks_config(dns_server.port, "contoso.com"), clock=clock)

    assert await checker.run() is False

    samples = domain_samples(checker)
    assert only(samples, "check_success") == successes("contoso.com", failed=("dmarc",))
    assert only(samples, "dmarc_policy_info", "dmarc_pct") == {}
    assert only(samples, "spf_valid") == sample("spf_valid", 1, domain="contoso.com")


async def test_domains_are_checked_concurrently_and_independently(
    dns_server: DnsServer, clock: ManualClock
) -> None:
    names = ["contoso.com", "fabrikam.com", "northwind.com"]
    for name in names:
        dns_server.add_records(m365_domain(name))
    dns_server.fail("fabrikam.com", Fault.TIMEOUT)
    dns_server.fail("_dmarc.northwind.com", Fault.TIMEOUT)
    checker = DomainChecker(checks_config(dns_server.port, *names, timeout=1.0), clock=clock)

    assert await checker.run() is False

    samples = domain_samples(checker)
    assert only(samples, "check_success") == (
        successes("contoso.com")
        | successes("fabrikam.com", failed=("spf",))
        | successes("northwind.com", failed=("dmarc",))
    )
    assert only(samples, "spf_valid") == (
        sample("spf_valid", 1, domain="contoso.com")
        | sample("spf_valid", 1, domain="northwind.com")
    )


async def test_an_unreachable_nameserver_fails_every_check_without_verdicts(
    clock: ManualClock,
) -> None:
    checker = DomainChecker(checks_config(closed_port(), "contoso.com", timeout=1.0), clock=clock)

    assert await checker.run() is False

    assert domain_samples(checker) == successes("contoso.com", failed=tuple(CHECKS)) | sample(
        "last_check_timestamp_seconds", clock(), domain="contoso.com"
    )


async def test_an_unusable_resolver_setting_fails_the_checks_instead_of_raising(
    clock: ManualClock,
) -> None:
    config = checks_config(53, "contoso.com").model_copy(update={"nameservers": ["dns.local"]})
    changes: list[int] = []
    checker = DomainChecker(config, clock=clock, on_change=lambda: changes.append(1))

    assert await checker.run() is False

    assert only(domain_samples(checker), "check_success") == successes(
        "contoso.com", failed=tuple(CHECKS)
    )
    assert changes == [1]


async def test_an_injected_resolver_is_used_instead_of_the_configured_one(
    dns_server: DnsServer,
) -> None:
    dns_server.add_records(m365_domain("contoso.com"))
    resolver = make_resolver(checks_config(dns_server.port))
    config = checks_config(closed_port(), "contoso.com")
    checker = DomainChecker(config, resolver=resolver)

    assert await checker.run() is True

    assert only(domain_samples(checker), "spf_valid") == sample(
        "spf_valid", 1, domain="contoso.com"
    )


async def test_no_domains_means_no_series(dns_server: DnsServer) -> None:
    checker = DomainChecker(checks_config(dns_server.port))

    assert await checker.run() is True

    assert domain_samples(checker) == {}
    assert dns_server.queries == []


class CrashingResolver(dns.asyncresolver.Resolver):
    """A resolver with a bug: every query raises something no DNS error looks like."""

    async def resolve(self, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        raise RuntimeError("resolver bug")


async def test_an_unexpected_error_fails_the_checks_instead_of_raising(clock: ManualClock) -> None:
    config = checks_config(53, "contoso.com", "fabrikam.com")
    checker = DomainChecker(config, resolver=CrashingResolver(configure=False), clock=clock)

    assert await checker.run() is False

    assert only(domain_samples(checker), "check_success") == successes(
        "contoso.com", failed=tuple(CHECKS)
    ) | successes("fabrikam.com", failed=tuple(CHECKS))

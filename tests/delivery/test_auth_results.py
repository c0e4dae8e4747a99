"""Authentication-Results parsing: Exchange Online's form, RFC 8601's form, and odd input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365_smtp_exporter.delivery.auth_results import (
    CHECKS,
    RESULTS,
    UNKNOWN_RESULT,
    first_authentication_results,
    parse_authentication_results,
)

EXCHANGE = (
    "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=contoso.com; dkim=pass (signature was "
    "verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;"
    "compauth=pass reason=100"
)


def test_exchange_online_header() -> None:
    assert parse_authentication_results(EXCHANGE) == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
        "compauth": "pass",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=contoso.com; dkim=fail (body hash "
            "did not verify) header.d=contoso.com;dmarc=fail action=quarantine "
            "header.from=contoso.com;compauth=fail reason=000",
            {"spf": "fail", "dkim": "fail", "dmarc": "fail", "compauth": "fail"},
        ),
        (
            "spf=softfail (sender IP is 198.51.100.2) smtp.mailfrom=fabrikam.com; dkim=none "
            "(message not signed) header.d=none;dmarc=bestguesspass action=none "
            "header.from=fabrikam.com;compauth=softpass reason=201",
            {"spf": "softfail", "dkim": "none", "dmarc": "bestguesspass", "compauth": "softpass"},
        ),
        (
            "spf=TempError (sender IP is 1.2.3.4) smtp.mailfrom=x.example; dkim=PermError "
            "(no key for signature) header.d=x.example",
            {"spf": "temperror", "dkim": "permerror"},
        ),
        (  # RFC 8601 form with authserv-id and version
            "mx.example.net 1; spf=neutral smtp.mailfrom=a.example; dkim/1=pass "
            "header.i=@a.example",
            {"spf": "neutral", "dkim": "pass"},
        ),
        (  # folded over lines, spaces around '='
            "spf = pass\r\n\t(sender IP is 1.2.3.4)\r\n smtp.mailfrom=contoso.com;\r\n dmarc= fail",
            {"spf": "pass", "dmarc": "fail"},
        ),
        (  # comments with ';', '=' and nesting, a quoted value with ';'
            'spf=pass (a; dkim=fail (nested; x=y)) smtp.mailfrom="we;ird"; dkim=pass',
            {"spf": "pass", "dkim": "pass"},
        ),
        (  # the first verdict of a method wins; other methods are ignored
            "dkim=pass header.d=contoso.com; dkim=fail header.d=other.example; arc=pass; "
            "iprev=pass policy.iprev=1.2.3.4",
            {"dkim": "pass"},
        ),
        ("spf=weird smtp.mailfrom=contoso.com", {"spf": UNKNOWN_RESULT}),
        ("mx.example.net; none", {}),
        ("", {}),
        ("spf=", {}),
        ("((((spf=pass", {}),
    ],
)
def test_header_variants(header: str, expected: dict[str, str]) -> None:
    assert parse_authentication_results(header) == expected


def test_first_header_is_taken_and_lookalikes_are_not() -> None:
    headers = [
        {"name": "ARC-Authentication-Results", "value": "i=1; spf=fail"},
        {"name": "Authentication-Results", "value": "spf=pass"},
        {"name": "authentication-results", "value": "spf=fail"},
    ]
    assert first_authentication_results(headers) == "spf=pass"
    assert first_authentication_results([{"name": "Subject", "value": "x"}]) is None
    assert first_authentication_results([{"name": "Authentication-Results"}]) is None


@given(st.text(max_size=300))
def test_any_text_gives_bounded_labels(header: str) -> None:
    verdicts = parse_authentication_results(header)
    assert set(verdicts) <= set(CHECKS)
    assert set(verdicts.values()) <= RESULTS | {UNKNOWN_RESULT}


@given(
    st.lists(
        st.tuples(st.sampled_from(CHECKS), st.sampled_from(sorted(RESULTS))),
        min_size=1,
        max_size=4,
        unique_by=lambda pair: pair[0],
    ),
    st.sampled_from([";", "; ", " ;\r\n "]),
)
def test_generated_headers_round_trip(pairs: list[tuple[str, str]], separator: str) -> None:
    header = separator.join(f"{check}={result} (comment; {check}=x) k=v" for check, result in pairs)
    assert parse_authentication_results(header) == dict(pairs)

"""SPF record syntax (RFC 7208 section 12): terms, qualifiers and domain-specs."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name


class Qualifier(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"


_QUALIFIERS = {
    "": Qualifier.PASS,
    "+": Qualifier.PASS,
    "-": Qualifier.FAIL,
    "~": Qualifier.SOFTFAIL,
    "?": Qualifier.NEUTRAL,
}
# Terms that make the evaluator query DNS; RFC 7208 4.6.4 allows 10 of them in all.
DNS_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})

_VERSION = re.compile(r"^v=spf1(?: |$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_DIRECTIVE = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$")
_TARGET_AND_CIDR = re.compile(r"^(?::([^/]*))?(?:/(\d+))?(?://(\d+))?$")
_MACRO_EXPAND = r"(?:%\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%%|%_|%-)"
_MACRO_STRING = re.compile(rf"^(?:{_MACRO_EXPAND}|[\x21-\x24\x26-\x7e])*$", re.IGNORECASE)
_ENDS_WITH_MACRO = re.compile(rf"{_MACRO_EXPAND}$", re.IGNORECASE)
_TOPLABEL = re.compile(r"^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Term:
    """One mechanism (with its qualifier) or modifier (qualifier None)."""

    name: str  # lower case
    qualifier: Qualifier | None = None
    target: str | None = None  # domain-spec, lower case, no final dot

    @property
    def queries_dns(self) -> bool:
        return self.name in DNS_TERMS

    @property
    def has_macro(self) -> bool:
        return self.target is not None and "%" in self.target


@dataclass(frozen=True, slots=True)
class SpfRecord:
    text: str
    terms: tuple[Term, ...]
    problems: tuple[str, ...]  # empty when the record parses

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def all_qualifier(self) -> Qualifier | None:
        return next((t.qualifier for t in self.terms if t.name == "all"), None)


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF record (version section exactly `v=spf1`, RFC 7208 4.5)."""
    return bool(_VERSION.match(text))


def parse_spf(text: str) -> SpfRecord:
    """Parse a record that `is_spf_record`; every syntax error found is a problem."""
    problems: list[str] = []
    if not text.isascii():
        problems.append("record contains non-ASCII characters")
    terms: list[Term] = []
    for word in text.split()[1:]:
        term = _parse_term(word, problems)
        if term is not None:
            terms.append(term)
    for modifier in ("redirect", "exp"):
        if sum(t.name == modifier for t in terms) > 1:
            problems.append(f"{modifier}= appears more than once")
    return SpfRecord(text, tuple(terms), tuple(problems))


def _parse_term(word: str, problems: list[str]) -> Term | None:
    modifier = _MODIFIER.match(word)
    if modifier:
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp"):
            if not valid_domain_spec(value):
                problems.append(f"{word}: invalid domain")
            return Term(name, target=_normal(value))
        # Unknown modifiers are ignored by evaluators (RFC 7208 6) but must still parse.
        if not _MACRO_STRING.match(value):
            problems.append(f"{word}: invalid modifier value")
        return Term(name)
    directive = _DIRECTIVE.match(word)
    if directive is None:
        problems.append(f"{word}: not a mechanism or modifier")
        return None
    qualifier = _QUALIFIERS[directive.group(1)]
    name, rest = directive.group(2).lower(), directive.group(3)
    problem = _check_arguments(name, rest)
    if problem is not None:
        problems.append(f"{word}: {problem}")
        return None
    if name in ("ip4", "ip6") or not rest.startswith(":"):
        return Term(name, qualifier)
    return Term(name, qualifier, _normal(rest[1:].split("/", 1)[0]))


def _check_arguments(name: str, rest: str) -> str | None:
    """What is wrong with a mechanism's arguments (`rest` follows the name), or None."""
    if name == "all":
        return None if rest == "" else "all takes no arguments"
    if name in ("include", "exists"):
        if not rest.startswith(":") or not valid_domain_spec(rest[1:]):
            return f"{name} needs a valid domain"
        return None
    if name in ("a", "mx", "ptr"):
        match = _TARGET_AND_CIDR.match(rest)
        if match is None or (name == "ptr" and "/" in rest):
            return "invalid arguments"
        domain, cidr4, cidr6 = match.groups()
        if domain is not None and not valid_domain_spec(domain):
            return "invalid domain"
        if (cidr4 is not None and int(cidr4) > 32) or (cidr6 is not None and int(cidr6) > 128):
            return "invalid prefix length"
        return None
    if name in ("ip4", "ip6"):
        return _check_network(name, rest)
    return "unknown mechanism"


def _check_network(name: str, rest: str) -> str | None:
    if not rest.startswith(":"):
        return f"{name} needs an address"
    address, _, length = rest[1:].partition("/")
    version, max_length = (4, 32) if name == "ip4" else (6, 128)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"invalid IPv{version} address"
    if parsed.version != version:
        return f"invalid IPv{version} address"
    if length and (not length.isdigit() or int(length) > max_length):
        return "invalid prefix length"
    if "/" in rest and not length:
        return "invalid prefix length"
    return None


def valid_domain_spec(spec: str) -> bool:
    """RFC 7208 domain-spec: a macro-string ending in a macro or in `.toplabel[.]`."""
    if not spec or not _MACRO_STRING.match(spec):
        return False
    if _ENDS_WITH_MACRO.search(spec):
        return True
    labels = spec.rstrip(".").split(".")
    if len(labels) < 2 or not _TOPLABEL.match(labels[-1]):
        return False
    if "%" in spec:
        return True
    try:
        dns.name.from_text(spec)
    except dns.exception.DNSException:
        return False
    return all(labels)


def _normal(domain: str) -> str:
    return domain.rstrip(".").lower()

"""SPF posture of a domain: its one record, everything it includes, and the RFC 7208 limits.

Lookup terms are counted over the whole include/redirect tree the way an evaluator would
meet them (a target included twice counts twice). Terms with macros depend on the sender,
so they are counted but not followed; `ptr` is counted but not resolved for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from m365_smtp_exporter.domains.lookup import DnsLookup
from m365_smtp_exporter.domains.spf_syntax import (
    Qualifier,
    SpfRecord,
    Term,
    is_spf_record,
    parse_spf,
)

MICROSOFT_SPF = "spf.protection.outlook.com"
LOOKUP_LIMIT = 10  # DNS-querying terms, RFC 7208 4.6.4
VOID_LOOKUP_LIMIT = 2  # lookups answered NXDOMAIN or empty, RFC 7208 4.6.4
MX_HOST_LIMIT = 10
# Bounds the work a hostile or broken include tree can cause; far above what a valid
# record can need (LOOKUP_LIMIT terms, each at most two queries).
MAX_QUERIES = 50


@dataclass(frozen=True, slots=True)
class SpfResult:
    records: tuple[str, ...]  # the SPF records found at the domain (valid only with one)
    valid: bool
    lookups: int
    void_lookups: int
    includes_microsoft: bool
    all_qualifier: Qualifier | None  # of the effective record (through redirect=)
    problems: tuple[str, ...]

    @property
    def present(self) -> bool:
        return bool(self.records)


@dataclass(slots=True)
class _Tally:
    """What one record and everything below it add up to."""

    lookups: int = 0
    void_lookups: int = 0
    includes_microsoft: bool = False
    all_qualifier: Qualifier | None = None
    problems: list[str] = field(default_factory=list)

    def absorb(self, other: _Tally) -> None:
        self.lookups += other.lookups
        self.void_lookups += other.void_lookups
        self.includes_microsoft |= other.includes_microsoft
        self.problems.extend(other.problems)


async def check_spf(lookup: DnsLookup, domain: str) -> SpfResult:
    """Evaluate `domain`'s SPF posture. Raises DnsLookupError when any needed query fails."""
    records = tuple(text for text in await lookup.txt(domain) if is_spf_record(text))
    if not records:
        return SpfResult((), False, 0, 0, False, None, ("no SPF record",))
    if len(records) > 1:
        problem = f"{len(records)} SPF records (permerror)"
        return SpfResult(records, False, 0, 0, False, None, (problem,))
    tally = await _Walker(lookup).evaluate(domain, parse_spf(records[0]), (domain,))
    if tally.lookups > LOOKUP_LIMIT:
        tally.problems.append(f"{tally.lookups} DNS lookups (limit {LOOKUP_LIMIT})")
    if tally.void_lookups > VOID_LOOKUP_LIMIT:
        tally.problems.append(f"{tally.void_lookups} void lookups (limit {VOID_LOOKUP_LIMIT})")
    problems = tuple(dict.fromkeys(tally.problems))
    return SpfResult(
        records,
        not problems,
        tally.lookups,
        tally.void_lookups,
        tally.includes_microsoft,
        tally.all_qualifier,
        problems,
    )


class _Walker:
    def __init__(self, lookup: DnsLookup) -> None:
        self._lookup = lookup
        self._followed: dict[str, _Tally] = {}  # include/redirect targets already evaluated
        self._queries_left = MAX_QUERIES

    async def evaluate(self, domain: str, record: SpfRecord, path: tuple[str, ...]) -> _Tally:
        tally = _Tally(all_qualifier=record.all_qualifier)
        if not record.valid:
            tally.problems.extend(f"{domain}: {problem}" for problem in record.problems)
            return tally
        for term in record.terms:
            # redirect= is ignored when the record has an `all` (RFC 7208 6.1).
            redirect_ignored = term.name == "redirect" and record.all_qualifier is not None
            if not term.queries_dns or redirect_ignored:
                continue
            tally.lookups += 1
            if term.has_macro:
                continue
            target = term.target or domain
            if term.name in ("include", "redirect"):
                tally.includes_microsoft |= target == MICROSOFT_SPF
                below = await self._follow(term, target, path)
                tally.absorb(below)
                if term.name == "redirect":
                    tally.all_qualifier = below.all_qualifier
            elif not await self._resolves(term.name, target, tally):
                tally.void_lookups += 1
        return tally

    async def _follow(self, term: Term, target: str, path: tuple[str, ...]) -> _Tally:
        if target in path:
            loop = " -> ".join((*path, target))
            return _Tally(problems=[f"{term.name} loop: {loop}"])
        if target in self._followed:
            return self._followed[target]
        if not self._spend():
            return _Tally(problems=[f"stopped after {MAX_QUERIES} DNS queries"])
        texts = await self._lookup.txt(target)
        records = [text for text in texts if is_spf_record(text)]
        if len(records) == 1:
            result = await self.evaluate(target, parse_spf(records[0]), (*path, target))
        else:
            found = "no SPF record" if not records else f"{len(records)} SPF records"
            result = _Tally(problems=[f"{term.name}:{target} has {found}"])
        result.void_lookups += not texts
        self._followed[target] = result
        return result

    async def _resolves(self, mechanism: str, target: str, tally: _Tally) -> bool:
        """Whether the a/mx/exists target has records (False counts as a void lookup)."""
        if mechanism == "ptr":
            return True  # depends on the sender's address
        if not self._spend():
            tally.problems.append(f"stopped after {MAX_QUERIES} DNS queries")
            return True
        if mechanism == "mx":
            hosts = await self._lookup.mx_hosts(target)
            if len(hosts) > MX_HOST_LIMIT:
                limit = MX_HOST_LIMIT
                tally.problems.append(f"mx:{target} has {len(hosts)} hosts (limit {limit})")
            return bool(hosts)
        return await self._lookup.has_address(target, ipv6=mechanism == "a")

    def _spend(self) -> bool:
        self._queries_left -= 1
        return self._queries_left >= 0

"""DMARC posture of a domain: the one `v=DMARC1` TXT record at `_dmarc.<domain>` (RFC 7489)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from m365_smtp_exporter.domains.lookup import DnsLookup
from m365_smtp_exporter.domains.tags import TagListError, parse_tag_list

_VERSION = re.compile(r"^\s*v\s*=\s*DMARC1\s*(?:;|$)")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:[^\s!]+(?:![0-9]+[kmgt]?)?$", re.IGNORECASE)


class DmarcPolicy(StrEnum):
    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"
    MISSING = "missing"
    INVALID = "invalid"


_REQUESTED = {DmarcPolicy.NONE, DmarcPolicy.QUARANTINE, DmarcPolicy.REJECT}


@dataclass(frozen=True, slots=True)
class DmarcResult:
    policy: DmarcPolicy
    records: tuple[str, ...] = ()
    subdomain_policy: DmarcPolicy | None = None  # sp=, when given
    pct: int | None = None  # set for valid records (default 100)
    rua: tuple[str, ...] = ()
    adkim: str | None = None
    aspf: str | None = None
    problems: tuple[str, ...] = ()


def is_dmarc_record(text: str) -> bool:
    return bool(_VERSION.match(text))


async def check_dmarc(lookup: DnsLookup, domain: str) -> DmarcResult:
    """Raises DnsLookupError when the query fails."""
    records = tuple(text for text in await lookup.txt(f"_dmarc.{domain}") if is_dmarc_record(text))
    if not records:
        return DmarcResult(DmarcPolicy.MISSING, problems=("no DMARC record",))
    if len(records) > 1:
        # Receivers then apply no DMARC policy at all (RFC 7489 6.6.3).
        problem = f"{len(records)} DMARC records"
        return DmarcResult(DmarcPolicy.INVALID, records, problems=(problem,))
    return parse_dmarc(records[0])


def parse_dmarc(text: str) -> DmarcResult:
    """Parse one record that `is_dmarc_record`; unknown tags are ignored (RFC 7489 6.3)."""
    try:
        tags = parse_tag_list(text)
    except TagListError as exc:
        return DmarcResult(DmarcPolicy.INVALID, (text,), problems=(str(exc),))
    problems: list[str] = []
    policy = _policy(tags, "p", problems)
    if "p" not in tags:
        problems.append("p tag missing")
    subdomain_policy = _policy(tags, "sp", problems)
    pct = tags.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        problems.append(f"pct={pct} is not 0-100")
    alignment = {name: tags.get(name, "r").lower() for name in ("adkim", "aspf")}
    problems.extend(f"{n}={v} is not r or s" for n, v in alignment.items() if v not in ("r", "s"))
    rua = _uris(tags, "rua", problems)
    _uris(tags, "ruf", problems)
    if problems or policy is None:
        return DmarcResult(DmarcPolicy.INVALID, (text,), problems=tuple(problems))
    return DmarcResult(
        policy,
        (text,),
        subdomain_policy,
        int(pct),
        rua,
        alignment["adkim"],
        alignment["aspf"],
    )


def _policy(tags: dict[str, str], name: str, problems: list[str]) -> DmarcPolicy | None:
    if name not in tags:
        return None
    value = tags[name].lower()
    if value not in _REQUESTED:
        problems.append(f"{name}={tags[name]} is not none, quarantine or reject")
        return None
    return DmarcPolicy(value)


def _uris(tags: dict[str, str], name: str, problems: list[str]) -> tuple[str, ...]:
    if name not in tags:
        return ()
    uris = tuple(uri.strip() for uri in tags[name].split(","))
    problems.extend(f"{name}: {uri!r} is not a URI" for uri in uris if not _URI.match(uri))
    return uris

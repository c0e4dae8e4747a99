"""DKIM posture of a domain's selectors.

Microsoft 365 publishes DKIM as CNAMEs (`selector1._domainkey.<domain>` pointing into the
tenant's `onmicrosoft.com` zone or `dkim.mail.microsoft`); the key TXT sits at the target.
An empty `p=` there means the key was revoked (DKIM switched off).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum

from m365_smtp_exporter.domains.lookup import DnsLookup
from m365_smtp_exporter.domains.tags import TagListError, parse_tag_list


class DkimKey(StrEnum):
    PUBLISHED = "published"  # a non-empty public key
    REVOKED = "revoked"  # p= is empty
    INVALID = "invalid"  # TXT records, but none is a usable key record
    UNRESOLVED = "unresolved"  # the CNAME target has no TXT record
    ABSENT = "absent"  # neither a CNAME nor a key record at the selector


@dataclass(frozen=True, slots=True)
class DkimResult:
    selector: str
    cname_target: str | None
    key: DkimKey

    @property
    def enabled(self) -> bool:
        """A CNAME whose key is not known to be bad, or a key published directly."""
        if self.cname_target is not None:
            return self.key in (DkimKey.PUBLISHED, DkimKey.UNRESOLVED)
        return self.key is DkimKey.PUBLISHED


async def check_dkim(lookup: DnsLookup, domain: str, selector: str) -> DkimResult:
    """Raises DnsLookupError when a query fails."""
    name = f"{selector}._domainkey.{domain}"
    target = await lookup.cname(name)
    texts = await lookup.txt(target or name)
    if not texts:
        return DkimResult(selector, target, DkimKey.UNRESOLVED if target else DkimKey.ABSENT)
    return DkimResult(selector, target, key_state(texts))


def key_state(texts: list[str]) -> DkimKey:
    """The best state among the TXT records found at a selector."""
    states = {_record_state(text) for text in texts}
    for state in (DkimKey.PUBLISHED, DkimKey.REVOKED):
        if state in states:
            return state
    return DkimKey.INVALID


def _record_state(text: str) -> DkimKey:
    try:
        tags = parse_tag_list(text)
    except TagListError:
        return DkimKey.INVALID
    # v= is optional, but when present it must be the first tag (RFC 6376 3.6.1).
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        return DkimKey.INVALID
    if "p" not in tags:
        return DkimKey.INVALID
    key = "".join(tags["p"].split())
    if not key:
        return DkimKey.REVOKED
    try:
        base64.b64decode(key, validate=True)
    except binascii.Error:
        return DkimKey.INVALID
    return DkimKey.PUBLISHED

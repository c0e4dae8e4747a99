"""DNS queries for the posture checks, telling "no such record" apart from "could not ask".

NXDOMAIN and an empty answer mean the record does not exist; SERVFAIL, REFUSED, timeouts and
network errors raise `DnsLookupError`, so a broken resolver never reads as a missing record.
"""

from __future__ import annotations

from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdata import Rdata
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

from m365_smtp_exporter.config import DomainChecksConfig


class FailureReason(StrEnum):
    TIMEOUT = "timeout"
    SERVER = "server"  # every nameserver answered SERVFAIL/REFUSED or could not be reached
    INVALID_NAME = "invalid_name"
    RESOLVER = "resolver"  # no usable resolver configuration
    ERROR = "error"


class DnsLookupError(Exception):
    """A DNS question got no usable answer (not the same as "the record does not exist")."""

    def __init__(self, name: str, rdtype: str, reason: FailureReason, detail: str) -> None:
        super().__init__(f"{rdtype} {name}: {reason.value}: {detail}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


def make_resolver(config: DomainChecksConfig) -> dns.asyncresolver.Resolver:
    """The configured nameservers, or the system resolver when none are given.

    Raises DnsLookupError when neither is usable (no /etc/resolv.conf, bad nameserver address).
    """
    try:
        if config.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(config.nameservers)
            resolver.port = config.port
        else:
            resolver = dns.asyncresolver.Resolver()
    except (dns.exception.DNSException, ValueError) as exc:
        raise DnsLookupError("-", "-", FailureReason.RESOLVER, str(exc)) from None
    resolver.lifetime = config.timeout
    resolver.timeout = min(resolver.timeout, config.timeout)
    return resolver


class DnsLookup:
    """Typed record queries over a dnspython async resolver."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def txt(self, name: str) -> list[str]:
        """Each TXT record as one string (its character-strings joined, RFC 7208 3.3)."""
        found = await self._query(name, dns.rdatatype.TXT)
        return [
            b"".join(rdata.strings).decode("utf-8", errors="replace")
            for rdata in found
            if isinstance(rdata, TXT)
        ]

    async def cname(self, name: str) -> str | None:
        found = [r for r in await self._query(name, dns.rdatatype.CNAME) if isinstance(r, CNAME)]
        return found[0].target.to_text(omit_final_dot=True).lower() if found else None

    async def mx_hosts(self, name: str) -> list[str]:
        found = await self._query(name, dns.rdatatype.MX)
        return [r.exchange.to_text(omit_final_dot=True) for r in found if isinstance(r, MX)]

    async def has_address(self, name: str, *, ipv6: bool = True) -> bool:
        """Whether `name` has an A record (or, with `ipv6`, an AAAA record)."""
        if await self._query(name, dns.rdatatype.A):
            return True
        return ipv6 and bool(await self._query(name, dns.rdatatype.AAAA))

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[Rdata]:
        type_text = dns.rdatatype.to_text(rdtype)
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise DnsLookupError(name, type_text, FailureReason.INVALID_NAME, str(exc)) from None
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout as exc:
            raise DnsLookupError(name, type_text, FailureReason.TIMEOUT, str(exc)) from None
        except dns.resolver.NoNameservers as exc:
            raise DnsLookupError(name, type_text, FailureReason.SERVER, str(exc)) from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsLookupError(name, type_text, FailureReason.ERROR, str(exc)) from None
        return list(answer.rrset) if answer.rrset is not None else []

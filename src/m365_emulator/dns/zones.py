"""DNS data of the emulated world: Microsoft's SPF records and Microsoft 365 sending domains."""

from __future__ import annotations

import base64

from m365_emulator.dns.server import RecordValues, ZoneData

# A well-formed stand-in for a 2048-bit RSA public key (392 base64 characters, so the TXT
# record needs two character-strings like a real one).
KEY = base64.b64encode(bytes(range(256)) + bytes(38)).decode()
TENANT = "contoso.onmicrosoft.com"
SELECTORS = ("selector1", "selector2")

# Shaped like Microsoft's published records: the include costs two lookups in all.
MICROSOFT_SPF: ZoneData = {
    "spf.protection.outlook.com": {
        "TXT": "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 "
        "ip4:52.102.0.0/16 ip4:52.103.0.0/16 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 "
        "ip6:2a01:111:f403::/49 include:spfd.protection.outlook.com -all"
    },
    "spfd.protection.outlook.com": {
        "TXT": "v=spf1 ip4:51.4.72.0/24 ip4:51.5.72.0/24 ip4:51.5.80.0/27 ip4:51.4.80.0/27 -all"
    },
}
MICROSOFT_LOOKUPS = 2


def dkim_target(domain: str, selector: str, tenant: str = TENANT) -> str:
    """Where Microsoft 365 points a selector CNAME (the classic onmicrosoft.com form)."""
    return f"{selector}-{domain.replace('.', '-')}._domainkey.{tenant}"


def m365_domain(
    domain: str,
    *,
    spf: str = "v=spf1 include:spf.protection.outlook.com -all",
    dmarc: str | None = None,
    key: str | None = KEY,
) -> ZoneData:
    """A domain sending through Microsoft 365: SPF include, both DKIM CNAMEs with keys
    (`key=None`: targets without TXT), DMARC reject."""
    zone: dict[str, dict[str, str]] = {
        domain: {"TXT": spf, "MX": f"0 {domain.replace('.', '-')}.mail.protection.outlook.com."},
        f"_dmarc.{domain}": {"TXT": dmarc or f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"},
    }
    for selector in SELECTORS:
        target = dkim_target(domain, selector)
        zone[f"{selector}._domainkey.{domain}"] = {"CNAME": f"{target}."}
        if key is not None:
            zone[target] = {"TXT": f"v=DKIM1; k=rsa; p={key}"}
    return zone


def demo_zones() -> ZoneData:
    """contoso.com set up as Microsoft recommends; fabrikam.com with DMARC only monitoring
    and a second DKIM selector never published (what the domain dashboards should show)."""
    zones: dict[str, dict[str, RecordValues]] = {}
    for data in (
        MICROSOFT_SPF,
        m365_domain("contoso.com"),
        m365_domain(
            "fabrikam.com",
            spf="v=spf1 include:spf.protection.outlook.com ~all",
            dmarc="v=DMARC1; p=none; rua=mailto:dmarc@fabrikam.com",
        ),
    ):
        for name, records in data.items():
            zones[name] = dict(records)
    del zones["selector2._domainkey.fabrikam.com"]
    return zones

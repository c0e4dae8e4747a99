"""What the last run found for one domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from m365_smtp_exporter.domains.dkim import DkimResult
from m365_smtp_exporter.domains.dmarc import DmarcResult
from m365_smtp_exporter.domains.spf import SpfResult


class Check(StrEnum):
    SPF = "spf"
    DKIM = "dkim"
    DMARC = "dmarc"


@dataclass(frozen=True, slots=True)
class DomainStatus:
    """A check whose lookups failed keeps the verdict of its last completed run (None when
    it never completed); `success` says which checks completed this time."""

    domain: str
    checked_at: float
    success: Mapping[Check, bool]
    spf: SpfResult | None = None
    dkim: tuple[DkimResult, ...] | None = None
    dmarc: DmarcResult | None = None

    @property
    def ok(self) -> bool:
        return all(self.success.values())

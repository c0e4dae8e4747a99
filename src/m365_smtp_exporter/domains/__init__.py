"""Sending-domain authentication posture (SPF, DKIM, DMARC) checked through DNS."""

from m365_smtp_exporter.domains.checker import DomainChecker
from m365_smtp_exporter.domains.status import Check, DomainStatus

__all__ = ["Check", "DomainChecker", "DomainStatus"]

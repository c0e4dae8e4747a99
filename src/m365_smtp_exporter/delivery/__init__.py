"""End-to-end delivery of probe mails: look each one up in its recipient mailbox."""

from m365_smtp_exporter.delivery.auth_results import parse_authentication_results
from m365_smtp_exporter.delivery.checks import Check, Outcome, Stage, message_key
from m365_smtp_exporter.delivery.tracker import DeliveryTracker

__all__ = [
    "Check",
    "DeliveryTracker",
    "Outcome",
    "Stage",
    "message_key",
    "parse_authentication_results",
]

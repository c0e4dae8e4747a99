"""Replies of the other SMTP send paths (tenant MX for direct send, High Volume Email).

Word for word where Microsoft documents them; where only the code is known (HVE refusing an
external recipient) the wording is the emulator's and says so.
"""

from __future__ import annotations

MX_HOSTNAME = "XX0PR00MB0000.mail.protection.outlook.com"
HVE_HOSTNAME = "XX0PR00CA0000.hve.mx.microsoft"

DIRECT_SEND_REJECTED = (
    "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from "
    "unauthorized sources"
)
UNABLE_TO_RELAY = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
RECIPIENT_NOT_FOUND = (
    "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {address} not found by SMTP address "
    "lookup"
)
BANNED_IP = (
    "550 5.7.606 Access denied, banned sending IP [{ip}]. To request removal from this list "
    "please visit https://sender.office.com/ and follow the directions. For more information "
    "please go to http://go.microsoft.com/fwlink/?LinkID=526655"
)
SERVER_BUSY = "451 4.7.500 Server busy. Please try again later from [{ip}]."
AUTH_NOT_OFFERED = "504 5.7.4 Unrecognized authentication type"
# HVE refuses external recipients; the code is from one public report, the text is ours.
HVE_EXTERNAL_RECIPIENT = (
    "550 5.5.105 High Volume Email accepts internal recipients only [emulator wording]"
)
AUTH_SUCCESSFUL = "235 2.7.0 Authentication successful"
AUTH_UNSUCCESSFUL = "535 5.7.3 Authentication unsuccessful"
NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail"
SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


def queued(message_id: str) -> str:
    return f"250 2.6.0 {message_id} [InternalId=0] Queued mail for delivery"

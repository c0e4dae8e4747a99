"""Microsoft Graph stand-in: token endpoint, message trace, mailboxes, faults."""

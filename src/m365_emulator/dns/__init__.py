"""DNS for the emulated sending domains (SPF, DKIM, DMARC)."""

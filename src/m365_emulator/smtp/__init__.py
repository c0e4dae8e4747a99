"""SMTP submission: server, faults, Microsoft's reply texts, limits ledger, delivery."""

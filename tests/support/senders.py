"""Sender addresses with particular properties for the quota label tests."""

from __future__ import annotations

import itertools

from m365_smtp_exporter.quota.cardinality import hash_sender


def colliding_senders(salt: str) -> tuple[str, str]:
    """The first two addresses `u<n>@contoso.com` whose hashed labels (with `salt`) share
    their short prefix."""
    seen: dict[str, str] = {}
    for i in itertools.count():
        address = f"u{i}@contoso.com"
        prefix = hash_sender(address, salt)
        if prefix in seen:
            return seen[prefix], address
        seen[prefix] = address
    raise AssertionError("unreachable: itertools.count() never ends")

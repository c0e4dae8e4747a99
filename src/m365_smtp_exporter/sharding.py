"""Splitting probes and tenants across replicas: `--shard i/n`.

Each probe belongs to exactly one shard, chosen by a stable hash of its name, so every probe
runs on one replica only: a duplicate probe would send twice and spend the tenant's quota
twice. Trace pulls are split by tenant name the same way (each pull spends Graph budget).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < n")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'1/3' -> the second of three shards."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/3")
        return cls(int(index), int(count))

    def owns(self, key: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)

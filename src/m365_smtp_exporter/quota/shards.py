"""A per-sender map the engine updates in place and publishes, unchanged parts shared.

Each snapshot must be immutable, but copying 100,000 entries every second costs more than
the copy itself: the new dict is a young container the garbage collector walks entry by
entry at its next young collection (5 ms at 100,000 senders), with every thread stopped.
So the map is cut into shards by key hash: `publish` hands out the current shards as an
immutable `PublishedMap` and marks them shared; the next write to a shared shard copies
that shard only (a few hundred entries). A snapshot then costs what changed since the last.
"""

from __future__ import annotations

import itertools
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from typing import Generic, TypeVar, overload

V = TypeVar("V")
T = TypeVar("T")
SHARDS = 256
_MASK = SHARDS - 1


class _Items(ItemsView[str, V]):
    """Iterates the shards' own views (not a lookup per key)."""

    def __init__(self, published: PublishedMap[V]) -> None:
        super().__init__(published)
        self._shards = published.shards

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return itertools.chain.from_iterable(shard.items() for shard in self._shards)


class _Values(ValuesView[V]):
    def __init__(self, published: PublishedMap[V]) -> None:
        super().__init__(published)
        self._shards = published.shards

    def __iter__(self) -> Iterator[V]:
        return itertools.chain.from_iterable(shard.values() for shard in self._shards)


class PublishedMap(Mapping[str, V]):
    """An immutable view of a `ShardedMap` at one instant (its shards are never written)."""

    __slots__ = ("_length", "shards")

    def __init__(self, shards: tuple[dict[str, V], ...], length: int) -> None:
        self.shards = shards
        self._length = length

    def __getitem__(self, key: str) -> V:
        return self.shards[hash(key) & _MASK][key]

    @overload
    def get(self, key: str, /) -> V | None: ...
    @overload
    def get(self, key: str, /, default: V | T) -> V | T: ...
    def get(self, key: str, /, default: object = None) -> object:
        return self.shards[hash(key) & _MASK].get(key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.shards[hash(key) & _MASK]

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self.shards)

    def __len__(self) -> int:
        return self._length

    def items(self) -> ItemsView[str, V]:
        return _Items(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)


class ShardedMap(Generic[V]):
    """The writable side: a dict cut into shards, copied shard by shard on write after
    `publish`."""

    __slots__ = ("_length", "_shards", "_shared")

    def __init__(self) -> None:
        self._shards: list[dict[str, V]] = [{} for _ in range(SHARDS)]
        self._shared = [False] * SHARDS
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def get(self, key: str) -> V | None:
        return self._shards[hash(key) & _MASK].get(key)

    def _writable(self, key: str) -> dict[str, V]:
        index = hash(key) & _MASK
        if self._shared[index]:
            self._shards[index] = dict(self._shards[index])
            self._shared[index] = False
        return self._shards[index]

    def __setitem__(self, key: str, value: V) -> None:
        shard = self._writable(key)
        if key not in shard:
            self._length += 1
        shard[key] = value

    def pop(self, key: str) -> V | None:
        """Remove `key`; its value, or None when it was not there."""
        if key not in self._shards[hash(key) & _MASK]:
            return None
        self._length -= 1
        return self._writable(key).pop(key)

    def publish(self) -> PublishedMap[V]:
        """The map as it is now, immutable; later writes copy the shards they touch."""
        self._shared = [True] * SHARDS
        return PublishedMap(tuple(self._shards), self._length)

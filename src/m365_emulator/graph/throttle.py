"""Rolling-window request limits, as Graph applies them per tenant to message trace."""

from __future__ import annotations

import math
from collections import deque

from m365_emulator.state import Clock


class RollingWindowLimiter:
    """At most `limit` admitted requests per key within any `window` seconds.

    Rejected requests are not recorded, so a client that waits for `Retry-After` gets in.
    """

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}

    def admit(self, key: str) -> int | None:
        """Record and admit a request (None), or the whole seconds until one would be admitted."""
        now = self._clock()
        admitted = self._admitted.setdefault(key, deque())
        while admitted and admitted[0] <= now - self.window:
            admitted.popleft()
        if len(admitted) < self.limit:
            admitted.append(now)
            return None
        return max(1, math.ceil(admitted[0] + self.window - now))

    def used(self, key: str) -> int:
        """Requests of `key` admitted within the current window."""
        now = self._clock()
        return sum(1 for at in self._admitted.get(key, ()) if at > now - self.window)

"""The per-tenant Graph request budget, shared by every caller (trace pulls, delivery checks).

Microsoft allows 100 message-trace requests per rolling 5 minutes per tenant, list and detail
calls together, and every caller of the tenant spends them (admins running
`Get-MessageTraceV2`, other tools; Microsoft's own TERRL script limits itself to 50). We spend
at most `limit` of them (default 50, half, like Microsoft's script) so the others keep room,
and we back off entirely while a 429's Retry-After runs.

A 429 that arrives while our own count in the window is well below Microsoft's 100 was
caused by the tenant's other callers: `throttled_by_others` tells it apart, so the operator
sees "someone else spends the tenant's trace budget" rather than "the exporter is too greedy".

Callers reserve a slot with `try_acquire` before a request; requests the SDK sends on its own
(retries) are recorded with `record_extra` by the transport that sees them, so the window
holds every request Microsoft received, even when that is more than `limit`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

DEFAULT_LIMIT = 50
DEFAULT_WINDOW = 300.0
TENANT_LIMIT = 100  # Microsoft's message-trace requests per rolling 5 minutes per tenant
# Our window and Microsoft's need not start at the same instant: a 429 counts as caused by
# others only while we spent at least this many requests fewer than the tenant limit.
FOREIGN_THROTTLE_MARGIN = 10
# Whoever asks for a block (a Retry-After), it ends within this: the transport clamps and
# counts hostile values; this is the last line, so no caller can silence a tenant for years.
MAX_BLOCK = 600.0


class RequestBudget:
    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._blocked_until = float("-inf")

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def spent(self) -> int:
        """Requests recorded within the current window (may exceed `limit` after retries)."""
        self._expire(self._clock())
        return len(self._sent)

    def throttled_by_others(self) -> bool:
        """Whether a 429 received now must come from the tenant's other callers: our own
        requests in the window (the throttled one included) are well below Microsoft's."""
        return self.spent() <= TENANT_LIMIT - FOREIGN_THROTTLE_MARGIN

    def remaining(self) -> int:
        now = self._clock()
        self._expire(now)
        if now < self._blocked_until:
            return 0
        return max(0, self.limit - len(self._sent))

    def try_acquire(self) -> bool:
        """Reserve one request now; False when the budget or a Retry-After says wait."""
        if self.remaining() <= 0:
            return False
        self._sent.append(self._clock())
        return True

    def refund(self) -> None:
        """Give back a slot from `try_acquire` whose request never went out (no token)."""
        if self._sent:
            self._sent.pop()

    def record_extra(self) -> None:
        """A request sent without `try_acquire` (an SDK retry): it still spends budget."""
        self._sent.append(self._clock())

    def block_for(self, seconds: float) -> None:
        """Honour a Retry-After: no requests until it has passed."""
        seconds = min(max(0.0, seconds), MAX_BLOCK)  # inf too; nan counts as 0
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def seconds_until_available(self) -> float:
        now = self._clock()
        self._expire(now)
        wait = max(0.0, self._blocked_until - now)
        if len(self._sent) >= self.limit:
            # the oldest request whose expiry brings the count back under the limit
            wait = max(wait, self._sent[len(self._sent) - self.limit] + self.window - now)
        return wait

"""Which receivedDateTime windows a trace pull asks for, and how Graph wants them written.

Graph's rules (reference section 4): both bounds given, unquoted UTC, a window of at most
10 days, a start at most 90 days back and an end not in the future. Bounds are whole
seconds: the cursor is the end of the last window read in full, and the next pull starts
`overlap` before it so rows that showed up late are read on a later pass.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import NamedTuple

DAY = 86_400
MAX_WINDOW = 10 * DAY
RETENTION = 90 * DAY
# The service checks the start against its own clock when the request arrives, which is
# later than when we planned it (a long backfill): stay this far inside the 90 days.
RETENTION_MARGIN = 3_600


class PullWindow(NamedTuple):
    start: int  # epoch seconds, inclusive (`ge`)
    end: int  # epoch seconds, inclusive (`le`)

    def filter(self) -> str:
        return (
            f"receivedDateTime ge {graph_timestamp(self.start)} "
            f"and receivedDateTime le {graph_timestamp(self.end)}"
        )


def graph_timestamp(epoch: float) -> str:
    """Graph's UTC form, e.g. 2026-01-20T10:30:00Z."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_windows(
    *,
    cursor: int | None,
    now: float,
    lookback: float,
    overlap: float,
    end_margin: float = 0.0,
    max_window: int = MAX_WINDOW,
    retention: int = RETENTION,
) -> list[PullWindow]:
    """Consecutive windows, oldest first, from the cursor (minus overlap) up to `now`.

    With no cursor yet the pull back-fills `lookback`. `end_margin` keeps the end a little
    behind our clock so a clock running ahead of Microsoft's never asks for the future.
    Windows share their boundary second; de-duplication absorbs rows on it.
    """
    end = math.floor(now - end_margin)
    start = end - math.ceil(lookback) if cursor is None else cursor - math.ceil(overlap)
    start = max(start, math.ceil(now) - retention + RETENTION_MARGIN)
    windows: list[PullWindow] = []
    while start < end:
        stop = min(start + max_window, end)
        windows.append(PullWindow(start, stop))
        start = stop
    return windows

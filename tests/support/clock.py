"""A clock that moves only when a test moves it."""

from __future__ import annotations

START = 1_769_000_000.0  # 2026-01-21, a fixed emulated "now"


class ManualClock:
    """Emulated wall time that moves only when a test moves it.

    Callable, so it stands in wherever the code under test takes a `clock` callable."""

    def __init__(self, now: float = START) -> None:
        self._now = now

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now

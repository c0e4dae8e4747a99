"""Waiting for something to happen in real time: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

LAST_SHOWN = 2000  # characters of the last result in a failure message

Check = Callable[[], T | Awaitable[T]]


# `timeout` here is a polling deadline, not a cancellation scope: ASYNC109 does not apply.
async def poll(
    check: Check[T],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T | None:
    """Call `check` (plain or async) every `interval` seconds until it returns something
    truthy, and return that; None once `timeout` seconds have passed. Exceptions of the
    `ignoring` types (a server not listening yet) count as "not yet"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            outcome = check()
            result = await outcome if inspect.isawaitable(outcome) else outcome
        except ignoring:
            pass
        else:
            if result:
                return result
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(interval)


async def eventually(
    check: Check[T],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    message: str | Callable[[], str] = "",
) -> T:
    """Like `poll`, but a missed deadline fails the test, saying what was awaited, the
    last result and the last ignored exception."""
    seen: list[object] = []

    def remembered() -> T | Awaitable[T]:
        seen[:] = ["<no result>"]
        try:
            outcome = check()
        except ignoring as error:
            seen[:] = [error]
            raise
        if not inspect.isawaitable(outcome):
            seen[:] = [outcome]
            return outcome
        return _remember_awaited(outcome, seen, ignoring)

    result = await poll(remembered, timeout=timeout, interval=interval, ignoring=ignoring)
    if result is None:
        what = (message() if callable(message) else message) or getattr(
            check, "__qualname__", repr(check)
        )
        last = repr(seen[0]) if seen else "<never called>"
        if len(last) > LAST_SHOWN:
            last = last[:LAST_SHOWN] + "..."
        raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {last})")
    return result


async def _remember_awaited(
    outcome: Awaitable[T], seen: list[object], ignoring: tuple[type[BaseException], ...]
) -> T:
    try:
        value = await outcome
    except ignoring as error:
        seen[:] = [error]
        raise
    seen[:] = [value]
    return value

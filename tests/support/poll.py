# `timeout` here is a polling deadline, not a cancellation scope.
# ruff: noqa: ASYNC109
"""Waiting for something to happen in real time: poll with a deadline, never a fixed sleep.

`await eventually(lambda: server.ready)` or `await eventually(scrape_and_check)`: the check
may be plain or async; its first truthy result is returned."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, overload

T = TypeVar("T")

LAST_SHOWN = 2000  # characters of the last result shown in a failure message
Ignored = tuple[type[BaseException], ...]


class _Check(Generic[T]):
    """Runs a plain or async check and remembers its last outcome for the failure message."""

    def __init__(self, check: Callable[[], T | Awaitable[T]], ignoring: Ignored) -> None:
        self.check = check
        self.ignoring = ignoring
        self.last: object = "<never called>"

    async def __call__(self) -> T | None:
        try:
            outcome = self.check()
            result: T = await outcome if inspect.isawaitable(outcome) else outcome
        except self.ignoring as error:
            self.last = error
            return None
        self.last = result
        return result

    async def until_truthy(self, timeout: float, interval: float) -> T | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = await self()
            if result:
                return result
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(interval)


@overload
async def poll(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: Ignored = ...,
) -> T | None: ...


@overload
async def poll(
    check: Callable[[], T],
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: Ignored = ...,
) -> T | None: ...


async def poll(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    ignoring: Ignored = (),
) -> T | None:
    """Call `check` every `interval` seconds until it returns something truthy, and return
    that; None once `timeout` seconds have passed. Exceptions of the `ignoring` types (a
    server not listening yet) count as "not yet"."""
    return await _Check(check, ignoring).until_truthy(timeout, interval)


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: Ignored = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: Ignored = ...,
    message: str | Callable[[], str] = ...,
) -> T: ...


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    ignoring: Ignored = (),
    message: str | Callable[[], str] = "",
) -> T:
    """Like `poll`, but a missed deadline fails the test, saying what was awaited (the
    `message`, else the check's source) and the check's last result or ignored error."""
    running = _Check(check, ignoring)
    result = await running.until_truthy(timeout, interval)
    if result is None:
        what = (message() if callable(message) else message) or _describe(check)
        last = repr(running.last)
        if len(last) > LAST_SHOWN:
            last = last[:LAST_SHOWN] + "..."
        raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {last})")
    return result


def _describe(check: Callable[..., object]) -> str:
    """The check's source line for a lambda (what the test waited for), else its name."""
    name = getattr(check, "__qualname__", repr(check))
    if "<lambda>" in name:
        try:
            return inspect.getsource(check).strip()
        except (OSError, TypeError):
            pass
    return str(name)

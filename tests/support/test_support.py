"""The shared test helpers themselves: a helper that cannot fail would hide every bug."""

from __future__ import annotations

import pytest

from tests.support.clock import START, ManualClock
from tests.support.poll import eventually, poll


def test_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock()
    assert clock() == clock.now() == START
    clock.advance(2.5)
    assert clock() == clock.now() == START + 2.5


async def test_eventually_returns_the_first_truthy_result_of_an_async_check() -> None:
    calls: list[int] = []

    async def third_time() -> str:
        calls.append(1)
        return "ready" if len(calls) >= 3 else ""

    assert await eventually(third_time, timeout=5, interval=0.001) == "ready"
    assert len(calls) == 3


async def test_eventually_treats_ignored_errors_as_not_yet() -> None:
    refusals = [ConnectionRefusedError(), ConnectionRefusedError()]

    def connect() -> int:
        if refusals:
            raise refusals.pop()
        return 200

    assert await eventually(connect, timeout=5, interval=0.001, ignoring=(OSError,)) == 200


async def test_eventually_fails_naming_the_check_and_its_last_result() -> None:
    state = {"count": 0}
    with pytest.raises(AssertionError) as failure:
        await eventually(lambda: state["count"] > 0, timeout=0.05, interval=0.01)
    assert 'lambda: state["count"] > 0' in str(failure.value)
    assert "within 0.05 s (last: False)" in str(failure.value)


async def test_eventually_fails_with_the_message_and_the_last_ignored_error() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(AssertionError, match=r"server up did not hold .*nothing listens"):
        await eventually(
            refused, timeout=0.05, interval=0.01, ignoring=(OSError,), message="server up"
        )


async def test_unignored_errors_propagate_at_once() -> None:
    def broken() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):  # not an AssertionError after the deadline
        await eventually(broken, timeout=30)


async def test_poll_gives_none_at_the_deadline() -> None:
    assert await poll(lambda: 0, timeout=0.02, interval=0.005) is None

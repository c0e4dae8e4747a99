"""The demo (emulator + exporter) on its own event loop thread, for synchronous clients
such as Selenium, plus small HTTP helpers. Tests reach the emulator only through the demo
entry point and its control API."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_smtp_exporter.demo import DEMO_DELIVERY, Demo

T = TypeVar("T")


class LiveDemo:
    def __init__(self, demo: Demo, loop: asyncio.AbstractEventLoop) -> None:
        self.demo = demo
        self.loop = loop
        assert demo.exporter is not None and demo.exporter.bound_port is not None
        self.base = f"http://127.0.0.1:{demo.exporter.bound_port}"
        self.control = f"{demo.emulator.http_url}/_emulator/smtp"
        self._tls = ssl.create_default_context(cafile=str(demo.emulator.ca_file))

    def run_job(self, job_id: str) -> bool:
        """Run a scheduled job (e.g. "probe:submission") now instead of waiting for its turn."""
        exporter = self.demo.exporter
        assert exporter is not None
        future = asyncio.run_coroutine_threadsafe(exporter.scheduler.run_now(job_id), self.loop)
        return future.result(timeout=120)

    def on_loop(self, read: Callable[[], T]) -> T:
        """`read()` evaluated on the demo's event loop thread (state is not thread-safe)."""

        async def call() -> T:
            return read()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def get_json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def fault(self, method: str, path: str, payload: object | None = None) -> Any:
        request = urllib.request.Request(
            self.control + path,
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30, context=self._tls) as response:
            return json.loads(response.read())


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something other than None/False, or fail."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@contextmanager
def live_demo(
    work_dir: Path, *, traffic: bool, delivery: DeliveryBehaviour = DEMO_DELIVERY
) -> Iterator[LiveDemo]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-loop", daemon=True)
    thread.start()
    demo = Demo(listen_address="127.0.0.1:0", work_dir=work_dir, traffic=traffic, delivery=delivery)
    try:
        asyncio.run_coroutine_threadsafe(demo.start(), loop).result(timeout=120)
        yield LiveDemo(demo, loop)
    finally:
        asyncio.run_coroutine_threadsafe(demo.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

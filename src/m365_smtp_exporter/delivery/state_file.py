"""The delivery tracker's state on disk, so a restart loses no pending probe mail.

One JSON document: the checks (pending, counted-lost within their grace period, and recently
finished ones, so an outcome is never recorded twice), the mails still to be deleted, and
each probe's gauges. Writes are atomic: a temporary file in the same directory, flushed and
fsync'ed, then `os.replace`d over the old one (and the directory fsync'ed), so a crash leaves
either the old or the new document, never half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from m365_smtp_exporter.delivery.checks import Check, Cleanup, ProbeView

FORMAT_VERSION = 1


class StateFileError(Exception):
    """The state file could not be read, parsed or written; the message says why."""


@dataclass(slots=True)
class DeliveryState:
    version: int = FORMAT_VERSION
    checks: list[Check] = field(default_factory=list)
    cleanups: list[Cleanup] = field(default_factory=list)
    probes: dict[str, ProbeView] = field(default_factory=dict)


_ADAPTER = TypeAdapter(DeliveryState)


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> DeliveryState | None:
        """The saved state; None when there is no file yet. Raises `StateFileError`."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            state = _ADAPTER.validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise StateFileError(
                f"{self.path} is not a state file: {where}: {first['msg']}"
            ) from None
        if state.version != FORMAT_VERSION:
            raise StateFileError(f"{self.path} has unsupported format version {state.version}")
        return state

    @staticmethod
    def encode(state: DeliveryState) -> bytes:
        return _ADAPTER.dump_json(state)

    def save(self, state: DeliveryState) -> None:
        """Replace the file atomically with `state`. Raises `StateFileError`."""
        self.write(self.encode(state))

    def write(self, data: bytes) -> None:
        """Replace the file atomically with `data` (from `encode`). Blocks for an fsync:
        call it from a worker thread in async code. Raises `StateFileError`."""
        directory = self.path.parent
        temp_name: str | None = None
        try:
            fd, temp_name = tempfile.mkstemp(
                dir=directory, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            with os.fdopen(fd, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, self.path)
            temp_name = None
            _fsync_directory(directory)
        except OSError as exc:
            raise StateFileError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            if temp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)


class StateWriter:
    """Writes state snapshots without stalling the event loop: one writer task writes the
    newest snapshot in a worker thread, so an older snapshot never overwrites a newer one and
    a burst of changes costs one write. Failures go to `on_error` (on the event loop)."""

    def __init__(self, file: StateFile, on_error: Callable[[str], None]) -> None:
        self._file = file
        self._on_error = on_error
        self._unsaved: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, state: DeliveryState, *, blocking: bool = False) -> None:
        """Have `state` written; at once when `blocking` or when no event loop runs."""
        self._unsaved = self._file.encode(state)
        loop = None if blocking else _running_loop()
        if loop is None:
            self._write_unsaved()
        elif self._task is None or self._task.done():
            self._task = loop.create_task(self._write_all())

    async def flush(self) -> None:
        """Wait until every submitted snapshot is written (or failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _write_all(self) -> None:
        while self._unsaved is not None:
            data, self._unsaved = self._unsaved, None
            error = await asyncio.to_thread(self._write, data)
            if error is not None:
                self._on_error(error)

    def _write_unsaved(self) -> None:
        data, self._unsaved = self._unsaved, None
        if data is not None:
            error = self._write(data)
            if error is not None:
                self._on_error(error)

    def _write(self, data: bytes) -> str | None:
        try:
            self._file.write(data)
        except StateFileError as exc:
            return str(exc)
        return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible on every platform/file system)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

"""Read operator-supplied files without trusting them: regular files only, size capped.

A `password_file: /dev/zero` would otherwise eat all memory, a FIFO would block the event
loop for ever, and a directory gives an unhelpful error. Opening with O_NONBLOCK means even a
FIFO returns at once; `fstat` on the open descriptor then refuses anything but a regular file
(no race between the check and the read).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SECRET_FILE_LIMIT = 64 * 1024  # passwords, client secrets
CERTIFICATE_FILE_LIMIT = 1024 * 1024  # PEM/PFX bundles with chains
CONFIG_FILE_LIMIT = 1024 * 1024  # YAML configuration files


class UnreadableFileError(ValueError):
    """The file cannot be used; the message names the path and why, never its content."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The whole content of regular file `path`, refusing special files and anything over
    `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise UnreadableFileError(f"{path} is larger than {_size(limit)}")
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow after fstat: the cap holds on what is read
            chunk = os.read(fd, min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnreadableFileError(f"{path} is larger than {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_bounded_text(path: Path, limit: int) -> str:
    try:
        return read_bounded(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{path} is not valid UTF-8") from None


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit < 1024 * 1024 else f"{limit // (1024 * 1024)} MiB"

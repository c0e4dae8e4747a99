"""Re-read `--web.config.file` when it (or a file it names) changes, as exporter-toolkit
does, so a renewed certificate or a rotated password applies without a restart.

The check is a `stat` of each file, done at most once per second, on a request (for the
guards) or a TLS handshake (for the certificate). A file that no longer loads keeps the old
settings in force and is logged; the next change is tried again.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from m365_smtp_exporter.config import ConfigError
from m365_smtp_exporter.web_config import WebSecurity, load_web_security

log = structlog.get_logger(__name__)

MIN_CHECK_INTERVAL = 1.0
_Signature = tuple[tuple[str, int, int, int], ...]


def _signature(paths: list[Path]) -> _Signature:
    """What changes when a file is rewritten or replaced (atomic rename, symlink swap)."""
    entries = []
    for path in paths:
        try:
            info = os.stat(path)
            entries.append((str(path), info.st_mtime_ns, info.st_size, info.st_ino))
        except OSError:
            entries.append((str(path), -1, -1, -1))
    return tuple(entries)


def _files_of(path: Path, security: WebSecurity) -> list[Path]:
    files = [path]
    tls = security.config.tls_server_config
    if tls is not None:
        files += [tls.cert_file, tls.key_file]
        if tls.client_ca_file is not None:
            files.append(tls.client_ca_file)
    return files


class WebConfigWatcher:
    """The web settings in force: `middleware()` and `ssl_context` follow file changes."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = MIN_CHECK_INTERVAL,
    ) -> None:
        """Raises ConfigError when the file cannot be used at start."""
        self.path = path
        self._clock = clock
        self._min_interval = min_interval
        self.current = load_web_security(path)
        self._signature = _signature(_files_of(path, self.current))
        self._checked_at = clock()
        self._middlewares = self.current.build_middlewares()
        self.reloads = 0
        self.failures = 0
        self.ssl_context = self._listener_context()

    def _listener_context(self) -> ssl.SSLContext | None:
        """The listener's context hands each handshake the newest loaded context."""
        initial = self.current.ssl_context
        if initial is None:
            return None

        def newest(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            self.refresh()
            fresh = self.current.ssl_context
            if fresh is not None and ssl_object.context is not fresh:
                ssl_object.context = fresh

        initial.sni_callback = newest
        return initial

    def refresh(self) -> None:
        """Reload if a file changed since the last look (at most once per interval)."""
        now = self._clock()
        if now - self._checked_at < self._min_interval:
            return
        self._checked_at = now
        signature = _signature(_files_of(self.path, self.current))
        if signature == self._signature:
            return
        self._signature = signature
        try:
            fresh = load_web_security(self.path)
        except ConfigError as exc:
            self.failures += 1
            log.error(
                "web configuration not reloaded, the previous one stays in force",
                file=str(self.path),
                errors=exc.errors,
            )
            return
        if (fresh.ssl_context is None) != (self.current.ssl_context is None):
            self.failures += 1
            log.error(
                "web configuration not reloaded: turning TLS on or off needs a restart",
                file=str(self.path),
            )
            return
        if fresh.ssl_context is not None and self.current.ssl_context is not None:
            fresh.ssl_context.sni_callback = self.current.ssl_context.sni_callback
        self.current = fresh
        self._middlewares = fresh.build_middlewares()
        self._signature = _signature(_files_of(self.path, fresh))
        self.reloads += 1
        log.info("web configuration reloaded", file=str(self.path))

    def middleware(self) -> Middleware:
        """One middleware running the current file's guards (headers, names, passwords)."""

        @web.middleware
        async def current_guards(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.refresh()
            chain: Callable[[web.Request], Awaitable[web.StreamResponse]] = handler
            for guard in reversed(self._middlewares):
                chain = _bind(guard, chain)
            return await chain(request)

        return current_guards


def _bind(
    guard: Middleware, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await guard(request, handler)

    return bound

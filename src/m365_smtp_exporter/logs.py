"""structlog set-up: JSON off a TTY, console on one, and a processor that redacts secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "logfmt", "console"]
LEVELS = ("debug", "info", "warning", "error")

_REDACTED = "<redacted>"
_SENSITIVE_KEYS = re.compile(
    r"(pass(word)?|secret|token|authorization|credential|assertion)", re.IGNORECASE
)
# Bearer tokens, JWTs and SASL XOAUTH2 payloads can show up inside library error texts.
_SENSITIVE_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9._-]{5,}"),
    re.compile(r"(?i)(auth\s+(?:xoauth2|plain|login)\s+)\S+"),
)


class Redactor:
    """Removes known secret values and secret-shaped strings from anything it is given."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        # Very short values would redact ordinary words; they are not real secrets anyway.
        self._secrets.update(s for s in secrets if len(s) >= 4)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, _REDACTED)
        for pattern in _SENSITIVE_PATTERNS:
            value = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + _REDACTED, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: _REDACTED if _SENSITIVE_KEYS.search(str(k)) else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if _SENSITIVE_KEYS.search(key):
                event_dict[key] = _REDACTED
            else:
                event_dict[key] = self.value(event_dict[key])
        return event_dict


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> Redactor:
    """Configure structlog (and stdlib logging of libraries) once; returns the redactor."""
    redactor = redactor or Redactor()
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks are rendered to text first so the redactor sees them too.
        structlog.processors.format_exc_info,
        redactor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (azure-identity, aiohttp, apscheduler) log through stdlib logging: route
    # their warnings through the same redacting pipeline, keep their chatter out.
    handler = _StructlogHandler()
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    return redactor


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        log.log(record.levelno, message, logger=record.name)

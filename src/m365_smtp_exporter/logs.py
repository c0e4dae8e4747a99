"""structlog set-up: JSON off a TTY, console on one, and a processor that redacts secrets."""

from __future__ import annotations

import base64
import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

from m365_smtp_exporter.text_safety import printable

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


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
# Tokens are renewed hourly: keep the recent ones only, a day's worth is plenty.
_RUNTIME_SECRETS_KEPT = 64
_MIN_SECRET = 4  # shorter values would redact ordinary words; they are no real secrets
# Tokens are JWTs of a thousand characters; a short "token" is a test double or garbage and
# would otherwise redact an ordinary word ("expired") everywhere for the rest of the run.
_MIN_TOKEN = 16


def base64_cores(secret: str) -> set[str]:
    """Base64 fragments that appear whenever `secret` is base64-encoded inside any longer
    text (SASL PLAIN "\\0user\\0pass", XOAUTH2 "user=..\\x01auth=Bearer <token>\\x01\\x01").

    Base64 works on 3-byte groups, so an embedded secret is encoded in one of three
    alignments; the groups that mix with the neighbouring bytes are dropped, the middle is
    fixed whatever surrounds it."""
    data = secret.encode("utf-8")
    cores: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii").rstrip("=")
        start = 4 if shift else 0
        usable = ((shift + len(data)) // 3) * 4  # characters of complete groups
        core = encoded[start:usable] if (shift + len(data)) % 3 else encoded[start : usable - 4]
        if len(core) >= 8:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))  # base64url
    return cores


class _SecretSet:
    """Secret values and the base64 fragments that betray them, found by substring search.

    No regular expression: one over 64 kept tokens of a thousand characters (each with six
    base64 fragments) took up to 2 s to compile at every token renewal, on the event loop,
    and tried every alternative at every position of every text it redacted."""

    def __init__(self, keep: int | None = None, min_length: int = _MIN_SECRET) -> None:
        self._values: deque[str] = deque(maxlen=keep)
        self._min_length = min_length
        # (plain values, base64 fragments), each longest first so that a secret containing
        # another is removed whole; replaced as one tuple, read without the lock
        self._needles: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            fresh = [s for s in secrets if len(s) >= self._min_length and s not in self._values]
            if not fresh:
                return
            self._values.extend(fresh)
            cores: set[str] = set()
            for secret in self._values:
                cores.update(base64_cores(secret))
            self._needles = (
                tuple(sorted(set(self._values), key=len, reverse=True)),
                tuple(sorted(cores, key=len, reverse=True)),
            )

    def redact(self, value: str) -> str:
        plain, cores = self._needles
        for secret in plain:
            if secret in value:
                value = value.replace(secret, _REDACTED)
        for core in cores:
            start = value.find(core)
            while start != -1:
                # the whole base64 run holding the fragment goes, with its padding
                left, right = start, start + len(core)
                while left > 0 and value[left - 1] in _BASE64_ALPHABET:
                    left -= 1
                while right < len(value) and value[right] in _BASE64_ALPHABET:
                    right += 1
                padding = 0
                while padding < 2 and right < len(value) and value[right] == "=":
                    right, padding = right + 1, padding + 1
                value = value[:left] + _REDACTED + value[right:]
                start = value.find(core, left + len(_REDACTED))
        return value


# Secrets learnt while running (bearer tokens, secrets read by a one-off `probe` command):
# every Redactor also removes these, because the texts that may echo them (SMTP replies,
# token endpoint errors) are produced deep in the probe stack, away from any Redactor.
# Configured secrets are few and kept; tokens are renewed hourly and only the recent ones kept.
_CONFIGURED = _SecretSet()
_RUNTIME = _SecretSet(keep=_RUNTIME_SECRETS_KEPT, min_length=_MIN_TOKEN)


def register_secret(*secrets: str, transient: bool = False) -> None:
    """Make every redaction (logs, transcripts, probe results) remove these values;
    `transient` ones (tokens) are forgotten after the newest few dozen."""
    (_RUNTIME if transient else _CONFIGURED).add(secrets)


def redact(text: str) -> str:
    """`text` without any registered secret, plain or base64, nor secret-shaped strings."""
    value = _RUNTIME.redact(_CONFIGURED.redact(text))
    for pattern in _SENSITIVE_PATTERNS:
        value = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + _REDACTED, value)
    return value


class Redactor:
    """Removes known secret values (plain and base64) and secret-shaped strings."""

    def __init__(self) -> None:
        self._secrets = _SecretSet()

    def add(self, secrets: Iterable[str]) -> None:
        values = list(secrets)
        self._secrets.add(values)
        _CONFIGURED.add(values)  # texts built outside the logging pipeline see them too

    def text(self, value: str) -> str:
        return redact(self._secrets.redact(value))

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
        # A reply text with ESC/OSC/CR in it must not act on the terminal reading the log;
        # JSON escapes them itself.
        *([] if fmt == "json" else [_Printable(keep_newlines=fmt == "console")]),
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


class _Printable:
    """Shows control characters of every string value as `\\xNN`."""

    def __init__(self, keep_newlines: bool) -> None:
        self._keep_newlines = keep_newlines

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = printable(value, keep_newlines=self._keep_newlines)
        return event_dict


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        log.log(record.levelno, message, logger=record.name)

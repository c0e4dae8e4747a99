"""A tenant's quota state on disk: the engine's minute buckets, the trace de-dup keys still
needed and the trace cursor, so a restart pulls only the gap instead of the whole day.

The file is JSON (orjson) with a format name and version, the tenant's name and tenant id,
and the time it was saved. Version 2 keeps each sender's minute buckets as the engine holds
them, packed 64-bit words (``bucket << 32 | recipients``, little-endian, base64): a day of a
big tenant (a million buckets) is 11 MB on disk and is saved and read back without a Python
object per bucket (version 1's `[bucket, count]` pairs took ~100 MB more to read; it is
still read). It is written atomically (temporary file in the same directory,
fsync, rename, fsync of the directory) in a worker thread. On load, a file that is not
ours, of another version or tenant, too old to matter, too big, truncated or otherwise
malformed is reported (a warning and `REJECTED[(tenant, reason)]`) and ignored: the
exporter then back-fills from Graph as on a first start. Nothing in it is trusted: every
value is type-checked before it reaches the engine or the puller.
"""

from __future__ import annotations

import asyncio
import base64
import operator
import os
import sys
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import structlog

from m365_smtp_exporter.graph.trace import PullerState, ResumePoint
from m365_smtp_exporter.graph.windows import PullWindow
from m365_smtp_exporter.quota.engine import EngineUsage, SenderUsageState
from m365_smtp_exporter.quota.rows import domain_of, normalize_address
from m365_smtp_exporter.quota.window import COUNT_BITS, COUNT_MASK, bucket_of

log = structlog.get_logger(__name__)

FORMAT = "m365-smtp-exporter/quota-state"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_BYTES = 512 * 2**20
# Older than this, every bucket in the file has left the 24 h window.
MAX_AGE = 86_400.0 + 3_600.0
REASONS = ("unreadable", "too_big", "corrupt", "foreign", "version", "too_old")
REJECTED: Counter[tuple[str, str]] = Counter()  # (tenant, reason) -> files ignored


class StateRejectedError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def encode_state(
    *,
    tenant: str,
    tenant_id: str,
    saved_at: float,
    puller: PullerState | None,
    engine: EngineUsage,
) -> Iterator[bytes]:
    """The document in pieces, one sender at a time, for `write_atomically`: a big tenant's
    state is written without a second copy of it in memory."""
    head = orjson.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "tenant": tenant,
            "tenant_id": tenant_id,
            "saved_at": saved_at,
            "puller": None if puller is None else _puller_document(puller),
        }
    )
    yield head[:-1] + b',"engine":{"senders":{'
    separator = b""
    for sender, usage in engine.senders.items():
        entry = {
            "external": _pack(usage.external),
            "internal": _pack(usage.internal),
            "messages": sorted(usage.messages.items()),
        }
        yield separator + orjson.dumps(sender) + b":" + orjson.dumps(entry)
        separator = b","
    yield b"}}}"


def _pack(words: array[int]) -> str:
    if sys.byteorder == "big":
        words = array("Q", words)
        words.byteswap()
    return base64.b64encode(words.tobytes()).decode("ascii")


def _puller_document(state: PullerState) -> dict[str, Any]:
    resume = state.resume
    return {
        "cursor": state.cursor,
        "span": list(state.span) if state.span is not None else None,
        "resume": None
        if resume is None
        else {
            "window": [resume.window.start, resume.window.end],
            "next_link": resume.next_link,
            "oldest": resume.oldest,
            "boundary": sorted(resume.boundary),
        },
        "seen": [[minute, [list(key) for key in keys]] for minute, keys in state.seen],
    }


def write_atomically(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, or pieces written in turn): never a half-written
    file, even on a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.writelines([data] if isinstance(data, bytes) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def save(path: Path, data: bytes) -> None:
    await asyncio.to_thread(write_atomically, path, data)


def read_state(
    path: Path, *, tenant: str, tenant_id: str, now: float, max_age: float = MAX_AGE
) -> dict[str, Any] | None:
    """The saved document for this tenant, or None (no file, or one reported and ignored)."""
    try:
        if not path.exists():
            return None
        if path.stat().st_size > MAX_BYTES:
            raise StateRejectedError("too_big", f"over {MAX_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        report_rejected(path, tenant, StateRejectedError("unreadable", exc.strerror or str(exc)))
        return None
    except StateRejectedError as exc:
        report_rejected(path, tenant, exc)
        return None
    try:
        return check_document(data, tenant=tenant, tenant_id=tenant_id, now=now, max_age=max_age)
    except StateRejectedError as exc:
        report_rejected(path, tenant, exc)
        return None


def report_rejected(path: Path, tenant: str, exc: StateRejectedError) -> None:
    REJECTED[(tenant, exc.reason)] += 1
    log.warning(
        "quota state file ignored", tenant=tenant, path=str(path), reason=exc.reason, error=str(exc)
    )


def check_document(
    data: bytes, *, tenant: str, tenant_id: str, now: float, max_age: float
) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StateRejectedError("corrupt", "not JSON (truncated?)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateRejectedError("foreign", "not a quota state file")
    if document.get("version") not in READABLE_VERSIONS:
        raise StateRejectedError("version", f"format version {document.get('version')!r}")
    if document.get("tenant") != tenant or document.get("tenant_id") != tenant_id:
        raise StateRejectedError("foreign", "saved for another tenant")
    saved_at = document.get("saved_at")
    if not isinstance(saved_at, int | float) or isinstance(saved_at, bool):
        raise StateRejectedError("corrupt", "no saved_at")
    if now - saved_at > max_age:
        raise StateRejectedError("too_old", f"saved {now - saved_at:.0f}s ago")
    if saved_at > now + 300:
        raise StateRejectedError("corrupt", "saved in the future")
    return document


# ---- typed reading of an untrusted document ---------------------------------------------


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StateRejectedError("corrupt", f"{what} is not an integer")
    return value


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise StateRejectedError("corrupt", f"{what} is not a number")
    return float(value)


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise StateRejectedError("corrupt", f"{what} is not a string")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise StateRejectedError("corrupt", f"{what} is not a list")
    return value


def _key(value: object) -> tuple[str, str]:
    pair = _list(value, "a de-dup key")
    if len(pair) != 2:
        raise StateRejectedError("corrupt", "a de-dup key is not a pair")
    return (_str(pair[0], "a trace id"), _str(pair[1], "a recipient"))


def puller_state(document: Mapping[str, Any]) -> PullerState | None:
    """The puller's part of a checked document (raises StateRejectedError when malformed)."""
    raw = document.get("puller")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise StateRejectedError("corrupt", "puller is not an object")
    cursor = raw.get("cursor")
    cursor = None if cursor is None else _int(cursor, "cursor")
    span_raw = raw.get("span")
    span = None
    if span_raw is not None:
        pair = _list(span_raw, "span")
        if len(pair) != 2:
            raise StateRejectedError("corrupt", "span is not a pair")
        span = (_int(pair[0], "span"), _int(pair[1], "span"))
    resume = None
    resume_raw = raw.get("resume")
    if resume_raw is not None:
        if not isinstance(resume_raw, dict):
            raise StateRejectedError("corrupt", "resume is not an object")
        window = _list(resume_raw.get("window"), "resume window")
        if len(window) != 2:
            raise StateRejectedError("corrupt", "resume window is not a pair")
        oldest = resume_raw.get("oldest")
        resume = ResumePoint(
            PullWindow(_int(window[0], "window"), _int(window[1], "window")),
            _str(resume_raw.get("next_link"), "next_link"),
            None if oldest is None else _number(oldest, "oldest"),
            frozenset(_key(key) for key in _list(resume_raw.get("boundary", []), "boundary")),
        )
    seen = []
    for entry in _list(raw.get("seen", []), "seen"):
        pair = _list(entry, "a seen bucket")
        if len(pair) != 2:
            raise StateRejectedError("corrupt", "a seen bucket is not a pair")
        seen.append((_int(pair[0], "minute"), [_key(k) for k in _list(pair[1], "keys")]))
    return PullerState(cursor, resume, span, seen)


def _pairs(value: object, what: str) -> array[int]:
    """Version 1: `[[bucket, count], ...]` (absent: none), as packed words."""
    counts: dict[int, int] = {}
    if value is None:
        return array("Q")
    for entry in _list(value, what):
        pair = _list(entry, what)
        if len(pair) != 2:
            raise StateRejectedError("corrupt", f"{what} entry is not a pair")
        bucket, count = _int(pair[0], what), _int(pair[1], what)
        if not 0 < count <= COUNT_MASK or not 0 <= bucket < 2**31:
            raise StateRejectedError("corrupt", f"{what} count out of range")
        counts[bucket] = count
    return array("Q", [bucket << COUNT_BITS | counts[bucket] for bucket in sorted(counts)])


def _words(value: object, what: str) -> array[int]:
    """Version 2: packed words, checked as the engine needs them (buckets strictly
    ascending, every count above 0) before anything reaches it. Absent: none."""
    if value is None:
        return array("Q")
    try:
        raw = base64.b64decode(_str(value, what), validate=True)
    except ValueError:
        raise StateRejectedError("corrupt", f"{what} is not base64") from None
    if len(raw) % 8:
        raise StateRejectedError("corrupt", f"{what} is not a whole number of words")
    words = array("Q", raw)
    if sys.byteorder == "big":
        words.byteswap()
    buckets = [word >> COUNT_BITS for word in words]
    if not all(map(operator.lt, buckets, islice(buckets, 1, None))):
        raise StateRejectedError("corrupt", f"{what} buckets are not strictly ascending")
    if any(word & COUNT_MASK == 0 for word in words):
        raise StateRejectedError("corrupt", f"{what} holds an empty bucket")
    return words


def engine_usage(document: Mapping[str, Any], internal_domains: frozenset[str]) -> EngineUsage:
    """The engine's part of a checked document. Only senders of the tenant's accepted
    domains are taken (the engine counts no others): a file cannot mint label values, and no
    bucket may lie after the minute the file was saved in (it would never expire)."""
    raw = document.get("engine")
    if not isinstance(raw, dict):
        raise StateRejectedError("corrupt", "engine is not an object")
    senders_raw = raw.get("senders")
    if not isinstance(senders_raw, dict):
        raise StateRejectedError("corrupt", "engine senders is not an object")
    buckets = _pairs if document.get("version") == 1 else _words
    last_bucket = bucket_of(_number(document.get("saved_at"), "saved_at")) + 1
    senders: dict[str, SenderUsageState] = {}
    for sender, usage in senders_raw.items():
        if normalize_address(sender) != sender or domain_of(sender) not in internal_domains:
            raise StateRejectedError("corrupt", "a sender outside the accepted domains")
        if not isinstance(usage, dict):
            raise StateRejectedError("corrupt", "a sender's usage is not an object")
        messages: dict[int, dict[str, int]] = {}
        for entry in _list(usage.get("messages", []), "messages"):
            pair = _list(entry, "messages")
            if len(pair) != 2 or not isinstance(pair[1], dict):
                raise StateRejectedError("corrupt", "a message bucket is malformed")
            bucket = _int(pair[0], "bucket")
            if not 0 <= bucket <= last_bucket:
                raise StateRejectedError("corrupt", "a message bucket out of range")
            messages[bucket] = {
                _str(mid, "message id"): _int(rows, "rows") for mid, rows in pair[1].items()
            }
        state = SenderUsageState(
            buckets(usage.get("external"), "external"),
            buckets(usage.get("internal"), "internal"),
            messages,
        )
        for words in (state.external, state.internal):
            if words and words[-1] >> COUNT_BITS > last_bucket:
                raise StateRejectedError("corrupt", "a bucket after the file was saved")
        senders[sender] = state
    return EngineUsage(senders)

"""Typed facts one subsystem learns and others need, on a tiny in-process bus.

Handlers run synchronously on the event loop, in subscription order, when the fact is
published: they must be quick (record, enqueue) and never block. A failing handler is
logged and does not stop the others, nor the publisher.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.graph.records import TraceRecord
from m365_smtp_exporter.smtp.result import ProbeResult

log = structlog.get_logger(__name__)

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class ProbeFinished:
    """A probe run ended (sent or not); `probe` is the configuration it ran with."""

    result: ProbeResult
    probe: ProbeConfig


@dataclass(frozen=True, slots=True)
class TraceRowsArrived:
    """New message-trace rows of one tenant (each row delivered once)."""

    tenant: str
    records: Sequence[TraceRecord]


class EventBus:
    def __init__(self) -> None:
        self._handlers: defaultdict[type[Any], list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[kind].append(handler)

    def publish(self, event: object) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                # One subscriber's bug must not cost the others their facts.
                log.exception("event handler failed", kind=type(event).__name__)

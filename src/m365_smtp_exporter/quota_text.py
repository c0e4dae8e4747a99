"""The `m365_quota_*` families written straight to exposition text.

With 10,000 senders they are ~250,000 samples: as prometheus_client Metric objects that is
a quarter of a million tracked containers per render, enough to set off full garbage
collections that stop every thread (the event loop included) for 100+ ms. Lines here are
plain strings, which the collector does not track. The text is the same in the Prometheus
and OpenMetrics formats for gauges; tests/test_quota_text.py holds it byte-equal to what
prometheus_client renders from `quota.metrics.quota_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, cast

from prometheus_client.utils import floatToGoString

from m365_smtp_exporter.quota.cardinality import Group, SenderSelection, hash_sender
from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.metrics import ENFORCED_FAMILY, FAMILIES, PROBE_FAMILY
from m365_smtp_exporter.quota.snapshot import QuotaFigure


class QuotaSource(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def series(self) -> Sequence[Group]: ...
    @property
    def selection(self) -> SenderSelection: ...
    @property
    def probe_recipients(self) -> Mapping[str, int]: ...
    @property
    def limit_enforced(self) -> Mapping[LimitName, bool]: ...


go = cast(Callable[[float], str], floatToGoString)  # Go's float formatting, as Prometheus


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _head(name: str, help_text: str) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} gauge\n"


# Each sender's lines from the previous render, per tenant label: the engine keeps a sender's
# figure tuple while its usage does not change, so a render only formats what changed and
# joins one piece per sender and family (not one per line). Keyed by id(); the entry holds
# the group, so the id cannot be reused while it is cached. Each render keeps only the
# groups it wrote, which bounds the cache. Two renders at once (two formats, two threads)
# only cost each other a miss.
_Pieces = tuple[bytes, bytes, bytes, bytes, bytes]  # one per family of FAMILIES
_cache: dict[str, dict[int, tuple[Group, _Pieces]]] = {}


def _figure_lines(figure: QuotaFigure, tenant_label: str) -> tuple[str, str, str, str, str]:
    labels = (  # label names in sorted order, as prometheus_client writes them
        f'{{limit="{_escape(figure.limit_name.value)}",'
        f'sender="{_escape(figure.sender)}",tenant="{tenant_label}"}} '
    )
    return (
        f"m365_quota_used{labels}{go(float(figure.used))}\n",
        f"m365_quota_limit{labels}{go(float(figure.limit))}\n",
        f"m365_quota_utilization_ratio{labels}{go(figure.utilization)}\n",
        f"m365_quota_remaining{labels}{go(float(figure.remaining))}\n",
        f"m365_quota_recovery_seconds{labels}{go(figure.recovery_seconds)}\n",
    )


def _group_pieces(group: Group, tenant_label: str) -> _Pieces:
    lines = [_figure_lines(figure, tenant_label) for figure in group]
    used, limit, ratio, remaining, recovery = (
        ("".join(column).encode() for column in zip(*lines, strict=True))
        if lines
        else (b"", b"", b"", b"", b"")
    )
    return used, limit, ratio, remaining, recovery


def quota_text(tenants: Iterable[QuotaSource]) -> bytes:
    families: tuple[list[bytes], ...] = ([], [], [], [], [])
    probe: list[str] = []
    enforced: list[str] = []
    for tenant in tenants:
        tenant_label = _escape(tenant.name)
        for limit_name, on in sorted(tenant.limit_enforced.items()):
            enforced.append(
                f'm365_quota_limit_enforced{{limit="{_escape(limit_name.value)}",'
                f'tenant="{tenant_label}"}} {go(1.0 if on else 0.0)}\n'
            )
        previous = _cache.get(tenant_label, {})
        kept: dict[int, tuple[Group, _Pieces]] = {}
        for group in tenant.series:
            entry = previous.get(id(group))
            if entry is None:
                entry = (group, _group_pieces(group, tenant_label))
            kept[id(group)] = entry
            for family, piece in zip(families, entry[1], strict=True):
                family.append(piece)
        _cache[tenant_label] = kept
        selection = tenant.selection
        for sender, count in sorted(tenant.probe_recipients.items()):
            label = hash_sender(sender, selection.hash_salt) if selection.hash_senders else sender
            probe.append(
                f'm365_quota_probe_recipients{{sender="{_escape(label)}",'
                f'tenant="{tenant_label}"}} {go(float(count))}\n'
            )
    parts: list[bytes] = []
    for (name, help_text), pieces in zip(FAMILIES, families, strict=True):
        parts.append(_head(name, help_text).encode())
        parts.extend(pieces)
    tails = ((PROBE_FAMILY, probe), (ENFORCED_FAMILY, enforced))
    for (name, help_text), lines in tails:
        parts.append((_head(name, help_text) + "".join(lines)).encode())
    return b"".join(parts)

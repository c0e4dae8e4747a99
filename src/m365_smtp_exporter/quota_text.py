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
from typing import NamedTuple, Protocol, cast

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


# Renders reuse what did not change, at two levels, per tenant label:
# - each sender's lines, one piece per family: the engine keeps a sender's figure tuple
#   while its usage does not change, so only changed senders are formatted again;
# - runs of consecutive senders ("blocks"), joined per family: a block whose senders all
#   kept their tuples is reused whole, so a render joins a few hundred pieces, not tens of
#   thousands. Blocks end after a sender whose name hashes to 0 mod BLOCK (boundaries set
#   by content, not position), so a sender coming or going changes only its own block.
# Keyed by id(); each block holds its groups, so no id is reused while it is cached. Each
# render keeps only what it wrote, which bounds the caches. Two renders at once (two
# formats, two threads) only cost each other misses.
_Pieces = tuple[bytes, bytes, bytes, bytes, bytes]  # one per family of FAMILIES
BLOCK = 64  # senders per block, on average


class _Block(NamedTuple):
    groups: tuple[Group, ...]  # held: their ids are the block's key
    pieces: list[_Pieces]  # each group's
    joined: _Pieces


_blocks: dict[str, dict[tuple[int, ...], _Block]] = {}


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


def _render_series(
    series: Sequence[Group], tenant_label: str, families: tuple[list[bytes], ...]
) -> None:
    """Append the lines of `series` to `families`, block by block (see `_blocks`)."""
    previous = _blocks.get(tenant_label, {})
    blocks: dict[tuple[int, ...], _Block] = {}
    known: dict[int, _Pieces] | None = None  # id(group) -> its pieces, built on a first miss

    def flush(block: list[Group]) -> None:
        nonlocal known
        key = tuple(map(id, block))
        entry = previous.get(key)
        if entry is None:
            if known is None:
                known = {
                    id(group): pieces
                    for old in previous.values()
                    for group, pieces in zip(old.groups, old.pieces, strict=True)
                }
            pieces = [known.get(id(group)) or _group_pieces(group, tenant_label) for group in block]
            joined = cast(_Pieces, tuple(b"".join(column) for column in zip(*pieces, strict=True)))
            entry = _Block(tuple(block), pieces, joined)
        blocks[key] = entry
        for family, piece in zip(families, entry.joined, strict=True):
            family.append(piece)

    block: list[Group] = []
    for group in series:
        block.append(group)
        if not group or hash(group[0].sender) % BLOCK == 0:
            flush(block)
            block = []
    if block:
        flush(block)
    _blocks[tenant_label] = blocks


def quota_text(tenants: Iterable[QuotaSource]) -> bytes:
    return b"".join(quota_text_parts(tenants))


def quota_text_parts(tenants: Iterable[QuotaSource]) -> list[bytes]:
    """The quota families' text as the pieces it is made of (cached blocks of senders), not
    joined: the exposition writes and compresses them one by one."""
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
        _render_series(tenant.series, tenant_label, families)
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
    return parts

"""Bounding the `sender` label: configured senders, the top N, and `__other__`.

Configured senders always appear (with zero usage when idle). Of the other senders the
N with the highest utilization (max over their limits) appear; the rest are summed per
limit under `sender="__other__"`: used and limit summed (so its ratio is sum used / sum
limit), recovery the longest of them. Tenant figures (sender "") pass through. Addresses
may be replaced by a salted hash at output only; the engine always works on real ones.

`select_series` computes this from scratch (a sort of every sender); `SeriesSelector` keeps
the same result up to date from each snapshot's list of changed senders, so a refresh of
100,000 senders costs what changed, not a sort and a sum of all of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sortedcontainers import SortedList

from m365_smtp_exporter.quota.limits import LimitName
from m365_smtp_exporter.quota.snapshot import QuotaFigure, QuotaSnapshot

OTHER_SENDER = "__other__"
DEFAULT_TOP_N = 50
HASH_PREFIX = "h:"
_HASH_LENGTHS = (8, 16, 64)  # hex digits; longer only if shorter ones collide


@dataclass(frozen=True, slots=True)
class SenderSelection:
    """Which senders get their own series, and whether addresses are hashed."""

    configured: frozenset[str] = frozenset()
    top_n: int = DEFAULT_TOP_N
    hash_senders: bool = False
    hash_salt: str = ""

    def __post_init__(self) -> None:
        if self.top_n < 0:
            raise ValueError(f"top_n must be >= 0, got {self.top_n}")
        object.__setattr__(
            self, "configured", frozenset(s.strip().lower() for s in self.configured)
        )

    def __repr__(self) -> str:  # the salt is a secret: keep it out of logs
        return (
            f"SenderSelection(configured={sorted(self.configured)!r}, top_n={self.top_n},"
            f" hash_senders={self.hash_senders}, hash_salt='***')"
        )


def hash_sender(address: str, salt: str, hex_digits: int = _HASH_LENGTHS[0]) -> str:
    """`h:` + the first `hex_digits` hex digits of HMAC-SHA256(salt, address)."""
    digest = hmac.new(salt.encode(), address.lower().encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:hex_digits]


def _labels(
    senders: Iterable[str], selection: SenderSelection, shortest: dict[str, str] | None = None
) -> dict[str, str]:
    """Each sender's label; `shortest` caches the shortest hashes between calls."""
    senders = list(senders)
    if not selection.hash_senders:
        return {s: s for s in senders}
    for digits in _HASH_LENGTHS:
        if digits == _HASH_LENGTHS[0] and shortest is not None:
            for s in senders:
                if s not in shortest:
                    shortest[s] = hash_sender(s, selection.hash_salt, digits)
            labels = {s: shortest[s] for s in senders}
        else:
            labels = {s: hash_sender(s, selection.hash_salt, digits) for s in senders}
        if len(set(labels.values())) == len(labels):
            return labels
    raise AssertionError("unreachable: SHA-256 digests of distinct inputs collide")


def select_series(snapshot: QuotaSnapshot, selection: SenderSelection) -> tuple[QuotaFigure, ...]:
    """The figures to export: kept senders, `__other__` when needed, then the tenant's."""
    others = [s for s in snapshot.senders if s not in selection.configured]
    others.sort(key=lambda s: (-snapshot.peak_utilization(s), s))
    kept = sorted(selection.configured) + sorted(others[: selection.top_n])
    labels = _labels(kept, selection)
    output: list[QuotaFigure] = []
    for sender in kept:
        label = labels[sender]
        if label == sender:  # the snapshot's own figures: nothing new for the collector
            output.extend(snapshot.figures_for(sender))
        else:
            output.extend(
                QuotaFigure(label, f.limit_name, f.used, f.limit, f.recovery_seconds)
                for f in snapshot.figures_for(sender)
            )
    output.extend(_summed(snapshot, others[selection.top_n :]))
    output.extend(snapshot.tenant)
    return tuple(output)


def _summed(snapshot: QuotaSnapshot, senders: list[str]) -> list[QuotaFigure]:
    used: dict[LimitName, int] = {}
    limit: dict[LimitName, int] = {}
    recovery: dict[LimitName, float] = {}
    for sender in senders:
        for f in snapshot.senders[sender]:
            used[f.limit_name] = used.get(f.limit_name, 0) + f.used
            limit[f.limit_name] = limit.get(f.limit_name, 0) + f.limit
            recovery[f.limit_name] = max(recovery.get(f.limit_name, 0.0), f.recovery_seconds)
    return [
        QuotaFigure(OTHER_SENDER, name, used[name], limit[name], recovery[name]) for name in used
    ]


Group = tuple[QuotaFigure, ...]  # one sender's figures (or `__other__`'s, or the tenant's)
_Key = tuple[float, str]  # (-peak utilization, sender): the order of `select_series`


def _relabel(figures: Group, label: str) -> Group:
    return tuple(
        QuotaFigure(label, f.limit_name, f.used, f.limit, f.recovery_seconds) for f in figures
    )


class SeriesSelector:
    """`select_series` of successive snapshots of one engine, maintained by delta.

    Holds every unconfigured sender in (-peak, sender) order; the first `top_n` are kept,
    the rest are summed into `__other__` as they move in and out (used and limit by
    addition and subtraction; the longest recovery over the few of them with one
    running). A snapshot whose `delta_base` is not the last one seen, or a new selection,
    is taken from scratch. `groups` equals `select_series`, cut per sender.
    """

    def __init__(self, selection: SenderSelection) -> None:
        self._selection = selection
        self._base: int | None = None  # the generation the state reflects
        self._figures: Mapping[str, Group] = {}  # that snapshot's senders
        self._order: SortedList = SortedList()
        self._key: dict[str, _Key] = {}
        self._kept: SortedList = SortedList()  # sender names, for the output order
        self._kept_set: set[str] = set()
        self._used: dict[LimitName, int] = {}
        self._limit: dict[LimitName, int] = {}
        self._recovering: dict[str, Group] = {}  # summed senders with a recovery running
        self._labels: dict[str, str] = {}
        self._shortest: dict[str, str] = {}  # sender -> its shortest hash label
        self._relabeled: dict[str, tuple[Group, Group]] = {}
        self._kept_groups: list[Group] = []  # the kept senders' groups, in `_kept` order
        self._membership_changed = False
        self.groups: tuple[Group, ...] = ()
        self.rebuilds = 0  # selections taken from scratch (tests, benchmarks)

    def update(self, snapshot: QuotaSnapshot, selection: SenderSelection) -> tuple[Group, ...]:
        """The groups to export for `snapshot` (also kept as `groups`)."""
        if (
            selection != self._selection
            or snapshot.changed is None
            or snapshot.delta_base is None
            or snapshot.delta_base != self._base
        ):
            self._rebuild(snapshot, selection)
        else:
            self._apply(snapshot, snapshot.changed)
        self._base = snapshot.generation
        self._figures = snapshot.senders
        self.groups = self._output(snapshot)
        return self.groups

    def _rebuild(self, snapshot: QuotaSnapshot, selection: SenderSelection) -> None:
        self.rebuilds += 1
        self._selection = selection
        configured = selection.configured
        self._key = {
            s: (-snapshot.peak_utilization(s), s) for s in snapshot.senders if s not in configured
        }
        self._order = SortedList(self._key.values())
        kept = [s for _, s in self._order[: selection.top_n]]
        self._kept = SortedList(kept)
        self._kept_set = set(kept)
        self._used, self._limit, self._recovering = {}, {}, {}
        for _, sender in self._order[selection.top_n :]:
            self._add_other(sender, snapshot.senders[sender], 1)
        self._shortest = {}
        self._relabel_all(snapshot)

    def _relabel_all(self, snapshot: QuotaSnapshot) -> None:
        """Labels of every sender shown, and the kept senders' groups under them."""
        configured = sorted(self._selection.configured)
        self._labels = _labels([*configured, *self._kept], self._selection, self._shortest)
        self._relabeled = {}
        self._kept_groups = [self._group(s, snapshot.senders[s]) for s in self._kept]

    def _group(self, sender: str, figures: Group) -> Group:
        label = self._labels.get(sender)
        if label is None:  # newly shown: its shortest hash, checked for clashes in `_apply`
            label = self._labels[sender] = _labels([sender], self._selection, self._shortest)[
                sender
            ]
        if label == sender:
            return figures
        cached = self._relabeled.get(sender)
        if cached is None or cached[0] != figures:
            cached = self._relabeled[sender] = (figures, _relabel(figures, label))
        return cached[1]

    def _add_other(self, sender: str, figures: Group, sign: int) -> None:
        used, limit = self._used, self._limit
        for f in figures:
            used[f.limit_name] = used.get(f.limit_name, 0) + sign * f.used
            limit[f.limit_name] = limit.get(f.limit_name, 0) + sign * f.limit
        if sign > 0 and any(f.recovery_seconds for f in figures):
            self._recovering[sender] = figures
        elif sign < 0:
            self._recovering.pop(sender, None)

    def _keep(self, sender: str, figures: Group) -> None:
        index = self._kept.bisect_left(sender)
        self._kept.add(sender)
        self._kept_set.add(sender)
        self._kept_groups.insert(index, self._group(sender, figures))
        self._membership_changed = True

    def _drop(self, sender: str) -> None:
        index = self._kept.index(sender)
        del self._kept[index]
        del self._kept_groups[index]
        self._kept_set.discard(sender)
        self._membership_changed = True

    def _apply(self, snapshot: QuotaSnapshot, changed: Iterable[str]) -> None:
        top_n, configured = self._selection.top_n, self._selection.configured
        order, key, old_figures = self._order, self._key, self._figures
        changed = set(changed)
        moved: set[str] = set()  # changed senders still present: placed below
        self._membership_changed = False
        for sender in changed:
            if sender in configured:
                continue
            old_key = key.pop(sender, None)
            if old_key is not None:
                order.remove(old_key)
                if sender in self._kept_set:
                    self._drop(sender)
                else:
                    self._add_other(sender, old_figures[sender], -1)
            if sender in snapshot.senders:
                key[sender] = new_key = (-snapshot.peak_utilization(sender), sender)
                order.add(new_key)
                moved.add(sender)
        # Each changed sender moves the others by at most one place: the unchanged ones that
        # crossed the boundary (the top_n-th place) are within len(changed) places of it.
        reach = len(changed) + 1
        start = max(0, top_n - reach)
        for place, (_, sender) in enumerate(order.islice(start, top_n + reach), start):
            if sender in key and sender not in moved:
                self._place(sender, place < top_n, snapshot)
        for sender in moved:
            self._place(sender, order.bisect_left(key[sender]) < top_n, snapshot, new=True)
        if len(order) <= top_n:  # nothing summed: start the sums afresh (exact zeros)
            self._used, self._limit, self._recovering = {}, {}, {}
        if self._selection.hash_senders and self._membership_changed:
            # a hash prefix shared by two shown senders lengthens every label (see _labels)
            shown = [*sorted(configured), *self._kept]
            labels = _labels(shown, self._selection, self._shortest)
            if any(labels[s] != label for s, label in self._labels.items() if s in labels):
                self._relabel_all(snapshot)
            self._labels = labels

    def _place(self, sender: str, keep: bool, snapshot: QuotaSnapshot, new: bool = False) -> None:
        kept = sender in self._kept_set
        figures = snapshot.senders[sender]
        if new:
            if keep:
                self._keep(sender, figures)
            else:
                self._add_other(sender, figures, 1)
        elif keep and not kept:
            self._add_other(sender, figures, -1)
            self._keep(sender, figures)
        elif kept and not keep:
            self._drop(sender)
            self._add_other(sender, figures, 1)

    def _output(self, snapshot: QuotaSnapshot) -> tuple[Group, ...]:
        selection = self._selection
        groups = [self._group(s, snapshot.figures_for(s)) for s in sorted(selection.configured)]
        groups += self._kept_groups
        if len(self._order) > selection.top_n:
            recovery: dict[LimitName, float] = dict.fromkeys(self._used, 0.0)
            for figures in self._recovering.values():
                for f in figures:
                    recovery[f.limit_name] = max(recovery[f.limit_name], f.recovery_seconds)
            groups.append(
                tuple(
                    QuotaFigure(OTHER_SENDER, name, used, self._limit[name], recovery[name])
                    for name, used in self._used.items()
                )
            )
        groups.append(snapshot.tenant)
        return tuple(groups)

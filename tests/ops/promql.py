"""Just enough PromQL lexing to lint queries: which series they select, with which labels.

Parsing (syntax and types) is left to promtool; this only finds names, so that a typo in a
metric or label name is caught before any Prometheus runs the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<number>[0-9][0-9a-zA-Z_.]*(?:[eE][+-][0-9]+)?|\.[0-9]+)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<punct>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", *_GROUPING}
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Selector:
    """One vector selector: its metric name ("" when selected by labels only) and labels."""

    metric: str
    labels: frozenset[str]


@dataclass(frozen=True, slots=True)
class Names:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]  # labels named in by/without/on/ignoring/group_*


def tokens(expr: str) -> list[Token]:
    result = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot lex {expr[position : position + 20]!r} in {expr!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            result.append(Token(kind, match.group()))
    return result


def _matchers(items: list[Token], start: int) -> tuple[dict[str, str], int]:
    """Label matchers from the `{` at `start`; returns {label: value} and the index after `}`."""
    labels: dict[str, str] = {}
    index = start + 1
    while items[index].text != "}":
        name, _, value = items[index], items[index + 1], items[index + 2]
        if name.kind != "ident" or value.kind != "string":
            raise ValueError(f"bad label matcher near {name.text!r}")
        labels[name.text] = value.text[1:-1]
        index += 3
        if items[index].text == ",":
            index += 1
    return labels, index + 1


def names(expr: str) -> Names:
    items = tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    index = 0
    while index < len(items):
        token = items[index]
        following = items[index + 1].text if index + 1 < len(items) else ""
        if token.kind == "ident" and token.text in _GROUPING:
            if following == "(":
                index += 2
                while items[index].text != ")":
                    if items[index].kind == "ident":
                        grouping.add(items[index].text)
                    index += 1
            index += 1
            continue
        if token.kind == "ident" and (
            token.text in _KEYWORDS
            or following == "("
            or (token.text in _AGGREGATIONS and following in _GROUPING)
        ):
            index += 1
            continue
        if token.kind == "ident":
            labels: dict[str, str] = {}
            index += 1
            if following == "{":
                labels, index = _matchers(items, index)
            selectors.append(Selector(token.text, frozenset(labels)))
            continue
        if token.text == "{":
            labels, index = _matchers(items, index)
            selectors.append(Selector(labels.get("__name__", ""), frozenset(labels) - {"__name__"}))
            continue
        index += 1
    return Names(tuple(selectors), frozenset(grouping))

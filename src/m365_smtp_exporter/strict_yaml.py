"""A YAML loader for configuration files: safe tags only, no duplicate keys, bounded aliases.

PyYAML's SafeLoader shares aliased nodes, so a 500-byte "billion laughs" file composes
quickly but expands to billions of values once walked (environment expansion, validation).
We measure the expanded size on the composed node graph (memoised per node, so the check
itself stays cheap) and refuse the document past `MAX_EXPANDED_NODES`.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A large real configuration has a few thousand nodes; a bomb has millions.
MAX_EXPANDED_NODES = 100_000


class YamlRefusedError(Exception):
    """The document is refused; the message names the problem and, when known, the line."""


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise YamlRefusedError(
                    f"duplicate key {key!r} at line {line} (first at line {first})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, memo: dict[int, int], limit: int) -> int:
    """Nodes the document has once every alias is replaced by a copy of its anchor."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = limit + 1  # a node inside itself (recursive alias) counts as too big
    size = 1
    if isinstance(node, SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, limit)
            if size > limit:
                break
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, memo, limit) + _expanded_size(value, memo, limit)
            if size > limit:
                break
    elif not isinstance(node, ScalarNode):  # pragma: no cover - PyYAML has no other kinds
        raise YamlRefusedError(f"unexpected YAML node {type(node).__name__}")
    memo[id(node)] = size
    return size


def load_strict(text: str, max_nodes: int = MAX_EXPANDED_NODES) -> Any:
    """The single document in `text`; raises YamlRefusedError or yaml.YAMLError."""
    loader = StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, max_nodes) > max_nodes:
            raise YamlRefusedError(
                f"aliases expand the document past {max_nodes} values (an alias bomb?)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()

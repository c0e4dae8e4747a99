"""ShardedMap: published maps stay as they were, whatever is written afterwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from m365_smtp_exporter.quota.shards import PublishedMap, ShardedMap
from tests.support.examples import examples

KEYS = st.sampled_from([f"s{i}@contoso.com" for i in range(600)])  # more keys than shards
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("pop"), KEYS, st.just(0)),
        st.tuples(st.just("publish"), st.just(""), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=examples(100), deadline=None)
@given(OPS)
def test_every_published_map_keeps_what_it_held(ops: list[tuple[str, str, int]]) -> None:
    sharded: ShardedMap[int] = ShardedMap()
    model: dict[str, int] = {}
    published: list[tuple[PublishedMap[int], dict[str, int]]] = []
    for op, key, value in ops:
        if op == "set":
            sharded[key] = value
            model[key] = value
        elif op == "pop":
            assert sharded.pop(key) == model.pop(key, None)
        else:
            published.append((sharded.publish(), dict(model)))
        assert len(sharded) == len(model)
    published.append((sharded.publish(), dict(model)))
    for view, held in published:
        assert dict(view.items()) == held
        assert sorted(view) == sorted(held) and list(view.values()) == [view[k] for k in view]
        assert len(view) == len(held)
        assert all(k in view and view.get(k) == v for k, v in held.items())
        assert view.get("absent@contoso.com", -1) == -1 and "absent@contoso.com" not in view
        assert view == held

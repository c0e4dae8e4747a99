"""Quota state survives a restart: saved atomically, restored before the first pull, and a
restart pulls only the gap (counted in Graph requests against the emulated Graph). A file
that is corrupt, truncated, foreign or too old is reported and ignored."""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from m365_emulator.graph.http_common import GRAPH_SCOPE
from m365_emulator.state import EmulatorState, TraceRow
from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.quota import LimitName, state_file
from m365_smtp_exporter.tenants import TenantServices
from tests.support.clock import ManualClock
from tests.support.graph import CONTOSO, EmulatorTokens, GraphService
from tests.support.trace import add_rows, trace_row

SENDERS = ("a@contoso.com", "b@contoso.com")
PAGE = 5
OVERLAP = 900


def tenant_config(service: GraphService, state_path: Path) -> TenantConfig:
    return TenantConfig.model_validate(
        {
            "tenant_id": CONTOSO.tenant_id,
            "client_id": CONTOSO.client_id,
            "client_secret": "unused",
            "graph_base_url": f"{service.base_url}/v1.0",
            "graph_scope": GRAPH_SCOPE,
            "accepted_domains": ["contoso.com"],
            "trace": {"page_size": PAGE, "overlap": OVERLAP, "lookback": "6h"},
            "quota_state_file": str(state_path),
        }
    )


def services(
    service: GraphService, graph_state: EmulatorState, clock: ManualClock, path: Path
) -> TenantServices:
    return TenantServices(
        CONTOSO.name,
        tenant_config(service, path),
        token_provider_factory=lambda _: EmulatorTokens(graph_state),
        clock=clock,
    )


def used(tenant: TenantServices, sender: str) -> int:
    return tenant.quota.engine.snapshot().figure(sender, LimitName.RECIPIENTS_PER_DAY).used


def requests(service: GraphService) -> int:
    return service.traffic.responses().get("trace.200", 0)


def rows_over(clock: ManualClock, count: int, span: float) -> list[TraceRow]:
    return [
        trace_row(
            clock() - span + span * i / count,
            sender=SENDERS[i % 2],
            recipient=f"r{i}@example.net",
        )
        for i in range(count)
    ]


async def test_a_restart_pulls_only_the_gap_and_keeps_exact_figures(
    service: GraphService, graph_state: EmulatorState, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "contoso.json"
    day = add_rows(graph_state, rows_over(clock, 60, 5 * 3600))
    first = services(service, graph_state, clock, path)
    assert await first.pull_trace()
    backfill_requests = requests(service)
    await first.close()  # saves
    clock.advance(600)
    gap = add_rows(graph_state, rows_over(clock, 7, 500))

    second = services(service, graph_state, clock, path)
    assert await second.pull_trace()
    gap_requests = requests(service) - backfill_requests
    await second.close()

    assert backfill_requests == math.ceil(60 / PAGE)
    # one pull of the gap: from the saved cursor minus the overlap up to now
    cursor = clock() - 600
    reread = sum(cursor - OVERLAP <= row.received_at for row in day + gap)
    assert gap_requests == math.ceil(reread / PAGE) < backfill_requests
    expected = Counter(row.sender for row in day + gap)
    assert {sender: used(second, sender) for sender in SENDERS} == dict(expected)
    assert second.puller is not None and second.puller.backfill_progress == 1.0


async def test_an_unusable_file_is_reported_and_the_day_is_pulled_again(
    service: GraphService, graph_state: EmulatorState, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "contoso.json"
    rows = add_rows(graph_state, rows_over(clock, 12, 3600))
    path.write_bytes(b'{"format": "m365-smtp-exporter/quota-state", "versi')  # truncated
    before = state_file.REJECTED[(CONTOSO.name, "corrupt")]
    tenant = services(service, graph_state, clock, path)

    assert await tenant.pull_trace()
    await tenant.close()

    assert state_file.REJECTED[(CONTOSO.name, "corrupt")] == before + 1
    assert requests(service) == math.ceil(12 / PAGE)
    assert {s: used(tenant, s) for s in SENDERS} == dict(Counter(r.sender for r in rows))
    # the state written at close replaces the broken file
    assert orjson.loads(path.read_bytes())["format"] == state_file.FORMAT


def saved_document(**changes: Any) -> bytes:
    document: dict[str, Any] = {
        "format": state_file.FORMAT,
        "version": state_file.VERSION,
        "tenant": "contoso",
        "tenant_id": "tid",
        "saved_at": 1_000.0,
        "engine": {"senders": {}},
        "puller": None,
    }
    document.update(changes)
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\xff not json", "corrupt"),
        (saved_document()[:-10], "corrupt"),
        (b"[1, 2]", "foreign"),
        (saved_document(format="something-else"), "foreign"),
        (saved_document(tenant="fabrikam"), "foreign"),
        (saved_document(tenant_id="another"), "foreign"),
        (saved_document(version=99), "version"),
        (saved_document(saved_at=1_000.0 - state_file.MAX_AGE - 1), "too_old"),
        (saved_document(saved_at="yesterday"), "corrupt"),
    ],
)
def test_files_that_cannot_be_trusted_are_ignored(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(data)
    before = state_file.REJECTED[("contoso", reason)]

    document = state_file.read_state(path, tenant="contoso", tenant_id="tid", now=1_000.0)

    assert document is None
    assert state_file.REJECTED[("contoso", reason)] == before + 1


@pytest.mark.parametrize(
    "engine",
    [
        {"senders": {"boss@evil.example": {"external": [[1, 1]]}}},  # would mint a label
        {"senders": {"a@contoso.com": {"external": [[1, -5]]}}},
        {"senders": {"a@contoso.com": {"external": [["x", 1]]}}},
        {"senders": []},
    ],
)
def test_malformed_usage_is_rejected_not_trusted(engine: dict[str, Any]) -> None:
    document = orjson.loads(saved_document(engine=engine))
    with pytest.raises(state_file.StateRejectedError):
        state_file.engine_usage(document, frozenset({"contoso.com"}))


def packed(*pairs: tuple[int, int]) -> str:
    words = array("Q", [bucket << 32 | count for bucket, count in pairs])
    if sys.byteorder == "big":
        words.byteswap()
    return base64.b64encode(words.tobytes()).decode()


SAVED_MINUTE = 1_000 // 60  # the bucket `saved_document` was saved in


@pytest.mark.parametrize(
    "external",
    [
        "not base64!",
        base64.b64encode(b"\x01" * 12).decode(),  # not whole 64-bit words
        packed((10, 1), (9, 1)),  # buckets out of order
        packed((10, 1), (10, 2)),  # a bucket twice
        packed((10, 0)),  # an empty bucket
        packed((SAVED_MINUTE + 2, 1)),  # after the file was saved: it would never expire
        [[10, 1]],  # version 1's pairs in a version 2 file
    ],
)
def test_hostile_packed_buckets_are_rejected(external: object) -> None:
    engine = {"senders": {"a@contoso.com": {"external": external}}}
    document = orjson.loads(saved_document(engine=engine))
    with pytest.raises(state_file.StateRejectedError):
        state_file.engine_usage(document, frozenset({"contoso.com"}))


def test_packed_buckets_are_read_back_as_saved() -> None:
    engine = {"senders": {"a@contoso.com": {"external": packed((3, 7), (SAVED_MINUTE, 2))}}}
    document = orjson.loads(saved_document(engine=engine))

    usage = state_file.engine_usage(document, frozenset({"contoso.com"}))

    external = usage.senders["a@contoso.com"].external
    assert [(word >> 32, word & 0xFFFFFFFF) for word in external] == [(3, 7), (SAVED_MINUTE, 2)]


def test_a_saved_state_reads_back_as_it_was() -> None:
    from m365_smtp_exporter.quota.engine import EngineUsage, SenderUsageState

    usage = EngineUsage(
        {
            f"user{i}@contoso.com": SenderUsageState(
                array("Q", [3 << 32 | (i + 1), SAVED_MINUTE << 32 | 2]),
                array("Q", [] if i else [4 << 32 | 9]),
                {SAVED_MINUTE: {f"<m{i}@contoso.com>": 2}},
            )
            for i in range(3)
        }
    )
    pieces = list(
        state_file.encode_state(
            tenant="contoso", tenant_id="tid", saved_at=1_000.0, puller=None, engine=usage
        )
    )

    assert len(pieces) == 3 + 2  # written a sender at a time
    document = state_file.check_document(
        b"".join(pieces), tenant="contoso", tenant_id="tid", now=1_000.0, max_age=60.0
    )
    assert state_file.engine_usage(document, frozenset({"contoso.com"})) == usage
    assert state_file.puller_state(document) is None


def test_a_version_1_file_is_still_read() -> None:
    engine = {"senders": {"a@contoso.com": {"external": [[5, 2], [3, 1]], "internal": [[4, 9]]}}}
    document = orjson.loads(saved_document(version=1, engine=engine))

    usage = state_file.engine_usage(document, frozenset({"contoso.com"}))

    state = usage.senders["a@contoso.com"]
    assert [(w >> 32, w & 0xFFFFFFFF) for w in state.external] == [(3, 1), (5, 2)]
    assert [(w >> 32, w & 0xFFFFFFFF) for w in state.internal] == [(4, 9)]


def test_writes_replace_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state_file.write_atomically(path, b"first")
    state_file.write_atomically(path, b"second")

    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left

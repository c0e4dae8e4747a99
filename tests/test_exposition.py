"""Per-source exposition: own versions, off-loop renders, live values, negotiation, series cap."""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Iterator

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from m365_smtp_exporter import exposition as exposition_module
from m365_smtp_exporter.collector import exporter_metrics, probe_metrics
from m365_smtp_exporter.exposition import (
    OPENMETRICS_EOF,
    TEXT,
    Chunk,
    Exposition,
    Format,
    GzipMembers,
    Renderer,
    accepts_gzip,
    coalesce,
    encode,
)
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason, RejectedReply, Reply
from m365_smtp_exporter.store import OTHER, REPLIES_FAMILY, ResultsStore
from tests.support.poll import eventually
from tests.support.prom import promtool_check_metrics, samples, value

OPENMETRICS = Format.negotiate("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")


def gauge(name: str, number: float) -> Iterator[Metric]:
    yield GaugeMetricFamily(name, f"{name} help", value=number)


def gunzip_members(body: bytes) -> bytes:
    """Decompress every concatenated gzip member (what Prometheus' Go client does)."""
    out = b""
    while body:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += decompressor.decompress(body)
        assert decompressor.eof
        body = decompressor.unused_data
    return out


def store_exposition(store: ResultsStore) -> tuple[Exposition, Chunk, Chunk]:
    probes = Chunk("probes", lambda: probe_metrics(store))
    own = Chunk("exporter", lambda: exporter_metrics(store))
    store.on_probes_change = probes.mark_changed
    store.on_exporter_change = own.mark_changed
    return Exposition([probes, own]), probes, own


def rejected(code: str, started: float = 10.0) -> ProbeResult:
    reply = Reply(550, code, "rejected")
    return ProbeResult(
        probe="submission",
        target="smtp.example:587",
        started_at=started,
        success=False,
        duration=0.5,
        phases={Phase.CONNECT: 0.05, Phase.RCPT: 0.45},
        failed_phase=Phase.RCPT,
        reason=Reason.RCPT_REJECTED,
        rejections=[RejectedReply(Phase.RCPT, reply, "other", True)],
    )


def test_a_change_re_renders_only_its_own_chunk() -> None:
    store = ResultsStore()
    exposition, probes, own = store_exposition(store)
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    exposition.render()
    assert (probes.renders, own.renders) == (1, 1)
    store.record_job("probe:submission", "success", 0.2)  # the exporter part only
    text = exposition.render()
    assert (probes.renders, own.renders) == (1, 2)
    assert value(text, "m365_exporter_job_runs_total", task="probe:submission", outcome="success")
    store.record_probe(rejected("5.1.1"))  # the probe part only
    exposition.render()
    assert (probes.renders, own.renders) == (2, 2)
    exposition.render()
    assert (probes.renders, own.renders) == (2, 2)


async def test_gzip_is_concatenated_members_of_the_same_body() -> None:
    store = ResultsStore()
    live_value = [1.0]
    exposition, _, _ = store_exposition(store)
    exposition.live.append(lambda: gauge("live_thing", live_value[0]))
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    store.record_probe(rejected("5.1.1"))
    for number in (2.0, 3.0):
        live_value[0] = number
        plain = await exposition.scrape(TEXT, compress=False)
        assert gunzip_members(await exposition.scrape(TEXT, compress=True)) == plain
        assert value(plain, "live_thing") == number
    assert promtool_check_metrics(plain) == ""


async def test_openmetrics_is_negotiated_and_ends_with_one_eof() -> None:
    store = ResultsStore()
    exposition, _, _ = store_exposition(store)
    exposition.live.append(lambda: gauge("live_thing", 1.0))
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    assert OPENMETRICS.openmetrics and not TEXT.openmetrics
    assert TEXT.content_type.startswith("text/plain; version=0.0.4")
    body = await exposition.scrape(OPENMETRICS, compress=False)
    assert body.endswith(OPENMETRICS_EOF) and body.count(b"# EOF") == 1
    assert gunzip_members(await exposition.scrape(OPENMETRICS, compress=True)) == body
    assert b"# TYPE m365_smtp_probes counter" in body  # OpenMetrics names counters without _total
    assert promtool_check_metrics(await exposition.scrape(TEXT, compress=False)) == ""


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("GZIP;Q=1", True),
        ("x-gzip", True),
        ("*", True),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("", False),
        (None, False),
        ("gzip;q=nonsense", False),
        ("br;q=1, gzip;q=0.001", True),
    ],
)
def test_accept_encoding(header: str | None, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


def test_gzip_members_are_reused_for_parts_that_come_back() -> None:
    members = GzipMembers()
    kept, changed = b"a 1\n" * 100, b"b 2\n" * 100
    first = members.compress([kept, changed, b""])
    compressed: list[bytes] = []
    real = exposition_module.gzip_member

    def counting(data: bytes) -> bytes:
        compressed.append(data)
        return real(data)

    again = b"b 3\n" * 100
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exposition_module, "gzip_member", counting)
        second = members.compress([kept, again])
    assert compressed == [again]  # only the new part
    assert gzip.decompress(first) == kept + changed
    assert gzip.decompress(second) == kept + again
    assert gzip.decompress(members.compress([])) == b""


def test_pieces_are_joined_up_to_the_piece_size_and_large_ones_are_not_copied() -> None:
    large = b"x" * 10
    pieces = list(coalesce([b"a", b"b", large, b"ccc", b"d"], size=4))
    assert pieces == [b"ab", large, b"cccd"]
    assert pieces[1] is large
    assert list(coalesce([])) == []


async def test_a_body_in_pieces_is_served_whole_plain_and_gzip() -> None:
    pieces = [
        b"# HELP a x\n# TYPE a gauge\n",
        b"a 1.0\n",
        b"",
        b"# HELP b y\n# TYPE b gauge\nb 2\n",
    ]
    chunk = Chunk("pieces", lambda: [], snapshot=lambda: lambda fmt: pieces)
    exposition = Exposition([chunk])
    plain = await exposition.scrape(TEXT, compress=False)
    compressed = await exposition.scrape(TEXT, compress=True)
    assert plain.startswith(b"".join(pieces))
    assert gzip.decompress(compressed) == b"".join(pieces)  # every member, the live one too
    assert value(plain, "a") == 1.0 and value(plain, "b") == 2.0


async def test_a_large_chunk_renders_in_a_worker_thread_and_scrapes_never_wait_for_it() -> None:
    rendered_in: list[int] = []
    release = threading.Event()
    data = {"value": 1.0}

    def snapshot() -> Renderer:
        captured = data["value"]  # taken on the loop

        def render(fmt: Format) -> list[bytes]:
            rendered_in.append(threading.get_ident())
            release.wait(10)  # a slow render
            return [encode(gauge("big", captured), fmt)]

        return render

    chunk = Chunk("big", lambda: gauge("big", data["value"]), offload=True, snapshot=snapshot)
    exposition = Exposition([chunk])
    release.set()
    first = await exposition.scrape(TEXT, compress=False)
    assert value(first, "big") == 1.0
    assert rendered_in and rendered_in[-1] != threading.get_ident()

    release.clear()
    data["value"] = 2.0
    chunk.mark_changed()
    # the new rendering is stuck in its thread: the scrape answers with the previous one
    stale = await asyncio.wait_for(exposition.scrape(TEXT, compress=False), 5)
    assert value(stale, "big") == 1.0
    release.set()

    async def new_rendering_landed() -> bool:
        return value(await exposition.scrape(TEXT, compress=False), "big") == 2.0

    await eventually(new_rendering_landed, interval=0.01)
    await exposition.close()


async def test_live_sources_follow_the_clock_without_a_change() -> None:
    now = [100.0]
    chunk = Chunk("cached", lambda: gauge("cached_thing", 1.0))
    exposition = Exposition([chunk], [lambda: gauge("remaining", 80.0 - now[0] / 100)])
    assert value(await exposition.scrape(TEXT, compress=False), "remaining") == 79.0
    now[0] = 500.0
    assert value(await exposition.scrape(TEXT, compress=False), "remaining") == 75.0
    assert chunk.renders == 1


def test_reply_codes_past_the_cap_fold_into_other_and_are_counted() -> None:
    store = ResultsStore(series_cap=10)
    exposition, _, _ = store_exposition(store)
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    for index in range(50):
        store.record_probe(rejected(f"5.{index // 10}.{index % 10}", started=float(index)))
    store.record_probe(rejected("5.0.1", started=99.0))  # known before the cap: still its own
    text = exposition.render()
    replies = [key for key in samples(text) if key[0] == "m365_smtp_replies_total"]
    assert len(replies) == 11  # the 10 first label sets and the overflow bucket
    other = value(text, "m365_smtp_replies_total", enhanced_code=OTHER, code=OTHER, phase="rcpt")
    assert other == 40
    assert value(text, "m365_smtp_replies_total", enhanced_code="5.0.1") == 2
    assert value(text, "m365_exporter_series_folded_total", family=REPLIES_FAMILY) == 40
    assert promtool_check_metrics(text) == ""


def test_a_reply_code_outside_2xx_5xx_is_labelled_invalid() -> None:
    store = ResultsStore()
    store.sync_probes([("contoso", "p", "smtp.example:587")])
    result = ProbeResult(probe="p", target="smtp.example:587", started_at=1.0, success=False)
    result.rejections = [
        RejectedReply(Phase.RCPT, Reply(0, "", "invented by the server"), "unknown", False)
    ]
    store.record_probe(result)
    (key,) = store.probes["p"].replies
    assert key[1] == "invalid"

"""The store and its collector render the metric contract, cached between changes."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from m365_smtp_exporter.collector import StoreCollector
from m365_smtp_exporter.exposition import CachedExposition
from m365_smtp_exporter.smtp.result import (
    Phase,
    ProbeResult,
    Reason,
    RejectedReply,
    Reply,
    TlsFacts,
)
from m365_smtp_exporter.store import ResultsStore
from tests.support.prom import promtool_check_metrics, value

LABELS = {"tenant": "contoso", "probe": "submission", "target": "smtp.example:587"}


def make_exposition(store: ResultsStore) -> CachedExposition:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return CachedExposition(store, registry)


def success(started: float) -> ProbeResult:
    return ProbeResult(
        probe="submission",
        target="smtp.example:587",
        started_at=started,
        success=True,
        duration=1.25,
        phases={Phase.CONNECT: 0.05, Phase.STARTTLS: 0.2, Phase.DATA: 1.0},
        tls=TlsFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", 1_900_000_000.0),
        recipients_accepted=1,
    )


def throttled(started: float) -> ProbeResult:
    reply = Reply(432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded")
    return ProbeResult(
        probe="submission",
        target="smtp.example:587",
        started_at=started,
        success=False,
        duration=0.5,
        phases={Phase.CONNECT: 0.05, Phase.MAIL: 0.45},
        failed_phase=Phase.MAIL,
        reason=Reason.THROTTLED,
        rejections=[RejectedReply(Phase.MAIL, reply, "throttle", True)],
    )


def test_probe_metrics_follow_results() -> None:
    store = ResultsStore(clock=lambda: 1000.0)
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    exposition = make_exposition(store)
    before = exposition.render()
    # configured but never run: counters at zero, no success gauge yet
    assert value(before, "m365_smtp_probes_total", result="success", **LABELS) == 0
    assert value(before, "m365_smtp_probe_success", **LABELS) is None

    store.record_probe(success(2000.0))
    text = exposition.render()
    assert value(text, "m365_smtp_probe_success", **LABELS) == 1
    assert value(text, "m365_smtp_probe_phase_seconds", phase="data", **LABELS) == 1.0
    assert value(text, "m365_smtp_probe_last_run_timestamp_seconds", **LABELS) == 2001.25
    assert value(text, "m365_smtp_probe_duration_seconds_count", **LABELS) == 1
    assert value(text, "m365_smtp_probe_duration_seconds_bucket", le="1.0", **LABELS) == 0
    assert value(text, "m365_smtp_probe_duration_seconds_bucket", le="1.5", **LABELS) == 1
    assert value(text, "m365_smtp_tls_info", version="TLSv1.3", **LABELS) == 1
    assert value(text, "m365_smtp_tls_cert_expiry_timestamp_seconds", **LABELS) == 1.9e9

    store.record_probe(throttled(2060.0))
    text = exposition.render()
    assert value(text, "m365_smtp_probe_success", **LABELS) == 0
    assert value(text, "m365_smtp_probes_total", result="failure", **LABELS) == 1
    assert value(text, "m365_smtp_probes_total", result="success", **LABELS) == 1
    assert (
        value(text, "m365_smtp_probe_failures_total", phase="mail", reason="throttled", **LABELS)
        == 1
    )
    assert (
        value(
            text,
            "m365_smtp_replies_total",
            phase="mail",
            code="432",
            enhanced_code="4.3.2",
            category="throttle",
            **LABELS,
        )
        == 1
    )
    # the failed run kept the last success time of the earlier run
    assert value(text, "m365_smtp_probe_last_success_timestamp_seconds", **LABELS) == 2001.25
    # phases of the last run only: no stale "data" phase from the successful run
    assert value(text, "m365_smtp_probe_phase_seconds", phase="data", **LABELS) is None


def test_probe_interval_is_exported_for_configured_probes_even_before_a_run() -> None:
    store = ResultsStore()
    store.sync_probes(
        [("contoso", "submission", "smtp.example:587"), ("contoso", "slow", "smtp.example:587")]
    )
    registry = CollectorRegistry(auto_describe=False)
    store.probe_intervals = {"submission": 60.0, "slow": 900.0}
    registry.register(StoreCollector(store))
    text = CachedExposition(store, registry).render().decode()
    slow = {**LABELS, "probe": "slow"}
    assert value(text, "m365_smtp_probe_interval_seconds", **LABELS) == 60.0
    assert value(text, "m365_smtp_probe_interval_seconds", **slow) == 900.0
    assert "# TYPE m365_smtp_probe_interval_seconds gauge" in text
    assert promtool_check_metrics(text.encode()) == ""


def test_exposition_is_cached_until_the_store_changes() -> None:
    store = ResultsStore()
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    exposition = make_exposition(store)
    first = exposition.render()
    assert exposition.render() is first
    assert exposition.renders == 1
    store.record_probe(success(10.0))
    assert exposition.render() != first
    assert exposition.renders == 2


def test_removed_probes_disappear_and_late_results_are_ignored() -> None:
    store = ResultsStore()
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    exposition = make_exposition(store)
    store.record_probe(success(10.0))
    store.sync_probes([])
    store.record_probe(success(20.0))  # a run that finished after the reload removed it
    text = exposition.render()
    assert value(text, "m365_smtp_probe_success", **LABELS) is None
    assert value(text, "m365_smtp_probes_total", result="success", **LABELS) is None


def test_exporter_metrics() -> None:
    store = ResultsStore(clock=lambda: 42.0)
    exposition = make_exposition(store)
    store.record_job("probe:submission", "success", 0.3)
    store.record_job("probe:submission", "skipped", None)
    store.record_reload(False)
    text = exposition.render()
    assert value(text, "m365_exporter_config_last_reload_successful") == 0
    assert value(text, "m365_exporter_config_last_reload_success_timestamp_seconds") == 42.0
    assert (
        value(text, "m365_exporter_job_runs_total", task="probe:submission", outcome="skipped") == 1
    )
    assert value(text, "m365_exporter_job_duration_seconds_count", task="probe:submission") == 1
    assert value(text, "m365_exporter_build_info") == 1


def test_promtool_accepts_the_exposition() -> None:
    store = ResultsStore()
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    store.record_probe(success(10.0))
    store.record_probe(throttled(70.0))
    store.record_job("probe:submission", "success", 0.3)
    assert promtool_check_metrics(make_exposition(store).render()) == ""


def test_gzip_exposition_is_the_same_body_in_one_gzip_member() -> None:
    store = ResultsStore()
    store.sync_probes([("contoso", "submission", "smtp.example:587")])
    store.record_probe(success(10.0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    live = CollectorRegistry(auto_describe=False)
    live_collector = FakeLive()
    live.register(live_collector)
    exposition = CachedExposition(store, registry, live)
    for _ in range(3):  # the compressed prefix is reused; the live part changes
        live_collector.value += 1
        body = exposition.render_gzip()
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert decompressor.decompress(body) == exposition.render()
        assert decompressor.eof and decompressor.unused_data == b""
    assert exposition.renders == 1


class FakeLive(Collector):
    def __init__(self) -> None:
        self.value = 0.0

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("live_value", "changes on every scrape", value=self.value)

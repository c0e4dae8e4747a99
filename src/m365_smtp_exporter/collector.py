"""Metric families of the results store (the metric contract): the probe part and the
exporter's own part, as two sources (`probe_metrics`, `exporter_metrics`) so each can be
cached on its own; `StoreCollector` renders both (and extra sources) in one collector."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from m365_smtp_exporter import __version__
from m365_smtp_exporter.store import ProbeSeries, ResultsStore

PROBE_LABELS = ["tenant", "probe", "target"]
MetricSource = Callable[[], Iterable[Metric]]


class StoreCollector(Collector):
    """Reads the store; later subsystems (trace, quota, delivery) plug in as `sources`."""

    def __init__(self, store: ResultsStore, sources: Iterable[MetricSource] = ()) -> None:
        self._store = store
        self._sources = list(sources)

    def add_source(self, source: MetricSource) -> None:
        self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        yield from probe_metrics(self._store)
        yield from exporter_metrics(self._store)
        for source in self._sources:
            yield from source()


def probe_metrics(store: ResultsStore) -> Iterator[Metric]:
    return _ProbeFamilies.render(store)


class _ProbeFamilies:
    @classmethod
    def render(cls, store: ResultsStore) -> Iterator[Metric]:
        series = sorted(store.probes.values(), key=lambda s: s.probe)
        success = GaugeMetricFamily(
            "m365_smtp_probe_success",
            "Whether the last SMTP probe sent its message (1) or not (0).",
            labels=PROBE_LABELS,
        )
        last_run = GaugeMetricFamily(
            "m365_smtp_probe_last_run_timestamp_seconds",
            "Unix time the last SMTP probe finished.",
            labels=PROBE_LABELS,
        )
        last_success = GaugeMetricFamily(
            "m365_smtp_probe_last_success_timestamp_seconds",
            "Unix time of the last successful SMTP probe (0 if none since start).",
            labels=PROBE_LABELS,
        )
        phases = GaugeMetricFamily(
            "m365_smtp_probe_phase_seconds",
            "Time the last SMTP probe spent in each phase.",
            labels=[*PROBE_LABELS, "phase"],
        )
        duration = HistogramMetricFamily(
            "m365_smtp_probe_duration_seconds",
            "Duration of whole SMTP probe transactions.",
            labels=PROBE_LABELS,
        )
        probes_total = CounterMetricFamily(
            "m365_smtp_probes",
            "SMTP probes run, by result.",
            labels=[*PROBE_LABELS, "result"],
        )
        failures = CounterMetricFamily(
            "m365_smtp_probe_failures",
            "Failed SMTP probes by the phase that failed and the classified reason.",
            labels=[*PROBE_LABELS, "phase", "reason"],
        )
        replies = CounterMetricFamily(
            "m365_smtp_replies",
            "Non-success SMTP replies seen, with Microsoft 365 classification category.",
            labels=[*PROBE_LABELS, "phase", "code", "enhanced_code", "category"],
        )
        tls_info = GaugeMetricFamily(
            "m365_smtp_tls_info",
            "TLS version and cipher negotiated by the last SMTP probe.",
            labels=[*PROBE_LABELS, "version", "cipher"],
        )
        cert_expiry = GaugeMetricFamily(
            "m365_smtp_tls_cert_expiry_timestamp_seconds",
            "Unix time the SMTP server certificate seen by the last probe expires.",
            labels=PROBE_LABELS,
        )
        # Staleness alerts compare the last run's age with the probe's own interval.
        interval = GaugeMetricFamily(
            "m365_smtp_probe_interval_seconds",
            "Configured interval between runs of the SMTP probe.",
            labels=PROBE_LABELS,
        )
        for item in series:
            labels = [item.tenant, item.probe, item.target]
            if item.probe in store.probe_intervals:
                interval.add_metric(labels, store.probe_intervals[item.probe])
            cls._add_counters(item, labels, probes_total, failures, replies)
            duration.add_metric(labels, item.duration.buckets(), item.duration.sum)
            last = item.last
            if last is None:
                continue
            success.add_metric(labels, 1.0 if last.success else 0.0)
            last_run.add_metric(labels, last.started_at + last.duration)
            last_success.add_metric(labels, item.last_success_at)
            for phase, seconds in last.phases.items():
                phases.add_metric([*labels, phase.value], seconds)
            if last.tls is not None:
                tls_info.add_metric([*labels, last.tls.version, last.tls.cipher], 1.0)
                if last.tls.cert_not_after is not None:
                    cert_expiry.add_metric(labels, last.tls.cert_not_after)
        yield from (
            success,
            last_run,
            last_success,
            phases,
            duration,
            probes_total,
            failures,
            replies,
            tls_info,
            cert_expiry,
            interval,
        )

    @staticmethod
    def _add_counters(
        item: ProbeSeries,
        labels: list[str],
        probes_total: CounterMetricFamily,
        failures: CounterMetricFamily,
        replies: CounterMetricFamily,
    ) -> None:
        for result in ("success", "failure"):
            probes_total.add_metric([*labels, result], float(item.results[result]))
        for (phase, reason), count in sorted(item.failures.items()):
            failures.add_metric([*labels, phase, reason], float(count))
        for key, count in sorted(item.replies.items()):
            replies.add_metric([*labels, *key], float(count))


def exporter_metrics(store: ResultsStore) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "m365_exporter_build_info",
        "Version of the exporter and of the Python running it.",
        labels=["version", "python_version"],
    )
    build.add_metric([__version__, platform.python_version()], 1.0)
    yield build
    yield GaugeMetricFamily(
        "m365_exporter_config_last_reload_successful",
        "Whether the last configuration load or reload succeeded.",
        value=1.0 if store.reload_successful else 0.0,
    )
    yield GaugeMetricFamily(
        "m365_exporter_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load.",
        value=store.reload_success_at,
    )
    runs = CounterMetricFamily(
        "m365_exporter_job_runs",
        "Scheduled job runs by outcome (success, failure, skipped when still running).",
        labels=["task", "outcome"],
    )
    durations = HistogramMetricFamily(
        "m365_exporter_job_duration_seconds",
        "Duration of scheduled job runs.",
        labels=["task"],
    )
    for job, series in sorted(store.jobs.items()):
        for outcome in ("success", "failure", "skipped"):
            runs.add_metric([job, outcome], float(series.runs[outcome]))
        durations.add_metric([job], series.duration.buckets(), series.duration.sum)
    yield runs
    yield durations
    folded = CounterMetricFamily(
        "m365_exporter_series_folded",
        "Label sets chosen by a remote server that were folded into the __other__ series "
        "because their metric family reached its series cap.",
        labels=["family"],
    )
    for family, count in sorted(store.folded.items()):
        folded.add_metric([family], float(count))
    yield folded

"""Status sources over today's objects: transcript notes and "failing since"."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from m365_smtp_exporter.console.adapters import ProbeSource
from m365_smtp_exporter.smtp.result import Phase, ProbeResult, Reason, TranscriptLine
from m365_smtp_exporter.store import ResultsStore

T0 = 1_767_225_600.0


def source_with(store: ResultsStore) -> ProbeSource:
    parts: Any = SimpleNamespace(store=store, tenants={}, delivery=None, domains=None)
    return ProbeSource(parts)


def failed(at: float, phase: Phase, reason: Reason, lines: list[TranscriptLine]) -> ProbeResult:
    return ProbeResult(
        probe="p",
        target="smtp.example:587",
        started_at=at,
        failed_phase=phase,
        reason=reason,
        transcript=lines,
    )


def test_silent_servers_get_a_transcript_note_and_failing_since_holds() -> None:
    store = ResultsStore(clock=lambda: T0)
    store.sync_probes([("contoso", "p", "smtp.example:587")])
    source = source_with(store)
    store.record_probe(
        ProbeResult(probe="p", target="smtp.example:587", started_at=T0, success=True, duration=1.0)
    )
    assert source.items(T0)[0]["failing_since"] is None

    silent = failed(T0 + 60, Phase.BANNER, Reason.BANNER_TIMEOUT, [])
    store.record_probe(silent)
    item = source.items(T0 + 61)[0]
    assert item["state"] == "failing" and item["failing_since"] == "2026-01-01T00:01:00Z"
    assert (
        item["transcript_note"] == "connected to smtp.example:587, nothing received from the server"
    )

    refused = failed(T0 + 120, Phase.CONNECT, Reason.CONNECT_REFUSED, [])
    store.record_probe(refused)
    item = source.items(T0 + 121)[0]
    assert item["failing_since"] == "2026-01-01T00:01:00Z"  # still the first failure
    assert item["transcript_note"] == "no connection to smtp.example:587 (connect_refused)"

    spoke = failed(
        T0 + 180,
        Phase.AUTH,
        Reason.AUTH_FAILED,
        [TranscriptLine(0.1, "S", "220 hello"), TranscriptLine(0.2, "C", "EHLO x")],
    )
    store.record_probe(spoke)
    assert source.items(T0 + 181)[0]["transcript_note"] is None

"""The probe's clock times the network only: what the prober does for itself (rendering the
message, building the TLS context, parsing the certificate, rendering the transcript) is not
charged to any phase, so a probe reports what a bare SMTP client would see.

The probe runs against a real aiosmtpd server with an injected monotonic clock that moves only
when the prober's own work moves it; each kind of work moves it by its own amount, so a
duration that included it would show which. (An unusable CA file, now loaded before the
clock starts, is still reported by the STARTTLS phase: test_probe_tls.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp import probe as probe_module
from m365_smtp_exporter.smtp import tls as tls_module
from m365_smtp_exporter.smtp import transcript as transcript_module
from m365_smtp_exporter.smtp.probe import _ip_literal, run_probe
from m365_smtp_exporter.smtp.result import Phase
from tests.support.clock import ManualClock
from tests.support.smtp_servers import SmtpServers

MakeConfig = Callable[..., ProbeConfig]

# seconds each piece of the prober's own work "takes" on the injected clock
OWN_WORK = {
    "build_probe_message": 1.0,
    "build_ssl_context": 10.0,
    "facts_of": 100.0,
    "redact": 1000.0,
}


@pytest.fixture
def fresh_tls_cache() -> Iterator[None]:
    tls_module.clear_ssl_contexts()
    yield
    tls_module.clear_ssl_contexts()


def slowed(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, clock: ManualClock, calls: list[str]
) -> None:
    """Make `module.name` advance the clock by its OWN_WORK seconds, then do its real work."""
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        clock.advance(OWN_WORK[name])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.mark.usefixtures("fresh_tls_cache")
async def test_the_probe_clock_does_not_time_the_probers_own_work(
    smtp_servers: SmtpServers, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(0.0)
    calls: list[str] = []
    slowed(monkeypatch, probe_module, "build_probe_message", clock, calls)
    slowed(monkeypatch, tls_module, "build_ssl_context", clock, calls)
    slowed(monkeypatch, probe_module, "facts_of", clock, calls)
    slowed(monkeypatch, transcript_module, "redact", clock, calls)
    server = await smtp_servers.start()

    result = await run_probe(make_config(server.port), monotonic=clock)

    assert result.success, result.detail
    assert set(calls) == set(OWN_WORK)  # every piece of own work ran, and moved the clock
    assert result.duration == 0.0
    assert set(result.phases.values()) == {0.0}
    assert Phase.STARTTLS in result.phases and result.tls is not None
    assert result.transcript and result.message_id


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", (2, "127.0.0.1")),
        ("::1", (10, "::1")),
        ("smtp.office365.com", None),
        ("fe80::1%eth0", None),  # scoped addresses go through the resolver
    ],
)
def test_ip_literals_need_no_resolver(host: str, expected: tuple[int, str] | None) -> None:
    info = _ip_literal(host, 587)
    if expected is None:
        assert info is None
    else:
        assert info is not None
        family, _, _, address = info
        assert (int(family), address[0], address[1]) == (*expected, 587)

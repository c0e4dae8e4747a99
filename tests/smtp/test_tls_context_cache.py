"""Probes share one client TLS context per TLS configuration, rebuilt when it may differ."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.tls import CONTEXT_MAX_AGE, clear_ssl_contexts, shared_ssl_context
from tests.support.clock import ManualClock
from tests.support.smtp_servers import Pki

MakeConfig = Callable[..., ProbeConfig]


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    clear_ssl_contexts()
    yield
    clear_ssl_contexts()


async def test_one_context_per_tls_configuration(make_config: MakeConfig, pki: Pki) -> None:
    first = await shared_ssl_context(make_config(25, ca_file=pki.ca_file))
    again = await shared_ssl_context(make_config(587, ca_file=pki.ca_file))  # another probe
    stricter = await shared_ssl_context(make_config(25, ca_file=pki.ca_file, min_version="TLSv1.3"))

    assert again is first
    assert stricter is not first
    assert first.cert_store_stats()["x509_ca"] == 1


async def test_a_changed_ca_file_rebuilds_the_context(make_config: MakeConfig, pki: Pki) -> None:
    config = make_config(25, ca_file=pki.ca_file)
    before = await shared_ssl_context(config)
    stat = os.stat(pki.ca_file)
    os.utime(pki.ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    after = await shared_ssl_context(config)

    assert after is not before
    assert await shared_ssl_context(config) is after


async def test_a_ca_file_removed_after_start_fails_like_loading_it(
    make_config: MakeConfig, pki: Pki, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.ca_file.read_bytes())
    config = make_config(25, ca_file=ca_file)
    ca_file.unlink()
    with pytest.raises(OSError):
        await shared_ssl_context(config)


async def test_reload_and_age_rebuild_the_context(make_config: MakeConfig, pki: Pki) -> None:
    clock = ManualClock(0.0)
    config = make_config(25, ca_file=pki.ca_file)
    first = await shared_ssl_context(config, clock=clock)
    clear_ssl_contexts()
    reloaded = await shared_ssl_context(config, clock=clock)
    clock.advance(CONTEXT_MAX_AGE)
    aged = await shared_ssl_context(config, clock=clock)

    assert reloaded is not first
    assert aged is not reloaded

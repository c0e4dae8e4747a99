"""What `m365-smtp-exporter probe` shows a person, against the emulator through real
sockets: the certificate, which lines travelled inside TLS, a server that never spoke."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from cryptography import x509

from m365_emulator.service import Emulator
from m365_smtp_exporter.probe_command import NOTHING_RECEIVED, format_result
from m365_smtp_exporter.smtp.probe import run_probe
from m365_smtp_exporter.smtp.tls import certificate_name
from tests.support.smtp_emulator import probe_config


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    running = Emulator()
    await running.start()
    yield running
    await running.stop()


def transcript_lines(text: str) -> list[str]:
    lines = text.splitlines()
    return lines[2 : lines.index("phase times:") - 1]


async def test_certificate_subject_issuer_and_expiry(emulator: Emulator) -> None:
    result = await run_probe(probe_config(emulator))
    not_after = emulator.smtp.certificate_not_after
    now = not_after.timestamp() - 10 * 86_400
    text = format_result(result, now=now)
    served = x509.load_pem_x509_certificate((emulator.tls_dir / "smtp" / "server.pem").read_bytes())

    assert result.success, result.detail
    assert f"certificate subject: {served.subject.rfc4514_string()}" in text
    assert f"certificate issuer:  {served.issuer.rfc4514_string()}" in text
    expires = not_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert f"certificate expires: {expires} (in 10 days)" in text


async def test_lines_inside_tls_are_marked(emulator: Emulator) -> None:
    result = await run_probe(probe_config(emulator))
    lines = transcript_lines(format_result(result))
    note = next(i for i, line in enumerate(lines) if "-- TLS established" in line)
    before, after = lines[:note], lines[note + 1 :]

    assert any("C: STARTTLS" in line for line in before)
    assert all(" tls " not in line for line in before)
    assert any("C: AUTH LOGIN" in line for line in after)
    assert all(" tls " in line for line in after), after
    assert any("C: DATA" in line for line in after)


async def test_server_that_never_spoke(emulator: Emulator) -> None:
    await emulator.smtp.set_outage("blackhole")
    result = await run_probe(probe_config(emulator, timeout=1))
    text = format_result(result)

    assert not result.success
    assert f"-- {NOTHING_RECEIVED}" in text
    assert NOTHING_RECEIVED.startswith("connected, nothing received")


async def test_a_server_that_greets_is_not_called_silent(emulator: Emulator) -> None:
    emulator.smtp.faults.set_latency("ehlo", 3.0)
    result = await run_probe(probe_config(emulator, timeout=1))
    assert NOTHING_RECEIVED not in format_result(result)


def test_hostile_certificate_names_are_printable_and_bounded() -> None:
    hostile = [x509.NameAttribute(x509.NameOID.COMMON_NAME, "evil\x1b[31m")]
    padding = [x509.NameAttribute(x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 60)] * 8
    name = x509.Name([*hostile, *padding])
    shown = certificate_name(name)
    assert "\x1b" not in shown and shown.isprintable()
    assert len(shown) <= 256 + 3 and shown.endswith("...")


def test_expired_certificate_says_ago() -> None:
    from m365_smtp_exporter.probe_command import certificate_lines
    from m365_smtp_exporter.smtp.result import TlsFacts

    not_after = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    lines = certificate_lines(
        TlsFacts("TLSv1.3", "TLS_AES_256_GCM_SHA384", not_after), not_after + 3 * 86_400
    )
    assert lines[-1] == "certificate expires: 2026-01-01 00:00 UTC (3 days ago)"

"""Hostile configuration files: special files, huge files, bombs, duplicate keys, trailing
newlines. Each is refused quickly, with a message naming the field or line."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from m365_smtp_exporter.config import ConfigError, load_config
from m365_smtp_exporter.web_config import load_web_config

PROBE = """
probes:
  - name: p
    host: mail.example.net
    mail_from: u@example.net
    rcpt_to: [u@example.net]
    auth: {{mechanism: plain, username: u@example.net, password_file: {secret}}}
"""


def refused(path: Path) -> list[str]:
    started = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert time.monotonic() - started < 5  # never a hang
    return raised.value.errors


@pytest.mark.parametrize(
    ("special", "message"),
    [
        pytest.param("/dev/zero", "/dev/zero is not a regular file", id="dev-zero"),
        pytest.param("/dev/urandom", "/dev/urandom is not a regular file", id="dev-urandom"),
        pytest.param("fifo", "{tmp}/fifo is not a regular file", id="fifo"),
        pytest.param(".", "{tmp} is not a regular file", id="directory"),
        pytest.param("big", "{tmp}/big is larger than 64 KiB", id="huge-secret"),
    ],
)
def test_secret_files_must_be_small_regular_files(
    tmp_path: Path, special: str, message: str
) -> None:
    os.mkfifo(tmp_path / "fifo")  # nobody ever writes to it: a plain read blocks for ever
    (tmp_path / "big").write_bytes(b"x" * (65 * 1024))
    config = tmp_path / "c.yml"
    config.write_text(PROBE.format(secret=special))
    target = special if special.startswith("/") else str(tmp_path / special)
    if special == ".":
        target = str(tmp_path)
    expected = message.format(tmp=tmp_path)
    assert refused(config) == [f"probes[0].auth.password_file: {expected}"], target


def test_a_huge_config_file_is_refused_before_parsing(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("# padding\n" * 200_000)  # 2 MB
    assert refused(config) == [f"{config}: {config} is larger than 1 MiB"]


def test_the_config_file_itself_may_not_be_a_fifo(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    os.mkfifo(config)
    assert refused(config) == [f"{config}: {config} is not a regular file"]


def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yml"
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    bomb.write_text("\n".join(lines) + "\n")  # 9**12 = 282 billion strings once expanded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = refused(bomb)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert errors == [f"{bomb}: aliases expand the document past 100000 values (an alias bomb?)"]
    assert grown_kib < 50_000


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("a: &a [*a]\n")
    errors = refused(config)
    assert len(errors) == 1 and str(config) in errors[0]


def test_web_config_files_are_bounded_too(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    os.mkfifo(web)
    with pytest.raises(ConfigError) as raised:
        load_web_config(web)
    assert raised.value.errors == [f"{web}: {web} is not a regular file"]
    cert = tmp_path / "web2.yml"
    cert.write_text("tls_server_config: {cert_file: /dev/zero, key_file: /dev/zero}\n")
    from m365_smtp_exporter.web_config import load_web_security

    with pytest.raises(ConfigError) as raised:
        load_web_security(cert)
    assert raised.value.errors[0] == "tls_server_config.cert_file: /dev/zero is not a regular file"


def test_certificate_and_ca_files_are_bounded(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cert.fifo")
    (tmp_path / "ca.pem").write_bytes(b"x" * (2 * 1024 * 1024))
    config = tmp_path / "c.yml"
    config.write_text(
        "tenants:\n  contoso: {tenant_id: t, client_id: c, certificate_file: cert.fifo,"
        " ca_file: ca.pem}\n"
    )
    assert refused(config) == [
        f"tenants.contoso.certificate_file: {tmp_path}/cert.fifo is not a regular file"
    ]
    config.write_text(
        "tenants:\n  contoso: {tenant_id: t, client_id: c, client_secret: s, ca_file: ca.pem}\n"
    )
    assert refused(config) == [f"tenants.contoso.ca_file: {tmp_path}/ca.pem is larger than 1 MiB"]


async def test_a_reload_can_read_the_config_off_the_event_loop(tmp_path: Path) -> None:
    import asyncio

    from m365_smtp_exporter.config import load_config_off_loop

    config = tmp_path / "c.yml"
    config.write_text("domains: {names: [contoso.com]}\n")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    loaded = await load_config_off_loop(config, env={})
    task.cancel()
    assert loaded.domains.names == ["contoso.com"]
    assert ticks > 0  # the loop kept running while the file was read and validated

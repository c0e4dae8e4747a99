"""`probe NAME` against hostile servers, as an operator runs it: a real process, a strict
stdout encoding, every line safe to print and free of secrets."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from .promises import UNSAFE, assert_no_secret
from .smtp_server import (
    ESCAPES,
    LATIN1_BANNER,
    conversation,
    echoing_auth,
    hostile_smtp,
    rejecting_rcpt_with,
)

PASSWORD = "canary-Cmd-Pw-90317"


async def run_probe_command(config: Path, *env: tuple[str, str]) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        "probe",
        "hostile",
        "--config.file",
        str(config),
        "--log.format",
        "logfmt",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **dict(env)},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


def write_config(path: Path, port: int, auth: str) -> Path:
    (path.parent / "secrets").mkdir(exist_ok=True)
    (path.parent / "secrets" / "pw").write_text(PASSWORD + "\n")
    path.write_text(
        f"""
probes:
  - name: hostile
    host: 127.0.0.1
    port: {port}
    tls: none
    allow_insecure_auth: true
    auth: {auth}
    mail_from: probe@contoso.test
    rcpt_to: [inbox@contoso.test]
    timeout: 5s
"""
    )
    return path


async def test_latin1_and_escapes_under_a_strict_ascii_stdout(tmp_path: Path) -> None:
    script = conversation(
        LATIN1_BANNER, rejecting_rcpt_with(lambda: b"550 5.1.1 d\xe9j\xe0 " + ESCAPES + b"\r\n")
    )
    async with hostile_smtp(script) as port:
        config = write_config(tmp_path / "c.yml", port, "{mechanism: none}")
        code, out, err = await run_probe_command(config, ("PYTHONIOENCODING", "ascii:strict"))
    assert code == 1, err
    text = out.decode("ascii")  # strictly ASCII: nothing the terminal could not show
    assert "result: FAILED" in text
    assert "220 mail.h\\ufffdte.test" in text
    assert not UNSAFE.search(text)
    assert b"\x1b" not in out + err


async def test_a_password_echoed_by_the_server_never_reaches_the_terminal(
    tmp_path: Path,
) -> None:
    async with hostile_smtp(conversation(b"220 hostile.test\r\n", echoing_auth())) as port:
        auth = "{mechanism: plain, username: probe@contoso.test, password_file: secrets/pw}"
        config = write_config(tmp_path / "c.yml", port, auth)
        code, out, err = await run_probe_command(config)
    assert code == 1
    text = (out + err).decode()
    assert "535" in text and "auth_failed" in text
    assert_no_secret(text, PASSWORD)

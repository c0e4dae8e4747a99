"""--web.config.file: TLS, client certificates, bcrypt basic authentication, headers, errors."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme

from m365_smtp_exporter.cli import check_config
from m365_smtp_exporter.config import ConfigError
from m365_smtp_exporter.logs import Redactor, configure_logging
from m365_smtp_exporter.web_auth import BasicAuthGuard
from m365_smtp_exporter.web_config import WebSecurity, load_web_security
from tests.support.poll import eventually
from tests.support.web import Pki, bcrypt_hash, fetch, server_pki, serving

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "web"
CANARY = "canary-web-Pa55w0rd-4d1e"
USER = "prometheus"
# bcrypt's limit is 72 bytes: a longer password must be refused, not cut to its first 72.
LONG_PASSWORD = "L" * 72
REALM = 'Basic realm="m365-smtp-exporter"'


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return server_pki(tmp_path)


def write_web_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


@pytest.fixture
def logs() -> Iterator[tuple[io.StringIO, Redactor]]:
    stream = io.StringIO()
    yield stream, configure_logging("debug", "json", stream=stream)


async def test_tls_and_basic_auth_guard_everything_but_healthy(
    pki: Pki, tmp_path: Path, logs: tuple[io.StringIO, Redactor]
) -> None:
    log_stream, redactor = logs
    path = write_web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: tls/server.pem   # relative to this file
  key_file: tls/server.key
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  {USER}: {bcrypt_hash(CANARY)}
  long: {bcrypt_hash(LONG_PASSWORD)}
""",
    )
    tls = pki.client_context()
    async with serving(load_web_security(path), redactor=redactor) as base:
        assert base.startswith("https://")
        guarded = (
            "/metrics",
            "/",
            "/-/ready",
            "/api/v1/status",
            "/api/v1/plan",
            "/static/console.js",
        )
        for path_, method in ((guarded_path, "GET") for guarded_path in guarded):
            answer = await fetch(base + path_, method=method, tls=tls)
            assert answer.status == 401, path_
            assert answer.headers["WWW-Authenticate"] == REALM
            assert answer.headers["X-Frame-Options"] == "deny"
        refused = [
            aiohttp.encode_basic_auth(USER, "wrong-password"),
            aiohttp.encode_basic_auth("nobody", CANARY),
            aiohttp.encode_basic_auth(USER, ""),
            aiohttp.encode_basic_auth("long", LONG_PASSWORD + "and more"),
            "Basic !!!not-base64",
            "Basic cHJvbWV0aGV1cw==",  # "prometheus", no colon
            f"Bearer {CANARY}",
        ]
        for authorization in refused:
            answer = await fetch(base + "/metrics", tls=tls, authorization=authorization)
            assert answer.status == 401, authorization
        answer = await fetch(base + "/-/reload", method="POST", tls=tls)
        assert answer.status == 401

        answer = await fetch(base + "/metrics", tls=tls, auth=(USER, CANARY))
        assert answer.status == 200
        assert "m365_exporter_build_info" in answer.text
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert (await fetch(base + "/metrics", tls=tls, auth=("long", LONG_PASSWORD))).status == 200
        landing = await fetch(base + "/", tls=tls, auth=(USER, CANARY))
        assert landing.status == 200 and "m365-smtp-exporter" in landing.text
        status = await fetch(base + "/api/v1/status", tls=tls, auth=(USER, CANARY))
        assert status.status == 200 and '"version":1' in status.text and CANARY not in status.text
        assert (await fetch(base + "/-/ready", tls=tls, auth=(USER, CANARY))).status == 200
        missing = await fetch(base + "/no-such-page", tls=tls, auth=(USER, CANARY))
        assert missing.status == 404 and missing.headers["X-Frame-Options"] == "deny"
        reload = await fetch(base + "/-/reload", method="POST", tls=tls, auth=(USER, CANARY))
        assert reload.status == 200 and reload.text == "Configuration reloaded.\n"

        healthy = await fetch(base + "/-/healthy", tls=tls)
        assert healthy.status == 200 and healthy.text == "Healthy.\n"
        assert healthy.headers["X-Frame-Options"] == "deny"
        with pytest.raises(aiohttp.ClientError):
            await fetch(base.replace("https://", "http://") + "/-/healthy")
    logged = log_stream.getvalue()
    assert "web request unauthorized" in logged  # refusals are logged...
    assert CANARY not in logged  # ...and never with the password
    assert LONG_PASSWORD not in logged


async def test_basic_auth_without_tls_and_bcrypt_cost_is_paid_once_per_credential() -> None:
    checked: list[bytes] = []

    def counting_check(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return bcrypt.checkpw(password, hashed)

    user_hash = bcrypt_hash(CANARY)
    guard = BasicAuthGuard({USER: user_hash}, check=counting_check)
    async with serving(WebSecurity(), middlewares=[guard.middleware()]) as base:
        assert base.startswith("http://")
        for _ in range(3):
            assert (await fetch(base + "/metrics", auth=(USER, CANARY))).status == 200
        assert checked == [user_hash.encode()]  # remembered after the first success
        for _ in range(2):
            assert (await fetch(base + "/metrics", auth=(USER, "wrong"))).status == 401
        assert len(checked) == 3  # failures are never remembered
        for _ in range(2):
            assert (await fetch(base + "/metrics", auth=("nobody", CANARY))).status == 401
    # unknown users are refused without hashing (a flood of them costs no CPU)
    assert len(checked) == 3


async def test_minimum_tls_version(pki: Pki, tmp_path: Path) -> None:
    path = write_web_config(
        tmp_path,
        "tls_server_config: {cert_file: tls/server.pem, key_file: tls/server.key, "
        "min_version: TLS13}\n",
    )
    async with serving(load_web_security(path)) as base:
        tls12_only = pki.client_context()
        tls12_only.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(aiohttp.ClientError):
            await fetch(base + "/-/healthy", tls=tls12_only)
        assert (await fetch(base + "/-/healthy", tls=pki.client_context())).status == 200


async def test_cipher_suites_restrict_tls12(pki: Pki, tmp_path: Path) -> None:
    path = write_web_config(
        tmp_path,
        """
tls_server_config:
  cert_file: tls/server.pem
  key_file: tls/server.key
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
""",
    )
    async with serving(load_web_security(path)) as base:
        port = int(base.rsplit(":", 1)[1])
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context())
        try:
            cipher, version, _ = writer.get_extra_info("cipher")
        finally:
            writer.close()
            await writer.wait_closed()
    # the client would rather have AES-256 or ChaCha20; the server's list allows only this
    assert (cipher, version) == ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2")


async def test_client_certificates_verified_and_names_allowed(pki: Pki, tmp_path: Path) -> None:
    clients_ca = trustme.CA()
    clients_ca.cert_pem.write_to_path(str(pki.directory / "clients-ca.pem"))
    path = write_web_config(
        tmp_path,
        """
tls_server_config:
  cert_file: tls/server.pem
  key_file: tls/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: tls/clients-ca.pem
  client_allowed_sans: [scraper.example.test, 10.0.0.7]
""",
    )
    scraper = clients_ca.issue_cert("scraper.example.test")
    by_address = clients_ca.issue_cert("10.0.0.7")
    intruder = clients_ca.issue_cert("intruder.example.test")
    stranger = trustme.CA().issue_cert("scraper.example.test")
    async with serving(load_web_security(path)) as base:
        for client in (None, stranger):
            with pytest.raises(aiohttp.ClientError):
                await fetch(base + "/metrics", tls=pki.client_context(client))
        for path_ in ("/metrics", "/-/healthy"):
            answer = await fetch(base + path_, tls=pki.client_context(intruder))
            assert answer.status == 403
        for client in (scraper, by_address):
            answer = await fetch(base + "/metrics", tls=pki.client_context(client))
            assert answer.status == 200 and "m365_exporter_build_info" in answer.text


def expected_lines(name: str) -> list[str]:
    d = TESTDATA
    cases = {
        "invalid-tls-settings.yml": [
            "tls_server_config.cert_file: must not be empty",
            "tls_server_config.client_auth_type: RequireAnyClientCert accepts client "
            "certificates without verifying them, which is not supported; use "
            "RequireAndVerifyClientCert with client_ca_file",
            "tls_server_config.min_version: TLS11 is not supported, the oldest accepted "
            "version is TLS12",
            "tls_server_config.max_version: unknown TLS version 'TLS14' (expected TLS12 or TLS13)",
            "tls_server_config.cipher_suites[1]: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA' "
            "(expected a Go crypto/tls name such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
            "tls_server_config.curve_preferences: this exporter-toolkit setting is not "
            "supported by m365-smtp-exporter",
        ],
        "invalid-client-auth.yml": [
            "tls_server_config.client_auth_type: client_ca_file is set but client certificates "
            "are not requested; use RequireAndVerifyClientCert",
            "tls_server_config.client_allowed_sans: needs client_auth_type "
            "RequireAndVerifyClientCert, otherwise a client may send no certificate to match",
            "tls_server_config.min_version: TLS13 is newer than max_version TLS12",
        ],
        "invalid-verify-without-ca.yml": [
            "tls_server_config.client_ca_file: required with client_auth_type "
            "VerifyClientCertIfGiven",
        ],
        "invalid-headers.yml": [
            "http_server_config.http2: Input should be a valid boolean, unable to interpret input",
            "http_server_config.headers.X-Frame-Options: Input should be 'deny' or 'sameorigin'",
            "http_server_config.headers.X-Content-Type-Options: Input should be 'nosniff'",
            "http_server_config.headers.X-Powered-By: unknown field",
        ],
        "invalid-users.yml": [
            "basic_auth_users.alice: not a bcrypt hash (make one with htpasswd -nBC 10 '' "
            "| tr -d ':\\n')",
            "basic_auth_users.bo:b: a user name cannot contain ':' (basic authentication "
            "splits on it)",
            "basic_auth_users.carol: Input should be a valid string",
        ],
        "invalid-missing-files.yml": [
            f"tls_server_config.cert_file: cannot read {d}/missing-server.pem: "
            "No such file or directory",
            "tls_server_config.key_file: cannot read /nonexistent/server.key: "
            "No such file or directory",
            f"tls_server_config.client_ca_file: cannot read {d}/missing-clients-ca.pem: "
            "No such file or directory",
        ],
        "invalid-not-pem.yml": [
            f"tls_server_config.cert_file: no PEM certificate in {d}/not-pem.txt",
            f"tls_server_config.key_file: no unencrypted PEM private key in {d}/not-pem.txt",
        ],
        "invalid-unknown-field.yml": [
            "rate_limit: this exporter-toolkit setting is not supported by m365-smtp-exporter",
            "basic_auth_user: unknown field",
        ],
        "invalid-yaml.yml": [
            f"{d}/invalid-yaml.yml: expected ',' or ']', but got '<stream end>' "
            "at line 3, column 1",
        ],
        "invalid-top-level.yml": [f"{d}/invalid-top-level.yml: top level must be a mapping"],
    }
    return cases[name]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in TESTDATA.glob("invalid-*.yml")), ids=lambda n: n[8:-4]
)
def test_invalid_web_config_files(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_web_security(TESTDATA / name)
    assert raised.value.errors == expected_lines(name)
    assert "canary" not in str(raised.value)


def test_key_that_belongs_to_another_certificate(pki: Pki, tmp_path: Path) -> None:
    pki.ca.issue_cert("other.example.test").private_key_pem.write_to_path(
        str(pki.directory / "other.key")
    )
    path = write_web_config(
        tmp_path, "tls_server_config: {cert_file: tls/server.pem, key_file: tls/other.key}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_web_security(path)
    assert raised.value.errors == [
        f"tls_server_config.key_file: {pki.directory}/other.key is not the key of the "
        "certificate in cert_file"
    ]


def test_check_config_validates_the_web_config(pki: Pki, tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("domains: {names: [example.com]}\n")
    web = write_web_config(
        tmp_path,
        f"tls_server_config: {{cert_file: tls/server.pem, key_file: tls/server.key}}\n"
        f"basic_auth_users: {{{USER}: '{bcrypt_hash(CANARY)}'}}\n",
    )
    out = io.StringIO()
    assert check_config(config, out, env={}, web_config_file=web) == 0
    assert out.getvalue().splitlines()[-1] == (
        f"{web}: OK, HTTPS with TLS12 to TLS13, client_auth_type NoClientCert, "
        "basic authentication for 1 user(s)"
    )

    out = io.StringIO()
    invalid = TESTDATA / "invalid-users.yml"
    assert check_config(config, out, env={}, web_config_file=invalid) == 2
    assert out.getvalue().splitlines() == [
        f"web configuration error in {invalid}:",
        *(f"  {line}" for line in expected_lines("invalid-users.yml")),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def exporter_process(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "m365_smtp_exporter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_serves_https_with_basic_auth(pki: Pki, tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("domains: {names: [example.com]}\n")
    web = write_web_config(
        tmp_path,
        "tls_server_config: {cert_file: tls/server.pem, key_file: tls/server.key}\n"
        f"basic_auth_users: {{{USER}: '{bcrypt_hash(CANARY)}'}}\n",
    )
    port = free_port()
    process = await exporter_process(
        "--config.file",
        str(config),
        "--web.config.file",
        str(web),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "debug",
        "--log.format",
        "json",
    )
    base, tls = f"https://127.0.0.1:{port}", pki.client_context()
    try:
        healthy = await eventually(
            lambda: fetch(base + "/-/healthy", tls=tls),
            timeout=30,
            interval=0.1,
            ignoring=(aiohttp.ClientConnectionError,),
            message="never listened",
        )
        assert healthy.status == 200
        assert (await fetch(base + "/metrics", tls=tls)).status == 401
        assert (await fetch(base + "/metrics", tls=tls, auth=(USER, "wrong"))).status == 401
        assert (await fetch(base + "/metrics", tls=tls, auth=(USER, CANARY))).status == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert '"scheme": "https"' in stderr.decode()
    assert CANARY not in stderr.decode()


async def test_run_refuses_an_invalid_web_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("domains: {names: [example.com]}\n")
    invalid = TESTDATA / "invalid-verify-without-ca.yml"
    process = await exporter_process(
        "--config.file", str(config), "--web.config.file", str(invalid)
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert stderr.decode().splitlines() == [
        f"web configuration error in {invalid}:",
        *(f"  {line}" for line in expected_lines("invalid-verify-without-ca.yml")),
    ]

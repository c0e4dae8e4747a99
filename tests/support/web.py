"""The exporter's web server under a web configuration (TLS, basic authentication), and an
HTTP client that keeps the status, headers and text of each answer."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import trustme
from aiohttp.typedefs import Middleware
from multidict import CIMultiDictProxy

from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import Config
from m365_smtp_exporter.logs import Redactor
from m365_smtp_exporter.web_config import WebSecurity


def bcrypt_hash(password: str, cost: int = 4) -> str:
    # Cost 4 (the minimum) keeps the tests fast; the code path is the same as for cost 10.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


@dataclass
class Pki:
    ca: trustme.CA
    directory: Path

    def client_context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client is not None:
            client.configure_cert(context)
        return context


def server_pki(tmp_path: Path) -> Pki:
    """A server certificate for 127.0.0.1 under tmp_path/tls (server.pem, server.key)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path / "tls"
    directory.mkdir()
    (directory / "server.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(directory / "server.key"))
    return Pki(ca, directory)


@asynccontextmanager
async def serving(
    web: WebSecurity,
    middlewares: list[Middleware] | None = None,
    redactor: Redactor | None = None,
) -> AsyncIterator[str]:
    """An exporter with an empty configuration; yields its base URL."""
    exporter = Exporter(
        Config(),
        listen_address="127.0.0.1:0",
        middlewares=web.build_middlewares() if middlewares is None else middlewares,
        ssl_context=web.ssl_context,
        redactor=redactor,
        enable_lifecycle=True,
        reload_details=bool(web.config.basic_auth_users),
    )
    await exporter.start()
    try:
        yield f"{exporter.scheme}://127.0.0.1:{exporter.bound_port}"
    finally:
        await exporter.stop()


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    text: str


async def fetch(
    url: str,
    *,
    method: str = "GET",
    tls: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    authorization: str | None = None,
) -> Answer:
    headers = {}
    if auth is not None:
        headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
    if authorization is not None:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, ssl=tls or True) as response,
    ):
        return Answer(response.status, response.headers, await response.text())

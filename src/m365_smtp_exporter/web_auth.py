"""Request guards for the HTTP endpoints: bcrypt basic authentication, an allow-list of
client certificate names, and configured response headers (aiohttp middlewares)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping

import bcrypt
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = structlog.get_logger(__name__)

REALM = "m365-smtp-exporter"
# Liveness probes and container health checks must work without credentials.
OPEN_PATHS = frozenset({"/-/healthy"})
# bcrypt only looks at the first 72 bytes; longer passwords are refused, never truncated.
BCRYPT_MAX_PASSWORD = 72

PasswordCheck = Callable[[bytes, bytes], bool]


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a `$2b$10$...` hash."""
    return int(hashed.split(b"$")[2])


class BasicAuthGuard:
    """HTTP basic authentication against bcrypt hashes, in the manner of exporter-toolkit.

    Unknown users are checked against a decoy hash of the same cost, so the answer takes as
    long as for a known user. Successful checks are remembered under a keyed hash of the
    credentials: a scrape every few seconds must not pay for bcrypt each time.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        check: PasswordCheck = bcrypt.checkpw,
        open_paths: Collection[str] = OPEN_PATHS,
        cache_size: int = 64,
    ) -> None:
        self._users = {name.encode(): hashed.encode("ascii") for name, hashed in users.items()}
        self._check = check
        self._open_paths = frozenset(open_paths)
        cost = max((bcrypt_cost(h) for h in self._users.values()), default=10)
        self._decoy = bcrypt.hashpw(secrets.token_urlsafe(24).encode(), bcrypt.gensalt(cost))
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        # bcrypt is slow on purpose: one check at a time keeps a flood of guesses from
        # taking every core.
        self._bcrypt_lock = asyncio.Lock()

    async def verify(self, user: bytes, password: bytes) -> bool:
        hashed = self._users.get(user)
        candidate = hashed if hashed is not None else self._decoy
        key = self._credential_key(user, candidate, password)
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        too_long = len(password) > BCRYPT_MAX_PASSWORD
        async with self._bcrypt_lock:
            matches = await asyncio.to_thread(
                self._check, password[:BCRYPT_MAX_PASSWORD], candidate
            )
        if not matches or hashed is None or too_long:
            return False
        self._verified[key] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return True

    def _credential_key(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._cache_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    async def _authorized(self, request: web.Request) -> bool:
        credentials = parse_basic_auth(request.headers.get("Authorization", ""))
        return credentials is not None and await self.verify(*credentials)

    def middleware(self) -> Middleware:
        @web.middleware
        async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in self._open_paths or await self._authorized(request):
                return await handler(request)
            log.debug("web request unauthorized", path=request.path, remote=request.remote)
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )

        return basic_auth


def parse_basic_auth(header: str) -> tuple[bytes, bytes] | None:
    """`Basic dXNlcjpwYXNz` -> (b"user", b"pass"); None for anything else."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def _normalized_name(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name.strip()))
    except ValueError:
        return name


def certificate_names(peercert: object) -> set[str]:
    """DNS, IP, e-mail and URI subject alternative names of `SSLSocket.getpeercert()`."""
    if not isinstance(peercert, dict):
        return set()
    entries: Iterable[tuple[str, str]] = peercert.get("subjectAltName", ())
    kinds = {"DNS", "IP Address", "email", "URI"}
    return {_normalized_name(value) for kind, value in entries if kind in kinds}


def client_name_guard(allowed_names: Collection[str]) -> Middleware:
    """Refuse requests whose client certificate has none of `allowed_names` as a SAN.

    Python's ssl module cannot reject the handshake after verification, so the check runs
    on every request of the connection instead.
    """
    allowed = {_normalized_name(name) for name in allowed_names}

    @web.middleware
    async def client_names(request: web.Request, handler: Handler) -> web.StreamResponse:
        if certificate_names(request.get_extra_info("peercert")) & allowed:
            return await handler(request)
        log.debug("client certificate not allowed", path=request.path, remote=request.remote)
        return web.Response(status=403, text="Forbidden: client certificate not allowed\n")

    return client_names


def response_headers(headers: Mapping[str, str]) -> Middleware:
    """Add `headers` to every response, error answers included."""

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    return add_headers

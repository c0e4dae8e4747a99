"""Request guards for the HTTP endpoints: bcrypt basic authentication, an allow-list of
client certificate names, and configured response headers (aiohttp middlewares)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

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


class AuthBusyError(Exception):
    """Too many password checks are waiting: answer at once instead of queueing."""


# bcrypt checks run on their own small pool, so a flood cannot take the default executor's
# threads (DNS look-ups, file reads) nor every core.
DEFAULT_WORKERS = max(1, min(2, (os.cpu_count() or 1) - 1))
# Checks admitted at once (running + waiting); beyond that the answer is 429 straight away.
# With bcrypt cost 10 (~60 ms) and 2 workers the last admitted check waits ~0.3 s.
DEFAULT_MAX_PENDING = 8
RETRY_AFTER_SECONDS = 1


class BasicAuthGuard:
    """HTTP basic authentication against bcrypt hashes, in the manner of exporter-toolkit.

    Successful checks are remembered under a keyed hash of the credentials: a scrape every
    few seconds must not pay for bcrypt each time, and a remembered login never waits
    behind a flood of wrong guesses. Other checks run off the event loop on a small pool;
    at most `max_pending` are admitted at once, and at most `max_pending_per_client` from one
    client address, so one flooding host cannot take every slot from the real Prometheus;
    the rest are refused with 429 at once.
    Unknown users take an admission slot too and wait as long as a recent real check took,
    without hashing: the answer neither costs CPU nor tells whether the user exists.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        check: PasswordCheck = bcrypt.checkpw,
        open_paths: Collection[str] = OPEN_PATHS,
        cache_size: int = 64,
        workers: int = DEFAULT_WORKERS,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_per_client: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = {name.encode(): hashed.encode("ascii") for name, hashed in users.items()}
        self._check = check
        self._open_paths = frozenset(open_paths)
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
        self._workers = asyncio.Semaphore(workers)
        self._max_pending = max_pending
        self._max_per_client = max_pending_per_client or max(1, max_pending // 4)
        self._pending = 0
        self._pending_by_client: Counter[str] = Counter()
        self._clock = clock
        cost = max((bcrypt_cost(h) for h in self._users.values()), default=10)
        # Until a real check has been timed: bcrypt doubles per cost step, ~60 ms at 10.
        self._typical_check = 0.06 * 2.0 ** (cost - 10)
        self.refused_busy = 0  # checks refused because the queue was full

    async def verify(self, user: bytes, password: bytes, client: str = "") -> bool:
        """True for a known user with the right password; AuthBusyError when the queue of
        password checks (overall, or from `client`) is full."""
        hashed = self._users.get(user)
        key = self._credential_key(user, hashed or b"", password)
        if hashed is not None and key in self._verified:
            self._verified.move_to_end(key)
            return True
        if (
            self._pending >= self._max_pending
            or self._pending_by_client[client] >= self._max_per_client
        ):
            self.refused_busy += 1
            raise AuthBusyError
        self._pending += 1
        self._pending_by_client[client] += 1
        try:
            if hashed is None or len(password) > BCRYPT_MAX_PASSWORD:
                # refused without hashing, after about as long as a real check
                await asyncio.sleep(self._typical_check)
                return False
            async with self._workers:
                started = self._clock()
                loop = asyncio.get_running_loop()
                matches = await loop.run_in_executor(self._pool, self._check, password, hashed)
                self._typical_check = 0.8 * self._typical_check + 0.2 * (self._clock() - started)
        finally:
            self._pending -= 1
            self._pending_by_client[client] -= 1
            if not self._pending_by_client[client]:
                del self._pending_by_client[client]
        if not matches:
            return False
        self._verified[key] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _credential_key(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._cache_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    async def _authorized(self, request: web.Request) -> bool:
        credentials = parse_basic_auth(request.headers.get("Authorization", ""))
        return credentials is not None and await self.verify(
            *credentials, client=request.remote or ""
        )

    def middleware(self) -> Middleware:
        @web.middleware
        async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in self._open_paths:
                return await handler(request)
            try:
                if await self._authorized(request):
                    return await handler(request)
            except AuthBusyError:
                log.debug("web request refused: password checks busy", path=request.path)
                return web.Response(
                    status=429,
                    text="Too many authentication attempts, retry shortly\n",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
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

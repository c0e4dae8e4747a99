"""One tenant's Microsoft Graph client: msgraph-sdk with its middleware, our transport and tokens.

The SDK builds requests and runs its default middleware (retry on 429/503 honouring
Retry-After, redirects, telemetry headers); underneath sits `CountingTransport`, which counts
every wire request and spends the tenant's `RequestBudget`. Tokens come from the exporter's
`TokenProvider`, the same one that serves SMTP XOAUTH2, so one cache serves both.

Bulk callers use `get_bytes` and parse the body themselves (typed kiota parsing manages a few
hundred records per second); `service` is the typed `GraphServiceClient` for everything else.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import structlog
from kiota_abstractions.api_error import APIError
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption

from m365_smtp_exporter.auth import TokenError, TokenProvider
from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.endpoints import BUDGETED_ENDPOINTS, endpoint_of
from m365_smtp_exporter.graph.errors import (
    BudgetExhaustedError,
    ForeignRequestError,
    GraphAuthError,
    GraphHttpError,
    GraphRequestError,
    GraphTimeoutError,
    GraphUnavailableError,
    error_for_status,
)
from m365_smtp_exporter.graph.links import LinkGuard, max_pages_for
from m365_smtp_exporter.graph.transport import (
    MAX_BODY_BYTES,
    CountingTransport,
    GraphRequestStats,
    reserved_slot,
)
from m365_smtp_exporter.graph.wire import AiohttpTransport
from m365_smtp_exporter.logs import redact
from m365_smtp_exporter.text_safety import network_text

with warnings.catch_warnings():
    # msgraph's generated modules warn about their own deprecated classes on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph_core import GraphClientFactory

log = structlog.get_logger(__name__)

# Graph returns enum members added after `unknownFutureValue` (message trace's `recalled`)
# only to clients that ask; without it a recalled message reads as `unknownFutureValue`.
PREFER_UNKNOWN_ENUM_MEMBERS = "include-unknown-enum-members"
DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_ERROR_MAPPING: dict[str, Any] = {"XXX": ODataError}


class _TokenBridge(AccessTokenProvider):
    """Kiota's token hook, answered by the exporter's TokenProvider for allowed hosts only."""

    def __init__(self, provider: TokenProvider, scope: str, host: str) -> None:
        self._provider = provider
        self._scope = scope
        self._hosts = AllowedHostsValidator([host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        if not self._hosts.is_url_host_valid(uri):
            return ""  # never hand our token to another host (e.g. a foreign nextLink)
        parts = urlsplit(uri)
        if parts.scheme != "https" and parts.hostname not in _LOOPBACK:
            raise TokenError("refusing to send a bearer token over plain http")
        return await self._provider.get_token(self._scope)

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


def _verify(ca_file: Path | None) -> ssl.SSLContext:
    """httpx's default trust (certifi's bundle); with `ca_file` (the emulator's CA, a
    TLS-inspecting proxy), system trust plus that file."""
    if ca_file is None:
        return httpx.create_ssl_context()
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context


class GraphClient:
    """Graph access for one tenant. Close it (`aclose` or `async with`) to release sockets."""

    def __init__(
        self,
        tenant: str,
        *,
        base_url: str,
        scope: str,
        tokens: TokenProvider,
        budget: RequestBudget,
        ca_file: Path | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        """`transport` replaces the default `AiohttpTransport` (then `ca_file` is unused);
        the client owns and closes it either way. The token provider is not closed:
        it is shared with SMTP."""
        self.tenant = tenant
        self.budget = budget
        self.requests = GraphRequestStats()
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname
        if not host:
            raise ValueError(f"graph base URL {base_url!r} has no host")
        inner = transport or AiohttpTransport(_verify(ca_file))
        self._transport = CountingTransport(
            inner, budget, self.requests, origin=httpx.URL(self.base_url), max_body=max_body
        )
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(request_timeout, connect=min(10.0, request_timeout)),
        )
        retry = RetryHandlerOption(delay=0.0, max_retries=max_retries)
        http = GraphClientFactory.create_with_default_middleware(
            client=self._http, options={RetryHandlerOption.get_key(): retry}
        )
        auth = BaseBearerTokenAuthenticationProvider(_TokenBridge(tokens, scope, host))
        self.adapter = GraphRequestAdapter(auth, http)
        self.adapter.base_url = self.base_url  # no trailing slash, or paths start with //
        self.service = GraphServiceClient(request_adapter=self.adapter)

    @classmethod
    def for_tenant(
        cls,
        name: str,
        tenant: TenantConfig,
        tokens: TokenProvider,
        *,
        budget: RequestBudget | None = None,
        **options: Any,
    ) -> GraphClient:
        """A client from the tenant's configuration (base URL, scope, CA, budget limit)."""
        return cls(
            name,
            base_url=tenant.graph_base_url,
            scope=tenant.graph_scope,
            tokens=tokens,
            budget=budget or RequestBudget(limit=tenant.graph_budget),
            ca_file=tenant.ca_file,
            **options,
        )

    @staticmethod
    def request_for_url(url: str) -> RequestInformation:
        """A GET of an absolute URL, e.g. an `@odata.nextLink` exactly as Graph returned it."""
        info = RequestInformation(Method.GET)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        return info

    def link_guard(self, first: RequestInformation, top: int) -> LinkGuard:
        """What checks the `@odata.nextLink`s of a paged pull that began with `first`
        (same scheme, host, port and path; no loop; a page cap). Refusals are counted."""
        self.adapter.set_base_url_for_request_information(first)
        return _CountingLinkGuard(first.url, max_pages_for(top, self.budget.limit), self)

    async def get_bytes(self, info: RequestInformation) -> bytes:
        """Send `info` through the SDK pipeline and return the raw body of a 2xx answer.

        Message-trace requests first take a slot of the tenant budget and ask for every
        status member (`Prefer: include-unknown-enum-members`). Raises a
        `GraphRequestError` subclass (its `reason` is the bounded failure label).
        """
        self.adapter.set_base_url_for_request_information(info)
        budgeted = endpoint_of(urlsplit(info.url).path) in BUDGETED_ENDPOINTS
        if budgeted:
            info.headers.try_add("Prefer", PREFER_UNKNOWN_ENUM_MEMBERS)
        if budgeted and not self.budget.try_acquire():
            wait = self.budget.seconds_until_available()
            raise BudgetExhaustedError(f"graph request budget spent; next slot in {wait:.0f}s")
        try:
            if budgeted:
                with reserved_slot(self.budget):
                    body = await self._send(info)
            else:
                body = await self._send(info)
        except APIError as exc:
            raise _api_failure(exc) from None
        except TokenError as exc:
            raise GraphAuthError(f"no token: {exc}") from None
        except httpx.TimeoutException as exc:
            raise GraphTimeoutError(f"request timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise GraphUnavailableError(f"{type(exc).__name__}: {exc}") from None
        except GraphRequestError:
            raise
        except Exception as exc:  # the SDK failing in a way not mapped above: still a failure
            raise GraphHttpError(f"graph request failed: {type(exc).__name__}") from exc
        return bytes(body or b"")

    async def _send(self, info: RequestInformation) -> bytes | None:
        body: bytes | None = await self.adapter.send_primitive_async(info, "bytes", _ERROR_MAPPING)
        return body

    async def aclose(self) -> None:
        # msgraph-core's transport wrapper does not close the transport it wraps: we do.
        await self._http.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class _CountingLinkGuard(LinkGuard):
    def __init__(self, first_url: str, max_pages: int, client: GraphClient) -> None:
        super().__init__(first_url, max_pages)
        self._client = client

    def check(self, link: str) -> str:
        try:
            return super().check(link)
        except ForeignRequestError as exc:
            self._client.requests.refused_requests += 1
            log.warning("graph nextLink refused", tenant=self._client.tenant, why=str(exc))
            raise


def _api_failure(exc: APIError) -> GraphRequestError:
    status = exc.response_status_code or 0
    if status == 0:
        return GraphUnavailableError(f"graph request failed: {type(exc).__name__}")
    message = f"graph answered {status}"
    if isinstance(exc, ODataError) and exc.error is not None:
        # Graph's own error code and text, e.g. "InvalidAuthenticationToken: ... expired."
        code = network_text(exc.error.code or "", keep_newlines=False)[:100]
        text = redact(network_text(exc.error.message or "", keep_newlines=False))[:200]
        message += f" {code}: {text}"
    return error_for_status(status, message)

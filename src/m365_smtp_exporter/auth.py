"""Tokens for one tenant's Entra ID app: SMTP XOAUTH2 and Microsoft Graph share a provider.

azure-identity does the OAuth2 client-credentials flow (client secret or certificate) and
caches tokens until shortly before expiry; this module wraps it behind a tiny interface so
tests and the emulator can supply tokens without a real tenant.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from m365_smtp_exporter.config import TenantConfig
from m365_smtp_exporter.logs import redact, register_secret
from m365_smtp_exporter.text_safety import network_text

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.identity.aio import CertificateCredential, ClientSecretCredential

# Refresh a little before expiry so a token never dies between fetch and use.
_EXPIRY_MARGIN = 120.0


class TokenError(Exception):
    """A token could not be obtained. The message never contains a credential."""


class TokenProvider(Protocol):
    async def get_token(self, scope: str) -> str:
        """A bearer token for `scope`; raises TokenError on failure."""
        ...

    async def close(self) -> None: ...


class StaticTokenProvider:
    """Always the same token (tests, or a token minted elsewhere)."""

    def __init__(self, token: str) -> None:
        register_secret(token, transient=True)
        self._token = token

    async def get_token(self, scope: str) -> str:
        return self._token

    async def close(self) -> None:
        return None


class AzureTokenProvider:
    """Client-credentials tokens from Entra ID (or the emulator's token endpoint), cached."""

    def __init__(self, tenant: TenantConfig) -> None:
        # azure-identity (with msal and requests) costs ~0.3 s and ~10 MB to import: only an
        # exporter with a tenant loads it
        from azure.identity.aio import CertificateCredential, ClientSecretCredential

        # A token endpoint may echo the secret in error_description: every text shown
        # anywhere must be able to remove it, whoever created this provider.
        register_secret(
            *(
                secret.get_secret_value()
                for secret in (tenant.client_secret, tenant.certificate_password)
                if secret is not None
            )
        )
        authority = tenant.authority.removeprefix("https://").rstrip("/")
        kwargs: dict[str, object] = {"authority": authority}
        if tenant.ca_file is not None:
            kwargs["connection_verify"] = str(tenant.ca_file)
        if tenant.certificate_file is not None:
            password = tenant.certificate_password
            self._credential: ClientSecretCredential | CertificateCredential = (
                CertificateCredential(
                    tenant.tenant_id,
                    tenant.client_id,
                    certificate_path=str(tenant.certificate_file),
                    password=password.get_secret_value() if password else None,
                    **kwargs,
                )
            )
        elif tenant.client_secret is not None:
            self._credential = ClientSecretCredential(
                tenant.tenant_id,
                tenant.client_id,
                tenant.client_secret.get_secret_value(),
                **kwargs,
            )
        else:
            raise TokenError("tenant has no client secret or certificate")
        self._cache: dict[str, AccessToken] = {}
        self._lock = asyncio.Lock()

    async def get_token(self, scope: str) -> str:
        from azure.core.exceptions import AzureError

        async with self._lock:
            cached = self._cache.get(scope)
            if cached is not None and cached.expires_on - _EXPIRY_MARGIN > time.time():
                return cached.token
            try:
                token = await self._credential.get_token(scope)
            except AzureError as exc:
                # the AADSTS code and text, as the endpoint sent them: redacted, since a
                # hostile or broken endpoint can echo what we sent
                raise TokenError(_first_line(str(exc))) from None
            except (OSError, ValueError) as exc:
                raise TokenError(f"{type(exc).__name__}: {_first_line(str(exc))}") from None
            register_secret(token.token, transient=True)
            self._cache[scope] = token
            return token.token

    async def close(self) -> None:
        await self._credential.close()


def _first_line(text: str) -> str:
    """The first line of an error text, decoded, neutralised and without any secret."""
    if not text.strip():
        return "unknown error"
    return redact(network_text(text.strip().splitlines()[0], keep_newlines=False))[:300]

"""TLS for the send probe: the client SSL context a probe config asks for, and what a
finished handshake tells us (version, cipher, certificate expiry)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple

from cryptography import x509

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.result import Reason, TlsFacts

_MIN_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

# OpenSSL reason codes that mean "client and server share no protocol version", as opposed
# to other handshake failures; Exchange Online refuses TLS 1.0/1.1 this way.
_VERSION_MISMATCH = frozenset(
    {
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "NO_SUPPORTED_VERSIONS_ENABLED",
        "VERSION_TOO_LOW",
        "VERSION_TOO_HIGH",
        "WRONG_SSL_VERSION",
    }
)


def build_ssl_context(config: ProbeConfig) -> ssl.SSLContext:
    """A client context: system CAs (or only `ca_file` when given), hostname checking,
    and `min_version`; `tls_verify: false` turns certificate verification off.

    Loads CA files from disk: call it off the event loop (`asyncio.to_thread`).
    """
    cafile = str(config.ca_file) if config.ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = _MIN_VERSIONS[config.min_version]
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _ContextKey(NamedTuple):
    """What a context is built from: the probe's TLS settings and its CA file's version."""

    ca_file: str | None
    ca_file_version: tuple[int, int] | None  # (mtime_ns, size); None: no file given
    min_version: str
    tls_verify: bool


# Loading the system CA store takes tens of milliseconds: a context is built once per
# TLS configuration and shared by every run of the probes using it. It is rebuilt when the
# CA file changes (mtime or size), after `CONTEXT_MAX_AGE` (the system store may be
# updated), and after `clear_ssl_contexts` (a configuration reload).
CONTEXT_MAX_AGE = 3600.0
_CONTEXTS: dict[_ContextKey, tuple[float, ssl.SSLContext]] = {}


def _context_key(config: ProbeConfig) -> _ContextKey:
    version = None
    if config.ca_file is not None:
        stat = os.stat(config.ca_file)  # raises OSError for a missing file, like loading
        version = (stat.st_mtime_ns, stat.st_size)
    ca_file = str(config.ca_file) if config.ca_file is not None else None
    return _ContextKey(ca_file, version, config.min_version, config.tls_verify)


async def shared_ssl_context(
    config: ProbeConfig, *, clock: Callable[[], float] = time.monotonic
) -> ssl.SSLContext:
    """The client context for `config`'s TLS settings, built off the event loop on first
    use and then shared. Raises `ssl.SSLError` / `OSError` when the CA file is unusable."""
    key = _context_key(config)
    now = clock()
    cached = _CONTEXTS.get(key)
    if cached is not None and now - cached[0] < CONTEXT_MAX_AGE:
        return cached[1]
    context = await asyncio.to_thread(build_ssl_context, config)
    for stale in [k for k in _CONTEXTS if k.ca_file == key.ca_file]:
        del _CONTEXTS[stale]  # an older version of the same CA file
    _CONTEXTS[key] = (now, context)
    return context


def clear_ssl_contexts() -> None:
    """Forget every shared context (on a configuration reload)."""
    _CONTEXTS.clear()


def server_hostname(config: ProbeConfig) -> str:
    """The name sent as SNI and checked against the certificate."""
    return config.server_name or config.host


class RawTls(NamedTuple):
    """What an established session says, read cheaply while the probe is timed; the
    certificate is parsed later (`facts_of`)."""

    version: str
    cipher: str
    certificate: bytes | None  # DER


def raw_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> RawTls | None:
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return RawTls(
        ssl_object.version() or "",
        cipher[0] if cipher else "",
        ssl_object.getpeercert(binary_form=True),
    )


def tls_facts(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsFacts | None:
    """Version, cipher and certificate expiry of an established TLS session."""
    raw = raw_tls(ssl_object)
    return None if raw is None else facts_of(raw)


def facts_of(raw: RawTls) -> TlsFacts:
    """The session's facts with the certificate parsed. It is read in binary form because
    `getpeercert()` returns an empty dict when verification is off."""
    der = raw.certificate
    not_after = None
    subject = issuer = ""
    if der:
        certificate = x509.load_der_x509_certificate(der)
        not_after = certificate.not_valid_after_utc.timestamp()
        subject = certificate_name(certificate.subject)
        issuer = certificate_name(certificate.issuer)
    return TlsFacts(
        version=raw.version,
        cipher=raw.cipher,
        cert_not_after=not_after,
        cert_subject=subject,
        cert_issuer=issuer,
    )


_MAX_NAME = 256


def certificate_name(name: x509.Name) -> str:
    """A certificate subject or issuer for display: RFC 4514 text, printable, bounded.

    The server chooses these bytes, so control characters are replaced and the length is
    capped before the text reaches a terminal or a page.
    """
    try:
        text = name.rfc4514_string()
    except ValueError:  # attribute values that are not valid strings
        return "<unreadable name>"
    shown = "".join(char if char.isprintable() else "?" for char in text[:_MAX_NAME])
    return shown + ("..." if len(text) > _MAX_NAME else "")


def handshake_failure(exc: ssl.SSLError) -> tuple[Reason, str]:
    """The failure reason and a one-line description of a failed TLS handshake."""
    # OpenSSL fills `reason` and `verify_message`; an SSLError raised elsewhere may lack them
    reason: str | None = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc.strerror or "unknown reason"
        return Reason.TLS_VERIFY, f"certificate verification failed: {why}"
    what = reason or exc.strerror or type(exc).__name__
    if reason in _VERSION_MISMATCH:
        return Reason.TLS_VERSION, f"no common TLS version with the server: {what}"
    return Reason.TLS_HANDSHAKE, f"TLS handshake failed: {what}"

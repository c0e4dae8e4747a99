"""`--web.config.file`: TLS, basic authentication and response headers for the HTTP
endpoints, in the file format of the Prometheus exporter-toolkit.

Supported keys: `tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
client_allowed_sans, min_version, max_version, cipher_suites, prefer_server_cipher_suites),
`http_server_config` (headers; http2 is accepted, answers are HTTP/1.1) and
`basic_auth_users`. Relative file names are relative to the web configuration file.
Not supported, and reported as such: inline `cert`/`key`/`client_ca`, `curve_preferences`,
`rate_limit`, and the client_auth_types that accept unverified certificates.
`WebConfigWatcher` (web_config_watch.py) re-reads it, and the files it names, when they
change.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from aiohttp.typedefs import Middleware
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from m365_smtp_exporter.bounded_files import (
    CERTIFICATE_FILE_LIMIT,
    CONFIG_FILE_LIMIT,
    UnreadableFileError,
    read_bounded,
    read_bounded_text,
)
from m365_smtp_exporter.config import ConfigError, StrictModel, format_errors, load_yaml_mapping
from m365_smtp_exporter.web_auth import BasicAuthGuard, client_name_guard, response_headers

_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit types that take a client certificate without verifying it; Python's ssl
# module verifies every client certificate it accepts.
_UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
# Go crypto/tls names (as in exporter-toolkit files) -> OpenSSL names, TLS 1.2 suites.
_CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
# TLS 1.3 suites are not configurable (in Go neither): accepted and left to the defaults.
_TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def _non_empty(value: object) -> object:
    if value == "":
        raise ValueError("must not be empty")
    return value


def _blank_is_unset(value: object) -> object:
    return None if value == "" else value


def _unsupported(value: object) -> None:
    raise ValueError("this exporter-toolkit setting is not supported by m365-smtp-exporter")


def _tls_version(value: str) -> str:
    if value in ("TLS10", "TLS11"):
        raise ValueError(f"{value} is not supported, the oldest accepted version is TLS12")
    if value not in _TLS_VERSIONS:
        raise ValueError(f"unknown TLS version {value!r} (expected TLS12 or TLS13)")
    return value


def _client_auth_type(value: str) -> str:
    if value == "":  # as in exporter-toolkit
        return "NoClientCert"
    if value in _UNVERIFIED_CLIENT_AUTH:
        raise ValueError(
            f"{value} accepts client certificates without verifying them, which is not "
            "supported; use RequireAndVerifyClientCert with client_ca_file"
        )
    if value not in _CLIENT_AUTH:
        raise ValueError(f"unknown client_auth_type {value!r} (expected {', '.join(_CLIENT_AUTH)})")
    return value


def _cipher_suite(value: str) -> str:
    if value not in _CIPHER_SUITES and value not in _TLS13_SUITES:
        raise ValueError(
            f"unknown cipher suite {value!r} (expected a Go crypto/tls name such as "
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
        )
    return value


def _bcrypt_hash(value: SecretStr) -> SecretStr:
    if not _BCRYPT_HASH.fullmatch(value.get_secret_value()):
        raise ValueError("not a bcrypt hash (make one with htpasswd -nBC 10 '' | tr -d ':\\n')")
    return value


def _user_name(value: str) -> str:
    if ":" in value:
        raise ValueError("a user name cannot contain ':' (basic authentication splits on it)")
    return value


FileName = Annotated[Path, BeforeValidator(_non_empty)]
# Known exporter-toolkit keys without an equivalent here: a precise error, not "unknown field".
Unsupported = Annotated[None, BeforeValidator(_unsupported)]
TLSVersionName = Annotated[str, AfterValidator(_tls_version)]
UserName = Annotated[str, Field(min_length=1), AfterValidator(_user_name)]
BcryptHash = Annotated[SecretStr, AfterValidator(_bcrypt_hash)]
_T = TypeVar("_T")
# exporter-toolkit: a header left blank is not sent.
Blankable = Annotated[_T | None, BeforeValidator(_blank_is_unset)]


class TLSServerConfig(StrictModel):
    cert_file: FileName
    key_file: FileName
    client_auth_type: Annotated[str, AfterValidator(_client_auth_type)] = "NoClientCert"
    client_ca_file: FileName | None = None
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[Annotated[str, AfterValidator(_cipher_suite)]] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    cert: Unsupported = None
    key: Unsupported = None
    client_ca: Unsupported = None
    curve_preferences: Unsupported = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[str] = []
        verifies = self.client_auth_type != "NoClientCert"
        if self.client_ca_file is not None and not verifies:
            errors.append(
                "client_auth_type: client_ca_file is set but client certificates are not "
                "requested; use RequireAndVerifyClientCert"
            )
        if verifies and self.client_ca_file is None:
            errors.append(f"client_ca_file: required with client_auth_type {self.client_auth_type}")
        if (
            self.client_allowed_sans is not None
            and self.client_auth_type != "RequireAndVerifyClientCert"
        ):
            errors.append(
                "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert, "
                "otherwise a client may send no certificate to match"
            )
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            errors.append(
                f"min_version: {self.min_version} is newer than max_version {self.max_version}"
            )
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def resolved_in(self, directory: Path) -> TLSServerConfig:
        ca_file = self.client_ca_file
        return self.model_copy(
            update={
                "cert_file": directory / self.cert_file,
                "key_file": directory / self.key_file,
                "client_ca_file": directory / ca_file if ca_file is not None else None,
            }
        )


class ResponseHeaders(StrictModel):
    """The headers exporter-toolkit lets a file set, with its allowed values."""

    content_security_policy: str = Field("", alias="Content-Security-Policy")
    x_frame_options: Blankable[Literal["deny", "sameorigin"]] = Field(None, alias="X-Frame-Options")
    x_content_type_options: Blankable[Literal["nosniff"]] = Field(
        None, alias="X-Content-Type-Options"
    )
    x_xss_protection: str = Field("", alias="X-XSS-Protection")
    strict_transport_security: str = Field("", alias="Strict-Transport-Security")

    def as_dict(self) -> dict[str, str]:
        """Header name -> value; blank values are not sent."""
        return {name: value for name, value in self.model_dump(by_alias=True).items() if value}


class HTTPServerConfig(StrictModel):
    http2: bool = True  # accepted for compatibility: aiohttp answers HTTP/1.1
    headers: ResponseHeaders = ResponseHeaders()


class WebConfig(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[UserName, BcryptHash] = Field(default_factory=dict)
    rate_limit: Unsupported = None

    def describe(self) -> str:
        """One line for `check-config`."""
        tls = self.tls_server_config
        parts = ["plain HTTP"]
        if tls is not None:
            parts = [
                f"HTTPS with {tls.min_version} to {tls.max_version}",
                f"client_auth_type {tls.client_auth_type}",
            ]
        users = len(self.basic_auth_users)
        parts.append(f"basic authentication for {users} user(s)" if users else "no authentication")
        return ", ".join(parts)


def parse_web_config(text: str, *, source: str, directory: Path) -> WebConfig:
    """Validate YAML text; file names are taken relative to `directory`."""
    raw = load_yaml_mapping(text, source)
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
    if config.tls_server_config is None:
        return config
    return config.model_copy(
        update={"tls_server_config": config.tls_server_config.resolved_in(directory)}
    )


def load_web_config(path: Path) -> WebConfig:
    try:
        text = read_bounded_text(path, CONFIG_FILE_LIMIT)
    except UnreadableFileError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return parse_web_config(text, source=str(path), directory=path.parent)


def _read(path: Path, field_path: str, errors: list[str]) -> bytes | None:
    try:
        return read_bounded(path, CERTIFICATE_FILE_LIMIT)
    except UnreadableFileError as exc:
        errors.append(f"{field_path}: {exc}")
        return None


def _der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tls_file_errors(tls: TLSServerConfig) -> list[str]:
    """Readable, precise messages for the mistakes OpenSSL reports as 'PEM lib'."""
    errors: list[str] = []
    certificate = private_key = None
    cert_pem = _read(tls.cert_file, "tls_server_config.cert_file", errors)
    if cert_pem is not None:
        try:
            certificate = x509.load_pem_x509_certificates(cert_pem)[0]
        except ValueError:
            errors.append(f"tls_server_config.cert_file: no PEM certificate in {tls.cert_file}")
    key_pem = _read(tls.key_file, "tls_server_config.key_file", errors)
    if key_pem is not None:
        try:
            private_key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            errors.append(
                f"tls_server_config.key_file: no unencrypted PEM private key in {tls.key_file}"
            )
    if (
        certificate is not None
        and private_key is not None
        and _der(certificate.public_key()) != _der(private_key.public_key())
    ):
        errors.append(
            f"tls_server_config.key_file: {tls.key_file} is not the key of the "
            "certificate in cert_file"
        )
    if tls.client_ca_file is not None:
        ca_pem = _read(tls.client_ca_file, "tls_server_config.client_ca_file", errors)
        if ca_pem is not None:
            try:
                x509.load_pem_x509_certificates(ca_pem)
            except ValueError:
                errors.append(
                    f"tls_server_config.client_ca_file: no PEM certificate in {tls.client_ca_file}"
                )
    return errors


def server_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """An SSLContext for the listener. Raises ConfigError for unusable files."""
    errors = _tls_file_errors(tls)
    if errors:
        raise ConfigError(errors)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ciphers = [_CIPHER_SUITES[name] for name in tls.cipher_suites if name in _CIPHER_SUITES]
    try:
        if ciphers:
            context.set_ciphers(":".join(ciphers))
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=tls.client_ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(
            [f"tls_server_config: OpenSSL refused the settings: {exc.reason}"]
        ) from None
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    return context


@dataclass(frozen=True)
class WebSecurity:
    """What a web configuration file asks of the listener: TLS and request guards."""

    config: WebConfig = field(default_factory=WebConfig)
    ssl_context: ssl.SSLContext | None = None

    def build_middlewares(self) -> list[Middleware]:
        """Outermost first: headers reach every answer, the 401 and 403 ones included."""
        middlewares: list[Middleware] = []
        headers = self.config.http_server_config.headers.as_dict()
        if headers:
            middlewares.append(response_headers(headers))
        tls = self.config.tls_server_config
        if tls is not None and tls.client_allowed_sans is not None:
            middlewares.append(client_name_guard(tls.client_allowed_sans))
        if self.config.basic_auth_users:
            users = {
                name: hashed.get_secret_value()
                for name, hashed in self.config.basic_auth_users.items()
            }
            middlewares.append(BasicAuthGuard(users).middleware())
        return middlewares


def web_security(config: WebConfig) -> WebSecurity:
    tls = config.tls_server_config
    return WebSecurity(config, server_ssl_context(tls) if tls is not None else None)


def load_web_security(path: Path) -> WebSecurity:
    """Read, validate and apply a web configuration file. Raises ConfigError."""
    return web_security(load_web_config(path))

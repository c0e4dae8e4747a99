"""Configuration: strict pydantic models, loaded once from YAML, validated with field paths.

Secrets come from `*_file` paths or `${ENV_VAR}` expansion and are held as SecretStr, so a
model dump, repr or validation error never shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_LISTEN_ADDRESS = ":9587"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_ADDRESS = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"


class ConfigError(Exception):
    """A configuration that cannot be used; `errors` are `path: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _parse_duration(value: object) -> object:
    """Accept 60, 60.0, "60s", "500ms", "5m", "1h", "1d"; return seconds as float."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m or 1h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError("must be a duration like 30s, 5m or 1h")


Duration = Annotated[float, BeforeValidator(_parse_duration), Field(gt=0)]


def _matching(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


Name = Annotated[str, _matching(_NAME, "a valid name (letters, digits, '_', '.', '-')")]
Address = Annotated[str, _matching(_ADDRESS, "an e-mail address")]


def _read_secret_file(field: str, path: Path) -> SecretStr:
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class TraceConfig(StrictModel):
    """Message-trace pulls through Microsoft Graph (needs ExchangeMessageTrace.Read.All)."""

    enabled: bool = True
    interval: Duration = 300.0
    # Rows appear 5-10 minutes after the message is handled: re-read a trailing overlap.
    overlap: Duration = 900.0
    lookback: Annotated[float, BeforeValidator(_parse_duration), Field(gt=0, le=90 * 86400)] = (
        86400.0
    )
    page_size: int = Field(default=5000, ge=1, le=5000)
    timeout: Duration = 120.0


class SpamPolicyConfig(StrictModel):
    """Outbound spam policy caps of the tenant (Defender), often tighter than 10,000/day."""

    external_per_hour: int | None = Field(default=None, ge=1)
    internal_per_hour: int | None = Field(default=None, ge=1)
    recipients_per_day: int | None = Field(default=None, ge=1)


class QuotaConfig(StrictModel):
    recipients_per_day: int = Field(default=10_000, ge=1)
    sender_limits: dict[Address, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    messages_per_minute: int = Field(default=30, ge=1)
    licenses: int = Field(default=1, ge=1)
    trial: bool = False
    external_recipient_limit: int | None = Field(default=None, ge=1)
    spam_policy: SpamPolicyConfig = SpamPolicyConfig()
    recovery_threshold: float = Field(default=0.8, gt=0, le=1)
    senders: list[Address] = Field(default_factory=list)  # always exported
    top_senders: int = Field(default=50, ge=0, le=10_000)
    hash_senders: bool = False
    hash_salt: SecretStr | None = None


class TenantConfig(StrictModel):
    """An Entra ID app registration that can get tokens for SMTP (XOAUTH2) and Graph."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    certificate_file: Path | None = None
    certificate_password: SecretStr | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    smtp_scope: str = "https://outlook.office365.com/.default"
    graph_scope: str = "https://graph.microsoft.com/.default"
    ca_file: Path | None = None  # extra CA for the token and Graph endpoints (emulator, proxies)
    accepted_domains: list[str] = Field(default_factory=list)
    graph_budget: int = Field(default=80, ge=1, le=100)  # of Microsoft's 100 per 5 minutes
    trace: TraceConfig = TraceConfig()
    quota: QuotaConfig = QuotaConfig()
    # Quota buckets, trace de-dup keys and cursor survive restarts here (None: memory only).
    quota_state_file: Path | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        given = [
            name
            for name in ("client_secret", "client_secret_file", "certificate_file")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(
                f"{given[1]}: give only one of client_secret, client_secret_file,"
                f" certificate_file (got {', '.join(given)})"
            )
        if self.client_secret_file is not None:
            secret = _read_secret_file("client_secret_file", self.client_secret_file)
            object.__setattr__(self, "client_secret", secret)
        if self.certificate_file is not None and not self.certificate_file.is_file():
            raise ValueError(f"certificate_file: file {self.certificate_file} does not exist")
        return self

    @property
    def has_credentials(self) -> bool:
        return self.client_secret is not None or self.certificate_file is not None


class AuthConfig(StrictModel):
    mechanism: Literal["xoauth2", "login", "plain", "none"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password_file: give only one of password, password_file")
        if self.password_file is not None:
            secret = _read_secret_file("password_file", self.password_file)
            object.__setattr__(self, "password", secret)
        if self.mechanism in ("login", "plain"):
            if not self.username:
                raise ValueError(f"username: mechanism {self.mechanism} needs a username")
            if self.password is None:
                raise ValueError(
                    f"password: mechanism {self.mechanism} needs password or password_file"
                )
        if self.mechanism == "xoauth2" and not self.username:
            raise ValueError("username: mechanism xoauth2 needs the mailbox to send as")
        return self


class DeliveryConfig(StrictModel):
    """Find each probe mail again in the recipient mailbox through Microsoft Graph."""

    mailbox: Address  # the mailbox (UPN) the probe mail is looked up in
    timeout: Duration = 600.0  # after this long without arrival the probe counts as lost
    poll_interval: Duration = 15.0  # first look-up delay; later ones back off up to 4x
    cleanup: bool = True  # delete the probe mail once found


class ProbeConfig(StrictModel):
    """One scheduled synthetic send."""

    name: Name
    tenant: str | None = None
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    tls_verify: bool = True
    ca_file: Path | None = None
    server_name: str | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    auth: AuthConfig = AuthConfig()
    allow_insecure_auth: bool = False
    ehlo_name: str | None = None
    mail_from: Address
    rcpt_to: list[Address] = Field(min_length=1, max_length=100)
    subject: str = "m365-smtp-exporter probe"
    interval: Duration = 60.0
    timeout: Duration = 30.0
    jitter: Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)] = 5.0
    delivery: DeliveryConfig | None = None

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout: {self.timeout:g}s is longer than the interval ({self.interval:g}s)"
            )
        if self.tls == "none" and self.auth.mechanism != "none" and not self.allow_insecure_auth:
            raise ValueError(
                f"auth.mechanism: {self.auth.mechanism} over an unencrypted connection "
                "(tls: none) would send credentials in clear text; set "
                "allow_insecure_auth: true to allow it"
            )
        return self

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class DomainChecksConfig(StrictModel):
    """Sending-domain authentication posture (SPF, DKIM, DMARC) checked through DNS."""

    names: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(default_factory=list)
    interval: Duration = 3600.0
    timeout: Duration = 10.0
    nameservers: list[str] = Field(default_factory=list)  # empty: the system resolver
    port: int = Field(default=53, ge=1, le=65535)
    dkim_selectors: list[str] = Field(default_factory=lambda: ["selector1", "selector2"])


class Config(StrictModel):
    # Pending delivery checks survive restarts here (None: kept in memory only).
    state_file: Path | None = None
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
    probes: list[ProbeConfig] = Field(default_factory=list)
    domains: DomainChecksConfig = DomainChecksConfig()

    @model_validator(mode="after")
    def _references(self) -> Self:
        errors: list[str] = []
        seen: set[str] = set()
        for index, probe in enumerate(self.probes):
            if probe.name in seen:
                errors.append(f"probes[{index}].name: duplicate probe name {probe.name!r}")
            seen.add(probe.name)
            if probe.tenant is not None and probe.tenant not in self.tenants:
                errors.append(f"probes[{index}].tenant: unknown tenant {probe.tenant!r}")
            delivery_tenant = self.tenants.get(probe.tenant or "")
            if probe.delivery is not None and (
                delivery_tenant is None or not delivery_tenant.has_credentials
            ):
                errors.append(
                    f"probes[{index}].delivery: delivery tracking reads the mailbox through "
                    "Microsoft Graph: the probe's tenant must have app credentials"
                )
            if probe.auth.mechanism == "xoauth2":
                tenant = self.tenants.get(probe.tenant or "")
                if tenant is None:
                    errors.append(
                        f"probes[{index}].auth.mechanism: xoauth2 needs the probe's "
                        "tenant to name a configured tenant with app credentials"
                    )
                elif not tenant.has_credentials:
                    errors.append(
                        f"probes[{index}].auth.mechanism: tenant {probe.tenant!r} has "
                        "no client_secret, client_secret_file or certificate_file"
                    )
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def probe(self, name: str) -> ProbeConfig | None:
        return next((probe for probe in self.probes if probe.name == name), None)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)


def format_errors(exc: ValidationError) -> list[str]:
    """`path: message` lines. Model-level checks start their message with the field they
    concern ("timeout: ..."), which is joined onto the model's path."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _loc_to_path(tuple(p for p in error["loc"] if p != "[key]"))
        if error["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field")
            continue
        message = error["msg"]
        if error["type"] != "value_error":
            lines.append(f"{path}: {message}")
            continue
        for line in message.removeprefix("Value error, ").split("\n"):
            match = _FIELD_PREFIX.match(line)
            if match and path:
                lines.append(f"{path}.{match.group(1)}: {match.group(2)}")
            elif match or not path:
                lines.append(line)
            else:
                lines.append(f"{path}: {line}")
    return lines


def _expand_env(node: Any, path: str, env: Mapping[str, str], errors: list[str]) -> Any:
    """Replace ${VAR} in every string value; a missing variable is an error at that field."""
    if isinstance(node, dict):
        return {
            key: _expand_env(value, _join(path, str(key)), env, errors)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_expand_env(value, f"{path}[{i}]", env, errors) for i, value in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV_REF.sub(replace, node)
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """The YAML document as a mapping (empty for an empty file); ConfigError otherwise."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{source}: {problem}{where}"]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: top level must be a mapping"])
    return raw


def parse_config(
    text: str, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Parse and validate YAML text. Raises ConfigError listing every problem."""
    raw = load_yaml_mapping(text, source)
    errors: list[str] = []
    expanded = _expand_env(raw, "", os.environ if env is None else env, errors)
    if errors:
        raise ConfigError(errors)
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_config(text, env, source=str(path))

"""Configuration: strict pydantic models, loaded once from YAML, validated with field paths.

Secrets come from `*_file` paths or `${ENV_VAR}` expansion and are held as SecretStr, so a
model dump, repr or validation error never shows them.
"""

from __future__ import annotations

import asyncio
import difflib
import ipaddress
import os
import re
import types
import typing
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
    ValidationInfo,
    field_validator,
    model_validator,
)

from m365_smtp_exporter.bounded_files import (
    CERTIFICATE_FILE_LIMIT,
    CONFIG_FILE_LIMIT,
    SECRET_FILE_LIMIT,
    UnreadableFileError,
    read_bounded,
    read_bounded_text,
)
from m365_smtp_exporter.logs import register_secret
from m365_smtp_exporter.probe_spend import probe_spend, spend_errors
from m365_smtp_exporter.strict_yaml import YamlRefusedError, load_strict

DEFAULT_LISTEN_ADDRESS = ":9587"

# Prometheus durations: units required, compound allowed ("1h30m"); one decimal unit too ("1.5s").
_DURATION_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_COMPOUND_DURATION = re.compile(
    r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_DECIMAL_DURATION = re.compile(r"([0-9]+\.[0-9]+)(ms|s|m|h|d|w)")
_DURATION_HELP = "must be a duration with a unit, like 30s, 5m or 1h30m"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Every pattern below is used with fullmatch: "$" would accept a trailing newline.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_LOCAL_PART = re.compile(r"[^@\s<>\x00-\x1f\x7f]{1,64}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(Exception):
    """A configuration that cannot be used; `errors` are `path: message` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _parse_duration(value: object, info: ValidationInfo) -> object:
    """Accept "30s", "500ms", "5m", "1h30m", "1d", "1.5s" (and 0); return seconds as float.

    In a configuration file a bare number is refused: `interval: 30` could mean seconds or
    minutes. Code building models directly passes seconds as numbers."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, int | float):
        if value == 0 or not _from_file(info):
            return float(value)
        raise ValueError(f"{_DURATION_HELP} (got {value:g} without a unit)")
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0.0
        decimal = _DECIMAL_DURATION.fullmatch(text)
        if decimal:
            return float(decimal.group(1)) * _DURATION_UNITS[decimal.group(2)]
        compound = _COMPOUND_DURATION.fullmatch(text)
        if text and compound:
            units = ("w", "d", "h", "m", "s", "ms")
            return sum(
                int(amount) * _DURATION_UNITS[unit]
                for amount, unit in zip(compound.groups(), units, strict=True)
                if amount is not None
            )
    raise ValueError(_DURATION_HELP)


Duration = Annotated[float, BeforeValidator(_parse_duration), Field(gt=0)]


def _matching(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def is_domain_name(value: str) -> bool:
    """An ASCII (or IDNA "xn--") DNS name of at least two labels, optional final dot."""
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _domain(value: str) -> str:
    if not is_domain_name(value):
        raise ValueError(f"{value!r} is not a domain name")
    return value


def _address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or not is_domain_name(domain):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _host(value: str) -> str:
    """A DNS name (one label allowed: "localhost", a container name) or an IP address."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not all(_HOST_LABEL.fullmatch(label) for label in value.removesuffix(".").split(".")):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (newline, tab, escape...)")
    return value


def _from_file(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("from_file"))


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    """`*_file` paths are relative to the configuration file's folder, as in Prometheus."""
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if base is None or value.is_absolute():
        return value
    return Path(base) / value


Name = Annotated[str, _matching(_NAME, "a valid name (letters, digits, '_', '.', '-')")]
Address = Annotated[str, AfterValidator(_address)]
DomainName = Annotated[str, AfterValidator(_domain)]
HostName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_host)]
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]


def _ehlo(value: str) -> str:
    """A host name or an address literal ("[192.0.2.1]"): it goes into the EHLO line."""
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.ip_address(value[1:-1].removeprefix("IPv6:"))
            return value
        except ValueError:
            raise ValueError(f"{value!r} is not an address literal") from None
    return _host(value)


EhloName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_ehlo)]


def _read_secret_file(field: str, path: Path) -> SecretStr:
    try:
        return SecretStr(read_bounded_text(path, SECRET_FILE_LIMIT).strip())
    except UnreadableFileError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _check_bounded_file(field: str, path: Path) -> None:
    """A certificate or CA file other libraries will read: a small regular file, now."""
    try:
        read_bounded(path, CERTIFICATE_FILE_LIMIT)
    except UnreadableFileError as exc:
        raise ValueError(f"{field}: {exc}" if field else str(exc)) from None


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


# Microsoft paused the tenant external recipient limit for tenants over this many licences
# (July 2025 update of its announcement; no resumption announced).
TERRL_PAUSED_ABOVE_LICENSES = 500


class QuotaConfig(StrictModel):
    recipients_per_day: int = Field(default=10_000, ge=1)
    sender_limits: dict[Address, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    messages_per_minute: int = Field(default=30, ge=1)
    # The tenant external recipient limit (TERRL) is 500 x licenses^0.7 + 9,500: a file that
    # counts quota must give the licence count (or the limit itself, or trial: true).
    licenses: int | None = Field(default=None, ge=1)
    trial: bool = False
    external_recipient_limit: int | None = Field(default=None, ge=1)
    # None: enforced unless the tenant has over 500 licences (Microsoft paused that phase).
    external_recipient_limit_enforced: bool | None = None
    spam_policy: SpamPolicyConfig = SpamPolicyConfig()
    recovery_threshold: float = Field(default=0.8, gt=0, le=1)
    senders: list[Address] = Field(default_factory=list)  # always exported
    top_senders: int = Field(default=50, ge=0, le=10_000)
    hash_senders: bool = False
    hash_salt: SecretStr | None = None

    @property
    def external_limit_enforced(self) -> bool:
        """Whether Microsoft enforces the tenant external recipient limit for this tenant."""
        if self.external_recipient_limit_enforced is not None:
            return self.external_recipient_limit_enforced
        if self.trial or self.licenses is None:
            return True
        return self.licenses <= TERRL_PAUSED_ABOVE_LICENSES

    @property
    def has_external_limit(self) -> bool:
        """Whether the tenant external recipient limit is known (not a silent default)."""
        return self.licenses is not None or self.external_recipient_limit is not None or self.trial


class ServiceHealthConfig(StrictModel):
    """Microsoft's own view of Exchange Online (needs ServiceHealth.Read.All)."""

    enabled: bool = False
    interval: Duration = 300.0
    timeout: Duration = 60.0
    # at most this many active issues are exported per tenant (incidents first, newest first)
    max_issues: int = Field(default=10, ge=1, le=100)


class TenantConfig(StrictModel):
    """An Entra ID app registration that can get tokens for SMTP (XOAUTH2) and Graph."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: ConfigPath | None = None
    certificate_file: ConfigPath | None = None
    certificate_password: SecretStr | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    smtp_scope: str = "https://outlook.office365.com/.default"
    graph_scope: str = "https://graph.microsoft.com/.default"
    ca_file: ConfigPath | None = (
        None  # extra CA for the token and Graph endpoints (emulator, proxies)
    )
    accepted_domains: list[DomainName] = Field(default_factory=list)
    # of Microsoft's 100 per 5 minutes, shared with every other caller of the tenant
    graph_budget: int = Field(default=50, ge=1, le=100)
    trace: TraceConfig = TraceConfig()
    quota: QuotaConfig = QuotaConfig()
    service_health: ServiceHealthConfig = ServiceHealthConfig()
    # Quota buckets, trace de-dup keys and cursor survive restarts here (None: memory only).
    quota_state_file: ConfigPath | None = None

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
        # a server may echo them back: every text shown anywhere must be able to remove them
        register_secret(
            *(s.get_secret_value() for s in (self.client_secret, self.certificate_password) if s)
        )
        if self.certificate_file is not None:
            _check_bounded_file("certificate_file", self.certificate_file)
        if self.ca_file is not None:
            _check_bounded_file("ca_file", self.ca_file)
        return self

    @property
    def has_credentials(self) -> bool:
        return self.client_secret is not None or self.certificate_file is not None

    @property
    def counts_quota(self) -> bool:
        """Whether quota usage is counted for this tenant: its message trace is pulled."""
        return self.has_credentials and self.trace.enabled


class AuthConfig(StrictModel):
    mechanism: Literal["xoauth2", "login", "plain", "none"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    password_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password_file: give only one of password, password_file")
        if self.password_file is not None:
            secret = _read_secret_file("password_file", self.password_file)
            object.__setattr__(self, "password", secret)
        if self.password is not None:
            register_secret(self.password.get_secret_value())
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


ProbeKind = Literal["smtp", "hve", "direct_send", "graph_sendmail", "basic_auth_check"]
PROBE_KINDS: tuple[str, ...] = ("smtp", "hve", "direct_send", "graph_sendmail", "basic_auth_check")
HVE_HOST = "smtp.hve.mx.microsoft"
GRAPH_HOST = "graph.microsoft.com"


def direct_send_host(domain: str) -> str:
    """The tenant's MX endpoint: contoso.com -> contoso-com.mail.protection.outlook.com."""
    return f"{domain.lower().replace('.', '-')}.mail.protection.outlook.com"


class ProbeConfig(StrictModel):
    """One scheduled synthetic send (or, with `mode: session`, a connection without mail)."""

    name: Name
    # How the probe reaches Microsoft 365 (m365_smtp_exporter.probes has one module per kind).
    kind: ProbeKind = "smtp"
    # send: a whole transaction; session: connect, TLS, AUTH, then RSET/QUIT (no quota spent)
    mode: Literal["send", "session"] = "send"
    save_to_sent_items: bool = False  # graph_sendmail only
    tenant: str | None = None
    host: HostName
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    tls_verify: bool = True
    ca_file: ConfigPath | None = None
    server_name: HostName | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    auth: AuthConfig = AuthConfig()
    allow_insecure_auth: bool = False
    ehlo_name: EhloName | None = None
    mail_from: Address
    rcpt_to: list[Address] = Field(min_length=1, max_length=100)
    subject: Annotated[str, AfterValidator(_no_control)] = "m365-smtp-exporter probe"
    interval: Duration = 60.0
    timeout: Duration = 30.0
    jitter: Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)] = 5.0
    delivery: DeliveryConfig | None = None
    # Probes must not run their own mailbox into its daily limit: a configuration whose
    # probes would is refused, unless a probe of that mailbox is meant to (a demo, a test).
    allow_quota_exhaustion: bool = False

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None:
            _check_bounded_file("", value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        """Endpoints the probe kinds imply, unless the configuration names its own."""
        if not isinstance(data, dict) or data.get("kind") not in PROBE_KINDS:
            return data
        kind, filled = data["kind"], dict(data)
        if kind == "hve":
            filled.setdefault("host", HVE_HOST)
        elif kind == "direct_send":
            rcpt = filled.get("rcpt_to")
            first = rcpt[0] if isinstance(rcpt, list) and rcpt else None
            if isinstance(first, str) and "@" in first:
                filled.setdefault("host", direct_send_host(first.rsplit("@", 1)[1]))
            filled.setdefault("port", 25)
        elif kind == "graph_sendmail":
            filled.setdefault("host", GRAPH_HOST)
            filled.setdefault("port", 443)
            filled.setdefault("tls", "implicit")
        elif kind == "basic_auth_check":
            filled.setdefault("mode", "session")
        return filled

    @model_validator(mode="after")
    def _kind_rules(self) -> Self:
        mechanism = self.auth.mechanism
        if self.kind in ("hve", "basic_auth_check") and self.tls == "none":
            raise ValueError(f"tls: {self.kind} requires TLS (starttls or implicit)")
        if self.kind in ("direct_send", "graph_sendmail") and mechanism != "none":
            raise ValueError(
                f"auth.mechanism: {self.kind} does not use SMTP AUTH (direct_send sends "
                "unauthenticated; graph_sendmail uses the tenant's app token): use none"
            )
        if self.kind == "graph_sendmail" and self.mode != "send":
            raise ValueError("mode: graph_sendmail only sends (there is no session to open)")
        if self.kind == "basic_auth_check":
            if mechanism not in ("login", "plain"):
                raise ValueError(
                    "auth.mechanism: basic_auth_check tests a Basic credential: use login or plain"
                )
            if self.mode != "session":
                raise ValueError("mode: basic_auth_check never sends mail: use session")
        if self.mode == "session" and self.delivery is not None:
            raise ValueError("delivery: a session probe sends no mail to track")
        return self

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

    names: list[DomainName] = Field(default_factory=list)
    interval: Duration = 3600.0
    timeout: Duration = 10.0
    nameservers: list[str] = Field(default_factory=list)  # empty: the system resolver
    port: int = Field(default=53, ge=1, le=65535)
    dkim_selectors: list[str] = Field(default_factory=lambda: ["selector1", "selector2"])


class Config(StrictModel):
    # Pending delivery checks survive restarts here (None: kept in memory only).
    state_file: ConfigPath | None = None
    tenants: dict[Name, TenantConfig] = Field(default_factory=dict)
    probes: list[ProbeConfig] = Field(default_factory=list)
    domains: DomainChecksConfig = DomainChecksConfig()
    # Series per metric family whose label values a remote server chooses (reply codes);
    # past it, new label sets fold into one `__other__` series.
    max_series_per_family: int = Field(default=500, ge=10, le=100_000)

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
            errors += _kind_reference_errors(index, probe, self.tenants)
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


def _kind_reference_errors(
    index: int, probe: ProbeConfig, tenants: Mapping[str, TenantConfig]
) -> list[str]:
    """What a probe kind needs from its tenant: app credentials, internal recipients."""
    where = f"probes[{index}]"
    tenant = tenants.get(probe.tenant or "")
    if probe.kind in ("graph_sendmail", "basic_auth_check") and tenant is None:
        return [f"{where}.tenant: {probe.kind} needs the probe's tenant (a configured tenant)"]
    if probe.kind == "graph_sendmail" and tenant is not None and not tenant.has_credentials:
        return [
            f"{where}.tenant: graph_sendmail sends through Microsoft Graph: tenant "
            f"{probe.tenant!r} has no client_secret, client_secret_file or certificate_file"
        ]
    if probe.kind in ("hve", "direct_send") and tenant is not None and tenant.accepted_domains:
        # both paths deliver to internal recipients only (Microsoft refuses the rest)
        domains = {domain.lower() for domain in tenant.accepted_domains}
        for position, recipient in enumerate(probe.rcpt_to):
            if recipient.rsplit("@", 1)[1].lower() not in domains:
                return [
                    f"{where}.rcpt_to[{position}]: {probe.kind} reaches internal recipients "
                    f"only; {recipient} is not in tenant {probe.tenant!r}'s accepted_domains"
                ]
    return []


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that validates the mapping at `loc` (walking lists, dicts and options)."""
    annotation: Any = Config
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` and `Annotated[X, ...]` -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f", did you mean {close[0]!r}?" if close else ""


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)


def format_errors(exc: ValidationError) -> list[str]:
    """`path: message` lines. Model-level checks start their message with the field they
    concern ("timeout: ..."), which is joined onto the model's path."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _loc_to_path(tuple(p for p in error["loc"] if p != "[key]"))
        if error["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field{_did_you_mean(error['loc'])}")
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
    """The YAML document as a mapping (empty for an empty file); ConfigError otherwise.

    Duplicate keys and alias bombs are refused (see `strict_yaml`)."""
    try:
        raw = load_strict(text)
    except YamlRefusedError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None
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


def _idle_parts(config: Config) -> list[str]:
    """Configured things that would silently do nothing: they are errors, not no-ops."""
    if not config.tenants and not config.probes and not config.domains.names:
        return ["config: nothing to do: configure at least one probe, tenant or domain"]
    used = {probe.tenant for probe in config.probes}
    return [
        f"tenants.{name}: no client_secret, client_secret_file or certificate_file and no "
        "probe uses this tenant: it would do nothing"
        for name, tenant in config.tenants.items()
        if not tenant.has_credentials and name not in used
    ]


def _quota_parts(config: Config) -> list[str]:
    """A tenant whose quota is counted needs its real external recipient limit: a silent
    default of one licence (limit 10,000) would make a 500-seat tenant's alerts fire at a
    fifth of its headroom."""
    return [
        f"tenants.{name}.quota.licenses: required when the tenant's quota is counted "
        "(app credentials and trace on): its licence count sets the tenant external recipient "
        "limit (500 x licenses^0.7 + 9,500); give quota.licenses, or "
        "quota.external_recipient_limit (from Get-LimitsEnforcementStatus), or quota.trial: true"
        for name, tenant in config.tenants.items()
        if tenant.counts_quota and not tenant.quota.has_external_limit
    ]


def parse_config(
    text: str,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
    base_dir: Path | None = None,
) -> Config:
    """Parse and validate YAML text. Raises ConfigError listing every problem.

    Relative `*_file` paths resolve from `base_dir` (the config file's folder)."""
    raw = load_yaml_mapping(text, source)
    if not raw:
        raise ConfigError([f"{source}: the configuration is empty"])
    errors: list[str] = []
    expanded = _expand_env(raw, "", os.environ if env is None else env, errors)
    if errors:
        raise ConfigError(errors)
    try:
        config = Config.model_validate(expanded, context={"base_dir": base_dir, "from_file": True})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
    problems = (
        _idle_parts(config)
        or _quota_parts(config)
        or spend_errors(probe_spend(config.probes, config.tenants))
    )
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    try:
        text = read_bounded_text(path, CONFIG_FILE_LIMIT)
    except UnreadableFileError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return parse_config(text, env, source=str(path), base_dir=path.parent)


async def load_config_off_loop(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """`load_config` in a worker thread: a reload (SIGHUP, /-/reload) never stalls
    `/metrics`, even for a file at the size and alias limits."""
    return await asyncio.to_thread(load_config, path, env)

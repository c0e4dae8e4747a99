"""Configuration of the emulated world (tenants and mailboxes), loadable from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from m365_emulator.state import EmulatorState, Mailbox, Tenant


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantConfig(_Strict):
    name: str = Field(min_length=1)
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    accepted_domains: list[str] = Field(min_length=1)
    licenses: int = Field(default=25, ge=0)
    # Overrides the TERRL formula (trial tenants, or a small number to exercise the limit).
    external_recipient_limit: int | None = Field(default=None, ge=0)
    # Tenant-wide switch; Microsoft turns Basic SMTP AUTH off by default at the end of 2026.
    basic_auth_enabled: bool = True


class MailboxLimits(_Strict):
    recipients_per_day: int = Field(default=10_000, ge=1)
    recipients_per_message: int = Field(default=500, ge=1, le=1000)
    messages_per_minute: int = Field(default=30, ge=1)


class MailboxConfig(_Strict):
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    tenant: str
    password: SecretStr | None = None
    smtp_auth_enabled: bool = True
    basic_auth_enabled: bool = True
    send_as: list[str] = Field(default_factory=list)
    limits: MailboxLimits = Field(default_factory=MailboxLimits)


class SenderPool(_Strict):
    """Many ordinary mailboxes named <prefix><number>@<domain> (user001@contoso.com ...)."""

    tenant: str
    domain: str
    count: int = Field(ge=1)
    prefix: str = "user"
    digits: int = Field(default=3, ge=1)
    password: SecretStr | None = None

    def mailboxes(self) -> list[MailboxConfig]:
        return [
            MailboxConfig(
                address=f"{self.prefix}{n:0{self.digits}d}@{self.domain}",
                tenant=self.tenant,
                password=self.password,
            )
            for n in range(1, self.count + 1)
        ]


class DistributionListConfig(_Strict):
    """A distribution group of a tenant: mail to `address` goes to every member.

    Members may be mailboxes, outside addresses or other lists (expanded too). Microsoft
    counts the list as one recipient for the sender's limits, and its members for the
    tenant external recipient limit; trace shows an `expanded` row plus one per member.
    """

    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    tenant: str
    members: list[str] = Field(min_length=1, max_length=100_000)


class WorldConfig(_Strict):
    tenants: list[TenantConfig] = Field(min_length=1)
    mailboxes: list[MailboxConfig] = Field(default_factory=list)
    sender_pools: list[SenderPool] = Field(default_factory=list)
    distribution_lists: list[DistributionListConfig] = Field(default_factory=list)

    def all_mailboxes(self) -> list[MailboxConfig]:
        pooled = [mailbox for pool in self.sender_pools for mailbox in pool.mailboxes()]
        return [*self.mailboxes, *pooled]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [tenant.name for tenant in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        seen: set[str] = set()
        for mailbox in self.all_mailboxes():
            if mailbox.tenant not in names:
                raise ValueError(f"mailbox {mailbox.address} names unknown tenant {mailbox.tenant}")
            key = mailbox.address.lower()
            if key in seen:
                raise ValueError(f"mailbox {mailbox.address} is defined twice")
            seen.add(key)
        domains = {
            tenant.name: {domain.lower() for domain in tenant.accepted_domains}
            for tenant in self.tenants
        }
        for group in self.distribution_lists:
            if group.tenant not in names:
                raise ValueError(f"list {group.address} names unknown tenant {group.tenant}")
            if group.address.rsplit("@", 1)[-1].lower() not in domains[group.tenant]:
                raise ValueError(
                    f"list {group.address} is not in an accepted domain of {group.tenant}"
                )
            key = group.address.lower()
            if key in seen:
                raise ValueError(f"list {group.address} is defined twice or is a mailbox")
            seen.add(key)
        return self


class WorldError(Exception):
    """A world file that cannot be used; the message names the file and the field."""


MAX_WORLD_BYTES = 1024 * 1024


def load_world(path: Path) -> WorldConfig:
    """Read a world from a YAML file (same shape as WorldConfig); WorldError if unusable."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_WORLD_BYTES + 1)
    except OSError as exc:
        raise WorldError(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_WORLD_BYTES:
        raise WorldError(f"{path}: larger than {MAX_WORLD_BYTES} bytes")
    try:
        document = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WorldError(f"{path}: not valid UTF-8 YAML ({exc})") from None
    try:
        return WorldConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'top level'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise WorldError(f"{path}: {problems}") from None


def populate(state: EmulatorState, world: WorldConfig) -> None:
    """Add the world's tenants and mailboxes to the shared state."""
    for tenant in world.tenants:
        state.add_tenant(
            Tenant(
                name=tenant.name,
                tenant_id=tenant.tenant_id,
                client_id=tenant.client_id,
                client_secret=tenant.client_secret.get_secret_value(),
                accepted_domains=list(tenant.accepted_domains),
                licenses=tenant.licenses,
                external_recipient_limit=tenant.external_recipient_limit,
                basic_auth_enabled=tenant.basic_auth_enabled,
            )
        )
    for mailbox in world.all_mailboxes():
        state.add_mailbox(
            Mailbox(
                address=mailbox.address,
                tenant=mailbox.tenant,
                password=mailbox.password.get_secret_value() if mailbox.password else None,
                smtp_auth_enabled=mailbox.smtp_auth_enabled,
                basic_auth_enabled=mailbox.basic_auth_enabled,
                send_as={address.lower() for address in mailbox.send_as},
                recipients_per_day=mailbox.limits.recipients_per_day,
                recipient_limit_per_message=mailbox.limits.recipients_per_message,
                messages_per_minute=mailbox.limits.messages_per_minute,
            )
        )
    for group in world.distribution_lists:
        state.add_distribution_list(group.address, group.members)


# Fixed identifiers so a demo configuration can name them.
CONTOSO_TENANT_ID = "6f1b3c2e-0d4a-4c8e-9b7a-2e5d1c0f3a11"
CONTOSO_CLIENT_ID = "3c9e2a71-5b0d-4f6e-8a2c-7d1e9b4f0c22"
FABRIKAM_TENANT_ID = "a2d4f6b8-1c3e-4a5b-9d7f-0e2c4a6b8d33"
FABRIKAM_CLIENT_ID = "b7e9c1d3-2f4a-4b6c-8e0d-1a3c5e7f9b44"
DEMO_PASSWORD = "demo-Passw0rd!"


def default_world() -> WorldConfig:
    """The demo world: tenant contoso (probe, inbox, campaign and 200 senders) and fabrikam."""
    password = SecretStr(DEMO_PASSWORD)
    contoso = [
        MailboxConfig(address="probe@contoso.com", tenant="contoso", password=password),
        MailboxConfig(address="probe-inbox@contoso.com", tenant="contoso", password=password),
        MailboxConfig(address="campaign@contoso.com", tenant="contoso", password=password),
        MailboxConfig(
            address="smtp-disabled@contoso.com",
            tenant="contoso",
            password=password,
            smtp_auth_enabled=False,
        ),
        MailboxConfig(
            address="oauth-only@contoso.com",
            tenant="contoso",
            password=password,
            basic_auth_enabled=False,
        ),
    ]
    return WorldConfig(
        tenants=[
            TenantConfig(
                name="contoso",
                tenant_id=CONTOSO_TENANT_ID,
                client_id=CONTOSO_CLIENT_ID,
                client_secret=SecretStr("contoso-demo-client-secret"),
                accepted_domains=["contoso.com"],
                licenses=25,
            ),
            TenantConfig(
                name="fabrikam",
                tenant_id=FABRIKAM_TENANT_ID,
                client_id=FABRIKAM_CLIENT_ID,
                client_secret=SecretStr("fabrikam-demo-client-secret"),
                accepted_domains=["fabrikam.com"],
                licenses=5,
            ),
        ],
        mailboxes=[
            *contoso,
            MailboxConfig(address="probe@fabrikam.com", tenant="fabrikam", password=password),
        ],
        sender_pools=[
            SenderPool(tenant="contoso", domain="contoso.com", count=200, password=password)
        ],
    )

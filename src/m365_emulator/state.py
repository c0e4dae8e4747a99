"""The emulator's shared world: tenants, mailboxes, delivered mail and message-trace rows.

The SMTP server writes into it, the Graph API reads from it, the traffic generator fills it.
Everything lives in memory and is touched from one asyncio loop, so no locking is needed.
"""

from __future__ import annotations

import bisect
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

Clock = Callable[[], float]

TRACE_STATUSES = ("delivered", "pending", "failed", "quarantined", "filteredAsSpam", "expanded")

# Well-known folder names of Microsoft Graph and the opaque ids the emulator gives them.
FOLDER_IDS = {
    "inbox": "AAMkAGI2TGuLAAA=inbox",
    "junkemail": "AAMkAGI2TGuLAAA=junkemail",
    "deleteditems": "AAMkAGI2TGuLAAA=deleteditems",
}


def tenant_external_recipient_limit(licenses: int) -> int:
    """Microsoft's published TERRL: 500 x licenses^0.7 + 9,500 external recipients per rolling
    24 h, rounded to the nearest recipient as Microsoft's examples are (1 licence -> 10,000;
    100 -> 22,059; 1,000 -> 72,446; 10,000 -> 324,979, where rounding down would give 324,978).

    Kept here on purpose instead of importing the exporter's formula: the emulator is the
    independent check of the exporter's quota figures."""
    return round(9500 + 500 * math.pow(max(licenses, 1), 0.7))


def graph_datetime(ts: float) -> str:
    """Graph's UTC timestamp form: 2026-01-20T10:30:00Z (seconds precision)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Tenant:
    name: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    accepted_domains: list[str]
    licenses: int = 25
    external_recipient_limit: int | None = None  # None: TERRL formula from licenses
    basic_auth_enabled: bool = True  # False: LOGIN/PLAIN refused for all its mailboxes (5.7.30)

    @property
    def terrl(self) -> int:
        if self.external_recipient_limit is not None:
            return self.external_recipient_limit
        return tenant_external_recipient_limit(self.licenses)

    def is_internal(self, address: str) -> bool:
        domain = address.rsplit("@", 1)[-1].lower()
        return domain in {d.lower() for d in self.accepted_domains}


@dataclass(slots=True)
class StoredMessage:
    """A message sitting in an emulated mailbox (Graph `message` resource)."""

    id: str
    internet_message_id: str
    subject: str
    sender: str
    received_at: float  # unix seconds
    sent_at: float
    folder: str  # key of FOLDER_IDS
    headers: list[tuple[str, str]]
    body: str = ""


@dataclass(slots=True)
class Mailbox:
    address: str
    tenant: str
    password: str | None = field(default=None, repr=False)
    smtp_auth_enabled: bool = True  # False -> 535 5.7.139
    basic_auth_enabled: bool = True  # False -> 550 5.7.30 for LOGIN/PLAIN
    send_as: set[str] = field(default_factory=set)  # extra From addresses allowed
    recipients_per_day: int = 10_000
    recipient_limit_per_message: int = 500
    messages_per_minute: int = 30
    messages: list[StoredMessage] = field(default_factory=list)


@dataclass(slots=True)
class TraceRow:
    """One message-trace row (one per message and recipient), Graph `exchangeMessageTrace`."""

    id: str
    tenant: str
    sender: str
    recipient: str
    message_id: str
    received_at: float
    subject: str
    size: int
    from_ip: str
    to_ip: str
    status: str
    visible_at: float  # rows appear in trace only after the trace lag

    def to_graph(self) -> dict[str, object]:
        return {
            "id": self.id,
            "senderAddress": self.sender,
            "recipientAddress": self.recipient,
            "messageId": self.message_id,
            "receivedDateTime": graph_datetime(self.received_at),
            "subject": self.subject,
            "size": self.size,
            "fromIP": self.from_ip,
            "toIP": self.to_ip,
            "status": self.status,
        }


@dataclass(slots=True)
class IssuedToken:
    tenant: str
    client_id: str
    scope: str
    expires_at: float


class EmulatorState:
    """All emulated data. `clock` is wall time in unix seconds (injectable for tests)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.tenants: dict[str, Tenant] = {}
        self.mailboxes: dict[str, Mailbox] = {}  # lower-cased address -> mailbox
        self.tokens: dict[str, IssuedToken] = {}
        self.distribution_lists: dict[str, list[str]] = {}  # lower-cased address -> members
        self._trace: list[TraceRow] = []  # sorted by received_at
        self._trace_keys: list[float] = []

    # tenants and mailboxes
    def add_tenant(self, tenant: Tenant) -> None:
        self.tenants[tenant.name] = tenant

    def tenant_owning(self, address: str) -> Tenant | None:
        """The tenant whose accepted domains include the address's domain."""
        for tenant in self.tenants.values():
            if tenant.is_internal(address):
                return tenant
        return None

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        for tenant in self.tenants.values():
            if tenant_id in (tenant.tenant_id, tenant.name):
                return tenant
        return None

    def add_mailbox(self, mailbox: Mailbox) -> None:
        self.mailboxes[mailbox.address.lower()] = mailbox

    def mailbox(self, address: str) -> Mailbox | None:
        return self.mailboxes.get(address.lower())

    # distribution lists
    def add_distribution_list(self, address: str, members: list[str]) -> None:
        self.distribution_lists[address.lower()] = list(members)

    def expand_list(self, address: str) -> list[str] | None:
        """The list's members with nested lists expanded (each address once), or None when
        `address` is not a distribution list."""
        expansion = self.list_expansion(address)
        return None if expansion is None else expansion[1]

    def list_expansion(self, address: str) -> tuple[list[str], list[str]] | None:
        """(the lists expanded, `address` first; their members) or None for a non-list."""
        if address.lower() not in self.distribution_lists:
            return None
        lists: list[str] = []
        members: list[str] = []
        seen_members: set[str] = set()
        pending = [address]
        while pending:
            current = pending.pop(0)
            if current.lower() in {name.lower() for name in lists}:
                continue  # a list nested in itself expands once
            lists.append(current)
            for member in self.distribution_lists[current.lower()]:
                if member.lower() in self.distribution_lists:
                    pending.append(member)
                elif member.lower() not in seen_members:
                    seen_members.add(member.lower())
                    members.append(member)
        return lists, members

    # tokens
    def issue_token(self, tenant: str, client_id: str, scope: str, lifetime: float = 3599) -> str:
        token = "eyJ0eXAiOiJKV1QiLCJlbXUiOjF9." + uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens[token] = IssuedToken(tenant, client_id, scope, self.clock() + lifetime)
        return token

    def check_token(self, token: str, scope_prefix: str) -> IssuedToken | None:
        """The token's grant if it is known, unexpired and for the given resource."""
        grant = self.tokens.get(token)
        if grant is None or grant.expires_at <= self.clock():
            return None
        if not grant.scope.startswith(scope_prefix):
            return None
        return grant

    # message trace
    def add_trace_row(self, row: TraceRow) -> None:
        index = bisect.bisect_right(self._trace_keys, row.received_at)
        self._trace_keys.insert(index, row.received_at)
        self._trace.insert(index, row)

    def trace_rows(self, tenant: str, start: float, end: float) -> list[TraceRow]:
        """Visible rows of a tenant with start <= received_at <= end, oldest first."""
        now = self.clock()
        lo = bisect.bisect_left(self._trace_keys, start)
        hi = bisect.bisect_right(self._trace_keys, end)
        return [row for row in self._trace[lo:hi] if row.tenant == tenant and row.visible_at <= now]

    def all_trace_rows(self) -> list[TraceRow]:
        """Every row, visible or not (ground truth for tests)."""
        return list(self._trace)

    def prune_trace(self, older_than: float) -> None:
        """Forget rows received before `older_than` (trace keeps 90 days; demos keep less)."""
        cut = bisect.bisect_left(self._trace_keys, older_than)
        del self._trace[:cut]
        del self._trace_keys[:cut]

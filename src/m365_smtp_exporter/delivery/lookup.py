"""Finding a probe mail in its recipient mailbox through Microsoft Graph, and deleting it.

Requests are built by the SDK's request builders (which also URL-encode the UPN and the
`$filter` literal), sent through `GraphClient.get_bytes` (auth, retry middleware, request
counting) and parsed with orjson.

Budget: Microsoft's 100 requests per 5 minutes per tenant covers only message trace, and
`GraphClient` spends the tenant's `RequestBudget` only for trace endpoints. Delivery tracking
shares that budget anyway, as the design asks, so that trace pulls and mailbox look-ups
together never exceed it: before each mailbox request one slot is taken, and only while more
than `reserve` slots are left, so a burst of look-ups cannot starve the trace pull. Should
`GraphClient` ever budget mailbox endpoints itself, no second slot is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from m365_smtp_exporter.delivery.auth_results import first_authentication_results
from m365_smtp_exporter.delivery.checks import Folder
from m365_smtp_exporter.graph.budget import RequestBudget
from m365_smtp_exporter.graph.endpoints import BUDGETED_ENDPOINTS, endpoint_of
from m365_smtp_exporter.graph.errors import BudgetExhaustedError, MalformedPageError

if TYPE_CHECKING:  # the Graph SDK loads with the first tenant's client, not at start
    from kiota_abstractions.request_information import RequestInformation

    from m365_smtp_exporter.graph.client import GraphClient

MESSAGE_FIELDS = ("id", "internetMessageId", "receivedDateTime", "parentFolderId")
HEADERS_FIELD = "internetMessageHeaders"  # needs Mail.Read; carries Authentication-Results
INBOX = "inbox"
JUNK = "junkemail"


@dataclass(frozen=True, slots=True)
class FoundMessage:
    graph_id: str
    received_at: float  # receivedDateTime: the mailbox server's clock
    parent_folder_id: str
    authentication_results: str | None


@dataclass(frozen=True, slots=True)
class FolderIds:
    inbox: str
    junk: str

    def folder_of(self, parent_folder_id: str) -> Folder:
        if parent_folder_id == self.inbox:
            return Folder.INBOX
        if parent_folder_id == self.junk:
            return Folder.JUNK
        return Folder.OTHER


class BudgetGate:
    """Takes a slot of the tenant's shared budget for a request that would not spend one."""

    def __init__(self, budget: RequestBudget, reserve_fraction: float) -> None:
        self._budget = budget
        self._reserve = int(budget.limit * reserve_fraction)

    def acquire(self, info: RequestInformation) -> None:
        """Raise `BudgetExhaustedError` unless the request may go out now."""
        if self._budget.remaining() <= self._reserve:
            wait = self._budget.seconds_until_available()
            raise BudgetExhaustedError(f"graph request budget low; next slot in {wait:.0f}s")
        if endpoint_of(urlsplit(info.url).path) in BUDGETED_ENDPOINTS:
            return  # GraphClient takes the slot itself
        if not self._budget.try_acquire():
            raise BudgetExhaustedError("graph request budget spent")


class MailboxClient:
    """Mailbox requests of one tenant's GraphClient."""

    def __init__(self, client: GraphClient, reserve_fraction: float = 0.0) -> None:
        self._client = client
        self._gate = BudgetGate(client.budget, reserve_fraction)

    def find_request(self, mailbox: str, message_id: str) -> RequestInformation:
        from m365_smtp_exporter.graph.sdk_builders import (
            MessagesRequestBuilder,
            RequestConfiguration,
        )

        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=f"internetMessageId eq {_odata_string(message_id)}",
            select=[*MESSAGE_FIELDS, HEADERS_FIELD],
        )
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        builder = self._client.service.users.by_user_id(mailbox).messages
        info: RequestInformation = builder.to_get_request_information(config)
        return info

    async def find(self, mailbox: str, message_id: str) -> FoundMessage | None:
        """The message with this Internet Message-ID in any folder (the earliest received
        if there are several), or None."""
        body = await self._send(self.find_request(mailbox, message_id))
        found = [_found_message(value) for value in _values(body)]
        return min(found, key=lambda message: message.received_at, default=None)

    async def folder_ids(self, mailbox: str) -> FolderIds:
        return FolderIds(
            inbox=await self._folder_id(mailbox, INBOX), junk=await self._folder_id(mailbox, JUNK)
        )

    async def delete(self, mailbox: str, graph_id: str) -> None:
        builder = self._client.service.users.by_user_id(mailbox).messages.by_message_id(graph_id)
        await self._send(builder.to_delete_request_information())

    async def _folder_id(self, mailbox: str, well_known_name: str) -> str:
        from m365_smtp_exporter.graph.sdk_builders import (
            MailFolderItemRequestBuilder,
            RequestConfiguration,
        )

        query = MailFolderItemRequestBuilder.MailFolderItemRequestBuilderGetQueryParameters(
            select=["id"]
        )
        config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
        builder = self._client.service.users.by_user_id(mailbox).mail_folders
        info = builder.by_mail_folder_id(well_known_name).to_get_request_information(config)
        document = _document(await self._send(info))
        folder_id = document.get("id")
        if not isinstance(folder_id, str) or not folder_id:
            raise MalformedPageError(f"mail folder {well_known_name} answer has no id")
        return folder_id

    async def _send(self, info: RequestInformation) -> bytes:
        self._client.adapter.set_base_url_for_request_information(info)
        self._gate.acquire(info)
        return await self._client.get_bytes(info)


def _odata_string(value: str) -> str:
    """An OData string literal: single quotes, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedPageError(f"mailbox answer is not valid JSON ({len(body)} bytes)") from None
    if not isinstance(document, dict):
        raise MalformedPageError("mailbox answer is not a JSON object")
    return document


def _values(body: bytes) -> list[dict[str, Any]]:
    values = _document(body).get("value")
    if not isinstance(values, list) or not all(isinstance(value, dict) for value in values):
        raise MalformedPageError("message list has no 'value' array of objects")
    return values


def _found_message(value: dict[str, Any]) -> FoundMessage:
    graph_id = value.get("id")
    parent = value.get("parentFolderId")
    stamp = value.get("receivedDateTime")
    if not isinstance(graph_id, str) or not graph_id or not isinstance(parent, str):
        raise MalformedPageError("message without id or parentFolderId")
    headers = value.get(HEADERS_FIELD)
    return FoundMessage(
        graph_id=graph_id,
        received_at=_epoch(stamp),
        parent_folder_id=parent,
        authentication_results=(
            first_authentication_results(h for h in headers if isinstance(h, dict))
            if isinstance(headers, list)
            else None
        ),
    )


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str):
        raise MalformedPageError("message without receivedDateTime")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise MalformedPageError(f"unreadable receivedDateTime {stamp[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

"""Graph mailbox routes: find a delivered probe, read and delete it, name its folder.

`GET users/{upn}/messages` (searching every folder, with `$filter`, `$select`, `$top`,
`$skip`), `GET|DELETE users/{upn}/messages/{id}`, `POST .../{id}/permanentDelete` and
`GET users/{upn}/mailFolders/{well-known name or id}`. DELETE moves a message to Deleted
Items under a new id, as Exchange does; deleting it there, or permanentDelete, removes it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from functools import partial
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from m365_emulator.graph.http_common import (
    API_VERSIONS,
    GraphError,
    api_version,
    bad_request,
    json_response,
    metadata_url,
    require_graph_token,
)
from m365_emulator.graph.odata import (
    ODataError,
    Value,
    evaluate,
    parse_filter,
    referenced_properties,
)
from m365_emulator.state import (
    FOLDER_IDS,
    EmulatorState,
    Mailbox,
    StoredMessage,
    graph_datetime,
)

FOLDER_DISPLAY_NAMES = {
    "inbox": "Inbox",
    "junkemail": "Junk Email",
    "deleteditems": "Deleted Items",
}
ROOT_FOLDER_ID = "AAMkAGI2TGuLAAA=msgfolderroot"
_MESSAGE_TYPE = "microsoft.graph.message"
_DEFAULT_TOP = 10
_MAX_TOP = 1000
_LIST_OPTIONS = frozenset({"$filter", "$select", "$top", "$skip"})
_ITEM_OPTIONS = frozenset({"$select"})

# Returned only when asked for by $select, as on graph.microsoft.com.
_SELECT_ONLY = frozenset({"internetMessageHeaders"})
MESSAGE_PROPERTIES = (
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories",
    "receivedDateTime", "sentDateTime", "hasAttachments", "internetMessageId", "subject",
    "bodyPreview", "importance", "parentFolderId", "conversationId",
    "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead", "isDraft",
    "inferenceClassification", "body", "sender", "from", "toRecipients", "ccRecipients",
    "bccRecipients", "replyTo", "flag", "internetMessageHeaders",
)  # fmt: skip
_PROPERTY_BY_LOWER_NAME = {name.lower(): name for name in MESSAGE_PROPERTIES}

_FILTERABLE: dict[str, Callable[[StoredMessage], Value]] = {
    "internetMessageId": lambda message: message.internet_message_id,
    "subject": lambda message: message.subject,
    "receivedDateTime": lambda message: datetime.fromtimestamp(message.received_at, tz=UTC),
    "sentDateTime": lambda message: datetime.fromtimestamp(message.sent_at, tz=UTC),
    "parentFolderId": lambda message: FOLDER_IDS[message.folder],
    "from/emailAddress/address": lambda message: parseaddr(message.sender)[1],
    "sender/emailAddress/address": lambda message: parseaddr(message.sender)[1],
    "isRead": lambda message: False,
}


class MailEndpoints:
    """The mailbox routes of one emulated Graph service."""

    def __init__(self, state: EmulatorState, *, public_base_url: Callable[[], str]) -> None:
        self._state = state
        self._public_base_url = public_base_url

    def routes(self) -> list[web.RouteDef]:
        routes: list[web.RouteDef] = []
        for version in API_VERSIONS:
            suffix = version.replace(".", "_")  # route names must be identifiers
            user = f"/{version}/users/{{user}}"
            routes += [
                web.get(f"{user}/messages", self.list_messages, name=f"mail.list.{suffix}"),
                web.get(
                    f"{user}/messages/{{message_id}}", self.get_message, name=f"mail.get.{suffix}"
                ),
                web.delete(
                    f"{user}/messages/{{message_id}}",
                    self.delete_message,
                    name=f"mail.delete.{suffix}",
                ),
                web.post(
                    f"{user}/messages/{{message_id}}/permanentDelete",
                    self.permanently_delete_message,
                    name=f"mail.purge.{suffix}",
                ),
                web.get(
                    f"{user}/mailFolders/{{folder}}", self.get_folder, name=f"mail.folder.{suffix}"
                ),
            ]
        return routes

    def _mailbox(self, request: web.Request) -> Mailbox:
        grant = require_graph_token(request, self._state)
        user = request.match_info["user"]
        mailbox = self._state.mailbox(user)
        if mailbox is None or mailbox.tenant != grant.tenant:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        return mailbox

    async def list_messages(self, request: web.Request) -> web.Response:
        version = api_version(request)
        mailbox = self._mailbox(request)
        _reject_unsupported(request, _LIST_OPTIONS)
        select = _select(request)
        top = _int_option(request, "$top", _DEFAULT_TOP, 1, _MAX_TOP)
        skip = _int_option(request, "$skip", 0, 0, None)
        matching = _matching(mailbox.messages, request.query.get("$filter", ""))
        matching.sort(key=lambda message: message.received_at, reverse=True)
        page = matching[skip : skip + top]
        body: dict[str, object] = {
            "@odata.context": metadata_url(
                version, f"{_user_path(mailbox)}/messages{_select_suffix(select)}"
            )
        }
        if skip + top < len(matching):
            next_query = dict(request.query) | {"$top": str(top), "$skip": str(skip + top)}
            # keep the path as the client encoded it (e.g. %40 in the user's address)
            base = URL(self._public_base_url().rstrip("/") + request.rel_url.raw_path, encoded=True)
            body["@odata.nextLink"] = str(base.with_query(next_query))
        body["value"] = [message_document(message, select) for message in page]
        return json_response(body)

    async def get_message(self, request: web.Request) -> web.Response:
        version = api_version(request)
        mailbox = self._mailbox(request)
        _reject_unsupported(request, _ITEM_OPTIONS)
        select = _select(request)
        message = _message(mailbox, request.match_info["message_id"])
        context = metadata_url(
            version, f"{_user_path(mailbox)}/messages{_select_suffix(select)}/$entity"
        )
        return json_response({"@odata.context": context} | message_document(message, select))

    async def delete_message(self, request: web.Request) -> web.Response:
        mailbox = self._mailbox(request)
        message = _message(mailbox, request.match_info["message_id"])
        if message.folder == "deleteditems":
            mailbox.messages.remove(message)
        else:
            message.folder = "deleteditems"
            message.id = _new_item_id()
        return web.Response(status=204)

    async def permanently_delete_message(self, request: web.Request) -> web.Response:
        mailbox = self._mailbox(request)
        mailbox.messages.remove(_message(mailbox, request.match_info["message_id"]))
        return web.Response(status=204)

    async def get_folder(self, request: web.Request) -> web.Response:
        version = api_version(request)
        mailbox = self._mailbox(request)
        folder = _folder_key(request.match_info["folder"])
        contents = [message for message in mailbox.messages if message.folder == folder]
        document = {
            "@odata.context": metadata_url(version, f"{_user_path(mailbox)}/mailFolders/$entity"),
            "id": FOLDER_IDS[folder],
            "displayName": FOLDER_DISPLAY_NAMES.get(folder, folder),
            "parentFolderId": ROOT_FOLDER_ID,
            "childFolderCount": 0,
            "unreadItemCount": len(contents),
            "totalItemCount": len(contents),
            "sizeInBytes": sum(_size(message) for message in contents),
            "isHidden": False,
        }
        return json_response(document)


def message_document(message: StoredMessage, select: list[str] | None = None) -> dict[str, object]:
    """A message as Graph represents it; `select` narrows it like `$select` does."""
    change_key = base64.b64encode(
        hashlib.sha256(f"{message.id}/{message.folder}".encode()).digest()[:12]
    ).decode()
    received = graph_datetime(message.received_at)
    full: dict[str, object] = {
        "@odata.etag": f'W/"{change_key}"',
        "id": message.id,
        "createdDateTime": received,
        "lastModifiedDateTime": received,
        "changeKey": change_key,
        "categories": [],
        "receivedDateTime": received,
        "sentDateTime": graph_datetime(message.sent_at),
        "hasAttachments": False,
        "internetMessageId": message.internet_message_id,
        "subject": message.subject,
        "bodyPreview": " ".join(message.body.split())[:255],
        "importance": "normal",
        "parentFolderId": FOLDER_IDS[message.folder],
        "conversationId": _conversation_id(message),
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": False,
        "isDraft": False,
        "inferenceClassification": "focused",
        "body": {"contentType": "text", "content": message.body},
        "sender": _email_address(message.sender),
        "from": _email_address(message.sender),
        "toRecipients": _recipients(message, "To"),
        "ccRecipients": _recipients(message, "Cc"),
        "bccRecipients": [],
        "replyTo": _recipients(message, "Reply-To"),
        "flag": {"flagStatus": "notFlagged"},
        "internetMessageHeaders": [
            {"name": name, "value": value} for name, value in message.headers
        ],
    }
    if select is None:
        return {key: value for key, value in full.items() if key not in _SELECT_ONLY}
    return {"@odata.etag": full["@odata.etag"], "id": message.id} | {
        name: full[name] for name in select
    }


def _select(request: web.Request) -> list[str] | None:
    raw = request.query.get("$select")
    if raw is None:
        return None
    selected: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        canonical = _PROPERTY_BY_LOWER_NAME.get(name.lower())
        if canonical is None:
            raise bad_request(
                f"Could not find a property named '{name}' on type '{_MESSAGE_TYPE}'."
            )
        if canonical not in selected:
            selected.append(canonical)
    return selected


def _select_suffix(select: list[str] | None) -> str:
    return f"({','.join(select)})" if select else ""


def _matching(messages: list[StoredMessage], filter_text: str) -> list[StoredMessage]:
    if not filter_text:
        return list(messages)
    try:
        expression = parse_filter(filter_text)
        for name in referenced_properties(expression):
            if name not in _FILTERABLE:
                raise ODataError(
                    f"Could not find a property named '{name}' on type '{_MESSAGE_TYPE}'."
                )
        return [message for message in messages if evaluate(expression, partial(_lookup, message))]
    except ODataError as exc:
        raise bad_request(str(exc)) from None


def _lookup(message: StoredMessage, name: str) -> Value:
    return _FILTERABLE[name](message)


def _message(mailbox: Mailbox, message_id: str) -> StoredMessage:
    for message in mailbox.messages:
        if message.id == message_id:
            return message
    raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _folder_key(name_or_id: str) -> str:
    key = name_or_id.lower()
    if key in FOLDER_IDS:
        return key
    for folder, folder_id in FOLDER_IDS.items():
        if folder_id == name_or_id:
            return folder
    raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def _reject_unsupported(request: web.Request, supported: frozenset[str]) -> None:
    for option in request.query:
        if option.startswith("$") and option not in supported:
            raise bad_request(f"The query option '{option}' is not supported here.")


def _int_option(
    request: web.Request, name: str, default: int, lowest: int, highest: int | None
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lowest - 1
    if value < lowest or (highest is not None and value > highest):
        bounds = f"from {lowest} to {highest}" if highest is not None else f"of at least {lowest}"
        raise bad_request(f"Invalid value '{raw}' for {name}: it must be an integer {bounds}.")
    return value


def _email_address(header_value: str) -> dict[str, object]:
    name, address = parseaddr(header_value)
    return {"emailAddress": {"name": name or address, "address": address}}


def _recipients(message: StoredMessage, header: str) -> list[dict[str, object]]:
    values = [value for name, value in message.headers if name.lower() == header.lower()]
    return [
        {"emailAddress": {"name": name or address, "address": address}}
        for name, address in getaddresses(values)
        if address
    ]


def _conversation_id(message: StoredMessage) -> str:
    digest = hashlib.sha256(message.internet_message_id.encode()).digest()[:16]
    return "AAQk" + base64.urlsafe_b64encode(digest).decode()


def _new_item_id() -> str:
    return "AAMk" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()


def _size(message: StoredMessage) -> int:
    return len(message.body) + sum(len(name) + len(value) + 4 for name, value in message.headers)


def _user_path(mailbox: Mailbox) -> str:
    return f"users('{quote(mailbox.address, safe='')}')"

"""Mailbox routes over HTTP: search by Message-ID, $select, read, delete, folders, errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from m365_emulator.graph.mail import MESSAGE_PROPERTIES
from m365_emulator.state import FOLDER_IDS, EmulatorState, Mailbox, StoredMessage
from tests.support.clock import ManualClock
from tests.support.graph import (
    FABRIKAM_USER,
    PROBE,
    GraphService,
)
from tests.support.trace import stored_message

USER = f"/v1.0/users/{quote(PROBE)}"


@pytest.fixture
def mailbox(graph_state: EmulatorState) -> Mailbox:
    mailbox = graph_state.mailbox(PROBE)
    assert mailbox is not None
    return mailbox


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.request(method, url, params=params, headers=headers) as response:
        body = await response.json() if response.status != 204 else None
        return response.status, body


def by_message_id(message: StoredMessage, select: str | None = None) -> dict[str, str]:
    params = {"$filter": f"internetMessageId eq '{message.internet_message_id}'"}
    if select is not None:
        params["$select"] = select
    return params


async def test_search_by_internet_message_id_covers_every_folder(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    in_junk = stored_message(clock() - 60, folder="junkemail")
    mailbox.messages += [stored_message(clock() - 120), in_junk]
    select = "internetMessageId,receivedDateTime,sentDateTime,parentFolderId,subject"

    status, body = await request(
        session, "GET", service.base_url + USER + "/messages", token, by_message_id(in_junk, select)
    )

    assert status == 200
    assert body == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('probe%40contoso.com')"
        f"/messages({select})",
        "value": [
            {
                "@odata.etag": body["value"][0]["@odata.etag"],
                "id": in_junk.id,
                "internetMessageId": in_junk.internet_message_id,
                "receivedDateTime": "2026-01-21T12:52:20Z",
                "sentDateTime": "2026-01-21T12:52:18Z",
                "parentFolderId": FOLDER_IDS["junkemail"],
                "subject": in_junk.subject,
            }
        ],
    }


async def test_headers_come_only_when_selected(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    probe = stored_message(clock() - 60)
    mailbox.messages.append(probe)
    url = service.base_url + USER + "/messages"

    _, plain = await request(session, "GET", url, token, by_message_id(probe))
    _, selected = await request(
        session, "GET", url, token, by_message_id(probe, "internetMessageHeaders")
    )

    full = plain["value"][0]
    assert "internetMessageHeaders" not in full
    assert set(full) == {"@odata.etag"} | set(MESSAGE_PROPERTIES) - {"internetMessageHeaders"}
    assert full["from"] == {
        "emailAddress": {"name": "Probe Sender", "address": "sender@contoso.com"}
    }
    assert [r["emailAddress"]["address"] for r in full["toRecipients"]] == [
        "probe@contoso.com",
        "second@contoso.com",
    ]
    headers = selected["value"][0]["internetMessageHeaders"]
    assert {"name": "Message-ID", "value": probe.internet_message_id} in headers
    assert set(selected["value"][0]) == {"@odata.etag", "id", "internetMessageHeaders"}


async def test_list_pages_newest_first_with_top_and_skip(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    messages = [
        stored_message(clock() - 60 * index, subject=f"probe {index}") for index in range(5)
    ]
    mailbox.messages += reversed(messages)
    url = service.base_url + USER + "/messages"

    _, first = await request(session, "GET", url, token, {"$top": "2", "$select": "subject"})
    _, second = await request(session, "GET", first["@odata.nextLink"], token)
    _, last = await request(session, "GET", second["@odata.nextLink"], token)

    subjects = [m["subject"] for page in (first, second, last) for m in page["value"]]
    assert subjects == [f"probe {index}" for index in range(5)]
    next_link = URL(first["@odata.nextLink"])
    assert str(next_link.origin()) == service.base_url
    assert next_link.path == f"/v1.0/users/{PROBE}/messages"
    assert next_link.query == {"$top": "2", "$skip": "2", "$select": "subject"}
    assert "@odata.nextLink" not in last


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$select": "subject,bogus"}, "Could not find a property named 'bogus'"),
        ({"$filter": "bogus eq 'x'"}, "Could not find a property named 'bogus'"),
        ({"$filter": "internetMessageId eq"}, "Syntax error"),
        ({"$top": "1001"}, "from 1 to 1000"),
        ({"$skip": "-1"}, "of at least 0"),
        ({"$orderby": "subject"}, "'$orderby' is not supported"),
    ],
)
async def test_bad_list_queries(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    params: dict[str, str],
    fragment: str,
) -> None:
    status, body = await request(
        session, "GET", service.base_url + USER + "/messages", token, params
    )

    assert status == 400
    assert body["error"]["code"] == "BadRequest" and fragment in body["error"]["message"]


async def test_filter_by_date_and_folder(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    recent_junk = stored_message(clock() - 60, folder="junkemail")
    mailbox.messages += [recent_junk, stored_message(clock() - 7200, folder="junkemail")]
    junk = FOLDER_IDS["junkemail"]
    condition = f"receivedDateTime ge 2026-01-21T12:00:00Z and parentFolderId eq '{junk}'"

    status, body = await request(
        session, "GET", service.base_url + USER + "/messages", token, {"$filter": condition}
    )

    assert status == 200 and [m["id"] for m in body["value"]] == [recent_junk.id]


async def test_get_one_message_with_select(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    probe = stored_message(clock() - 60)
    mailbox.messages.append(probe)

    status, body = await request(
        session,
        "GET",
        f"{service.base_url}{USER}/messages/{probe.id}",
        token,
        {"$select": "subject,parentFolderId"},
    )

    assert status == 200
    assert body["@odata.context"].endswith("/messages(subject,parentFolderId)/$entity")
    assert (body["id"], body["subject"], body["parentFolderId"]) == (
        probe.id,
        probe.subject,
        FOLDER_IDS["inbox"],
    )


async def test_delete_moves_to_deleted_items_then_removes(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    probe = stored_message(clock() - 60)
    mailbox.messages.append(probe)
    first_id = probe.id

    first = await request(session, "DELETE", f"{service.base_url}{USER}/messages/{first_id}", token)
    _, found = await request(
        session, "GET", service.base_url + USER + "/messages", token, by_message_id(probe)
    )
    moved_id = found["value"][0]["id"]
    again = await request(session, "DELETE", f"{service.base_url}{USER}/messages/{first_id}", token)
    second = await request(
        session, "DELETE", f"{service.base_url}{USER}/messages/{moved_id}", token
    )

    assert first == (204, None)
    assert found["value"][0]["parentFolderId"] == FOLDER_IDS["deleteditems"]
    assert moved_id != first_id
    assert again[0] == 404 and again[1]["error"]["code"] == "ErrorItemNotFound"
    assert second == (204, None)
    assert mailbox.messages == []


async def test_permanent_delete_removes_at_once(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
) -> None:
    probe = stored_message(clock() - 60)
    mailbox.messages.append(probe)

    status, _ = await request(
        session, "POST", f"{service.base_url}{USER}/messages/{probe.id}/permanentDelete", token
    )

    assert status == 204 and mailbox.messages == []


@pytest.mark.parametrize(
    ("folder", "display_name", "key"),
    [
        ("junkemail", "Junk Email", "junkemail"),
        ("Inbox", "Inbox", "inbox"),
        (FOLDER_IDS["deleteditems"], "Deleted Items", "deleteditems"),
    ],
)
async def test_mail_folders_by_well_known_name_or_id(
    session: aiohttp.ClientSession,
    service: GraphService,
    token: str,
    mailbox: Mailbox,
    clock: ManualClock,
    folder: str,
    display_name: str,
    key: str,
) -> None:
    mailbox.messages += [stored_message(clock() - 60, folder=key), stored_message(clock() - 60)]

    status, body = await request(
        session, "GET", f"{service.base_url}{USER}/mailFolders/{folder}", token
    )

    assert status == 200
    assert body["id"] == FOLDER_IDS[key] and body["displayName"] == display_name
    assert body["totalItemCount"] == (2 if key == "inbox" else 1)
    assert body["parentFolderId"] and body["childFolderCount"] == 0
    assert body["@odata.context"].endswith("users('probe%40contoso.com')/mailFolders/$entity")


async def test_unknown_things_answer_graph_errors(
    session: aiohttp.ClientSession, service: GraphService, token: str
) -> None:
    base = service.base_url
    unknown_user = await request(
        session, "GET", f"{base}/v1.0/users/nobody%40contoso.com/messages", token
    )
    other_tenant = await request(
        session, "GET", f"{base}/v1.0/users/{quote(FABRIKAM_USER)}/messages", token
    )
    unknown_message = await request(session, "GET", f"{base}{USER}/messages/AAMkNope=", token)
    unknown_folder = await request(session, "GET", f"{base}{USER}/mailFolders/archive", token)

    assert unknown_user[0] == other_tenant[0] == 404
    assert unknown_user[1]["error"]["code"] == "ErrorInvalidUser"
    assert (
        unknown_user[1]["error"]["message"] == "The requested user 'nobody@contoso.com' is invalid."
    )
    assert other_tenant[1]["error"]["code"] == "ErrorInvalidUser"
    assert unknown_message[0] == 404
    assert unknown_message[1]["error"]["code"] == "ErrorItemNotFound"
    assert unknown_folder[0] == 400
    assert unknown_folder[1]["error"]["code"] == "ErrorInvalidIdMalformed"

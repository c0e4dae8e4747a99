"""Every SMTP fault, switched on through the HTTP control API and observed by a real client."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from m365_emulator.smtp.server import SmtpEmulator
from tests.support.smtp_emulator import PASSWORD, logged_in, message, smtp_client

THROTTLED = "451 4.7.500 Access denied, please try again later"
UNAVAILABLE = "421 4.3.2 Service not available, closing transmission channel"
DAY = 86_400


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: object = None, status: int = 200
) -> dict[str, Any]:
    async with http.request(method, url, json=body) as response:
        payload: dict[str, Any] = await response.json()
        assert response.status == status, payload
        return payload


async def send_probe(emulator: SmtpEmulator) -> dict[str, Any]:
    client = await logged_in(emulator)
    try:
        errors, _ = await client.sendmail(
            "probe@contoso.com",
            ["probe-inbox@contoso.com"],
            message("probe@contoso.com", ["probe-inbox@contoso.com"]),
        )
    finally:
        client.close()
    return dict(errors)


async def test_initial_snapshot_has_no_faults(
    http: aiohttp.ClientSession, control_url: str
) -> None:
    snapshot = await call(http, "GET", f"{control_url}/faults")
    assert snapshot["outage"] == "none"
    assert set(snapshot["latency"]) == {
        "banner",
        "ehlo",
        "starttls",
        "auth",
        "mail",
        "rcpt",
        "data",
    }
    assert not any(snapshot["latency"].values())
    assert snapshot["scripted_replies"] == []
    assert snapshot["drop_data"] == 0
    assert snapshot["certificate_days_left"] is None
    assert snapshot["injected"] == {}


async def test_refuse_outage_stops_listening_until_reset(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    port = emulator.port
    snapshot = await call(http, "PUT", f"{control_url}/faults", {"outage": "refuse"})
    with pytest.raises(aiosmtplib.SMTPConnectError) as refused:
        await smtp_client(emulator).connect()
    reset = await call(http, "DELETE", f"{control_url}/faults")
    errors = await send_probe(emulator)
    assert snapshot["outage"] == "refuse"
    assert isinstance(refused.value.__cause__, ConnectionRefusedError)
    assert reset["outage"] == "none"
    assert reset["injected"] == {"outage:refuse": 1}
    assert emulator.port == port
    assert errors == {}


async def test_blackhole_outage_accepts_but_never_greets(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    await call(http, "PUT", f"{control_url}/faults", {"outage": "blackhole"})
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await smtp_client(emulator, timeout=0.5).connect()
    await call(http, "DELETE", f"{control_url}/faults")
    errors = await send_probe(emulator)
    truth = await call(http, "GET", f"{control_url}/ground-truth")
    assert truth["injected"] == {"blackhole": 1}
    assert errors == {}


@pytest.mark.parametrize("phase", ["banner", "ehlo", "mail"])
async def test_latency_per_phase(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str, phase: str
) -> None:
    snapshot = await call(http, "PUT", f"{control_url}/faults", {"latency": {phase: 30}})
    client = smtp_client(emulator, start_tls=phase != "ehlo", timeout=0.5)
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        if phase == "banner":
            await client.connect()
        elif phase == "ehlo":
            await client.connect()
            await client.ehlo()
        else:
            await client.connect()
            await client.login("probe@contoso.com", PASSWORD)
            await client.mail("probe@contoso.com")
    client.close()
    truth = await call(http, "GET", f"{control_url}/ground-truth")
    assert snapshot["latency"][phase] == 30
    assert truth["injected"] == {f"latency:{phase}": 1}


async def test_scripted_replies_for_one_verb(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    scripted = await call(
        http,
        "PUT",
        f"{control_url}/faults",
        {"scripted_replies": [{"reply": THROTTLED, "count": 2, "command": "mail"}]},
    )
    client = await logged_in(emulator)
    refusals = []
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("probe@contoso.com")
        refusals.append((refused.value.code, refused.value.message))
    third = await client.mail("probe@contoso.com")
    recipient = await client.rcpt("probe-inbox@contoso.com")
    await client.quit()
    after = await call(http, "GET", f"{control_url}/faults")
    assert scripted["scripted_replies"] == [{"reply": THROTTLED, "remaining": 2, "command": "MAIL"}]
    assert refusals == [(451, "4.7.500 Access denied, please try again later")] * 2
    assert third.code == 250
    assert recipient.code == 250
    assert after["scripted_replies"] == []
    assert after["injected"] == {"reply:MAIL:451": 2}


async def test_scripted_421_closes_the_connection(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    await call(http, "PUT", f"{control_url}/faults", {"scripted_replies": [{"reply": UNAVAILABLE}]})
    reader, writer = await asyncio.open_connection("127.0.0.1", emulator.port)
    try:
        banner = await asyncio.wait_for(reader.readline(), 10)
        writer.write(b"EHLO probe-host\r\n")  # any command: the reply is for the next one
        reply = await asyncio.wait_for(reader.readline(), 10)
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert banner.startswith(b"220 ")
    assert reply == UNAVAILABLE.encode() + b"\r\n"
    assert rest == b""  # the server hung up


async def test_scripted_greeting_refuses_the_connection(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    await call(
        http,
        "PUT",
        f"{control_url}/faults",
        {"scripted_replies": [{"reply": UNAVAILABLE, "command": "BANNER"}]},
    )
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
        await smtp_client(emulator).connect()
    errors = await send_probe(emulator)
    assert refused.value.code == 421
    assert errors == {}


async def test_scripted_reply_after_the_message_body(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    quota = "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
    await call(
        http,
        "PUT",
        f"{control_url}/faults",
        {"scripted_replies": [{"reply": quota, "command": "DATA_END"}]},
    )
    with pytest.raises(aiosmtplib.SMTPDataError) as rejected:
        await send_probe(emulator)
    truth = await call(http, "GET", f"{control_url}/ground-truth")
    assert rejected.value.code == 554
    assert truth["deliveries"] == []
    assert truth["injected"] == {"reply:DATA_END:554": 1}


async def test_connection_dropped_during_data(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    snapshot = await call(http, "PUT", f"{control_url}/faults", {"drop_data": 1})
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send_probe(emulator)
    truth_after_drop = await call(http, "GET", f"{control_url}/ground-truth")
    errors = await send_probe(emulator)
    assert snapshot["drop_data"] == 1
    assert truth_after_drop["deliveries"] == []
    assert truth_after_drop["injected"] == {"data_drop": 1}
    assert errors == {}


def _peer_not_after(client: aiosmtplib.SMTP) -> float:
    sslobject = client.get_transport_info("ssl_object")
    assert isinstance(sslobject, ssl.SSLObject)
    certificate = sslobject.getpeercert()
    assert certificate is not None
    return ssl.cert_time_to_seconds(str(certificate["notAfter"]))


async def test_certificate_close_to_expiry_and_back(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    swapped = await call(http, "PUT", f"{control_url}/faults", {"certificate_days_left": 5})
    client = smtp_client(emulator)
    await client.connect()
    near_expiry = _peer_not_after(client)
    await client.quit()
    reset = await call(http, "DELETE", f"{control_url}/faults")
    client = smtp_client(emulator)
    await client.connect()
    normal = _peer_not_after(client)
    await client.quit()
    now = time.time()
    assert swapped["certificate_days_left"] == 5
    assert 4.9 * DAY < near_expiry - now <= 5 * DAY
    assert normal - now > 300 * DAY
    assert reset["certificate_days_left"] is None
    assert reset["injected"] == {"certificate": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outage": "down"}, "outage"),
        ({"outage": None}, "outage"),
        ({"latency": {"greeting": 1}}, "latency.greeting"),
        ({"latency": {"ehlo": -1}}, "latency.ehlo"),
        ({"scripted_replies": [{"reply": "hello"}]}, "scripted_replies.0.reply"),
        ({"scripted_replies": [{"reply": THROTTLED, "count": 0}]}, "scripted_replies.0.count"),
        ({"drop_data": -1}, "drop_data"),
        ({"mode": "refuse"}, "mode"),
        ({"connection_limit_text": "busy"}, "connection_limit_text"),
        ([1, 2], "body"),
    ],
)
async def test_invalid_fault_documents_are_rejected_naming_the_field(
    http: aiohttp.ClientSession, control_url: str, body: object, field: str
) -> None:
    answer = await call(http, "PUT", f"{control_url}/faults", body, status=400)
    snapshot = await call(http, "GET", f"{control_url}/faults")
    assert answer["error"].startswith(f"{field}:"), answer
    assert "outage" in answer.get("expected_body", {"outage": ""})
    assert snapshot["injected"] == {} and snapshot["scripted_replies"] == []
    assert snapshot["drop_data"] == 0 and snapshot["outage"] == "none"


async def test_put_changes_only_the_fields_given(
    http: aiohttp.ClientSession, control_url: str
) -> None:
    await call(http, "PUT", f"{control_url}/faults", {"latency": {"mail": 2}, "drop_data": 1})
    after = await call(
        http, "PUT", f"{control_url}/faults", {"connection_limit_text": "sender_thread"}
    )
    cleared = await call(http, "DELETE", f"{control_url}/faults")
    assert (after["latency"]["mail"], after["drop_data"]) == (2, 1)
    assert after["connection_limit_text"] == "sender_thread"
    assert cleared["connection_limit_text"] == "concurrent_connections"
    assert (cleared["latency"]["mail"], cleared["drop_data"]) == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/faults", "GET, PUT, DELETE"),
        ("PATCH", "/faults", "GET, PUT, DELETE"),
        ("PUT", "/ground-truth", "GET"),
    ],
)
async def test_wrong_method_answers_405_with_allow_and_the_expected_body(
    http: aiohttp.ClientSession, control_url: str, method: str, path: str, allow: str
) -> None:
    async with http.request(method, control_url + path, json={"outage": "refuse"}) as response:
        answer = await response.json()
        assert response.status == 405
        assert response.headers["Allow"] == allow
    assert answer["allowed"] == allow.split(", ")
    assert method in answer["error"] and path in answer["error"]
    if path == "/faults":
        assert answer["expected_body"]["PUT"]["outage"] == "none | refuse | blackhole"
    snapshot = await call(http, "GET", f"{control_url}/faults")
    assert snapshot["outage"] == "none"


async def test_ground_truth_counts_replies_and_deliveries(
    emulator: SmtpEmulator, http: aiohttp.ClientSession, control_url: str
) -> None:
    await send_probe(emulator)
    await emulator.delivery.wait_idle()
    truth = await call(http, "GET", f"{control_url}/ground-truth")
    assert truth["pending_deliveries"] == 0
    assert [(d["recipient"], d["outcome"]) for d in truth["deliveries"]] == [
        ("probe-inbox@contoso.com", "inbox")
    ]
    assert truth["replies"]["250 2.0.0"] == 1
    assert truth["replies"]["235 2.7.0"] == 1


async def test_body_arriving_in_pieces_is_read_whole(
    http: aiohttp.ClientSession, control_url: str
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"latency": {"mail"'
        await asyncio.sleep(0)
        yield b": 1.5}}"

    async with http.put(f"{control_url}/faults", data=pieces()) as response:
        snapshot = await response.json()
        assert response.status == 200, snapshot
    assert snapshot["latency"]["mail"] == 1.5


async def test_oversized_body_is_refused(http: aiohttp.ClientSession, control_url: str) -> None:
    body = b'{"drop_data": 1, "pad": "' + b"x" * 70_000 + b'"}'
    async with http.put(f"{control_url}/faults", data=body) as response:
        answer = await response.json()
        assert response.status == 400
    assert answer["error"] == "body: larger than 65536 bytes"
    assert (await call(http, "GET", f"{control_url}/faults"))["drop_data"] == 0

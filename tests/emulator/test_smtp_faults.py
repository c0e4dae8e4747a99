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
    snapshot = await call(http, "PUT", f"{control_url}/faults/outage", {"mode": "refuse"})
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
    await call(http, "PUT", f"{control_url}/faults/outage", {"mode": "blackhole"})
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
    snapshot = await call(http, "PUT", f"{control_url}/faults/latency", {phase: 30})
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
        "POST",
        f"{control_url}/faults/replies",
        {"reply": THROTTLED, "count": 2, "command": "mail"},
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
    await call(http, "POST", f"{control_url}/faults/replies", {"reply": UNAVAILABLE})
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
        http, "POST", f"{control_url}/faults/replies", {"reply": UNAVAILABLE, "command": "BANNER"}
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
        http, "POST", f"{control_url}/faults/replies", {"reply": quota, "command": "DATA_END"}
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
    snapshot = await call(http, "POST", f"{control_url}/faults/drop-data", {"count": 1})
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
    swapped = await call(http, "PUT", f"{control_url}/faults/certificate", {"days_left": 5})
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
    ("method", "path", "body"),
    [
        ("PUT", "outage", {"mode": "down"}),
        ("PUT", "latency", {"greeting": 1}),
        ("PUT", "latency", {"ehlo": -1}),
        ("POST", "replies", {"reply": "hello"}),
        ("POST", "replies", {"reply": THROTTLED, "count": 0}),
        ("POST", "drop-data", {"count": 1, "extra": True}),
        ("PUT", "certificate", {}),
    ],
)
async def test_invalid_fault_requests_are_rejected(
    http: aiohttp.ClientSession, control_url: str, method: str, path: str, body: object
) -> None:
    answer = await call(http, method, f"{control_url}/faults/{path}", body, status=400)
    snapshot = await call(http, "GET", f"{control_url}/faults")
    assert answer["error"]
    assert snapshot["injected"] == {} and snapshot["scripted_replies"] == []
    assert snapshot["drop_data"] == 0 and snapshot["outage"] == "none"


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

"""A Graph message-trace stand-in for benchmarks, run in its own process.

It serves `GET /v1.0/admin/exchange/tracing/messageTraces` in Microsoft's exact JSON shape
(`@odata.context`, `@odata.nextLink`, `value` rows with every property), newest first, in
pages of `page_size`, and ignores `$filter` (every row lies in the last 23 hours, inside any
24 h window asked for). Pages are serialised once at start so the stand-in's own cost does
not show in the client's wall time. `/bytes/{k}` serves the same page bodies for baselines.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import orjson
from aiohttp import web

HOUR = 3600.0
STATUSES = ("Delivered",) * 8 + ("Failed", "Pending", "FilteredAsSpam", "Quarantined")
TRACES_PATH = "/v1.0/admin/exchange/tracing/messageTraces"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces"


def tenant_config(base_url: str, extra: str = "") -> str:
    """An exporter configuration with one tenant reading its trace from the stand-in at
    `base_url` (a static token stands in for Entra ID); `extra` adds tenant settings, one
    per line, indented like the others."""
    return f"""
tenants:
  contoso:
    tenant_id: 2f6a8b3c-1d4e-4f5a-9b6c-7d8e9f0a1b2c
    client_id: a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d
    client_secret: bench
    graph_base_url: {base_url}/v1.0
    accepted_domains: [contoso.com]
    trace: {{interval: 1h, lookback: 24h, timeout: 1h}}
    quota: {{licenses: 25}}
{extra}"""


def rows_json(rows: int, senders: int, now: float, seed: int = 7) -> list[dict[str, object]]:
    """`rows` trace rows over the last 23 h from `senders` senders, newest first."""
    rng = random.Random(seed)
    sender_names = [f"user{i}@contoso.com" for i in range(senders)]
    recipients = [f"person{i}@example.net" for i in range(4000)] + [
        f"user{i}@contoso.com" for i in range(min(senders, 500))
    ]
    start, step = now - 23 * HOUR, (23 * HOUR - 60) / rows
    values: list[dict[str, object]] = []
    while len(values) < rows:
        stamp = datetime.fromtimestamp(round(start + len(values) * step), tz=UTC)
        received = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        sender = rng.choice(sender_names)
        message_id = f"<{rng.getrandbits(96):024x}@contoso.com>"
        for _ in range(min(rng.choice((1, 1, 1, 2, 3)), rows - len(values))):
            recipient = rng.choice(recipients)
            digits = f"{rng.getrandbits(128):032x}"
            values.append(
                {
                    "id": f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-"
                    f"{digits[20:]}",
                    "senderAddress": sender,
                    "recipientAddress": recipient,
                    "messageId": message_id,
                    "receivedDateTime": received,
                    "subject": "weekly report",
                    "size": 4321,
                    "fromIP": "192.0.2.10",
                    "toIP": None if recipient.endswith("@contoso.com") else "198.51.100.25",
                    "status": rng.choice(STATUSES),
                }
            )
    values.reverse()  # Graph lists newest first
    return values


def page_bodies(values: list[dict[str, object]], page_size: int, base_url: str) -> list[bytes]:
    pages = [values[i : i + page_size] for i in range(0, len(values), page_size)] or [[]]
    bodies = []
    for number, page in enumerate(pages):
        document: dict[str, object] = {"@odata.context": CONTEXT}
        if number + 1 < len(pages):
            document["@odata.nextLink"] = (
                f"{base_url}/v1.0/admin/exchange/tracing/messageTraces?$skiptoken={number + 1}"
            )
        document["value"] = page
        bodies.append(orjson.dumps(document))
    return bodies


def serve(rows: int, senders: int, page_size: int, conn: Connection) -> None:
    asyncio.run(_serve(rows, senders, page_size, conn))


async def _serve(rows: int, senders: int, page_size: int, conn: Connection) -> None:
    bodies: list[bytes] = []
    served = [0]

    async def traces(request: web.Request) -> web.Response:
        token = request.query.get("$skiptoken", "0")
        served[0] += 1
        return web.Response(body=bodies[int(token)], content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": served[0], "pages": len(bodies)})

    async with listening({TRACES_PATH: traces, "/stats": stats}) as base_url:
        bodies.extend(page_bodies(rows_json(rows, senders, time.time()), page_size, base_url))
        conn.send((base_url, len(bodies)))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop


@asynccontextmanager
async def listening(routes: Mapping[str, Handler]) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port answering GET `routes`; yields its URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()

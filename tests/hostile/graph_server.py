"""A hostile Microsoft Graph stand-in on a real socket (aiohttp, port 0).

`mode` decides how the message-trace endpoint answers; every request (path and whether it
carried a bearer token) is recorded, on any path, so a test can tell what went where.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

TRACES = "/v1.0/admin/exchange/tracing/messageTraces"
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces"


@dataclass
class HostileGraph:
    mode: str = "ok"
    retry_after: str = "1"
    next_link: str = ""
    body_bytes: int = 0
    seen: list[tuple[str, bool]] = field(default_factory=list)  # (path, had a token)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, "Authorization" in request.headers))
        if request.path != TRACES:
            return web.json_response({"@odata.context": CONTEXT, "value": []})
        if self.mode == "throttle":
            return web.json_response(
                {"error": {"code": "TooManyRequests", "message": "Too many requests"}},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if self.mode == "giant":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"value": [' + b" " * 65536)
            chunk = b" " * 65536
            with contextlib.suppress(ConnectionError):
                for _ in range(self.body_bytes // len(chunk)):
                    await response.write(chunk)
                await response.write(b"]}")
            return response
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect(self.base_url + "/v1.0/users/elsewhere/messages")
        body: dict[str, object] = {"@odata.context": CONTEXT, "value": []}
        if self.mode == "self_link":  # a loop: the next page is this page
            body["@odata.nextLink"] = self.base_url + request.path_qs
        elif self.next_link:
            body["@odata.nextLink"] = self.next_link
        return web.json_response(body)


@contextlib.asynccontextmanager
async def hostile_graph(graph: HostileGraph) -> AsyncIterator[HostileGraph]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", graph.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    graph.base_url = f"http://127.0.0.1:{port}"
    try:
        yield graph
    finally:
        await runner.cleanup()

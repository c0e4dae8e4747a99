"""httpx requests over aiohttp: bodies, encodings and failures as httpx reports them."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from m365_smtp_exporter.graph.wire import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _client() -> httpx.AsyncClient:
    transport = AiohttpTransport(ssl.create_default_context())
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, read=0.5))


async def test_the_url_goes_out_as_httpx_encoded_it_and_gzip_is_decoded_by_httpx() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _request_head(reader))
        body = gzip.compress(b'{"value": []}')
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async for base in _serve(handler):
        url = f"{base}/v1.0/messageTraces?$filter=a%20ge%202026&$skiptoken=ab%3D%3D"
        async with _client() as client:
            response = await client.get(url)

    assert response.status_code == 200 and response.content == b'{"value": []}'
    assert seen[0].startswith(
        b"GET /v1.0/messageTraces?$filter=a%20ge%202026&$skiptoken=ab%3D%3D HTTP/1.1"
    )


async def test_a_connection_dropped_mid_body_is_an_httpx_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    async for base in _serve(handler):
        async with _client() as client:
            with pytest.raises(httpx.TransportError) as raised:
                await client.get(f"{base}/v1.0/messageTraces")

    assert not isinstance(raised.value, httpx.TimeoutException)


async def test_a_server_that_stops_answering_is_a_read_timeout() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        await release.wait()
        writer.close()

    async for base in _serve(handler):
        async with _client() as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{base}/v1.0/messageTraces")
        release.set()


async def test_a_refused_connection_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")

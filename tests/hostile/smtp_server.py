"""A hostile SMTP server on a real socket: one script of raw replies per attack class.

A script is an async function given the connection's reader and writer; helpers below
build the usual ones (a banner, then canned answers per command).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Answer = Callable[[bytes], bytes | None]  # command line -> raw reply bytes (None: hang up)


@contextlib.asynccontextmanager
async def hostile_smtp(script: Script) -> AsyncIterator[int]:
    """Serve `script` on 127.0.0.1; yields the port. Every connection is closed at exit."""
    writers: set[asyncio.StreamWriter] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def conversation(banner: bytes, answer: Answer) -> Script:
    """Send `banner`, then answer every command line with `answer(line)`."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    reply = answer(b"<end of data>")
                else:
                    continue
            else:
                reply = answer(line.rstrip(b"\r\n"))
            if reply is None:
                return
            writer.write(reply)
            await writer.drain()
            if line.upper().startswith(b"DATA") and reply.startswith(b"354"):
                in_data = True
            if line.upper().startswith(b"QUIT"):
                return

    return script


def ordinary(line: bytes) -> bytes:
    """What a plain, willing server answers."""
    verb = line[:4].upper()
    if verb in (b"EHLO", b"HELO"):
        return b"250-hostile.test\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n"
    if verb == b"DATA":
        return b"354 go ahead\r\n"
    if verb == b"QUIT":
        return b"221 bye\r\n"
    return b"250 2.0.0 OK\r\n"


def rejecting_rcpt_with(replies: Callable[[], bytes]) -> Answer:
    def answer(line: bytes) -> bytes | None:
        if line[:4].upper() == b"RCPT":
            return replies()
        return ordinary(line)

    return answer


def random_enhanced_codes(seed: int) -> Callable[[], bytes]:
    """Every RCPT refused with another enhanced code, including non-ASCII digits and
    out-of-range classes: the attack that grew a label family to 21,345 series."""
    rng = random.Random(seed)
    digits = ["0", "7", "9", "\u0663", "\uff17", "\u0e53"]  # ASCII, Arabic-Indic, fullwidth, Thai

    def reply() -> bytes:
        code = rng.choice([450, 550, 551, 554, 199, 699, 999])
        subject = "".join(rng.choice(digits) for _ in range(rng.randint(1, 4)))
        detail = "".join(rng.choice(digits) for _ in range(rng.randint(1, 4)))
        klass = rng.choice("24579")
        return f"{code} {klass}.{subject}.{detail} no\r\n".encode()

    return reply


def echoing_auth(decoded_too: bool = True) -> Answer:
    """Refuses AUTH, echoing what the client sent (base64 and decoded) in the 535 text."""

    def answer(line: bytes) -> bytes | None:
        if line[:4].upper() == b"AUTH":
            sent = line.split(b" ")[-1]
            echoed = sent
            if decoded_too:
                with contextlib.suppress(ValueError):
                    echoed += b" decoded=" + base64.b64decode(sent).replace(b"\x00", b"|")
                    echoed = echoed.replace(b"\x01", b"|")
            return b"535 5.7.3 Authentication unsuccessful, you sent " + echoed + b"\r\n"
        return ordinary(line)

    return answer


ESCAPES = b"\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]0;owned\x07\rfake line\x9b31m\xe2\x80\xae"
LATIN1_BANNER = b"220 mail.h\xf4te.test ESMTP caf\xe9 " + ESCAPES + b"\r\n"


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never says a word."""
    await reader.read()


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A banner one byte every 50 ms, for ever."""
    while True:
        writer.write(b"2")
        await writer.drain()
        await asyncio.sleep(0.05)


async def endless_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A multi-line banner that never ends."""
    line = b"220-" + b"x" * 500 + b"\r\n"
    while True:
        writer.write(line * 100)
        await writer.drain()


async def oversized_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One banner line of 10 MB without a line end."""
    writer.write(b"220 " + b"y" * 10_000_000)
    await writer.drain()
    await reader.read()


def close_mid_data() -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hostile.test ESMTP\r\n")
        while line := await reader.readline():
            reply = ordinary(line.rstrip(b"\r\n"))
            writer.write(reply)
            await writer.drain()
            if line.upper().startswith(b"DATA"):
                await reader.read(10)  # a little of the message, then gone
                writer.transport.abort()
                return

    return script

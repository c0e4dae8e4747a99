"""An authoritative DNS server for the emulator and tests: UDP and TCP on one loopback port,
answering from given data.

Records come as a dict (`{"contoso.com": {"TXT": ["v=spf1 -all"], "MX": "10 mx.contoso.com."}}`,
a TXT string longer than 255 bytes is split into character-strings) or as zone text. The
server answers recursively for its own data (CNAME chains are followed into the answer),
truncates UDP answers over 512 bytes (or the EDNS size) so clients retry over TCP, and can
answer SERVFAIL or stay silent for chosen names.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.TXT import TXT

HOST = "127.0.0.1"
TTL = 300
UDP_LIMIT = 512  # without EDNS (RFC 1035 4.2.1)
MAX_CHAIN = 8

RecordValues = str | Sequence[str]
ZoneData = Mapping[str, Mapping[str, RecordValues]]
_Records = dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rdataset.Rdataset]]


class Fault(Enum):
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"  # the query is dropped


@dataclass(frozen=True, slots=True)
class Query:
    transport: str  # "udp" or "tcp"
    name: str  # lower case, no final dot
    rdtype: str


class DnsServer:
    def __init__(self, records: ZoneData | None = None) -> None:
        self.port = 0
        self.queries: list[Query] = []
        self.errors: list[Exception] = []
        self._records: _Records = {}
        self._faults: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], Fault] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        if records:
            self.add_records(records)

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- data --------------------------------------------------------------------------------

    def set_records(self, records: ZoneData) -> None:
        """Replace all data."""
        self._records = {}
        self.add_records(records)

    def add_records(self, records: ZoneData) -> None:
        """Add records; a name and type given again replaces that rdataset."""
        for owner, by_type in records.items():
            name = dns.name.from_text(owner)
            for type_text, values in by_type.items():
                rdtype = dns.rdatatype.from_text(type_text)
                texts = [values] if isinstance(values, str) else list(values)
                rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
                rdataset.update_ttl(TTL)
                for text in texts:
                    rdataset.add(_rdata(rdtype, text))
                self._records.setdefault(name, {})[rdtype] = rdataset

    def add_zone(self, text: str, origin: str) -> None:
        """Add the records of a zone file text (no SOA or NS needed; common indentation is
        removed, since a line starting with blanks continues the previous owner)."""
        zone = dns.zone.from_text(
            textwrap.dedent(text), origin=origin, relativize=False, check_origin=False
        )
        for name, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                self._records.setdefault(name, {})[rdataset.rdtype] = rdataset

    def fail(self, name: str, fault: Fault, rdtype: str | None = None) -> None:
        """Answer queries for `name` (of `rdtype`, or of any type) with `fault`."""
        key_type = dns.rdatatype.from_text(rdtype) if rdtype else None
        self._faults[(dns.name.from_text(name), key_type)] = fault

    def heal(self) -> None:
        self._faults.clear()

    def asked(self, name: str, rdtype: str | None = None) -> list[Query]:
        wanted = name.rstrip(".").lower()
        return [q for q in self.queries if q.name == wanted and rdtype in (None, q.rdtype)]

    # -- serving -------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        # UDP and TCP must share the port number: a resolver has one port per nameserver.
        for _ in range(20 if port == 0 else 1):
            udp, _protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(HOST, port)
            )
            bound = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, HOST, bound)
            except OSError:  # the TCP side of that port is taken: try another pair
                udp.close()
                continue
            self._udp, self.port = udp, bound
            return
        raise OSError(f"no free port for DNS over UDP and TCP together ({HOST}:{port})")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections.add(writer)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.reply(await reader.readexactly(size), "tcp")
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    def reply(self, wire: bytes, transport: str) -> bytes | None:
        """The wire answer to a query, or None to stay silent. A bug in the server is kept in
        `errors` (the client only sees silence)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        try:
            return self._render(query, transport)
        except Exception as exc:
            self.errors.append(exc)
            return None

    def _render(self, query: dns.message.Message, transport: str) -> bytes | None:
        for question in query.question:
            self.queries.append(
                Query(
                    transport,
                    question.name.to_text(omit_final_dot=True).lower(),
                    dns.rdatatype.to_text(question.rdtype),
                )
            )
        response = self._answer(query)
        if response is None or transport == "tcp":
            return None if response is None else response.to_wire()
        limit = max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | dns.flags.AA | dns.flags.RA
            return truncated.to_wire()

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        name, rdtype = query.question[0].name, query.question[0].rdtype
        for _ in range(MAX_CHAIN):
            fault = self._faults.get((name, rdtype)) or self._faults.get((name, None))
            if fault is Fault.TIMEOUT:
                return None
            if fault is Fault.SERVFAIL:
                failed = dns.message.make_response(query)
                failed.flags |= dns.flags.RA
                failed.set_rcode(dns.rcode.SERVFAIL)
                return failed
            node = self._records.get(name, {})
            if rdtype in node:
                response.answer.append(_rrset(name, node[rdtype]))
                break
            alias = node.get(dns.rdatatype.CNAME)
            if alias is None or rdtype == dns.rdatatype.CNAME:
                if not node and not self._has_descendants(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
            response.answer.append(_rrset(name, alias))
            target = next(iter(alias))
            assert isinstance(target, CNAME)
            name = target.target
        return response

    def _has_descendants(self, name: dns.name.Name) -> bool:
        """An empty non-terminal (e.g. `_domainkey.contoso.com`) exists: NOERROR, no data."""
        return any(owner != name and owner.is_subdomain(name) for owner in self._records)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        reply = self._server.reply(data, "udp")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)


def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    if rdtype == dns.rdatatype.TXT:
        raw = text.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        return TXT(dns.rdataclass.IN, rdtype, chunks)
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
    )


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))

"""A TLS-terminating proxy in front of the dev server's plain gRPC port.

It stands in for what a real cluster puts in front of Temporal (Temporal Cloud's
edge, an ingress, Envoy): the client speaks TLS, optionally with a client
certificate, the proxy speaks plain HTTP/2 to the server. gRPC is HTTP/2 over
TCP, so the proxy forwards bytes both ways untouched; on the way in it also
reads the request headers (HPACK) so a test can see what reached the server's
side of the TLS: the ``authorization`` header an API key becomes and the
``temporal-namespace`` header of every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

#: RFC 7541 Appendix B: the Huffman code's bit length of each symbol 0..256 (EOS), as
#: ``chr(ord("A") + length - 5)``. The code is canonical, so the lengths give the codes.
_HUFFMAN_LENGTHS = (
    "ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCC"
    "DCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSS"
    "QQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ"
)

#: RFC 7541 Appendix A, one ``name value`` a line (entry 1 first).
_STATIC_TABLE: list[tuple[str, str]] = [
    (line.partition(" ")[0], line.partition(" ")[2])
    for line in """:authority
:method GET
:method POST
:path /
:path /index.html
:scheme http
:scheme https
:status 200
:status 204
:status 206
:status 304
:status 400
:status 404
:status 500
accept-charset
accept-encoding gzip, deflate
accept-language
accept-ranges
accept
access-control-allow-origin
age
allow
authorization
cache-control
content-disposition
content-encoding
content-language
content-length
content-location
content-range
content-type
cookie
date
etag
expect
expires
from
host
if-match
if-modified-since
if-none-match
if-range
if-unmodified-since
last-modified
link
location
max-forwards
proxy-authenticate
proxy-authorization
range
referer
refresh
retry-after
server
set-cookie
strict-transport-security
transfer-encoding
user-agent
vary
via
www-authenticate""".splitlines()
]


def _huffman_codes() -> dict[tuple[int, int], int]:
    """``(bit length, code) -> symbol`` of the canonical code the lengths describe."""
    lengths = [ord(c) - ord("A") + 5 for c in _HUFFMAN_LENGTHS]
    codes: dict[tuple[int, int], int] = {}
    code, previous = -1, min(lengths)
    for symbol in sorted(range(len(lengths)), key=lambda s: (lengths[s], s)):
        code = (code + 1) << (lengths[symbol] - previous)
        previous = lengths[symbol]
        codes[(lengths[symbol], code)] = symbol
    return codes


_HUFFMAN = _huffman_codes()


def _huffman_decode(data: bytes) -> bytes:
    out, code, length = bytearray(), 0, 0
    for byte in data:
        for shift in range(7, -1, -1):
            code, length = (code << 1) | ((byte >> shift) & 1), length + 1
            symbol = _HUFFMAN.get((length, code))
            if symbol is not None:
                if symbol == 256:
                    raise ValueError("EOS in a Huffman-coded string")
                out.append(symbol)
                code, length = 0, 0
    return bytes(out)  # what is left is at most 7 bits of EOS padding


class HpackDecoder:
    """Decodes one connection's header blocks in order (RFC 7541), dynamic table included."""

    def __init__(self) -> None:
        self._dynamic: list[tuple[str, str]] = []
        self._max_size = 4096

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        position = 0
        while position < len(block):
            first = block[position]
            if first & 0x80:  # indexed field
                index, position = self._integer(block, position, 7)
                headers.append(self._entry(index))
            elif first & 0x40:  # literal, added to the dynamic table
                name, value, position = self._literal(block, position, 6)
                headers.append((name, value))
                self._add(name, value)
            elif first & 0x20:  # dynamic table size update
                self._max_size, position = self._integer(block, position, 5)
                self._evict()
            else:  # literal without indexing, or never indexed
                name, value, position = self._literal(block, position, 4)
                headers.append((name, value))
        return headers

    def _entry(self, index: int) -> tuple[str, str]:
        if index <= len(_STATIC_TABLE):
            return _STATIC_TABLE[index - 1]
        return self._dynamic[index - len(_STATIC_TABLE) - 1]

    def _literal(self, block: bytes, position: int, prefix: int) -> tuple[str, str, int]:
        index, position = self._integer(block, position, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, position = self._string(block, position)
        value, position = self._string(block, position)
        return name, value, position

    @staticmethod
    def _integer(block: bytes, position: int, prefix: int) -> tuple[int, int]:
        mask = (1 << prefix) - 1
        value, position = block[position] & mask, position + 1
        if value < mask:
            return value, position
        shift = 0
        while True:
            byte, position = block[position], position + 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, position

    def _string(self, block: bytes, position: int) -> tuple[str, int]:
        huffman = bool(block[position] & 0x80)
        length, position = self._integer(block, position, 7)
        raw = block[position : position + length]
        text = _huffman_decode(raw) if huffman else raw
        return text.decode("latin-1"), position + length

    def _add(self, name: str, value: str) -> None:
        self._dynamic.insert(0, (name, value))
        self._evict()

    def _evict(self) -> None:
        while sum(len(n) + len(v) + 32 for n, v in self._dynamic) > self._max_size:
            self._dynamic.pop()


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS, _PADDED, _PRIORITY = 0x4, 0x8, 0x20


class Http2RequestReader:
    """Follows the client's side of an HTTP/2 connection and keeps each request's headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self._buffer = b""
        self._preface_seen = False
        self._block = b""
        self._hpack = HpackDecoder()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self._preface_seen:
            if len(self._buffer) < len(_PREFACE):
                return
            if not self._buffer.startswith(_PREFACE):
                raise ValueError("not an HTTP/2 connection")
            self._buffer, self._preface_seen = self._buffer[len(_PREFACE) :], True
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            payload = self._buffer[9 : 9 + length]
            self._buffer = self._buffer[9 + length :]
            if kind == _HEADERS:
                if flags & _PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & _PRIORITY:
                    payload = payload[5:]
                self._block = payload
            elif kind == _CONTINUATION:
                self._block += payload
            else:
                continue
            if flags & _END_HEADERS:
                self.requests.append(dict(self._hpack.decode(self._block)))
                self._block = b""


@dataclass
class ProxiedConnection:
    """One client connection: what its TLS handshake said and the requests it carried."""

    server_name: str | None
    alpn_protocol: str | None
    client_certificate_subject: str | None
    requests: list[dict[str, str]] = field(default_factory=list)


@dataclass
class TlsTerminatingProxy:
    """Listens with TLS on ``address`` and forwards each connection to ``upstream`` in plain."""

    upstream: str
    context: ssl.SSLContext
    address: str = ""
    connections: list[ProxiedConnection] = field(default_factory=list)
    _server_names: dict[int, str] = field(default_factory=dict)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def requests(self) -> list[dict[str, str]]:
        """Every request's headers, on every connection, in order."""
        return [request for connection in self.connections for request in connection.requests]

    def _remember_server_name(self, ssl_object: Any, server_name: str | None, _: Any) -> None:
        if server_name:
            self._server_names[id(ssl_object)] = server_name

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: Any
    ) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                if requests is not None:
                    requests.feed(data)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(pair for rdn in peer.get("subject", ()) for pair in rdn)
        http2 = Http2RequestReader()
        connection = ProxiedConnection(
            server_name=self._server_names.pop(id(ssl_object), None),
            alpn_protocol=ssl_object.selected_alpn_protocol(),
            client_certificate_subject=subject.get("commonName"),
            requests=http2.requests,
        )
        self.connections.append(connection)
        host, port = self.upstream.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._forward(reader, upstream_writer, http2),
            self._forward(upstream_reader, writer, None),
        )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[TlsTerminatingProxy]:
        """Listen on a free port of 127.0.0.1 (``address``) until the context closes."""
        self.context.set_alpn_protocols(["h2"])
        self.context.sni_callback = self._remember_server_name
        server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5
        )
        port = server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.close()
            for writer in self._writers:
                writer.close()
            await server.wait_closed()


def server_context(certificate: str, key: str, *, client_ca: str | None = None) -> ssl.SSLContext:
    """A TLS server context with ``certificate``; with ``client_ca``, clients must present
    a certificate that CA issued (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

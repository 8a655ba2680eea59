"""TLS and WebSocket under Bolt, on one port: real sockets, a real TLS stack, wsproto as the
client. The protocol on top is an echo, so what arrives is exactly what the layers pass up."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
)

from proxy.net.layers import Sniffer

pytestmark = pytest.mark.timeout(20)


class Echo(asyncio.Protocol):
    """Echoes every write back in one write (as the Bolt handshake reply is one write)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def server(ca: trustme.CA) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: Sniffer(Echo, tls=server_ctx, discovery=lambda: {"bolt_direct": "x"}),
        "127.0.0.1",
        0,
    )
    yield srv.sockets[0].getsockname()[1], client_ctx
    srv.close()
    await srv.wait_closed()


async def read_until(reader: asyncio.StreamReader, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = await asyncio.wait_for(reader.read(65536), 5)
        if not part:
            break
        data += part
    return data


async def test_plain_bolt_bytes_pass_straight_through(server) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x60\x60\xb0\x17")
    assert await read_until(reader, 9) == b"echo:\x60\x60\xb0\x17"
    writer.close()


async def test_tls_then_bolt(server) -> None:
    port, client_ctx = server
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
    )
    writer.write(b"\x60\x60\xb0\x17rest")
    assert await read_until(reader, 13) == b"echo:\x60\x60\xb0\x17rest"
    writer.close()


class WSClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def open(self, subprotocols: list[str] | None = None) -> AcceptConnection:
        self.writer.write(
            self.ws.send(Request(host="localhost", target="/", subprotocols=subprotocols or []))
        )
        return await self.next_event()  # type: ignore[return-value]

    async def next_event(self) -> object:
        while True:
            for event in self.ws.events():
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "server closed"
            self.ws.receive_data(data)


async def ws_connect(port: int, ctx: ssl.SSLContext | None = None) -> WSClient:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None
    )
    return WSClient(reader, writer)


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_websocket_messages_carry_bolt_bytes(server, secure: bool) -> None:
    port, client_ctx = server
    client = await ws_connect(port, client_ctx if secure else None)
    accepted = await client.open()
    assert isinstance(accepted, AcceptConnection)
    assert accepted.subprotocol is None  # none offered, none answered
    # A message split over three frames, and the server answers each delivery in one
    # binary message.
    client.writer.write(client.ws.send(BytesMessage(data=b"\x60\x60", message_finished=False)))
    client.writer.write(client.ws.send(BytesMessage(data=b"\xb0", message_finished=False)))
    client.writer.write(client.ws.send(BytesMessage(data=b"\x17", message_finished=True)))
    received = b""
    while received.count(b"echo:") < 1 or not received.endswith(b"\x17"):
        event = await client.next_event()
        assert isinstance(event, BytesMessage)
        received += event.data
    assert received.replace(b"echo:", b"") == b"\x60\x60\xb0\x17"
    client.writer.write(client.ws.send(Ping(payload=b"hi")))
    pong = await client.next_event()
    assert isinstance(pong, Pong) and pong.payload == b"hi"
    client.writer.write(client.ws.send(CloseConnection(code=1000)))
    closed = await client.next_event()
    assert isinstance(closed, CloseConnection)
    client.writer.close()


async def test_requested_subprotocol_is_echoed(server) -> None:
    port, _ = server
    client = await ws_connect(port)
    accepted = await client.open(["binary"])
    assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "binary"
    client.writer.close()


async def test_plain_get_gets_the_discovery_document(server) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
    response = await read_until(reader, 1 << 16)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {"bolt_direct": "x"}


async def test_tls_when_not_configured_is_refused(ca: trustme.CA) -> None:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: Sniffer(Echo, tls=None, discovery=dict), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
    srv.close()


async def test_bad_tls_bytes_close_only_that_connection(server) -> None:
    port, _ = server

    def garbage() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x16\x03\x01\x00\x05garbage-not-a-client-hello")
            # The server may send a TLS alert first; then it must close (recv gives b"").
            received = [sock.recv(100)]
            while received[-1]:
                received.append(sock.recv(100))
            return received

    assert (await asyncio.to_thread(garbage))[-1] == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x60\x60\xb0\x17")
    assert await read_until(reader, 9) == b"echo:\x60\x60\xb0\x17"
    writer.close()

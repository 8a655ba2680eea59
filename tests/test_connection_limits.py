"""Every stage of a connection the client controls has a time limit, and past
``max_connections`` a client is told why it is refused (``proxy.net.limits``).

A real ``BoltServer`` on a real socket, in process, in front of a fake query backend (the
limits are the listener's business: no graph needed). The limits are a fraction of a second
here; each stalled connection must be closed by the proxy after its limit and well before
three times it, and one that is busy or authenticated and talking must not be.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from bolt.chunking import chunk
from bolt.messages import Hello, Logon, Pull, Run, Tag, encode_request
from bolt.packstream import unpack
from bolt.versions import Version
from proxy.backends.base import QueryResult
from proxy.config import Config
from proxy.net.listener import BoltServer
from proxy.session.results import SLICE_BYTES

pytestmark = pytest.mark.timeout(30)

LIMIT = 0.4  # seconds, every stage
MAGIC = b"\x60\x60\xb0\x17"
OFFER_54 = MAGIC + bytes.fromhex("00000405 00000000 00000000 00000000")
V54 = Version(5, 4)
LARGE = 100_000  # rows of the large result
PAD = "p" * 200


class SlowBackend:
    """Answers every query with one row, after ``delay`` seconds."""

    description = "fake"

    def __init__(self) -> None:
        self.delay = 0.0
        self.seen: list[int] = []  # for "RETURN 2": how far the large results were paged
        self.server: BoltServer | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def run(
        self, graph: str, query: str, params: dict[str, Any], *, read_only: bool = False
    ) -> QueryResult:
        await asyncio.sleep(self.delay)
        if query.startswith("UNWIND"):
            # ~20 MB: more than the sockets' buffers hold, so the sender must wait.
            return QueryResult(["x", "pad"], [[i, PAD] for i in range(LARGE)])
        if query == "RETURN 2" and self.server is not None:
            for session in self.server.registry.sessions():
                stream = getattr(session, "autocommit", None)
                if stream is not None:
                    self.seen.append(stream.position)
        return QueryResult(["x"], [[1]])

    async def list_graphs(self) -> list[str]:
        return ["neo4j"]


@dataclass
class Served:
    server: BoltServer
    backend: SlowBackend
    port: int
    client_tls: ssl.SSLContext


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def serve(ca: trustme.CA, tmp_path: Any, **settings: Any) -> Served:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    limits = {
        name: LIMIT
        for name in (
            "first_byte_timeout",
            "tls_handshake_timeout",
            "upgrade_request_timeout",
            "bolt_handshake_timeout",
            "authentication_timeout",
            "idle_timeout",
        )
    }
    config = Config(
        listen="127.0.0.1:0", tls_cert=cert_file, tls_key=key_file, **{**limits, **settings}
    )
    backend = SlowBackend()
    server = BoltServer(config, query_backend=backend)
    backend.server = server
    await server.start()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    return Served(server, backend, server.address[1], client_tls)


@pytest.fixture
async def served(ca: trustme.CA, tmp_path: Any) -> AsyncIterator[Served]:
    s = await serve(ca, tmp_path)
    yield s
    await s.server.close()


def request(message: Any) -> bytes:
    return chunk(encode_request(message, V54))


LOGIN = request(Hello({"user_agent": "t/1"})) + request(
    Logon({"scheme": "basic", "principal": "u", "credentials": "p"})
)


async def closed_after(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the proxy closes the connection (whatever it sent before)."""
    started = time.monotonic()
    while True:
        left = within - (time.monotonic() - started)
        assert left > 0, f"still open after {within} s"
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except ConnectionResetError:
            data = b""
        if not data:
            return time.monotonic() - started


async def messages(reader: asyncio.StreamReader, count: int) -> list[Any]:
    """``count`` whole Bolt messages from the proxy, decoded (reads no further)."""
    found: list[Any] = []
    buffer = b""
    at = 0
    payload = bytearray()
    while len(found) < count:
        if len(buffer) - at < 2:
            buffer = buffer[at:] + await asyncio.wait_for(reader.read(1 << 16), 10)
            at = 0
            continue
        size = int.from_bytes(buffer[at : at + 2], "big")
        if len(buffer) - at < 2 + size:
            buffer = buffer[at:] + await asyncio.wait_for(reader.read(1 << 16), 10)
            at = 0
            continue
        if size:
            payload += buffer[at + 2 : at + 2 + size]
        else:
            found.append(unpack(bytes(payload)))
            payload.clear()
        at += 2 + size
    assert at == len(buffer), "more than asked for"
    return found


STALLS = {
    "nothing sent": b"",
    "one G": b"G",
    "partial HTTP request": b"GET / HTTP/1.1\r\nHost: localhost\r\n",
    "half the magic": MAGIC[:2],
    "magic without an offer": MAGIC,
    "one byte of a TLS record": b"\x16",
    "a TLS record header": b"\x16\x03\x01\x00\xc8",
    "handshake, no HELLO": OFFER_54,
    "handshake, half a HELLO": OFFER_54 + LOGIN[:10],
    "HELLO without LOGON": OFFER_54 + request(Hello({"user_agent": "t/1"})),
}


@pytest.mark.parametrize("sent", list(STALLS.values()), ids=list(STALLS))
async def test_a_stalled_stage_is_closed_within_its_limit(served: Served, sent: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(sent)
    took = await closed_after(reader, 3 * LIMIT + 1.0)
    assert took >= LIMIT * 0.8  # by the limit, not by a refusal of the bytes
    writer.close()
    await asyncio.sleep(0.05)
    assert served.server.connections.open == 0


async def test_tls_then_nothing_is_closed(served: Served) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", served.port, ssl=served.client_tls, server_hostname="localhost"
    )
    took = await closed_after(reader, 3 * LIMIT + 1.0)
    assert took >= LIMIT * 0.8
    writer.close()


async def test_websocket_upgrade_then_nothing_is_closed(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    await closed_after(reader, 3 * LIMIT + 1.0)  # no Bolt handshake inside it
    writer.close()


async def test_an_idle_authenticated_session_is_closed_and_a_talking_one_is_not(
    served: Served,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(OFFER_54)
    assert await asyncio.wait_for(reader.readexactly(4), 5) == bytes.fromhex("00000405")
    writer.write(LOGIN)
    assert [m.tag for m in await messages(reader, 2)] == [Tag.SUCCESS, Tag.SUCCESS]
    # Talking more often than the limit keeps it open, past the authentication limit too.
    for _ in range(6):
        await asyncio.sleep(LIMIT / 2)
        writer.write(request(Run("RETURN 1 AS x", {}, {})) + request(Pull(-1, -1)))
        assert [m.tag for m in await messages(reader, 3)] == [
            Tag.SUCCESS,
            Tag.RECORD,
            Tag.SUCCESS,
        ]
    # A query in flight for longer than the limit is not idleness.
    served.backend.delay = 3 * LIMIT
    writer.write(request(Run("RETURN 1 AS x", {}, {})) + request(Pull(-1, -1)))
    assert [m.tag for m in await messages(reader, 3)] == [Tag.SUCCESS, Tag.RECORD, Tag.SUCCESS]
    # Then silence: closed (idleness counts from the last time the watch saw the query run,
    # which it checks every quarter of the limit).
    took = await closed_after(reader, 3 * LIMIT + 1.0)
    assert took >= LIMIT * 0.7
    writer.close()


async def test_past_max_connections_a_client_is_told_why(ca: trustme.CA, tmp_path: Any) -> None:
    served = await serve(ca, tmp_path, max_connections=2, authentication_timeout=5.0)
    try:
        held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
        for _, writer in held:
            writer.write(OFFER_54)
        for reader, _ in held:
            await asyncio.wait_for(reader.readexactly(4), 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(OFFER_54)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == bytes.fromhex("00000405")
        writer.write(LOGIN)
        (failure,) = await messages(reader, 1)
        assert failure.tag == Tag.FAILURE
        metadata = failure.fields[0]
        assert metadata["code"] == "Neo.TransientError.Request.ResourceExhaustion"
        assert "at most 2 connections" in metadata["message"]
        await closed_after(reader, 2.0)
        assert served.server.connections.refused == 1
        # One of the held ones leaves: a new client is served.
        held[0][1].close()
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(OFFER_54 + LOGIN)
        assert await asyncio.wait_for(reader.readexactly(4), 5) == bytes.fromhex("00000405")
        assert [m.tag for m in await messages(reader, 2)] == [Tag.SUCCESS, Tag.SUCCESS]
        writer.close()
    finally:
        await served.server.close()


async def test_a_hashed_users_file_over_the_wire_and_the_throttle(
    ca: trustme.CA, tmp_path: Any
) -> None:
    """HELLO/LOGON against a users file with a hash, through a real socket: the right
    password gets in, five wrong ones in a row lock that address out (AuthenticationRateLimit)
    even for the right password."""
    from proxy.session.auth import hash_password

    users = tmp_path / "users"
    users.write_text(f"ann:{hash_password('right', n=16, r=1, p=1)}\n")
    served = await serve(ca, tmp_path, users_file=users)

    async def login(password: str) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(OFFER_54 + request(Hello({"user_agent": "t/1"})))
        writer.write(
            request(Logon({"scheme": "basic", "principal": "ann", "credentials": password}))
        )
        await asyncio.wait_for(reader.readexactly(4), 5)
        _, answer = await messages(reader, 2)
        writer.close()
        return {"tag": answer.tag, **(answer.fields[0] if answer.fields else {})}

    try:
        assert (await login("right"))["tag"] == Tag.SUCCESS
        for _ in range(5):
            assert (await login("wrong"))["code"] == "Neo.ClientError.Security.Unauthorized"
        locked = await login("right")
        assert locked["code"] == "Neo.ClientError.Security.AuthenticationRateLimit"
    finally:
        await served.server.close()


async def test_a_large_result_does_not_hold_other_connections_up(served: Served) -> None:
    """One client pulls 100,000 records and does not read them; another's query is answered
    meanwhile, while the large result is still being encoded (it goes out in slices, and
    waits for its client), not after all of it was."""
    big_reader, big_writer = await asyncio.open_connection("127.0.0.1", served.port)
    big_writer.write(OFFER_54 + LOGIN)
    await asyncio.wait_for(big_reader.readexactly(4), 5)
    await messages(big_reader, 2)
    big_writer.write(request(Run("UNWIND range(1, $n) AS x RETURN x", {}, {})))
    big_writer.write(request(Pull(-1, -1)))
    await asyncio.sleep(0.3)  # the big one is paging, its client reads nothing
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(OFFER_54 + LOGIN)
    await asyncio.wait_for(reader.readexactly(4), 5)
    await messages(reader, 2)
    writer.write(request(Run("RETURN 2", {}, {})) + request(Pull(-1, -1)))
    assert [m.tag for m in await messages(reader, 3)] == [Tag.SUCCESS, Tag.RECORD, Tag.SUCCESS]
    assert served.backend.seen and 0 < served.backend.seen[0] < LARGE
    writer.close()
    # And the big one gets all of its records, in order, then its summary.
    got = await messages(big_reader, LARGE + 2)
    assert [m.fields[0][0] for m in got[1:-1]] == list(range(LARGE))
    assert got[-1].tag == Tag.SUCCESS and got[-1].fields[0]["has_more"] is False
    big_writer.close()


async def _stop_reading_after_login(
    port: int, *, limit: int, tls: ssl.SSLContext | None = None
) -> tuple[Any, Any]:
    """A client with a small receive buffer: handshake, HELLO/LOGON, a RUN of the large
    result and PULL all, and then it reads nothing (its stream reader pauses the socket
    once ``2 * limit`` bytes are buffered)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, limit=limit, ssl=tls, server_hostname="localhost" if tls else None
    )
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(OFFER_54 + LOGIN)
    assert await asyncio.wait_for(reader.readexactly(4), 5) == bytes.fromhex("00000405")
    assert [m.tag for m in await messages(reader, 2)] == [Tag.SUCCESS, Tag.SUCCESS]
    writer.write(request(Run("UNWIND range(1, $n) AS x RETURN x", {}, {})))
    writer.write(request(Pull(-1, -1)))
    return reader, writer


async def test_a_client_that_stops_reading_is_closed_and_what_waits_stays_bounded(
    ca: trustme.CA, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The client stops reading in the middle of a ~20 MB result: the proxy sends no more
    than its socket takes (the session waits for the buffer to drain, slice by slice), and
    once nothing has moved for ``write_stall_timeout`` it closes the connection with one
    WARNING, which lets the result go."""
    served = await serve(ca, tmp_path, write_stall_timeout=LIMIT)
    try:
        reader, writer = await _stop_reading_after_login(served.port, limit=1024)
        largest = 0
        positions: list[int] = []
        session = None
        high_water = 0
        while True:  # until the proxy lets go of the session
            sessions = served.server.registry.sessions()
            if not sessions:
                break
            session = sessions[0]
            if session.autocommit is not None:
                positions.append(session.autocommit.position)
            high_water = session.transport.get_write_buffer_limits()[1]
            largest = max(largest, session.transport.get_write_buffer_size())
            await asyncio.sleep(0.01)
        assert session is not None and session.closing
        # Bounded: at most the high-water mark plus one slice was ever waiting in the proxy.
        assert 0 < largest <= high_water + SLICE_BYTES
        # Far from all of the result was encoded: it waited for a client that did not read.
        assert positions and max(positions) < LARGE
        assert session.autocommit is None  # and the closed session let the result go
        warnings = [r for r in caplog.records if "read none of its answers" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
        assert "bolt-" in warnings[0].getMessage()
        reader._limit = 1 << 20  # read again: the connection ends (reset, or EOF)
        await closed_after(reader, 10)
        writer.close()
        assert served.server.connections.open == 0
    finally:
        await served.server.close()


async def test_a_client_that_reads_slowly_is_not_closed(ca: trustme.CA, tmp_path: Any) -> None:
    """Reading a little at a time is progress: the stall limit never applies."""
    served = await serve(ca, tmp_path, write_stall_timeout=2.0)
    try:
        reader, writer = await _stop_reading_after_login(served.port, limit=4096)
        await asyncio.sleep(0.5)  # let the buffers fill
        for _ in range(20):  # 4 s: twice the limit, about 8 KB read every tenth of it
            await asyncio.wait_for(reader.read(1 << 16), 5)  # all the reader holds
            await asyncio.sleep(0.2)
        assert len(served.server.registry.sessions()) == 1
        assert served.server.registry.sessions()[0].writable.is_set() is False
        writer.close()
    finally:
        await served.server.close()


async def _websocket_stop_reading(
    port: int, *, limit: int, tls: ssl.SSLContext | None
) -> tuple[Any, Any]:
    """As ``_stop_reading_after_login``, with Bolt inside WebSocket frames (over TLS when
    ``tls``): the handshake and login answers read frame by frame, then nothing."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request

    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, limit=limit, ssl=tls, server_hostname="localhost" if tls else None
    )
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host="localhost", target="/")))
    received = b""
    accepted = False
    while len(received) < 4 + 2 * 8:  # the version, and two small SUCCESS messages at least
        ws.receive_data(await asyncio.wait_for(reader.read(1 << 16), 5))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                accepted = True
                writer.write(ws.send(BytesMessage(OFFER_54 + LOGIN)))
            elif isinstance(event, BytesMessage):
                received += bytes(event.data)
    assert accepted and received[:4] == bytes.fromhex("00000405")
    run = request(Run("UNWIND range(1, $n) AS x RETURN x", {}, {})) + request(Pull(-1, -1))
    writer.write(ws.send(BytesMessage(run)))
    return reader, writer


async def _closed_for_not_reading(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    """The proxy lets the stalled client's session go, saying why in one WARNING."""
    started = time.monotonic()
    while served.server.registry.sessions():
        assert time.monotonic() - started < 20, "the stalled client stayed"
        await asyncio.sleep(0.05)
    warnings = [r for r in caplog.records if "read none of its answers" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_a_websocket_client_that_stops_reading_is_closed(
    ca: trustme.CA, tmp_path: Any, caplog: pytest.LogCaptureFixture, secure: bool
) -> None:
    """The write-stall limit holds on every transport: here Bolt over WebSocket, in the
    clear and over TLS (the proxy writes through the WebSocket and TLS layers; the limit
    looks at the socket under them)."""
    served = await serve(ca, tmp_path, write_stall_timeout=LIMIT)
    try:
        _reader, writer = await _websocket_stop_reading(
            served.port, limit=1024, tls=served.client_tls if secure else None
        )
        await _closed_for_not_reading(served, caplog)
        writer.close()
    finally:
        await served.server.close()


async def test_a_tls_bolt_client_that_stops_reading_is_closed(
    ca: trustme.CA, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(ca, tmp_path, write_stall_timeout=LIMIT)
    try:
        _reader, writer = await _stop_reading_after_login(
            served.port, limit=1024, tls=served.client_tls
        )
        await _closed_for_not_reading(served, caplog)
        writer.close()
    finally:
        await served.server.close()

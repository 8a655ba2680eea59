"""The relay session in process, on fake sockets: what reaches each side, byte for byte, when
messages arrive cut at awkward places, and which socket is read while the other one is full.

Nothing here waits on timing: each read is a call of the protocol callback, so every boundary
(inside a chunk header, at a chunk boundary, between the two bytes of an end marker) is hit
exactly. The same conversation against a real server is in tests/integration/test_relay.py
(``test_payloads_over_four_kilobytes``, which once hung on a record cut this way).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt.chunking import chunk
from bolt.connection import ServerConnection
from bolt.messages import Begin, Hello, Logon, Pull, Route, Run, Tag, encode_request
from bolt.packstream import Packer, Structure
from bolt.versions import Version
from proxy.answers.router import Router
from proxy.answers.system import relay_handlers
from proxy.net.backend import BackendLink, BackendProtocol
from proxy.session.relay import RelayEnv, RelaySession

V = Version(5, 4)


class FakeTransport:
    """What a session asks of a socket: bytes written, reading paused or not, closed or not."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


def response(tag: int, *fields: object, max_chunk_size: int = 0xFFFF) -> bytes:
    return chunk(Packer(V).pack(Structure(tag, tuple(fields))), max_chunk_size)


def request(message: Any) -> bytes:
    return chunk(encode_request(message, V))


class Relay:
    """A relay session between a fake client socket and a fake backend socket."""

    def __init__(self) -> None:
        self.client = FakeTransport()
        self.backend = FakeTransport()
        self.protocol = BackendProtocol()
        link = BackendLink(self.backend, self.protocol, V)  # type: ignore[arg-type]
        env = RelayEnv(
            router=Router(relay_handlers(), relay=True),
            advertised_address="127.0.0.1:7687",
            max_message_size=64 << 20,
        )
        self.session = RelaySession(
            self.client,  # type: ignore[arg-type]
            link,
            ServerConnection(V, max_message_size=64 << 20),
            env,
            connection_id="bolt-test",
            log=logging.LoggerAdapter(logging.getLogger("test")),
        )

    def login(self) -> None:
        hello = request(Hello({"user_agent": "t/1"}))
        logon = request(Logon({"scheme": "basic", "principal": "u", "credentials": "p"}))
        self.session.data_received(hello + logon)
        assert self.backend.take() == hello + logon
        answers = response(Tag.SUCCESS, {"server": "Neo4j/5.26.0", "connection_id": "b-1"})
        answers += response(Tag.SUCCESS, {})
        self.protocol.data_received(answers)
        assert self.client.take() == answers


def cut(data: bytes, at: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(at)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# A RUN SUCCESS, then a record of 200 KB (four chunks of at most 64 KB), then PULL's SUCCESS:
# what ArcadeDB sends for test_payloads_over_four_kilobytes.
RUN_SUCCESS = response(Tag.SUCCESS, {"fields": ["c", "big"], "t_first": 1})
BIG_RECORD = response(Tag.RECORD, [3000, "é" * 100_000])
PULL_SUCCESS = response(Tag.SUCCESS, {"type": "r", "t_last": 2, "db": "neo4j"})
ANSWERS = RUN_SUCCESS + BIG_RECORD + PULL_SUCCESS
# Offsets in ANSWERS: the record's chunk headers, and its end marker.
_RECORD_AT = len(RUN_SUCCESS)
_HEADERS = [_RECORD_AT + k * (2 + 0xFFFF) for k in range(4)]
_MARKER = _RECORD_AT + len(BIG_RECORD) - 2


@pytest.mark.parametrize(
    "cuts",
    [
        # The reads that hung the driver: the summary and the record's start, then reads that
        # do not finish the record (ArcadeDB's 64 KB writes, read as they came).
        [_RECORD_AT + 65_539, _RECORD_AT + 131_074, _RECORD_AT + 131_076],
        [_HEADERS[1] + 1, _HEADERS[2], _MARKER + 1],  # inside a header, at one, in the marker
        [_RECORD_AT, _RECORD_AT + 1, _HEADERS[3] + 2, _MARKER, len(ANSWERS) - 1],
        list(range(_RECORD_AT - 3, len(ANSWERS), 9_973)),
    ],
    ids=["arcadedb-reads", "header-boundary-marker", "edges", "every-10k"],
)
async def test_a_large_record_cut_anywhere_reaches_the_client_byte_exact(cuts: list[int]) -> None:
    relay = Relay()
    relay.login()
    run = request(Run("UNWIND $names AS n RETURN count(n) AS c, $big AS big", {}, {}))
    relay.session.data_received(run + request(Pull(-1, -1)))
    for piece in cut(ANSWERS, cuts):
        relay.protocol.data_received(piece)
    assert relay.client.take() == ANSWERS
    assert not relay.session.expect and relay.session.conn.unanswered == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, len(ANSWERS)), max_size=10),
    st.lists(st.integers(0, 300_000), max_size=10),
    st.booleans(),
)
def test_requests_and_answers_cut_anywhere_pass_unchanged(
    answer_cuts: list[int], request_cuts: list[int], in_transaction: bool
) -> None:
    """Both directions at once, in and out of a (held) transaction: a RUN of ~300 KB (several
    chunks) and its PULL, cut anywhere, reach the backend unchanged; the answers, cut anywhere,
    reach the client unchanged (the held BEGIN's own answer is not relayed)."""

    async def check() -> None:
        relay = Relay()
        relay.login()
        begin = swallowed = b""
        if in_transaction:
            begin = request(Begin({}))
            relay.session.data_received(begin)
            assert relay.client.take() == response(Tag.SUCCESS, {})  # answered by the proxy
            assert relay.backend.take() == b""  # held until a statement needs the backend
            swallowed = response(Tag.SUCCESS, {})  # the backend's answer to it
        names = [f"name-{i}-{'x' * 20}" for i in range(3000)]
        run = request(Run("UNWIND $names AS n RETURN count(n) AS c", {"names": names}, {}))
        requests = run + request(Pull(-1, -1))
        for piece in cut(requests, [c % len(requests) for c in request_cuts]):
            relay.session.data_received(piece)
        assert relay.backend.take() == begin + requests
        answers = swallowed + ANSWERS
        for piece in cut(answers, [c % len(answers) for c in answer_cuts]):
            relay.protocol.data_received(piece)
        assert relay.client.take() == ANSWERS
        assert not relay.session.expect and relay.session.conn.unanswered == 0

    asyncio.run(check())


async def test_the_client_is_read_again_only_when_nothing_stops_it() -> None:
    """Two things stop reading the client: the backend socket being full, and requests piling
    up while the session's task works. Each one ending resumes reading only if it was the
    last; the client being slow to read stops the backend, not the client."""
    relay = Relay()
    relay.login()
    session, client, backend = relay.session, relay.client, relay.backend
    relay.protocol.pause_writing()  # the backend does not keep up
    assert not client.reading
    session.hold_input()
    relay.protocol.resume_writing()
    assert not client.reading  # still held
    session.release_input()
    assert client.reading
    session.hold_input()
    relay.protocol.pause_writing()
    session.release_input()
    assert not client.reading  # the backend is still full
    relay.protocol.resume_writing()
    assert client.reading
    session.pause_writing()  # the client does not read its answers
    assert not backend.reading and client.reading
    session.hold_input()
    session.release_input()
    assert client.reading and not backend.reading
    session.resume_writing()
    assert backend.reading and client.reading


async def test_a_backend_that_hangs_up_before_the_session_starts_closes_it() -> None:
    """The backend closed between the handshake and the session: the client is not left
    waiting for answers that cannot come."""
    client, backend = FakeTransport(), FakeTransport()
    protocol = BackendProtocol()
    protocol.connection_made(backend)  # type: ignore[arg-type]
    protocol.data_received(b"\x00\x00\x04\x05")
    protocol.connection_lost(None)
    env = RelayEnv(
        router=Router(relay_handlers(), relay=True),
        advertised_address="127.0.0.1:7687",
        max_message_size=1 << 20,
    )
    session = RelaySession(
        client,  # type: ignore[arg-type]
        BackendLink(backend, protocol, V),  # type: ignore[arg-type]
        ServerConnection(V),
        env,
        connection_id="bolt-test",
        log=logging.LoggerAdapter(logging.getLogger("test")),
    )
    assert session.closing and client.closed
    assert session.finished.done()


async def test_held_input_is_read_again_when_the_task_ends_behind_a_full_client_socket() -> None:
    """The task (here: ROUTE waiting for its turn) stops reading the client once a megabyte of
    request bytes piles up: the start of a RUN of 1.5 MB. The task ends while the client's
    socket is full (the wake-up of a drain is seen after the socket filled up again). Reading
    the client must resume then, or the RUN never completes and the client waits forever: in a
    relay, the client's full socket stops the backend, not the client."""
    relay = Relay()
    relay.login()
    session, client, backend = relay.session, relay.client, relay.backend
    first = request(Run("RETURN 1 AS x", {}, {})) + request(Pull(-1, -1))
    session.data_received(first)
    assert backend.take() == first
    session.data_received(request(Route({"address": "x:1"}, [], None, None)))
    assert session.task is not None  # ROUTE waits for the RUN and PULL to be answered
    big = request(Run("RETURN $p AS p", {"p": "x" * 1_500_000}, {}))
    session.data_received(big[:1_100_000])
    assert session.input_held and not client.reading
    session.pause_writing()  # the client does not read its answers
    relay.protocol.data_received(response(Tag.SUCCESS, {"fields": ["x"]}) + PULL_SUCCESS)
    for _ in range(5):
        await asyncio.sleep(0)  # ROUTE is answered; the task waits for the client's socket
    assert session.task is not None and not client.reading
    session.resume_writing()
    session.pause_writing()  # full again before the task runs
    for _ in range(5):
        await asyncio.sleep(0)
    assert session.task is None and client.reading
    session.data_received(big[1_100_000:])
    session.resume_writing()  # (the RUN waits for the client's socket, like any request)
    for _ in range(5):
        await asyncio.sleep(0)
    assert backend.take() == big and session.task is None
    assert client.reading and backend.reading


async def test_a_close_before_the_task_starts_leaves_no_coroutine_unawaited() -> None:
    """A request that has to wait starts the session's task; a connection lost before that
    task takes its first step cancels it, and what it was to await is closed, not left to be
    finalised as a coroutine never awaited (fuzz corpus: reset-while-a-request-waits)."""
    relay = Relay()
    relay.login()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        relay.session.data_received(b"\x00\x02\xb0\x7f\x00\x00")  # unknown tag: a violation
        task = relay.session.task
        assert task is not None  # the violation's answer waits for its turn
        relay.session.connection_lost(None)
        await asyncio.sleep(0)
        assert task.cancelled()
        del relay, task
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []

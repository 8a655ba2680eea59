"""The relay session: a client's Bolt conversation forwarded to a Bolt backend.

Each client gets its own backend connection, negotiated at the version the client will be
given, so records and summaries pass through as the backend's own bytes. The proxy reads only
what it must route on: the tag of every message, the query text of each RUN (the
classification seam), the metadata of summaries that change the connection's state, and
FAILUREs (translated when the backend's format is not the one the client's version expects).

The hot path is two protocol callbacks and no tasks: bytes from the client are cut into
messages and, when they need nothing from the proxy, written to the backend at once
(pipelined: nothing waits for the backend); bytes from the backend are cut into messages,
records are passed on untouched, and each summary pops one pending request. The first
request the proxy must answer itself (ROUTE, a RUN classified as local, a PULL on a local
result) switches the connection to the slow path: a task that takes the queued requests one
at a time and, before answering anything itself, waits until every forwarded request has had
its summary relayed, so responses reach the client in request order and the proxy knows the
backend's state exactly. When the queue is empty the fast path resumes.

The client's state is mirrored by ``bolt.state.ServerStateMachine``, advanced as each summary
comes back. When nothing is pending it is exact, and a request with no transition is refused
with ``Neo.ClientError.Request.Invalid`` before it reaches the backend.

ROUTE and the routing procedures are always answered by the proxy with its own advertised
address, so ``neo4j://`` clients keep talking to it. GOODBYE is not forwarded: the backend
socket is simply closed (FalkorDB's Bolt server mishandles GOODBYE).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from bolt.chunking import ChunkDecoder, chunk
from bolt.errors import BoltError, HandshakeError, InvalidTransition, ProtocolError
from bolt.handshake import client_proposal, parse_server_choice
from bolt.messages import (
    IGNORED_PAYLOAD,
    Discard,
    Hello,
    Logon,
    Pull,
    Route,
    Run,
    Tag,
    decode_request,
    decode_response,
    encode_failure,
    encode_failure_metadata,
    encode_success,
    normalize_failure,
    peek_run_query,
)
from bolt.packstream import Packer
from bolt.state import REQUEST_TAGS, Action, Outcome, ServerStateMachine, State, outcome_of
from bolt.versions import Version
from proxy.backends.base import BackendError
from proxy.config import BackendURI
from proxy.results import ResultStream
from proxy.router import LOCAL_IN_TX, Classified, QueryContext, Router, local_in_tx_message
from proxy.system import ROUTING_TTL_SECONDS, routing_servers

CONNECT_TIMEOUT = 10.0
# RUN parameters (plus extra) up to this size cannot hold a value nested more than 64 deep
# (each level takes at least one byte), so the fast path forwards them without decoding.
_UNCHECKED_PARAMS = 64
_REQUEST_TAGS = frozenset(int(t) for t in REQUEST_TAGS)
# Summaries whose metadata the mirror needs (has_more) or that may be rewritten.
_DECODE_SUMMARY_OF = frozenset((Tag.PULL, Tag.DISCARD, Tag.HELLO, Tag.LOGON))
_AUTH_TAGS = frozenset((Tag.HELLO, Tag.LOGON))
# `has_more: true` can only be encoded as these bytes (tiny string key, then True), so a
# PULL/DISCARD summary without them is final and need not be decoded.
_HAS_MORE_TRUE = b"\x88has_more\xc3"

# Status titles some Bolt servers send bare (FalkorDB: "SyntaxError"), with the Neo4j
# category they belong to; drivers classify errors from the full four-part code.
_BARE_TITLES = {
    "SyntaxError": "Statement", "SemanticError": "Statement", "ParameterMissing": "Statement",
    "TypeError": "Statement", "ArithmeticError": "Statement", "EntityNotFound": "Statement",
    "ProcedureNotFound": "Procedure", "Unauthorized": "Security",
    "ConstraintValidationFailed": "Schema", "DatabaseNotFound": "Database",
}


def neo4j_style_code(metadata: dict[str, Any]) -> dict[str, Any]:
    """FAILURE metadata whose code has Neo4j's ``Neo.<Class>.<Category>.<Title>`` shape.

    Vendor prefixes (``FalkorDB.ClientError...``, ``Memgraph.ClientError...``) become ``Neo``;
    a bare title gets its Neo4j category; anything else unknown becomes a DatabaseError.
    Returns ``metadata`` itself when the code already fits.
    """
    key = "neo4j_code" if "neo4j_code" in metadata else "code"
    code = metadata.get(key)
    if not isinstance(code, str):
        return metadata
    parts = code.split(".")
    if len(parts) == 4 and parts[0] == "Neo":
        return metadata
    if len(parts) == 4 and parts[1] in ("ClientError", "TransientError", "DatabaseError"):
        fixed = ".".join(["Neo", *parts[1:]])
    elif len(parts) == 1 and code in _BARE_TITLES:
        fixed = f"Neo.ClientError.{_BARE_TITLES[code]}.{code}"
    else:
        fixed = "Neo.DatabaseError.General.UnknownError"
    return {**metadata, key: fixed}


class BackendUnreachable(Exception):
    """The Bolt backend could not be connected to or refused every version we speak."""


@dataclass
class RelayEnv:
    backend: BackendURI
    router: Router
    advertised_address: str
    max_message_size: int
    default_db: str = "neo4j"


class _BackendProtocol(asyncio.Protocol):
    """The backend socket: collects the 4-byte handshake reply, then feeds the session."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.session: RelaySession | None = None
        self.reply = bytearray()
        self.replied: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.early = bytearray()  # bytes after the reply that arrive before the session exists

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.on_backend_data(data)
            return
        if not self.replied.done():
            self.reply += data
            if len(self.reply) >= 4:
                self.early += self.reply[4:]
                self.replied.set_result(bytes(self.reply[:4]))
            return
        self.early += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.replied.done():
            self.replied.set_exception(ConnectionError("backend closed during the handshake"))
        if self.session is not None:
            self.session.on_backend_lost(exc)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.client_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.client_transport.resume_reading()


class _ClientProtocol(asyncio.Protocol):
    """The client socket after the handshake: feeds the session."""

    def __init__(self, session: RelaySession) -> None:
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session.on_client_data(data)

    def eof_received(self) -> bool | None:
        self.session.close("client closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.close("client connection lost")

    def pause_writing(self) -> None:
        self.session.backend_transport.pause_reading()

    def resume_writing(self) -> None:
        self.session.backend_transport.resume_reading()


@dataclass
class BackendLink:
    transport: asyncio.Transport
    protocol: _BackendProtocol
    version: Version | None


async def open_backend(uri: BackendURI, versions: list[Version]) -> BackendLink:
    """Connect and handshake, offering ``versions``; the version is None if none was agreed."""
    context: ssl.SSLContext | None = None
    if uri.tls:
        context = ssl.create_default_context()
        if uri.raw.split(":", 1)[0].endswith("+ssc"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(_BackendProtocol, uri.host, uri.port, ssl=context),
            CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BackendUnreachable(f"cannot connect to {uri.raw}: {exc or 'timed out'}") from exc
    try:
        transport.write(client_proposal(versions))
        reply = await asyncio.wait_for(protocol.replied, CONNECT_TIMEOUT)
        version = parse_server_choice(reply)
    except (OSError, TimeoutError, HandshakeError) as exc:
        transport.close()
        raise BackendUnreachable(f"Bolt handshake with {uri.raw} failed: {exc!r}") from exc
    if version is None:
        transport.close()
    return BackendLink(transport, protocol, version)


class _Out:
    """Outgoing bytes for one socket, written in one call per batch (the ``wire`` interface
    that ``ResultStream.page`` writes to)."""

    __slots__ = ("parts", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.parts.append(chunk(payload))

    def send_raw(self, data: bytes) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts) if len(self.parts) > 1 else self.parts[0]
            self.parts.clear()
            if not self.transport.is_closing():
                self.transport.write(data)


class RelaySession:
    def __init__(self, client_transport: asyncio.Transport, backend: BackendLink,
                 version: Version, env: RelayEnv, *,
                 log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.client_transport = client_transport
        self.backend_transport = backend.transport
        self.version = version
        self.env = env
        self.log = log
        self.packer = Packer(version)
        self.client = _Out(client_transport)
        self.backend = _Out(backend.transport)
        self.client_decoder = ChunkDecoder(env.max_message_size)
        self.backend_decoder = ChunkDecoder(max(env.max_message_size, 64 << 20))
        self.pending: deque[int] = deque()  # tags of forwarded requests awaiting a summary
        self.idle = asyncio.Event()
        self.idle.set()
        # The client's state as the backend (and the proxy, for what it answers) sees it,
        # advanced as each summary comes back. Exact whenever nothing is pending.
        self.machine = ServerStateMachine(version)
        self.tx_streams = 0  # open results inside the current explicit transaction
        self.local_stream: ResultStream | None = None
        self.routing: dict[str, Any] | None = None
        self.user = ""
        self.slow: deque[tuple[bytes, bytes]] | None = None  # queued while on the slow path
        self.slow_task: asyncio.Task[None] | None = None
        self.violation: ProtocolError | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        backend.protocol.session = self
        if backend.protocol.early:
            self.on_backend_data(bytes(backend.protocol.early))

    async def wait_closed(self) -> None:
        await self.finished

    # -- lifecycle -----------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.log.debug("closing relay: %s", reason)
        self.client.flush()
        self.backend.parts.clear()
        self.backend_transport.close()  # never forward GOODBYE: just hang up
        self.client_transport.close()
        self.idle.set()
        if self.slow_task is not None and self.slow_task is not asyncio.current_task():
            self.slow_task.cancel()
        if not self.finished.done():
            self.finished.set_result(None)

    def on_backend_lost(self, exc: Exception | None) -> None:
        if not self.closing and self.pending:
            self.log.warning("backend closed with %d request(s) unanswered", len(self.pending))
        self.close("backend connection closed")

    # -- client -> backend ---------------------------------------------------------------

    def on_client_data(self, data: bytes) -> None:
        if self.closing:
            return
        decoder = self.client_decoder
        decoder.receive_data(data)
        try:
            if self.slow is not None:
                item = decoder.next_framed()
                while item is not None:
                    self.slow.append(item)
                    item = decoder.next_framed()
                return
            self._fast_path()
        except ProtocolError as exc:
            if self.slow is None:
                self._start_slow(deque(), violation=exc)
            else:
                self.violation = exc  # the slow path reports it after what is queued

    def _fast_path(self) -> None:
        decoder = self.client_decoder
        backend_parts = self.backend.parts
        pending = self.pending
        item = decoder.next_framed()
        while item is not None:
            payload, wire = item
            if not self._forwardable(payload):
                queue = deque([item])
                item = decoder.next_framed()
                while item is not None:
                    queue.append(item)
                    item = decoder.next_framed()
                self._start_slow(queue)
                break
            backend_parts.append(wire)
            pending.append(payload[1])
            item = decoder.next_framed()
        if pending:
            self.idle.clear()
        self.backend.flush()
        self.client.flush()

    def _forwardable(self, payload: bytes) -> bool:
        """True if the request can go to the backend as it is, with nothing else to do."""
        if len(payload) < 2 or payload[0] & 0xF0 != 0xB0:
            return False
        tag = payload[1]
        if tag not in _REQUEST_TAGS or tag == Tag.GOODBYE or tag == Tag.ROUTE:
            return False
        if self.local_stream is not None:
            return False
        if not self.pending and self.machine.allowed(tag) is not Action.PROCESS:
            return False  # invalid, or IGNORED: the slow path answers
        if tag == Tag.RUN:
            try:
                query, end = peek_run_query(payload)
            except ProtocolError:
                return False
            # Parameters big enough to nest deeper than the decoder allows are checked on the
            # slow path, which decodes them, so the backend never sees such a value.
            if len(payload) - end > _UNCHECKED_PARAMS:
                return False
            return self.env.router.classify(query) is None
        return tag != Tag.HELLO and tag != Tag.LOGON

    def _start_slow(self, queue: deque[tuple[bytes, bytes]],
                    violation: ProtocolError | None = None) -> None:
        self.slow = queue
        self.backend.flush()
        self.slow_task = asyncio.get_running_loop().create_task(self._slow_path(violation))

    async def _slow_path(self, violation: ProtocolError | None) -> None:
        try:
            if violation is not None:
                await self._violation(violation)
                return
            while self.slow and not self.closing:
                payload, wire = self.slow.popleft()
                keep_open = await self._request(payload, wire)
                self.backend.flush()
                self.client.flush()
                if not keep_open:
                    self.close("client said GOODBYE or broke the protocol")
                    return
            if self.violation is not None:
                await self._violation(self.violation)
                return
            self.slow = None
            # Messages that arrived while we worked are already queued in the decoder.
            if not self.closing:
                self._fast_path()
        except ProtocolError as exc:
            await self._violation(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("relay session failed; closing this connection only")
            self.close("internal error")

    async def _request(self, payload: bytes, wire: bytes) -> bool:
        """Forward one request or answer it; False when the connection must close."""
        if len(payload) < 2 or payload[0] & 0xF0 != 0xB0:
            raise ProtocolError("a request must be a structure")
        tag = payload[1]
        if tag not in _REQUEST_TAGS:
            raise ProtocolError(f"unknown message tag 0x{tag:02X}")
        if tag == Tag.GOODBYE:
            return False
        if self.local_stream is not None and tag != Tag.TELEMETRY:
            await self._drain()
            return await self._local_stream_request(tag, payload)
        if not self.pending:
            # Nothing in flight: the mirrored state is exact, so check the request here.
            action = self.machine.allowed(tag)
            if action is None:
                raise InvalidTransition(f"message {Tag(tag).name} cannot be handled by a "
                                        f"session in the {self.machine.state.name} state")
            if action is Action.IGNORE:
                self.client.send(IGNORED_PAYLOAD)
                return True
        if tag == Tag.RUN:
            request = decode_request(payload, self.version)
            assert isinstance(request, Run)
            classified = self.env.router.classify(request.query)
            if classified is not None:
                await self._local_run(request, classified)
                return True
        elif tag == Tag.ROUTE:
            await self._route(payload)
            return True
        elif tag == Tag.HELLO:
            hello = decode_request(payload, self.version)
            assert isinstance(hello, Hello)
            routing = hello.extra.get("routing")
            self.routing = routing if isinstance(routing, dict) else None
            self._note_user(hello.extra)  # before 5.1 the auth token is in HELLO
        elif tag == Tag.LOGON:
            logon = decode_request(payload, self.version)
            assert isinstance(logon, Logon)
            self._note_user(logon.auth)
        self._forward(tag, wire)
        return True

    def _note_user(self, token: dict[str, Any]) -> None:
        """Remember who the client says it is (the owner of streams it creates). The
        credentials themselves are not kept: the backend checks them."""
        principal = token.get("principal")
        self.user = principal if isinstance(principal, str) else ""

    def _forward(self, tag: int, wire: bytes) -> None:
        self.backend.send_raw(wire)
        self.pending.append(tag)
        self.idle.clear()

    async def _violation(self, exc: ProtocolError) -> None:
        self.log.warning("protocol violation, closing: %s", exc)
        await self._drain()
        self.client.send(encode_failure(exc.code, str(exc), self.version))
        self.close("protocol violation")

    async def _drain(self) -> None:
        """Wait until every forwarded request has had its responses relayed."""
        if self.pending:
            self.backend.flush()
            await self.idle.wait()

    async def _local_request(self, tag: int) -> bool:
        """Drain, then check ``tag`` against the exact state. True: go ahead and answer it."""
        await self._drain()
        action = self.machine.on_request(tag)  # raises InvalidTransition
        if action is Action.IGNORE:
            self.client.send(IGNORED_PAYLOAD)
            return False
        return True

    # -- requests the proxy answers ----------------------------------------------------------

    async def _route(self, payload: bytes) -> None:
        request = decode_request(payload, self.version)
        assert isinstance(request, Route)
        if not await self._local_request(Tag.ROUTE):
            return
        db = (request.db or self.env.default_db).lower()
        table = {"ttl": ROUTING_TTL_SECONDS, "db": db,
                 "servers": routing_servers(self.env.advertised_address)}
        self.client.send(encode_success({"rt": table}, self.packer))
        self.machine.on_outcome(Tag.ROUTE, Outcome.SUCCESS)

    async def _local_run(self, request: Run, classified: Classified) -> None:
        if not await self._local_request(Tag.RUN):
            return
        started = time.monotonic()
        if self.machine.in_transaction:
            # The backend holds the transaction; a local result cannot be part of it.
            self._local_failure(LOCAL_IN_TX, local_in_tx_message(classified.handler.name))
            return
        db_value = request.extra.get("db")
        db = db_value.lower() if isinstance(db_value, str) and db_value else self.env.default_db
        ctx = QueryContext(db=db, user=self.user, parameters=request.parameters,
                           advertised_address=self.env.advertised_address,
                           routing=self.routing)
        try:
            result = await classified.handler.run(classified.parsed, ctx)
        except BackendError as exc:
            self._local_failure(exc.code, exc.message)
            return
        except BoltError as exc:
            self._local_failure(exc.code, exc.message)
            return
        summary: dict[str, Any] = {"type": result.type, "db": db}
        if result.stats:
            summary["stats"] = result.stats
        self.local_stream = ResultStream(result.fields, result.rows, summary)
        self.client.send(encode_success(
            {"fields": result.fields, "t_first": int((time.monotonic() - started) * 1000)},
            self.packer))
        self.machine.on_outcome(Tag.RUN, Outcome.SUCCESS)

    def _local_failure(self, code: str, message: str) -> None:
        """FAILURE from the proxy: the client must RESET, which also resets the backend."""
        self.client.send(encode_failure(code, message, self.version))
        self.machine.on_outcome(Tag.RUN, Outcome.FAILURE)

    async def _local_stream_request(self, tag: int, payload: bytes) -> bool:
        stream = self.local_stream
        assert stream is not None
        if tag == Tag.RESET:
            # The backend is idle; RESET goes there too so both ends agree on READY.
            self.local_stream = None
            self._forward(tag, chunk(payload))
            return True
        request = decode_request(payload, self.version)
        if not await self._local_request(tag):
            return True
        assert isinstance(request, Pull | Discard)
        more = stream.page(request.n, send_records=tag == Tag.PULL, wire=self.client,
                           packer=self.packer)
        if not more:
            self.local_stream = None
        self.machine.on_outcome(tag, Outcome.HAS_MORE if more else Outcome.SUCCESS)
        return True

    # -- backend -> client ---------------------------------------------------------------

    def on_backend_data(self, data: bytes) -> None:
        if self.closing:
            return
        decoder = self.backend_decoder
        decoder.receive_data(data)
        parts = self.client.parts
        pending = self.pending
        record = Tag.RECORD
        try:
            item = decoder.next_framed()
            while item is not None:
                payload, wire = item
                if payload[1] == record:
                    parts.append(wire)
                elif not pending:
                    self.log.error("backend sent a summary nobody asked for; closing")
                    self.close("backend protocol error")
                    return
                else:
                    self._summary(pending.popleft(), payload, wire)
                item = decoder.next_framed()
        except ProtocolError as exc:
            self.log.error("backend broke the protocol: %s", exc)
            self.close("backend protocol error")
            return
        if not pending:
            self.idle.set()
        self.client.flush()

    def _summary(self, request_tag: int, payload: bytes, wire: bytes) -> None:
        tag = payload[1]
        metadata: dict[str, Any] | None = None
        if tag == Tag.FAILURE or (tag == Tag.SUCCESS and request_tag in _DECODE_SUMMARY_OF and (
                request_tag in _AUTH_TAGS or _HAS_MORE_TRUE in payload)):
            response = decode_response(payload, self.version)
            metadata = getattr(response, "metadata", None)
        self._mirror(request_tag, tag, metadata)
        if tag == Tag.FAILURE and metadata is not None:
            normalized = normalize_failure(neo4j_style_code(metadata), self.version)
            if normalized is not metadata:
                self.client.send(encode_failure_metadata(normalized, self.packer))
                return
        elif tag == Tag.SUCCESS and request_tag in (Tag.HELLO, Tag.LOGON) and metadata:
            rewritten = self._auth_success(request_tag, metadata)
            if rewritten is not None:
                self.client.send(encode_success(rewritten, self.packer))
                return
        self.client.send_raw(wire)

    def _mirror(self, request_tag: int, response_tag: int, metadata: dict[str, Any] | None) -> None:
        """Advance the mirrored state machine with one summary from the backend."""
        machine = self.machine
        if response_tag not in (Tag.SUCCESS, Tag.FAILURE, Tag.IGNORED):
            self.log.warning("backend answered 0x%02X with 0x%02X", request_tag, response_tag)
            return
        outcome = outcome_of(response_tag, metadata)
        before = machine.state
        if outcome is Outcome.SUCCESS:
            if request_tag == Tag.RUN and machine.in_transaction:
                self.tx_streams += 1
            elif request_tag in (Tag.PULL, Tag.DISCARD) and before is State.TX_STREAMING:
                self.tx_streams = max(0, self.tx_streams - 1)
                if self.tx_streams:
                    outcome = Outcome.HAS_MORE
        if machine.allowed(request_tag) is None:
            # The backend accepted something our table does not: it is the authority for
            # what it answers. Keep the state.
            self.log.debug("backend answered 0x%02X in state %s", request_tag, before.name)
            return
        try:
            machine.on_outcome(request_tag, outcome)
        except InvalidTransition as exc:
            self.log.warning("backend answer does not fit the state machine: %s", exc)
            machine.state = State.FAILED if outcome is Outcome.FAILURE else before
        if machine.state is not State.TX_STREAMING:
            self.tx_streams = 0

    def _auth_success(self, request_tag: int, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """HELLO/LOGON SUCCESS metadata to send instead of the backend's, or None to relay it."""
        changed = dict(metadata)
        if request_tag == Tag.HELLO:
            patches = metadata.get("patch_bolt")
            if isinstance(patches, list) and "utc" in patches:
                self.packer = Packer(self.version, utc_patch=True)
            hints = metadata.get("hints")
            # The backend's keep-alive NOOPs are not relayed one for one, so the client must
            # not enforce a receive timeout based on them.
            if isinstance(hints, dict) and "connection.recv_timeout_seconds" in hints:
                changed["hints"] = {k: v for k, v in hints.items()
                                    if k != "connection.recv_timeout_seconds"}
        if "advertised_address" in metadata:
            changed["advertised_address"] = self.env.advertised_address
        return changed if changed != metadata else None


def attach_client(transport: asyncio.Transport, session: RelaySession) -> None:
    """Hand the client socket to the session (after the handshake)."""
    transport.set_protocol(_ClientProtocol(session))

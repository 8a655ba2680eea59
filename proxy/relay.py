"""The relay session: a client's Bolt conversation forwarded to a Bolt backend.

Each client gets its own backend connection, negotiated at the version the client will be
given, so records and summaries can pass through as the backend's own bytes. The proxy reads
only what it must route on: the tag of every message, the query text of each RUN (the
classification seam), and the metadata of FAILUREs (translated when the backend's format is
not the one the client's version expects) and of the HELLO/LOGON SUCCESS.

Two tasks per connection. The client pump decodes requests and either forwards them
(pipelined: nothing waits for the backend) or answers them itself. The backend pump relays
responses and pops one pending request per summary. Before the proxy answers anything
itself it waits until every forwarded request has had its summary relayed, so responses
always reach the client in request order, and the proxy knows the backend's state exactly:
failed (everything until RESET is IGNORED) or in a transaction.

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

from bolt.chunking import chunk
from bolt.errors import BoltError, HandshakeError, InvalidTransition, ProtocolError
from bolt.handshake import client_proposal, parse_server_choice
from bolt.messages import (
    IGNORED_PAYLOAD,
    Discard,
    Hello,
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
)
from bolt.packstream import Packer
from bolt.state import REQUEST_TAGS, Action, Outcome, ServerStateMachine, State, outcome_of
from bolt.versions import Version
from proxy.backends.base import BackendError
from proxy.config import BackendURI
from proxy.results import ResultStream
from proxy.router import Classified, QueryContext, Router
from proxy.system import ROUTING_TTL_SECONDS, routing_servers
from proxy.wire import BoltWire, tune_socket

CONNECT_TIMEOUT = 10.0
LOCAL_IN_TX = "Neo.ClientError.Transaction.ForbiddenDueToTransactionType"


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


async def open_backend(uri: BackendURI, versions: list[Version]
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Version | None]:
    """Connect and handshake, offering ``versions``; the version is None if none was agreed."""
    context: ssl.SSLContext | None = None
    if uri.tls:
        context = ssl.create_default_context()
        if uri.raw.split(":", 1)[0].endswith("+ssc"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(uri.host, uri.port, ssl=context), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BackendUnreachable(f"cannot connect to {uri.raw}: {exc or 'timed out'}") from exc
    tune_socket(writer)
    try:
        writer.write(client_proposal(versions))
        reply = await asyncio.wait_for(reader.readexactly(4), CONNECT_TIMEOUT)
        version = parse_server_choice(reply)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, HandshakeError) as exc:
        writer.close()
        raise BackendUnreachable(f"Bolt handshake with {uri.raw} failed: {exc!r}") from exc
    if version is None:
        writer.close()
    return reader, writer, version


class RelaySession:
    def __init__(self, client: BoltWire, backend: BoltWire, version: Version, env: RelayEnv, *,
                 log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.client = client
        self.backend = backend
        self.version = version
        self.env = env
        self.log = log
        self.packer = Packer(version)
        self.pending: deque[int] = deque()  # tags of forwarded requests awaiting a summary
        self.idle = asyncio.Event()
        self.idle.set()
        # The client's state as the backend (and the proxy, for what it answers) sees it,
        # advanced as each summary comes back. Exact whenever nothing is pending.
        self.machine = ServerStateMachine(version)
        self.tx_streams = 0  # open results inside the current explicit transaction
        self.local_stream: ResultStream | None = None
        self.routing: dict[str, Any] | None = None

    async def serve(self) -> None:
        pump = asyncio.create_task(self._pump_backend())
        try:
            await self._pump_client()
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await self.client.flush()
            await self.backend.close()

    # -- client -> backend ---------------------------------------------------------------

    async def _pump_client(self) -> None:
        client = self.client
        while not client.closed and not self.backend.closed:
            try:
                batch = await client.read_framed()
            except ProtocolError as exc:
                await self._violation(exc)
                return
            if not batch:
                return
            for payload, wire in batch:
                if not await self._route_request(payload, wire):
                    await self.backend.flush()
                    return
            await self.backend.flush()
            await client.flush()

    async def _route_request(self, payload: bytes, wire: bytes) -> bool:
        """Forward one request or answer it; False when the connection must close."""
        if len(payload) < 2 or payload[0] & 0xF0 != 0xB0:
            return await self._violation(ProtocolError("a request must be a structure"))
        tag = payload[1]
        if tag not in REQUEST_TAGS:
            return await self._violation(ProtocolError(f"unknown message tag 0x{tag:02X}"))
        if tag == Tag.GOODBYE:
            return False
        if self.local_stream is not None and tag != Tag.TELEMETRY:
            await self._drain()
            return await self._local_stream_request(tag, payload)
        if not self.pending:
            # Nothing in flight: the mirrored state is exact, so check the request here.
            action = self.machine.allowed(tag)
            if action is None:
                return await self._violation(InvalidTransition(
                    f"message {Tag(tag).name} cannot be handled by a session in the "
                    f"{self.machine.state.name} state"))
            if action is Action.IGNORE:
                self.client.send(IGNORED_PAYLOAD)
                return True
        if tag == Tag.RUN:
            try:
                request = decode_request(payload, self.version)
            except ProtocolError as exc:
                return await self._violation(exc)
            assert isinstance(request, Run)
            classified = self.env.router.classify(request.query)
            if classified is not None:
                return await self._local_run(request, classified)
        elif tag == Tag.ROUTE:
            return await self._route(payload)
        elif tag == Tag.HELLO:
            try:
                hello = decode_request(payload, self.version)
            except ProtocolError as exc:
                return await self._violation(exc)
            assert isinstance(hello, Hello)
            routing = hello.extra.get("routing")
            self.routing = routing if isinstance(routing, dict) else None
        self.backend.send_raw(wire)
        self.pending.append(tag)
        self.idle.clear()
        return True

    async def _violation(self, exc: ProtocolError) -> bool:
        self.log.warning("protocol violation, closing: %s", exc)
        await self._drain()
        self.client.send(encode_failure(exc.code, str(exc), self.version))
        return False

    async def _drain(self) -> None:
        """Wait until every forwarded request has had its responses relayed."""
        if self.pending:
            await self.backend.flush()
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

    async def _route(self, payload: bytes) -> bool:
        try:
            request = decode_request(payload, self.version)
            assert isinstance(request, Route)
            if not await self._local_request(Tag.ROUTE):
                return True
        except ProtocolError as exc:
            return await self._violation(exc)
        db = (request.db or self.env.default_db).lower()
        table = {"ttl": ROUTING_TTL_SECONDS, "db": db,
                 "servers": routing_servers(self.env.advertised_address)}
        self.client.send(encode_success({"rt": table}, self.packer))
        self.machine.on_outcome(Tag.ROUTE, Outcome.SUCCESS)
        return True

    async def _local_run(self, request: Run, classified: Classified) -> bool:
        try:
            if not await self._local_request(Tag.RUN):
                return True
        except ProtocolError as exc:
            return await self._violation(exc)
        started = time.monotonic()
        if self.machine.in_transaction:
            # The backend holds the transaction; a local result cannot be part of it.
            self._local_failure(LOCAL_IN_TX, f"`{classified.handler.name}` queries are answered "
                                "by the proxy and run only in auto-commit transactions, not "
                                "inside BEGIN..COMMIT.")
            return True
        db_value = request.extra.get("db")
        db = db_value.lower() if isinstance(db_value, str) and db_value else self.env.default_db
        ctx = QueryContext(db=db, user="", parameters=request.parameters,
                           advertised_address=self.env.advertised_address,
                           routing=self.routing)
        try:
            result = await classified.handler.run(classified.parsed, ctx)
        except BackendError as exc:
            self._local_failure(exc.code, exc.message)
            return True
        except BoltError as exc:
            self._local_failure(exc.code, exc.message)
            return True
        summary: dict[str, Any] = {"type": result.type, "db": db}
        if result.stats:
            summary["stats"] = result.stats
        self.local_stream = ResultStream(result.fields, result.rows, summary)
        self.client.send(encode_success(
            {"fields": result.fields, "t_first": int((time.monotonic() - started) * 1000)},
            self.packer))
        self.machine.on_outcome(Tag.RUN, Outcome.SUCCESS)
        return True

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
            self.backend.send_raw(chunk(payload))
            self.pending.append(tag)
            self.idle.clear()
            return True
        try:
            request = decode_request(payload, self.version)
            if not await self._local_request(tag):
                return True
        except ProtocolError as exc:
            return await self._violation(exc)
        assert isinstance(request, Pull | Discard)
        more = stream.page(request.n, send_records=tag == Tag.PULL, wire=self.client,
                           packer=self.packer)
        if not more:
            self.local_stream = None
        self.machine.on_outcome(tag, Outcome.HAS_MORE if more else Outcome.SUCCESS)
        return True

    # -- backend -> client ---------------------------------------------------------------

    async def _pump_backend(self) -> None:
        client, backend, pending = self.client, self.backend, self.pending
        record = Tag.RECORD
        try:
            while True:
                try:
                    batch = await backend.read_framed()
                except ProtocolError as exc:
                    self.log.error("backend broke the protocol: %s", exc)
                    break
                if not batch:
                    break
                for payload, wire in batch:
                    if payload[1] == record:
                        client.send_raw(wire)
                        continue
                    if not pending:
                        self.log.error("backend sent a summary nobody asked for; closing")
                        return
                    self._summary(pending.popleft(), payload, wire)
                    if not pending:
                        self.idle.set()
                await client.flush()
        finally:
            if pending:
                self.log.warning("backend closed with %d request(s) unanswered", len(pending))
            backend.closed = True
            await client.close()
            self.idle.set()

    def _summary(self, request_tag: int, payload: bytes, wire: bytes) -> None:
        tag = payload[1]
        metadata: dict[str, Any] | None = None
        if tag == Tag.FAILURE or request_tag in (Tag.PULL, Tag.DISCARD, Tag.HELLO, Tag.LOGON):
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
            # The backend accepted something our table does not: the backend is the authority
            # for what it answers. Keep the state and say so once.
            self.log.debug("backend answered %s in state %s", request_tag, before.name)
            return
        machine.on_request(request_tag)
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

"""The relay session: a client's Bolt conversation forwarded to a Bolt backend.

Each client gets its own backend connection, negotiated at the version the client will be
given, so records and summaries pass through as the backend's own bytes. The proxy reads only
what it must route on: the tag of every message, the query text of each RUN (the
classification seam), and the summaries, which go through the ``ServerConnection`` so that it
moves the state (FAILUREs are rewritten when the backend's format or code does not fit the
client's version).

The hot path is the two protocol callbacks and no task: a request that needs nothing from the
proxy is written to the backend at once (pipelined: nothing waits for the backend), and a
backend's answers are passed on as they come. A request the proxy answers itself (ROUTE, a RUN
the router classifies as local, a PULL of a local result, BEGIN) waits for its turn: the
session's task takes it once every request before it has its answer, so responses reach the
client in request order and the state is exact when the proxy answers.

Transactions: BEGIN is answered here and held. It goes to the backend in front of the first
statement that must reach it, and the backend's answer to it is not relayed (if it failed, its
FAILURE answers that statement instead of the IGNORED that follows it). So a transaction of
stream clauses alone never touches the backend, and its COMMIT and ROLLBACK are answered here.
When local statements took qids in a transaction the backend numbers its results differently:
the RUN SUCCESS qids and the qids of PULL/DISCARD are translated.

GOODBYE is not forwarded: the backend socket is simply closed (FalkorDB's Bolt server
mishandles GOODBYE).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bolt.chunking import ChunkDecoder, chunk, payload_of
from bolt.connection import Received, ServerConnection
from bolt.errors import ProtocolError
from bolt.messages import (
    Begin,
    Discard,
    Hello,
    Logon,
    Pull,
    Run,
    Tag,
    decode_response,
    encode_request,
    peek_run_query,
    run_query_span,
)
from bolt.state import Action
from proxy.answers.router import Classified
from proxy.config import BackendURI
from proxy.metrics import PROXY
from proxy.net.backend import BackendLink
from proxy.session.core import (
    INPUT_HIGH_WATER,
    Output,
    Session,
    SessionEnv,
    Transaction,
    Waiting,
)

# RUN parameters (plus extra) up to this size cannot hold a value nested more than 64 deep
# (each level takes at least one byte), so they are forwarded without decoding.
_UNCHECKED_PARAMS = 64
_VERDICTS = 4096  # query texts whose classification is remembered
_RECORD = int(Tag.RECORD)
_SUCCESS = int(Tag.SUCCESS)
_IGNORED = int(Tag.IGNORED)
_FAILURE = int(Tag.FAILURE)
_RUN = int(Tag.RUN)
_PULL = int(Tag.PULL)
_DISCARD = int(Tag.DISCARD)
_TELEMETRY = int(Tag.TELEMETRY)


class _Mark:
    """What a backend summary is, when it is not simply the client's next answer."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SWALLOW = _Mark("SWALLOW")  # the answer to a held BEGIN: not the client's
HOLD = _Mark("HOLD")  # COMMIT's answer, kept until the transaction's stream clauses apply
AUTH = _Mark("AUTH")  # HELLO / LOGON SUCCESS, which may be rewritten
# An int mark: a RUN SUCCESS whose qid becomes that number (the client's numbering).


@dataclass
class RelayEnv(SessionEnv):
    backend: BackendURI = field(default_factory=lambda: BackendURI(kind="bolt"))
    # query text (UTF-8 bytes) -> forwarded as it is (no local handler answers it)
    verdicts: dict[bytes, bool] = field(default_factory=dict)


class RelaySession(Session):
    env: RelayEnv

    def __init__(
        self,
        transport: asyncio.Transport,
        link: BackendLink,
        conn: ServerConnection,
        env: RelayEnv,
        *,
        connection_id: str,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(transport, conn, env, connection_id=connection_id, log=log)
        self.backend = link.transport
        self.backend_out = Output(link.transport)
        self.decoder = ChunkDecoder(max(env.max_message_size, 64 << 20))
        self.verdicts = env.verdicts
        # One entry per request sent to the backend, in order: None for the client's own
        # request (the common case), else a mark.
        self.expect: deque[_Mark | int | None] = deque()
        self.held: bytes | None = None  # COMMIT's summary, waiting for the stream clauses
        self.begin_failure: bytes | None = None  # a held BEGIN's FAILURE
        self.backend_full = False  # the backend socket's buffer is over its high-water mark
        link.protocol.attach(self)

    # -- requests ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """The hot path: requests that need nothing from the proxy go to the backend as the
        client's own bytes; the first one that does, and all after it, take the general path
        (``handle``, in order)."""
        if self.closing:
            return
        self.last_read = time.monotonic()
        try:
            self._client_data(data)
        except Exception:
            self.crashed()

    def _client_data(self, data: bytes) -> None:
        conn = self.conn
        if self.task is not None:
            conn.receive_data(data)
            if conn.buffered > INPUT_HIGH_WATER:
                self.hold_input()
            return
        try:
            buffer, spans, whole = conn.split_requests(data)
        except ProtocolError as exc:
            self.violation = exc
            buffer, spans, whole = b"", [], False
        forwarded = 0
        if not self.backlog:
            exact = conn.unanswered == 0  # nothing in flight: the first request is checked
            verdicts = self.verdicts
            tx = self.tx
            claimed: list[int] = []
            for tag, start, end in spans:
                if exact and forwarded == 0 and conn.allowed(tag) is not Action.PROCESS:
                    break
                if tag == _RUN:
                    if (
                        tx is not None
                        or start + 4 + ((buffer[start] << 8) | buffer[start + 1]) != end
                    ):
                        break  # in a transaction, or in several chunks: the general path
                    try:
                        begin, stop = run_query_span(buffer, start + 2, end - 2)
                    except ProtocolError:
                        break
                    if end - 2 - stop > _UNCHECKED_PARAMS:
                        break  # parameters that may nest too deep: decoded on the general path
                    key = buffer[begin:stop]
                    verdict = verdicts.get(key)
                    if verdict is None:
                        verdict = self._verdict(key)
                    if not verdict:
                        break
                elif tag in (_PULL, _DISCARD, _TELEMETRY):
                    if (
                        buffer[start + 2] != 0xB1
                        or self.autocommit is not None
                        or (tx is not None and tx.mixed)
                    ):
                        break  # not a one-field structure, or a local result is open
                else:
                    break
                claimed.append(tag)
                forwarded += 1
        if forwarded:
            conn.claim_many(claimed)
            runs = claimed.count(_RUN)
            if runs:
                PROXY.forwarded.inc(runs)
            self.expect.extend([None] * forwarded)
            if whole and forwarded == len(spans):
                if (
                    not self.backend_out.parts
                    and self.violation is None
                    and (not self.backend.is_closing())
                ):
                    self.backend.write(buffer)  # the client's bytes, not copied: done
                    return
                self.backend_out.parts.append(buffer)
            else:
                self.backend_out.parts.extend(buffer[s:e] for _t, s, e in spans[:forwarded])
        for tag, start, end in spans[forwarded:]:
            self.backlog.append(Received(tag, payload_of(buffer, start, end), buffer[start:end]))
        if self.backlog or self.violation is not None:
            self._pump()
        self.flush()

    def handle(self, request: Received) -> Waiting:
        tag = request.tag
        if tag == Tag.RUN:
            return self._run(request)
        if tag == Tag.PULL or tag == Tag.DISCARD:
            tx = self.tx
            if self.autocommit is None and (tx is None or not tx.mixed):
                self._forward(request.wire, None)
                return None
            return self.at_turn(partial(self._pull, request))
        if tag == Tag.BEGIN:
            return self.at_turn(partial(self._begin, request))
        if tag == Tag.COMMIT:
            return self._commit(request)
        if tag == Tag.ROLLBACK:
            tx = self.tx
            if tx is not None and tx.backend_open:
                self.tx = None
                self._forward(request.wire, None)
                return None
            return self.at_turn(self._rollback_here)
        if tag == Tag.RESET:
            self.tx = None
            self.drop_results()
            self._forward(request.wire, None)
            return None
        if tag == Tag.ROUTE:
            return self.at_turn(partial(self.route, request))
        if tag == Tag.HELLO or tag == Tag.LOGON:
            self._note_auth(request)
            self._forward(request.wire, AUTH)
            return None
        if tag == Tag.GOODBYE:
            self.close("client said GOODBYE")
            return None
        self._forward(request.wire, None)  # TELEMETRY, LOGOFF
        return None

    def _forward(self, wire: bytes, mark: _Mark | int | None, *, checked: bool = False) -> None:
        """Send a request to the backend. When nothing is in flight the state is exact, so the
        request is checked here (IGNORED when FAILED, refused when it has no transition)."""
        conn = self.conn
        if not checked and conn.unanswered == 1 and conn.check() is Action.IGNORE:
            self.out.add(conn.ignored())
            return
        self.backend_out.parts.append(wire)
        self.expect.append(mark)

    def _run(self, request: Received) -> Waiting:
        payload = request.payload
        query, end = peek_run_query(payload)
        if len(payload) - end > _UNCHECKED_PARAMS:
            # Decoding refuses values nested deeper than the limit: the backend never sees one.
            self.conn.decode(request)
        classified = self.env.router.classify(query)
        if classified is not None:
            return self.at_turn(partial(self._run_local, request, classified))
        PROXY.forwarded.inc()
        tx = self.tx
        if tx is None:
            self._forward(request.wire, None)
            return None
        conn = self.conn
        if conn.unanswered == 1 and conn.check() is Action.IGNORE:
            self.out.add(conn.ignored())
            return None
        if tx.begin is not None:
            self.backend_out.parts.append(tx.begin)
            self.expect.append(SWALLOW)
            tx.begin = None
            tx.backend_open = True
        client_qid = tx.next_qid
        tx.backend_qids[client_qid] = tx.backend_next_qid
        mark = client_qid if client_qid != tx.backend_next_qid else None
        tx.next_qid += 1
        tx.backend_next_qid += 1
        tx.last_local = False
        self._forward(request.wire, mark, checked=True)
        return None

    def _verdict(self, query: bytes) -> bool:
        """Whether a RUN with this query text goes to the backend as it is (no local handler),
        remembered per text: applications send the same texts over and over."""
        try:
            verdict = self.env.router.classify(query.decode("utf-8")) is None
        except UnicodeDecodeError:
            verdict = False  # the general path says what is wrong with it
        verdicts = self.env.verdicts
        if len(verdicts) >= _VERDICTS:
            verdicts.clear()
        verdicts[query] = verdict
        return verdict

    def _run_local(self, request: Received, classified: Classified) -> Waiting:
        run = self.conn.decode(request)
        assert isinstance(run, Run)
        tx = self.tx
        db = tx.db if tx is not None else self.db_of(run.extra)
        return self.run_local(run, classified, db, time.monotonic())

    def _pull(self, request: Received) -> Waiting:
        """PULL/DISCARD when local results are open or the qids are translated."""
        message = self.conn.decode(request)
        assert isinstance(message, Pull | Discard)
        tx = self.tx
        if tx is None or not tx.explicit:
            return self.page_result(message, message.qid)
        qid = message.qid
        if qid == -1 and tx.last_local:
            qid = tx.next_qid - 1
        if qid != -1 and qid not in tx.backend_qids:
            return self.page_result(message, qid)  # a local result (or none: a clear FAILURE)
        backend_qid = tx.backend_qids[qid] if qid != -1 else -1
        wire = request.wire
        if backend_qid != message.qid:
            kind = Pull if isinstance(message, Pull) else Discard
            wire = chunk(encode_request(kind(message.n, backend_qid), self.conn.version))
        self._forward(wire, None, checked=True)
        return None

    def _begin(self, request: Received) -> None:
        begin = self.conn.decode(request)
        assert isinstance(begin, Begin)
        tx = self.begin_transaction(self.db_of(begin.extra), begin.tx_metadata)
        tx.begin = request.wire
        self.out.add(self.conn.success({}))

    def _commit(self, request: Received) -> Waiting:
        tx = self.tx
        if tx is not None and tx.backend_open:
            self.tx = None
            if tx.deferred:
                return self.at_turn(partial(self._commit_then_streams, request.wire, tx))
            self._forward(request.wire, None)
            return None
        return self.at_turn(self._commit_here)

    def _commit_here(self) -> Waiting:
        tx, self.tx = self.tx, None
        if tx is not None and tx.deferred:
            return self.commit_here(tx)
        self.out.add(self.conn.success(self.commit_metadata()))
        return None

    async def _commit_then_streams(self, wire: bytes, tx: Transaction) -> None:
        """COMMIT on the backend first; only if it committed do the stream clauses apply."""
        self._forward(wire, HOLD, checked=True)
        await self.turn()
        held, self.held = self.held, None
        if held is None:  # the backend went away
            return
        tag = held[3]  # a summary is one small chunk: size, marker, tag
        if tag == _SUCCESS:
            await self.apply_deferred(tx)  # a failure answers the COMMIT instead
        replacement = self.conn.relay_summary(tag, held, 0, len(held))
        self.out.add(held if replacement is None else replacement)

    def _rollback_here(self) -> None:
        self.tx = None
        self.out.add(self.conn.success({}))

    def _note_auth(self, request: Received) -> None:
        """Remember who the client says it is (the owner of streams it creates) and its routing
        context. The credentials themselves are not kept: the backend checks them."""
        message = self.conn.decode(request)
        token: dict[str, Any] = {}
        if isinstance(message, Hello):
            routing = message.extra.get("routing")
            self.routing = routing if isinstance(routing, dict) else None
            token = message.extra  # before 5.1 the auth token is in HELLO
        elif isinstance(message, Logon):
            token = message.auth
        principal = token.get("principal")
        self.user = principal if isinstance(principal, str) else ""

    # -- backend -> client ---------------------------------------------------------------------

    def on_backend_data(self, data: bytes) -> None:
        """Answers from the backend: records pass as they are; each summary answers the oldest
        forwarded request, through the connection (which moves the state)."""
        if self.closing:
            return
        try:
            self._backend_data(data)
        except Exception:
            self.crashed()

    def _backend_data(self, data: bytes) -> None:
        decoder = self.decoder
        try:
            decoder.receive_data(data)
            # Records get no span: they pass through without a look.
            buffer, spans = decoder.split(_RECORD)
        except ProtocolError as exc:
            self.log.error("backend broke the protocol: %s", exc)
            self.close("backend protocol error")
            return
        if decoder.end == decoder.begin:
            return  # no whole message yet
        expect = self.expect
        conn = self.conn
        edits: dict[int, bytes] | None = None  # span index -> what to send instead
        index = -1
        try:
            for tag, start, end in spans:
                index += 1
                if not expect:
                    raise ProtocolError("the backend sent a summary nobody asked for")
                mark = expect.popleft()
                if mark is None and self.begin_failure is None:
                    replacement = conn.relay_summary(tag, buffer, start, end)
                    if replacement is None:
                        continue
                else:
                    replacement = self._marked(mark, tag, buffer, start, end)
                if edits is None:
                    edits = {}
                edits[index] = replacement
        except ProtocolError as exc:
            self.log.error("backend broke the protocol: %s", exc)
            self.close("backend protocol error")
            return
        if conn.anomaly is not None:
            self.log.debug("backend answer outside the state table: %s", conn.anomaly)
            conn.anomaly = None
        if not expect and self._caught_up is not None:
            self.caught_up()
        parts = self.out.parts
        if edits is None:
            if decoder.whole:
                if not parts and not self.transport.is_closing():
                    self.transport.write(buffer)  # the backend's bytes, not copied: done
                    return
                parts.append(buffer)
            else:
                parts.append(buffer[decoder.begin : decoder.end])
        else:
            # The bytes between the changed summaries (records, NOOPs) go as they are.
            cursor = decoder.begin
            for index, replacement in edits.items():
                _tag, start, end = spans[index]
                parts.append(buffer[cursor:start])
                if replacement:
                    parts.append(replacement)
                cursor = end
            parts.append(buffer[cursor : decoder.end])
        self.out.flush()

    def _marked(
        self, mark: _Mark | int | None, tag: int, buffer: bytes, start: int, end: int
    ) -> bytes:
        """A summary that is not simply the client's next answer: its replacement (b"" to send
        nothing)."""
        conn = self.conn
        if mark is SWALLOW:
            if tag == _FAILURE:
                self.begin_failure = buffer[start:end]
            return b""
        if self.begin_failure is not None:
            # The statement behind a failed BEGIN was IGNORED: it fails with BEGIN's FAILURE.
            if tag == _IGNORED:
                buffer, start, end = self.begin_failure, 0, len(self.begin_failure)
                tag = _FAILURE
            self.begin_failure = None
        if mark is HOLD:
            self.held = buffer[start:end]
            return b""
        if mark is AUTH and tag == _SUCCESS:
            return self._auth_success(buffer, start, end)
        if isinstance(mark, int) and tag == _SUCCESS:
            response = decode_response(payload_of(buffer, start, end), conn.version)
            metadata = dict(getattr(response, "metadata", {}))
            metadata["qid"] = mark
            return conn.success(metadata)
        replacement = conn.relay_summary(tag, buffer, start, end)
        return buffer[start:end] if replacement is None else replacement

    def _auth_success(self, buffer: bytes, start: int, end: int) -> bytes:
        """HELLO/LOGON SUCCESS, rewritten where the proxy must (else the backend's bytes)."""
        conn = self.conn
        response = decode_response(payload_of(buffer, start, end), conn.version)
        metadata: dict[str, Any] = getattr(response, "metadata", {})
        changed = dict(metadata)
        if conn.head == Tag.HELLO:
            patches = metadata.get("patch_bolt")
            if isinstance(patches, list) and "utc" in patches:
                conn.use_utc_patch()
            hints = metadata.get("hints")
            # The proxy sends no keep-alive NOOPs while it answers something itself (a stream
            # clause can take seconds), so the client must not enforce a receive timeout.
            if isinstance(hints, dict) and "connection.recv_timeout_seconds" in hints:
                changed["hints"] = {
                    k: v for k, v in hints.items() if k != "connection.recv_timeout_seconds"
                }
        if "advertised_address" in metadata:
            changed["advertised_address"] = self.env.advertised_address
        if changed == metadata:
            replacement = conn.relay_summary(_SUCCESS, buffer, start, end)
            return buffer[start:end] if replacement is None else replacement
        return conn.success(changed)

    def on_backend_lost(self, exc: Exception | None) -> None:
        if not self.closing and self.expect:
            self.log.warning("backend closed with %d request(s) unanswered", len(self.expect))
        self.close("backend connection closed")

    def on_backend_blocked(self, blocked: bool) -> None:
        # The backend's socket is full: stop reading the client that fills it.
        self.backend_full = blocked
        if blocked:
            self.transport.pause_reading()
        elif self.may_read():
            self.transport.resume_reading()

    # -- shell hooks ---------------------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self.expect)

    def may_read(self) -> bool:
        # The client's own socket being full stops the backend instead (``feed``).
        return not self.input_held and not self.backend_full

    def feed(self, on: bool) -> None:
        # The client's socket is full: stop reading the backend that fills it.
        if on:
            self.backend.resume_reading()
        else:
            self.backend.pause_reading()

    def flush(self) -> None:
        self.backend_out.flush()
        self.out.flush()

    def on_close(self) -> None:
        self.backend_out.parts.clear()
        self.backend.close()  # never forward GOODBYE: just hang up

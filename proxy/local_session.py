"""The Bolt server session for query backends (FalkorDB): the proxy is the database here.

Requests are taken strictly in order. Each one is checked against the server state machine
(``bolt.state``), handled, and its outcome fed back to the machine, which alone decides the
next state. Results are fetched whole from the backend (FalkorDB returns them whole anyway)
and then paged out by PULL ``n``; within an explicit transaction each RUN gets a ``qid``
(0, 1, 2, ...) and stays pull-able until exhausted.

FalkorDB has no multi-statement transactions: statements inside BEGIN..COMMIT run when they
arrive. COMMIT therefore always succeeds, and ROLLBACK after a write fails and says the
writes were already applied rather than pretending to undo them.

pymgclient opens transactions by sending the query texts ``BEGIN``/``COMMIT``/``ROLLBACK``
as auto-commit RUNs; those are mapped to the same transaction bookkeeping.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bolt.errors import BoltError, ClientError, ProtocolError
from bolt.messages import (
    IGNORED_PAYLOAD,
    Begin,
    Commit,
    Discard,
    Goodbye,
    Hello,
    Logoff,
    Logon,
    Pull,
    Request,
    Reset,
    Rollback,
    Route,
    Run,
    Tag,
    decode_request,
    encode_failure,
    encode_success,
)
from bolt.packstream import Packer
from bolt.state import Action, Outcome, ServerStateMachine
from bolt.versions import Version, has_logon
from proxy import SERVER_AGENT
from proxy.auth import Authenticator
from proxy.backends.base import BackendError, QueryBackend, QueryResult
from proxy.results import ResultStream
from proxy.router import LOCAL_IN_TX, QueryContext, Router, local_in_tx_message
from proxy.system import ROUTING_TTL_SECONDS, routing_servers
from proxy.wire import BoltWire

ROLLBACK_AFTER_WRITE = "Neo.DatabaseError.Transaction.TransactionRollbackFailed"
_TX_TEXT = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK)(?:\s+TRANSACTION)?\s*;?\s*$", re.IGNORECASE)
_bookmarks = itertools.count(1)


@dataclass
class Transaction:
    db: str
    explicit: bool  # a Bolt BEGIN (False: pymgclient's BEGIN query text)
    wrote: bool = False
    next_qid: int = 0
    streams: dict[int, ResultStream] = field(default_factory=dict)


@dataclass
class SessionEnv:
    """What every local session shares: set up once by the server."""

    backend: QueryBackend
    router: Router
    authenticator: Authenticator
    advertised_address: str
    default_db: str = "neo4j"


class LocalSession:
    def __init__(self, wire: BoltWire, version: Version, env: SessionEnv, *, connection_id: str,
                 manifest_used: bool, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.wire = wire
        self.version = version
        self.env = env
        self.connection_id = connection_id
        self.manifest_used = manifest_used
        self.log = log
        self.machine = ServerStateMachine(version)
        self.packer = Packer(version)
        self.utc_patch = False
        self.user = ""
        self.routing: dict[str, Any] | None = None
        self.tx: Transaction | None = None
        self.autocommit: ResultStream | None = None
        self._handlers: dict[int, Callable[[Any], Awaitable[Outcome]]] = {
            Tag.HELLO: self._hello, Tag.LOGON: self._logon, Tag.LOGOFF: self._logoff,
            Tag.TELEMETRY: self._ack, Tag.ROUTE: self._route, Tag.RUN: self._run,
            Tag.PULL: self._pull, Tag.DISCARD: self._discard, Tag.BEGIN: self._begin,
            Tag.COMMIT: self._commit, Tag.ROLLBACK: self._rollback, Tag.RESET: self._reset,
        }

    async def serve(self) -> None:
        """Answer requests until the client leaves, says GOODBYE, or breaks the protocol."""
        while not self.wire.closed:
            try:
                batch = await self.wire.read_framed()
            except ProtocolError as exc:
                self.log.warning("closing: %s", exc)
                self.wire.send(encode_failure(exc.code, str(exc), self.version))
                break
            if not batch:
                break
            for payload, _wire in batch:
                if not await self.handle(payload):
                    await self.wire.flush()
                    return
            await self.wire.flush()

    async def handle(self, payload: bytes) -> bool:
        """Handle one request; False when the connection must close."""
        try:
            request = decode_request(payload, self.version)
            if isinstance(request, Goodbye):
                return False
            action = self.machine.on_request(request.tag)
        except ProtocolError as exc:
            self.log.warning("protocol violation, closing: %s", exc)
            self.wire.send(encode_failure(exc.code, str(exc), self.version))
            return False
        if action is Action.IGNORE:
            self.wire.send(IGNORED_PAYLOAD)
            self.machine.on_outcome(request.tag, Outcome.IGNORED)
            return True
        try:
            outcome = await self._handlers[request.tag](request)
        except (BoltError, BackendError) as exc:
            code = exc.code
            message = exc.message if isinstance(exc, BackendError) else str(exc)
            self.wire.send(encode_failure(code, message, self.version))
            self.machine.on_outcome(request.tag, Outcome.FAILURE)
            self._drop_streams()
            close = getattr(exc, "close_connection", False) or request.tag in (
                Tag.HELLO, Tag.LOGON)
            if close:
                self.log.info("closing after FAILURE %s", code)
            return not close
        self.machine.on_outcome(request.tag, outcome)
        return True

    # -- connection and authentication ---------------------------------------------------

    async def _hello(self, request: Hello) -> Outcome:
        extra = request.extra
        routing = extra.get("routing")
        self.routing = routing if isinstance(routing, dict) else None
        metadata: dict[str, Any] = {"server": SERVER_AGENT, "connection_id": self.connection_id,
                                    "hints": {}}
        if self.version >= Version(4, 3) and self.version < Version(5, 0):
            patches = extra.get("patch_bolt")
            if isinstance(patches, list) and "utc" in patches:
                self.utc_patch = True
                self.packer = Packer(self.version, utc_patch=True)
                metadata["patch_bolt"] = ["utc"]
        if self.manifest_used:
            metadata["protocol_version"] = str(self.version)
        if not has_logon(self.version):
            self.user = self.env.authenticator.authenticate(extra)
        self.wire.send(encode_success(metadata, self.packer))
        return Outcome.SUCCESS

    async def _logon(self, request: Logon) -> Outcome:
        self.user = self.env.authenticator.authenticate(request.auth)
        self.wire.send(encode_success({}, self.packer))
        return Outcome.SUCCESS

    async def _logoff(self, request: Logoff) -> Outcome:
        self.user = ""
        return await self._ack(request)

    async def _ack(self, request: Request) -> Outcome:
        self.wire.send(encode_success({}, self.packer))
        return Outcome.SUCCESS

    async def _route(self, request: Route) -> Outcome:
        db = (request.db or self.env.default_db).lower()
        table = {"ttl": ROUTING_TTL_SECONDS, "db": db,
                 "servers": routing_servers(self.env.advertised_address)}
        self.wire.send(encode_success({"rt": table}, self.packer))
        return Outcome.SUCCESS

    async def _reset(self, request: Reset) -> Outcome:
        self._drop_streams()
        self.tx = None
        return await self._ack(request)

    def _drop_streams(self) -> None:
        self.autocommit = None
        if self.tx is not None:
            self.tx.streams.clear()

    # -- transactions ----------------------------------------------------------------------

    def _db_of(self, extra: dict[str, Any]) -> str:
        db = extra.get("db")
        return db.lower() if isinstance(db, str) and db else self.env.default_db

    async def _begin(self, request: Begin) -> Outcome:
        self.tx = Transaction(db=self._db_of(request.extra), explicit=True)
        metadata: dict[str, Any] = {}
        if self.version >= Version(5, 8):
            metadata["db"] = self.tx.db
        self.wire.send(encode_success(metadata, self.packer))
        return Outcome.SUCCESS

    async def _commit(self, request: Commit) -> Outcome:
        self.tx = None
        self.wire.send(encode_success({"bookmark": _bookmark()}, self.packer))
        return Outcome.SUCCESS

    async def _rollback(self, request: Rollback) -> Outcome:
        tx, self.tx = self.tx, None
        self._check_rollback(tx)
        return await self._ack(request)

    @staticmethod
    def _check_rollback(tx: Transaction | None) -> None:
        if tx is not None and tx.wrote:
            raise ClientError(ROLLBACK_AFTER_WRITE,
                              "Cannot roll back: the backing FalkorDB has no multi-statement "
                              "transactions, and the writes of this transaction were already "
                              "applied when each statement ran.")

    # -- queries ------------------------------------------------------------------------

    async def _run(self, request: Run) -> Outcome:
        started = time.monotonic()
        in_tx = self.tx is not None and self.tx.explicit
        db = self.tx.db if in_tx and self.tx is not None else self._db_of(request.extra)
        text_control = _TX_TEXT.match(request.query)
        if text_control is not None and not in_tx:
            result = self._text_transaction(text_control.group(1).upper(), db)
        else:
            result = await self._execute(request.query, request.parameters, db)
        if self.tx is not None and result.type in ("w", "rw", "s"):
            self.tx.wrote = True
        summary: dict[str, Any] = {"type": result.type, "db": db}
        if result.stats:
            summary["stats"] = result.stats
        if result.plan is not None:
            summary["plan"] = result.plan
        stream = ResultStream(result.fields, result.rows, summary)
        metadata: dict[str, Any] = {"fields": result.fields,
                                    "t_first": int((time.monotonic() - started) * 1000)}
        if in_tx and self.tx is not None:
            qid = self.tx.next_qid
            self.tx.next_qid += 1
            self.tx.streams[qid] = stream
            metadata["qid"] = qid
        else:
            if self.tx is None:  # not inside pymgclient's query-text transaction
                summary["bookmark"] = _bookmark()
            self.autocommit = stream
        if self.version >= Version(5, 8) and "db" not in request.extra:
            metadata["db"] = db
        self.wire.send(encode_success(metadata, self.packer))
        return Outcome.SUCCESS

    def _text_transaction(self, word: str, db: str) -> QueryResult:
        if word == "BEGIN":
            if self.tx is not None:
                raise ClientError("Neo.ClientError.Transaction.TransactionStartFailed",
                                  "A transaction is already open on this connection.")
            self.tx = Transaction(db=db, explicit=False)
        else:
            tx, self.tx = self.tx, None
            if word == "ROLLBACK":
                self._check_rollback(tx)
        return QueryResult([], [], type="r")

    async def _execute(self, query: str, parameters: dict[str, Any], db: str) -> QueryResult:
        classified = self.env.router.classify(query)
        if classified is None:
            return await self.env.backend.run(db, query, parameters)
        if getattr(classified.handler, "autocommit_only", False) and self.tx is not None:
            raise ClientError(LOCAL_IN_TX, local_in_tx_message(classified.handler.name))
        ctx = QueryContext(db=db, user=self.user, parameters=parameters,
                           advertised_address=self.env.advertised_address,
                           backend=self.env.backend, routing=self.routing)
        self.log.debug("answering locally: %s", classified.handler.name)
        return await classified.handler.run(classified.parsed, ctx)

    def _stream_for(self, qid: int) -> tuple[ResultStream, int | None]:
        if self.tx is not None and self.tx.explicit:
            streams = self.tx.streams
            if qid == -1 and streams:
                qid = max(streams)
            stream = streams.get(qid)
            if stream is None:
                raise ClientError("Neo.ClientError.Request.Invalid",
                                  f"No open result with qid {qid} in this transaction.")
            return stream, qid
        if self.autocommit is None:
            raise ClientError("Neo.ClientError.Request.Invalid", "No open result to pull from.")
        return self.autocommit, None

    async def _pull(self, request: Pull) -> Outcome:
        return self._page(request.n, request.qid, send_records=True)

    async def _discard(self, request: Discard) -> Outcome:
        return self._page(request.n, request.qid, send_records=False)

    def _page(self, n: int, qid: int, *, send_records: bool) -> Outcome:
        stream, key = self._stream_for(qid)
        if stream.page(n, send_records=send_records, wire=self.wire, packer=self.packer):
            return Outcome.HAS_MORE
        if key is None:
            self.autocommit = None
            return Outcome.SUCCESS
        assert self.tx is not None
        del self.tx.streams[key]
        return Outcome.HAS_MORE if self.tx.streams else Outcome.SUCCESS


def _bookmark() -> str:
    return f"boltstream:{next(_bookmarks)}"

"""What both sessions share: one I/O model, one output buffer, one backpressure rule, and the
answers the proxy gives itself.

A session is a thin shell around a ``bolt.connection.ServerConnection``, which owns the protocol:
framing, the state machine and the count of open results. The two shells differ only in who
answers a query: ``RelaySession`` forwards to a Bolt server, ``LocalSession`` runs it on a query
backend (FalkorDB). Everything else is here, once.

I/O model
---------
A session is the asyncio protocol of its client socket: callbacks, no reader task.
``data_received`` feeds the connection and answers requests synchronously for as long as it can.
The first request that has to wait (a backend query, a stream clause on the engine, a local
answer that must wait for the backend's answers to earlier requests) starts one task, which
takes that request and every request after it, in order, and ends when none is left. Responses
therefore go out in request order, and the common case costs no task switch.

Output
------
One ``Output`` per socket: whatever a batch of requests produces is written in one call.

Backpressure (one rule)
-----------------------
When a socket's write buffer passes its high-water mark (``pause_writing``), whatever feeds it
stops until it drains (``resume_writing``). What feeds the client socket is the session itself
(the task waits before taking the next request, and the client socket is no longer read) and, in
a relay, the backend socket (no longer read); what feeds a relay's backend socket is the client
socket (``RelaySession``). The client socket can be stopped for more than one reason at a time
(its requests piling up while the task works, and a full socket it feeds): it is read again only
when the last of them ends (``may_read``).

Answers the proxy gives itself
------------------------------
ROUTE and the queries the router classifies as local (system queries, stream clauses, the
routing procedures, SHOW TRANSACTIONS) are answered here, in their turn: once every request
before them has been answered. Their results are paged out by PULL/DISCARD here too. Errors
become FAILUREs from the error's own ``failure(version)`` (``ServerConnection.failure``).

Transactions and stream clauses
-------------------------------
The session answers BEGIN itself and keeps a ``Transaction``: its database, the results of its
local statements (by qid), and the stream clauses that wait for COMMIT
(``proxy.answers.streams``). A relay opens the backend's transaction only with the first
statement that must reach it, so a transaction of stream clauses alone never touches the
backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bolt.connection import Received, ServerConnection
from bolt.errors import BoltError, ClientError, ProtocolError
from bolt.messages import Discard, Pull, Route, Run
from bolt.state import Action, State
from bolt.status import REQUEST_INVALID, TRANSACTION_TERMINATED
from bolt.versions import Version
from proxy.answers.router import Classified, QueryContext, Router
from proxy.answers.streams import deferred_until_commit, failed_at_commit
from proxy.answers.system import ROUTING_TTL_SECONDS, routing_servers
from proxy.backends.base import QueryBackend, QueryResult
from proxy.metrics import PROXY
from proxy.net.limits import Watch
from proxy.session.registry import Activity, Registry
from proxy.session.results import SLICE, ResultStream

V5_8 = Version(5, 8)
# Bytes of requests waiting to be taken before the client stops being read (while the task
# works on one); the decoder's own limit still bounds a single message.
INPUT_HIGH_WATER = 1 << 20

_NOT_AUTHENTICATED = (State.NEGOTIATION, State.AUTHENTICATION, State.DEFUNCT)

Waiting = Awaitable[None] | None  # what a request handler returns: None when it is answered


class Output:
    """Outgoing bytes for one socket, written in one call per batch."""

    __slots__ = ("parts", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def add(self, data: bytes) -> None:
        self.parts.append(data)

    def flush(self) -> None:
        parts = self.parts
        if parts:
            data = b"".join(parts) if len(parts) > 1 else parts[0]
            parts.clear()
            if not self.transport.is_closing():
                self.transport.write(data)


@dataclass
class SessionEnv:
    """What every session of one server shares."""

    router: Router
    advertised_address: str
    max_message_size: int
    registry: Registry = field(default_factory=Registry)
    default_db: str = "neo4j"


@dataclass
class Deferred:
    """A stream clause waiting for COMMIT."""

    classified: Classified
    ctx: QueryContext


@dataclass
class Transaction:
    """An explicit transaction as the proxy sees it."""

    db: str
    activity: Activity
    explicit: bool = True  # False: BEGIN sent as query text (pymgclient), FalkorDB only
    next_qid: int = 0  # the qid the client's next RUN gets
    streams: dict[int, ResultStream] = field(default_factory=dict)  # local results by qid
    last_local: bool = False  # the latest RUN was answered here (PULL qid -1 means it)
    deferred: list[Deferred] = field(default_factory=list)
    # Relay: the client's BEGIN, held until a statement must reach the backend.
    begin: bytes | None = None
    backend_open: bool = False
    mixed: bool = False  # a local result took a qid: the backend numbers its own differently
    backend_qids: dict[int, int] = field(default_factory=dict)  # client qid -> backend qid
    backend_next_qid: int = 0
    # FalkorDB: a statement wrote (so ROLLBACK cannot undo it)
    wrote: bool = False


class Session(asyncio.Protocol):
    """The shell shared by the relay and the local session. Subclasses implement ``handle``."""

    def __init__(
        self,
        transport: asyncio.Transport,
        conn: ServerConnection,
        env: SessionEnv,
        *,
        connection_id: str,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.env = env
        self.connection_id = connection_id
        self.log = log
        peer = transport.get_extra_info("peername")
        self.client_address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.out = Output(transport)
        self.user = ""
        self.routing: dict[str, Any] | None = None
        self.tx: Transaction | None = None
        self.autocommit: ResultStream | None = None  # a local auto-commit result being paged
        self.current: Activity | None = None  # the auto-commit query running, if tracked
        self.query_backend: QueryBackend | None = None  # what local answers may ask (FalkorDB)
        self.task: asyncio.Task[None] | None = None
        self.first_waiting: Awaitable[None] | None = None  # the task's, before its first step
        # Requests split off the client's bytes but not yet handed out (a relay takes the ones
        # it forwards as they are; the rest wait here, in order).
        self.backlog: deque[Received] = deque()
        self.violation: ProtocolError | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.input_held = False
        # Resolved when no forwarded request awaits its answer any more (made on demand: the
        # hot path never touches it).
        self._caught_up: asyncio.Future[None] | None = None
        self.closing = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # For the connection's watch (proxy.net.limits): when the client last sent something,
        # and what to tell when this session ends.
        self.last_read = time.monotonic()
        self.watch: Watch | None = None
        env.registry.add(self)

    async def wait_closed(self) -> None:
        await self.finished

    # -- the subclass's part ---------------------------------------------------------------

    def handle(self, request: Received) -> Waiting:
        """Answer ``request`` (or forward it). Return None when done, or an awaitable that the
        session's task awaits before taking the next request. Raise a ``BoltError`` to answer
        with its FAILURE (the request must then be the oldest unanswered one)."""
        raise NotImplementedError

    def feed(self, on: bool) -> None:
        """Stop (False) or resume (True) whatever feeds the client socket, besides the task."""
        if not on:
            self.transport.pause_reading()
        elif self.may_read():
            self.transport.resume_reading()

    def may_read(self) -> bool:
        """Whether nothing that stops reading the client holds any more: each reason to stop
        resumes reading only when it was the last one."""
        return not self.input_held and self.writable.is_set()

    def on_close(self) -> None:
        """Release what the subclass holds (a backend socket)."""

    def flush(self) -> None:
        """Write what the last batch of requests produced."""
        self.out.flush()

    def autocommit_bookmark(self) -> str | None:
        """The bookmark of an auto-commit result answered here, if the backend has bookmarks."""
        return None

    def commit_metadata(self) -> dict[str, Any]:
        """COMMIT SUCCESS metadata when the proxy commits (no backend transaction)."""
        return {}

    # -- asyncio protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_read = time.monotonic()
        self.conn.receive_data(data)
        if self.task is None:
            try:
                self._pump()
                self.flush()
            except Exception:
                self.crashed()
        elif self.conn.buffered > INPUT_HIGH_WATER:
            self.hold_input()

    def hold_input(self) -> None:
        """Requests pile up while the task works: stop reading the client until it is done
        (the one backpressure rule, for the requests the session itself consumes)."""
        if not self.input_held:
            self.input_held = True
            self.transport.pause_reading()

    def release_input(self) -> None:
        if self.input_held:
            self.input_held = False
            if self.may_read():
                self.transport.resume_reading()

    def crashed(self) -> None:
        """A bug met while answering closes this connection only, with one log line (call it
        from an ``except Exception`` block)."""
        self.log.exception("session failed; closing this connection only")
        self.close("internal error")

    def eof_received(self) -> bool | None:
        self.close("client closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("client connection lost")

    def pause_writing(self) -> None:
        self.writable.clear()
        self.feed(False)
        if self.watch is not None:
            self.watch.write_blocked()  # a client that stops reading for good is closed

    def resume_writing(self) -> None:
        self.writable.set()
        self.feed(True)
        if self.watch is not None:
            self.watch.write_unblocked()

    # -- the request loop --------------------------------------------------------------------

    def _pump(self) -> None:
        """Take requests synchronously until one has to wait; that one starts the task."""
        while not self.closing:
            if not self.writable.is_set():
                # The client is not reading its answers: the task waits for it before going on.
                self._start_task(self._drained())
                return
            try:
                request = self.next_request()
                if request is None:
                    return
                waiting = self.handle(request)
            except ProtocolError as exc:
                waiting = self._violation(exc)
            except BoltError as exc:
                self.fail(exc)
                continue
            if waiting is not None:
                self._start_task(waiting)
                return

    def _start_task(self, waiting: Awaitable[None]) -> None:
        # Until the task takes its first step, ``waiting`` is only held here: a close before
        # that step cancels a task whose coroutine never ran, and ``close`` then closes
        # ``waiting`` itself (else it would be finalised as a coroutine never awaited).
        self.first_waiting = waiting
        self.task = asyncio.get_running_loop().create_task(self._serve(waiting))

    async def _serve(self, waiting: Awaitable[None]) -> None:
        self.first_waiting = None
        try:
            await self._settle(waiting)
            while not self.closing:
                self.flush()
                if not self.writable.is_set():
                    await self.writable.wait()
                try:
                    request = self.next_request()
                    if request is None:
                        break
                    pending = self.handle(request)
                except ProtocolError as exc:
                    pending = self._violation(exc)
                except BoltError as exc:
                    self.fail(exc)
                    continue
                if pending is not None:
                    await self._settle(pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.crashed()
        finally:
            self.task = None
            self.release_input()
            self.flush()

    async def _drained(self) -> None:
        await self.writable.wait()

    def next_request(self) -> Received | None:
        if self.backlog:
            return self.conn.claim_request(self.backlog.popleft())
        if self.violation is not None:  # found while splitting; the requests before it are done
            violation, self.violation = self.violation, None
            raise violation
        return self.conn.next_request()

    async def _settle(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
        except ProtocolError as exc:
            await self._violation(exc)
        except BoltError as exc:
            self.fail(exc)

    def busy(self) -> bool:
        """True while forwarded requests await their answers (a relay's)."""
        return False

    async def turn(self) -> None:
        """Wait until every forwarded request has been answered."""
        while self.busy() and not self.closing:
            self.flush()
            self._caught_up = asyncio.get_running_loop().create_future()
            await self._caught_up

    def caught_up(self) -> None:
        """No forwarded request is waiting any more: wake ``turn``."""
        waiter, self._caught_up = self._caught_up, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _violation(self, exc: ProtocolError) -> None:
        self.log.warning("protocol violation, closing: %s", exc)
        await self.turn()
        if not self.closing:
            self.out.add(self.conn.violation(exc))
        self.close("protocol violation")

    def fail(self, exc: BoltError) -> None:
        """Answer the oldest unanswered request with ``exc``'s FAILURE."""
        PROXY.failure(exc.code)
        self.out.add(self.conn.failure(exc))
        self.drop_results()
        if self.tx is not None:
            self.tx.deferred.clear()  # the transaction failed: its stream clauses never apply
        if self.current is not None and self.tx is None:
            self.current = None
        if exc.close_connection:
            self.log.info("closing after FAILURE %s", exc.code)
            self.close("failure that ends the connection")

    def at_turn(self, answer: Callable[[], Waiting]) -> Waiting:
        """Answer the request just taken with ``answer`` once every request before it has been
        answered, checking it against the state it is answered in (IGNORED when FAILED)."""
        if self.busy():
            return self._after_turn(answer)
        return self._checked(answer)

    async def _after_turn(self, answer: Callable[[], Waiting]) -> None:
        await self.turn()
        waiting = self._checked(answer)
        if waiting is not None:
            await waiting

    def _checked(self, answer: Callable[[], Waiting]) -> Waiting:
        if self.conn.check() is Action.IGNORE:  # raises InvalidTransition
            self.out.add(self.conn.ignored())
            return None
        return answer()

    # -- lifecycle ---------------------------------------------------------------------------

    def authenticated(self) -> bool:
        """Past HELLO (and LOGON on 5.1+): the connection's watch then applies the idle limit."""
        return self.conn.state not in _NOT_AUTHENTICATED

    def in_flight(self) -> bool:
        """A request awaits its answer (the idle limit does not apply)."""
        return self.conn.unanswered > 0 or self.task is not None or self.busy()

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        if self.watch is not None:
            self.watch.closed()
        self.log.debug("closing: %s", reason)
        self.out.flush()
        self.transport.close()
        self.on_close()
        self.caught_up()
        self.writable.set()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            unstarted, self.first_waiting = self.first_waiting, None
            if asyncio.iscoroutine(unstarted):
                unstarted.close()  # the task never ran: nothing else will close it
        self.env.registry.remove(self)
        self.drop_results()  # a large result the client never took goes now, not at GC time
        if not self.finished.done():
            self.finished.set_result(None)

    # -- what runs here (SHOW / TERMINATE TRANSACTIONS) ------------------------------------

    def activity(self) -> Activity | None:
        if self.tx is not None:
            return self.tx.activity
        return self.current

    def terminate(self, transaction_id: str) -> str:
        activity = self.activity()
        if activity is None or activity.transaction_id != transaction_id:
            return "Transaction not found."
        activity.terminated = "Terminated by user"
        if self.tx is not None and self.tx.activity is activity:
            self.tx.deferred.clear()
        self.log.info("transaction %s terminated", transaction_id)
        return "Transaction terminated."

    def check_terminated(self) -> None:
        """Refuse to go on with a transaction TERMINATE TRANSACTION ended."""
        activity = self.activity()
        if activity is not None and activity.terminated is not None:
            self.tx = None
            self.current = None
            self.drop_results()
            raise ClientError(
                TRANSACTION_TERMINATED,
                "The transaction has been terminated (TERMINATE TRANSACTION). "
                "Retry your operation in a new transaction.",
            )

    # -- answers the proxy gives itself -----------------------------------------------------

    def db_of(self, extra: dict[str, Any]) -> str:
        db = extra.get("db")
        return db.lower() if isinstance(db, str) and db else self.env.default_db

    def context(self, db: str, parameters: dict[str, Any]) -> QueryContext:
        return QueryContext(
            db=db,
            user=self.user,
            parameters=parameters,
            advertised_address=self.env.advertised_address,
            backend=self.query_backend,
            routing=self.routing,
            registry=self.env.registry,
            connection_id=self.connection_id,
        )

    def route(self, request: Received) -> None:
        """ROUTE: a routing table that names the proxy, so neo4j:// clients stay with it."""
        route = self.conn.decode(request)
        assert isinstance(route, Route)
        db = (route.db or self.env.default_db).lower()
        table = {
            "ttl": ROUTING_TTL_SECONDS,
            "db": db,
            "servers": routing_servers(self.env.advertised_address),
        }
        self.out.add(self.conn.success({"rt": table}))

    def begin_transaction(
        self, db: str, metadata: dict[str, Any], *, explicit: bool = True
    ) -> Transaction:
        activity = self.env.registry.new_activity(db, explicit=explicit, metadata=metadata)
        self.tx = Transaction(db=db, activity=activity, explicit=explicit)
        self.current = None
        return self.tx

    def run_local(self, run: Run, classified: Classified, db: str, started: float) -> Waiting:
        PROXY.local.inc()
        """A RUN the router gave to a local handler. Inside a transaction, a stream clause
        that changes streams waits for COMMIT (``proxy.answers.streams``)."""
        self.note_query(run, db)
        ctx = self.context(db, run.parameters)
        tx = self.tx
        if tx is not None and deferred_until_commit(classified.handler, classified.parsed):
            tx.deferred.append(Deferred(classified, ctx))
            self.start_result(run, QueryResult([], [], type="s"), db, started)
            return None
        return self._run_handler(run, classified, ctx, started)

    async def _run_handler(
        self, run: Run, classified: Classified, ctx: QueryContext, started: float
    ) -> None:
        self.log.debug("answering locally: %s", classified.handler.name)
        result = await classified.handler.run(classified.parsed, ctx)
        self.start_result(run, result, ctx.db, started)

    def note_query(self, run: Run, db: str) -> None:
        """Record what now runs here, for SHOW TRANSACTIONS."""
        activity = self.tx.activity if self.tx is not None else None
        if activity is None:
            activity = self.current = self.env.registry.new_activity(
                db, explicit=False, metadata=run.tx_metadata
            )
        activity.query = run.query
        activity.parameters = run.parameters
        activity.query_id = self.env.registry.new_query_id()

    def start_result(self, run: Run, result: QueryResult, db: str, started: float) -> None:
        """Answer a RUN with a whole result that PULL/DISCARD will page out."""
        summary: dict[str, Any] = {"type": result.type, "db": db}
        if result.stats:
            summary["stats"] = result.stats
        if result.plan is not None:
            summary["plan"] = result.plan
        stream = ResultStream(result.fields, result.rows, summary)
        metadata: dict[str, Any] = {
            "fields": result.fields,
            "t_first": int((time.monotonic() - started) * 1000),
        }
        tx = self.tx
        if tx is not None and tx.explicit:
            qid = tx.next_qid
            tx.next_qid += 1
            tx.streams[qid] = stream
            tx.last_local = True
            tx.mixed = True
            metadata["qid"] = qid
        else:
            bookmark = self.autocommit_bookmark() if tx is None else None
            if bookmark is not None:
                summary["bookmark"] = bookmark
            self.autocommit = stream
        if self.conn.version >= V5_8 and "db" not in run.extra:
            metadata["db"] = db
        self.out.add(self.conn.success(metadata))

    def page(self, request: Received) -> Waiting:
        """PULL / DISCARD of a result answered here."""
        message = self.conn.decode(request)
        assert isinstance(message, Pull | Discard)
        return self.page_result(message, message.qid)

    def page_result(self, message: Pull | Discard, qid: int) -> Waiting:
        tx = self.tx
        stream: ResultStream | None
        if tx is not None and tx.explicit:
            if qid == -1 and tx.streams:
                qid = max(tx.streams)
            stream = tx.streams.get(qid)
            if stream is None:
                raise ClientError(
                    REQUEST_INVALID, f"No open result with qid {qid} in this transaction."
                )
        else:
            stream = self.autocommit
            if stream is None:
                raise ClientError(REQUEST_INVALID, "No open result to pull from.")
        records = isinstance(message, Pull)
        if records and stream.count(message.n) > SLICE:
            return self._page_in_slices(stream, message.n, qid)
        more = stream.page(message.n, records=records, conn=self.conn, out=self.out)
        self._paged(stream, qid, more)
        return None

    async def _page_in_slices(self, stream: ResultStream, n: int, qid: int) -> None:
        more = await stream.page_in_slices(n, conn=self.conn, out=self.out, pause=self._breathe)
        if not self.closing:
            self._paged(stream, qid, more)

    async def _breathe(self) -> bool:
        """Between two slices of a large page: write them, let other connections run, and
        wait while the client does not read. False once the connection is closing."""
        self.flush()
        await asyncio.sleep(0)
        if not self.writable.is_set():
            await self.writable.wait()
        return not self.closing

    def _paged(self, stream: ResultStream, qid: int, more: bool) -> None:
        if more:
            return
        tx = self.tx
        if tx is not None and tx.explicit:
            if tx.streams.get(qid) is stream:
                del tx.streams[qid]
            return
        if self.autocommit is stream:
            self.autocommit = None
            if tx is None:
                self.current = None

    def drop_results(self) -> None:
        self.autocommit = None
        if self.tx is not None:
            self.tx.streams.clear()

    async def apply_deferred(self, tx: Transaction) -> None:
        """COMMIT: run the stream clauses that waited for it, in order. Raises the FAILURE
        COMMIT answers when one fails (``failed_at_commit``)."""
        total = len(tx.deferred)
        for position, deferred in enumerate(tx.deferred, 1):
            try:
                await deferred.classified.handler.run(deferred.classified.parsed, deferred.ctx)
            except BoltError as exc:
                raise failed_at_commit(exc, position, total) from None
        tx.deferred.clear()

    async def commit_here(self, tx: Transaction) -> None:
        """COMMIT of a transaction the backend never saw (or has none): apply the stream
        clauses, then SUCCESS."""
        await self.apply_deferred(tx)
        self.out.add(self.conn.success(self.commit_metadata()))

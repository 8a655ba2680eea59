"""``FalkorDBBackend``: run Cypher on FalkorDB over RESP with ``GRAPH.QUERY --compact``.

The proxy's own Bolt session drives this backend (FalkorDB's Bolt port is too fragile to relay
to; see DESIGN.md). Its parts, one module each: ``params`` (parameters as Cypher text),
``decoding`` (compact results as Bolt values, per-graph schema ids), ``stats`` (summary
counters and the query type) and ``errors`` (FalkorDB's error texts as Neo4j status codes).

``EXPLAIN <query>`` sent to ``GRAPH.QUERY`` *runs* the query (measured on 4.16), so EXPLAIN goes
to ``GRAPH.EXPLAIN`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bolt.status import UNKNOWN_ERROR
from grammar import lexer
from proxy.backends.base import BackendError, BackendUnavailable, QueryResult, QueryType
from proxy.backends.falkordb.decoding import Decoder, Schema, UnknownSchemaId, to_text
from proxy.backends.falkordb.errors import classify_error
from proxy.backends.falkordb.params import PreparedQuery, prepare_query
from proxy.backends.falkordb.stats import neo4j_labels_added, parse_stats, query_type
from proxy.backends.resp import (
    RespConnectionError,
    RespError,
    RespPool,
    RespTimeoutError,
)

if TYPE_CHECKING:
    from proxy.backends.base import QueryBackend

log = logging.getLogger(__name__)


class ServerProcess(Protocol):
    """A FalkorDB server the backend starts and stops (``EmbeddedFalkorDB``)."""

    @property
    def host(self) -> str | None: ...

    @property
    def port(self) -> int | None: ...

    @property
    def unix_path(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# A stale schema version is answered with [error "version mismatch", current version] and the
# query does not run; resend at most this many times before giving up (schema churning).
_VERSION_RETRIES = 5


class FalkorDBBackend:
    """``QueryBackend`` for FalkorDB over RESP (TCP or a Unix socket).

    Graph names are the Bolt database names, lower-cased (Neo4j database names are
    case-insensitive); an empty name means ``default_graph``. ``query_timeout`` (seconds) is
    sent to FalkorDB as the query's TIMEOUT, and the client waits a little longer before it
    gives up on the connection. ``reply_timeout`` (seconds) bounds only that wait: a server
    that stopped answering (stopped, hung, its host gone) becomes a ``BackendUnavailable``
    (transient) after it instead of a query that waits for ever; nothing is sent to the
    server, so a long query on a live server is cut off client-side too.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        unix_path: str | None = None,
        default_graph: str = "neo4j",
        pool_size: int = 4,
        query_timeout: float | None = None,
        reply_timeout: float | None = None,
        connect_timeout: float = 5.0,
        server: ServerProcess | None = None,
        password: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._unix_path = unix_path
        self.default_graph = default_graph.lower()
        self._pool_size = pool_size
        self._query_timeout = query_timeout
        self._reply_timeout = reply_timeout
        self._connect_timeout = connect_timeout
        self._server = server
        self._password = password
        self._pool: RespPool | None = None
        self._schemas: dict[str, Schema] = {}
        self.description = self._describe()

    def _describe(self) -> str:
        where = f"unix:{self._unix_path}" if self._unix_path else f"{self._host}:{self._port}"
        return f"FalkorDB at {where}" + (" (embedded)" if self._server is not None else "")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the owned server (if any), open the pool, and check that FalkorDB answers.

        Raises ``BackendUnavailable`` when it cannot be reached, ``BackendError`` when the
        server is not FalkorDB.
        """
        if self._pool is not None:
            return
        if self._server is not None:
            await self._server.start()
            self._host = self._server.host or self._host
            self._port = self._server.port or self._port
            self._unix_path = self._server.unix_path
            self._password = self._server.password
            self.description = self._describe()
        pool = RespPool(
            self._host,
            self._port,
            unix_path=self._unix_path,
            size=self._pool_size,
            connect_timeout=self._connect_timeout,
            password=self._password,
        )
        try:
            await pool.start()
            await pool.execute("GRAPH.LIST", timeout=self._connect_timeout)
        except RespError as exc:
            pool.close()
            raise classify_error(exc.message) from None
        except RespConnectionError as exc:
            pool.close()
            raise BackendUnavailable(f"{self.description} is unreachable: {exc}") from None
        self._pool = pool
        # Neo4j's default database always exists; FalkorDB creates a graph on its first
        # write. Create the default graph now, so that EXPLAIN, read-only queries and
        # SHOW DATABASES behave from the first connection on.
        await self.run(self.default_graph, "RETURN 1", {})
        log.info("connected to %s (%d connections)", self.description, pool.size)

    async def close(self) -> None:
        """Close the connections (queries in flight fail) and stop an owned server."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if self._server is not None:
            await self._server.stop()

    # -- queries -------------------------------------------------------------------------------

    def graph_name(self, graph: str | None) -> str:
        return graph.lower() if graph else self.default_graph

    async def run(
        self,
        graph: str,
        query: str,
        params: dict[str, Any] | None = None,
        *,
        read_only: bool = False,
    ) -> QueryResult:
        """Run one query; see ``QueryBackend.run``. ``EXPLAIN`` returns the plan, no rows."""
        name = self.graph_name(graph)
        explained = lexer.after_keyword(query, "EXPLAIN")
        if explained is not None:
            return await self._explain(name, prepare_query(explained, params).text)
        return await self.run_prepared(
            graph, query, prepare_query(query, params), read_only=read_only
        )

    async def run_prepared(
        self, graph: str, query: str, prepared: PreparedQuery, *, read_only: bool = False
    ) -> QueryResult:
        """``run`` of ``query`` whose parameters ``prepare_query`` already put in its text (not
        an EXPLAIN): for a caller that prepares its next query while FalkorDB runs this one."""
        name = self.graph_name(graph)
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._schemas[name] = Schema()
        command = "GRAPH.RO_QUERY" if read_only else "GRAPH.QUERY"
        extra: list[Any] = []
        if self._query_timeout is not None:
            extra += ["timeout", max(1, int(self._query_timeout * 1000))]
        for _ in range(_VERSION_RETRIES):
            args = [command, name, prepared.text, "--compact", *extra]
            if schema.version is not None:
                args += ["version", schema.version]
            seen = schema.generation
            reply = await self._call(*args)
            current = _version_mismatch(reply)
            if current is None:
                break
            await self._refresh(name, schema, seen, current)
        else:
            # The schema changed under every attempt; run once without the check and let
            # decoding refresh on demand.
            reply = await self._call(command, name, prepared.text, "--compact", *extra)
        labels_before = list(schema.labels)
        result = await self._result(name, schema, reply, prepared)
        if result.stats:
            labels = neo4j_labels_added(result.stats, query, labels_before)
            if labels is not None:
                if labels:
                    result.stats["labels-added"] = labels
                else:
                    result.stats.pop("labels-added", None)
        return result

    async def list_graphs(self) -> list[str]:
        """Names of the graphs that exist now (``GRAPH.LIST``)."""
        reply = await self._call("GRAPH.LIST")
        return [to_text(item) for item in reply or []]

    # -- internals -----------------------------------------------------------------------------

    async def _call(self, *args: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise BackendUnavailable(f"{self.description}: backend not started")
        timeout = self._reply_timeout
        if self._query_timeout is not None:
            timeout = self._query_timeout + 5.0
        try:
            reply = await pool.execute(*args, timeout=timeout)
        except RespError as exc:
            raise classify_error(exc.message) from None
        except RespTimeoutError as exc:
            raise BackendUnavailable(
                f"{self.description} did not answer in time ({exc}); the query may have run"
            ) from None
        except RespConnectionError as exc:
            raise BackendUnavailable(
                f"{self.description} is unreachable ({exc}); a query in flight may have run"
            ) from None
        if isinstance(reply, tuple):
            for item in reply:
                if isinstance(item, RespError) and item.message != "version mismatch":
                    # A run-time error reported after the header (FalkorDB puts it last).
                    raise classify_error(item.message)
        return reply

    async def _result(
        self, name: str, schema: Schema, reply: Any, prepared: PreparedQuery
    ) -> QueryResult:
        if not isinstance(reply, tuple) or not reply:
            raise BackendError(UNKNOWN_ERROR, f"unexpected reply from FalkorDB: {reply!r:.200}")
        if len(reply) == 1:  # statistics only: the query has no RETURN
            stats = parse_stats(reply[0])
            return QueryResult([], [], stats, query_type(stats, False))
        header, raw_rows, raw_stats = reply[0], reply[1], reply[-1]
        fields = [to_text(column[1]) for column in header]
        if prepared.inlined:
            fields = [_restore_names(f, prepared.inlined) for f in fields]
        rows: list[tuple[Any, ...]] | None = None
        for attempt in range(3):
            try:
                rows = await _decode_rows(Decoder(schema), raw_rows)
                break
            except UnknownSchemaId:
                # New labels/types/keys (this query or a concurrent writer made them).
                await self._refresh(name, schema, schema.generation, None, force=attempt > 0)
        if rows is None:
            raise BackendError(
                UNKNOWN_ERROR, f"graph {name!r}: result uses schema ids FalkorDB does not list"
            )
        stats = parse_stats(raw_stats)
        return QueryResult(fields, rows, stats, query_type(stats, True))

    async def _refresh(
        self,
        name: str,
        schema: Schema,
        seen: int,
        version: int | None,
        *,
        force: bool = False,
    ) -> None:
        """Reload the id lists of ``name`` as one consistent snapshot with its version.

        ``seen`` is the generation the caller decoded with: if another task refreshed since,
        this one waits for it and returns. ``version`` is the current version if known.
        """
        async with schema.lock:
            if schema.generation != seen and not force:
                return
            guess = version if version is not None else (schema.version or 0)
            for _ in range(_VERSION_RETRIES):
                lists = await self._schema_lists(name, guess)
                if isinstance(lists, int):
                    guess = lists  # the schema changed; this is its version now
                    continue
                if lists is None:  # graph deleted meanwhile
                    schema.reset()
                    return
                schema.labels, schema.types, schema.keys = lists
                schema.version = guess
                schema.generation += 1
                log.debug(
                    "graph %r schema version %d: %d labels, %d types, %d keys",
                    name,
                    guess,
                    len(lists[0]),
                    len(lists[1]),
                    len(lists[2]),
                )
                return
            raise BackendUnavailable(f"graph {name!r}: schema kept changing while being read")

    async def _schema_lists(
        self, name: str, version: int
    ) -> tuple[list[str], list[str], list[str]] | int | None:
        # The three procedures pipelined on one connection (one round trip), each pinned to
        # `version` so that the three lists are guaranteed to belong together. RO_QUERY so
        # that a refresh never creates a graph.
        pool = self._pool
        if pool is None:
            raise BackendUnavailable(f"{self.description}: backend not started")
        try:
            conn = await pool.connection()
            replies = await asyncio.gather(
                *(
                    conn.execute("GRAPH.RO_QUERY", name, proc, "--compact", "version", version)
                    for proc in (
                        "CALL db.labels()",
                        "CALL db.relationshipTypes()",
                        "CALL db.propertyKeys()",
                    )
                ),
                return_exceptions=True,
            )
        except RespConnectionError as exc:
            raise BackendUnavailable(f"{self.description} is unreachable ({exc})") from None
        lists: list[list[str]] = []
        for reply in replies:
            if isinstance(reply, RespError):
                if "empty key" in reply.message:
                    return None
                raise classify_error(reply.message)
            if isinstance(reply, RespConnectionError):
                raise BackendUnavailable(f"{self.description} is unreachable ({reply})")
            if isinstance(reply, BaseException):
                raise reply
            current = _version_mismatch(reply)
            if current is not None:
                return current
            lists.append([to_text(row[0][1]) for row in reply[1]])
        return lists[0], lists[1], lists[2]

    async def _explain(self, name: str, text: str) -> QueryResult:
        reply = await self._call("GRAPH.EXPLAIN", name, text)
        lines = [reply] if isinstance(reply, bytes | str) else list(reply or [])
        plan = explain_plan([to_text(line) for line in lines])
        ops = _operators(plan)
        writes = bool(ops & _WRITE_OPERATORS)
        schema_op = any(op.startswith(("Create Index", "Drop Index")) for op in ops)
        kind: QueryType = (
            "s" if schema_op else ("rw" if writes and "Results" in ops else "w" if writes else "r")
        )
        return QueryResult([], [], {}, kind, plan)


_WRITE_OPERATORS = frozenset(("Create", "Merge", "MergeCreate", "Delete", "Update", "Foreach"))


def explain_plan(lines: list[str]) -> dict[str, Any]:
    """``GRAPH.EXPLAIN`` lines (children indented by 4 spaces) as a Bolt plan map."""
    root: dict[str, Any] | None = None
    stack: list[tuple[int, dict[str, Any]]] = []
    for line in lines:
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 4
        operator, _, details = line.strip().partition(" | ")
        node: dict[str, Any] = {
            "operatorType": operator,
            "arguments": {"details": details} if details else {},
            "identifiers": [],
            "children": [],
        }
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1]["children"].append(node)
        elif root is None:
            root = node
        stack.append((depth, node))
    return root or {"operatorType": "Empty", "arguments": {}, "identifiers": [], "children": []}


def _operators(plan: dict[str, Any]) -> set[str]:
    found = {plan["operatorType"]}
    for child in plan["children"]:
        found |= _operators(child)
    return found


def _version_mismatch(reply: Any) -> int | None:
    # [RespError("version mismatch"), current version]: the query did not run.
    if (
        isinstance(reply, tuple)
        and len(reply) == 2
        and isinstance(reply[0], RespError)
        and reply[0].message == "version mismatch"
        and isinstance(reply[1], int)
    ):
        return reply[1]
    return None


def _restore_names(column: str, inlined: tuple[tuple[str, str], ...]) -> str:
    for expr, name in inlined:
        if expr in column:
            column = column.replace(expr, name)
    return column


if TYPE_CHECKING:
    _conforms: QueryBackend = FalkorDBBackend()  # mypy checks the protocol here


# Rows decoded between two returns to the event loop: a result of a million rows must not
# hold other connections up while it is decoded (``proxy.session.results.SLICE`` does the
# same for encoding).
_DECODE_SLICE = 5000


async def _decode_rows(decoder: Decoder, raw_rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    if len(raw_rows) <= _DECODE_SLICE:
        return decoder.rows(raw_rows)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(raw_rows), _DECODE_SLICE):
        rows += decoder.rows(raw_rows[start : start + _DECODE_SLICE])
        await asyncio.sleep(0)
    return rows

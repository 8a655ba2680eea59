"""The router's handler for the stream clauses: parse, run on the engine, answer a table.

``match`` costs one anchored regex for ordinary queries (``grammar.looks_like_stream_clause``),
and one more for ``CALL`` queries (``grammar.procedures.match_procedure``: Memgraph's
``mg.kafka_set_stream_offset`` / ``mg.kafka_stream_info``, answered here on every backend):
only a query that starts like a stream clause is parsed. A query that starts like one but
does not parse is still ours (no backend knows these clauses): ``run`` answers it with
``Neo.ClientError.Statement.SyntaxError``, line, column and what was expected.

The clauses are answered in front of any backend (``relay``), in auto-commit and explicit
transactions (``proxy.answers.streams`` says which wait for COMMIT). The user the client
authenticated as (``QueryContext.user``) becomes the owner of the streams it creates, and is
checked against the owner of a stream it changes (``access.py``); the session's database
(``QueryContext.db``) is where a stream it creates writes, unless the clause names another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grammar
from grammar import procedures
from proxy.answers.router import QueryContext
from proxy.backends.base import BackendError, QueryResult
from proxy.streams.catalog import CatalogError
from proxy.streams.engine import StreamEngine, StreamError, StreamStatus
from proxy.streams.spec import options_of, spec_of

# SHOW STREAMS' columns: the fields of ``StreamStatus``, in order (its docstring says why).
SHOW_STREAMS_FIELDS = StreamStatus.columns()
TEST_STREAM_FIELDS = ["query", "params"]
OFFSETS_FIELDS = [
    "topic",
    "partition",
    "committed",
    "graph_position",
    "low_watermark",
    "high_watermark",
    "lag",
    "holder",
    "last_applied_offset",
    "last_applied_at",
]

# FAILURE codes for the engine's errors.
ERROR_CODES = {
    "not_found": "Neo.ClientError.Statement.EntityNotFound",
    "exists": "Neo.ClientError.Statement.SemanticError",
    "invalid": "Neo.ClientError.Statement.ArgumentError",
    "state": "Neo.ClientError.Statement.SemanticError",
    "external": "Neo.ClientError.Statement.ExternalResourceFailed",
    "transform": "Neo.ClientError.Procedure.ProcedureCallFailed",
    "internal": "Neo.DatabaseError.General.UnknownError",
    "forbidden": "Neo.ClientError.Security.Forbidden",
}
SYNTAX_ERROR = "Neo.ClientError.Statement.SyntaxError"
UNSUPPORTED = "Neo.ClientError.Statement.SemanticError"
CHECK_STREAM_TIMEOUT = 30.0  # seconds: Memgraph's default TIMEOUT of CHECK STREAM
START_STREAM_TIMEOUT = 30.0  # seconds: Memgraph's default TIMEOUT of START ... BATCH_LIMIT


@dataclass(frozen=True)
class BadStreamClause:
    """A query that starts like a stream clause but does not parse."""

    error: grammar.StreamSyntaxError


class StreamClauseHandler:
    name = "stream"
    keywords: tuple[str, ...] = (*grammar.KEYWORDS, "CALL")
    relay = True

    def __init__(self, engine: StreamEngine, default_db: str | None = "neo4j") -> None:
        self.engine = engine
        # A CREATE in a session on this database writes to the engine's default graph.
        self.default_db = default_db

    def match(
        self, query: str
    ) -> grammar.StreamClause | procedures.Procedure | BadStreamClause | None:
        try:
            if not grammar.looks_like_stream_clause(query):
                return procedures.match_procedure(query)  # one anchored regex
            return grammar.parse_stream_clause(query)
        except grammar.StreamSyntaxError as exc:
            return BadStreamClause(exc)

    async def run(
        self,
        parsed: grammar.StreamClause | procedures.Procedure | BadStreamClause,
        ctx: QueryContext,
    ) -> QueryResult:
        if isinstance(parsed, BadStreamClause):
            raise BackendError(SYNTAX_ERROR, parsed.error.message)
        try:
            return await self._run(parsed, ctx)
        except StreamError as exc:
            raise BackendError(ERROR_CODES[exc.kind], exc.message) from None
        except CatalogError as exc:
            raise BackendError(ERROR_CODES["internal"], f"stream catalog: {exc}") from None

    async def _run(
        self, clause: grammar.StreamClause | procedures.Procedure, ctx: QueryContext
    ) -> QueryResult:
        engine = self.engine
        if isinstance(clause, procedures.KafkaStreamInfo):
            info = await engine.info(_text(clause.stream, ctx, "the stream name"))
            fields = procedures.KAFKA_STREAM_INFO_FIELDS
            return QueryResult(list(fields), [[info[f] for f in fields]], type="r")
        if isinstance(clause, procedures.KafkaSetStreamOffset):
            await engine.set_offset(
                _text(clause.stream, ctx, "the stream name"),
                _integer(clause.offset, ctx, "the offset"),
                user=ctx.user,
            )
            return QueryResult([], [], type="rw")
        if isinstance(clause, grammar.ShowStreams):
            rows = [status.row() for status in await engine.show()]
            return QueryResult(list(SHOW_STREAMS_FIELDS), rows, type="r")
        if isinstance(clause, grammar.ShowStreamOffsets):
            offsets = [
                [
                    o.topic,
                    o.partition,
                    o.committed,
                    o.graph_position,
                    o.low_watermark,
                    o.high_watermark,
                    o.lag,
                    o.holder,
                    o.last_applied_offset,
                    _iso(o.last_applied_at),
                ]
                for o in await engine.offsets(clause.name)
            ]
            return QueryResult(list(OFFSETS_FIELDS), offsets, type="r")
        user = ctx.user
        if isinstance(clause, grammar.TestStream | grammar.CheckStream):
            timeout = None
            if isinstance(clause, grammar.CheckStream):
                timeout = (
                    CHECK_STREAM_TIMEOUT if clause.timeout_ms is None else clause.timeout_ms / 1000
                )
            queries = await engine.test(clause.name, clause.limit_batches, timeout, user=user)
            return QueryResult(
                list(TEST_STREAM_FIELDS), [[query, params] for query, params in queries], type="r"
            )
        if isinstance(clause, grammar.UnsupportedStreamClause):
            raise BackendError(UNSUPPORTED, f"{clause.clause}: {clause.reason}")
        if isinstance(clause, grammar.CreateStream | grammar.CreateKafkaStream):
            await engine.create(
                spec_of(clause, owner=ctx.user, database=self._database(clause.database, ctx.db))
            )
        elif isinstance(clause, grammar.DropStream):
            await engine.drop(clause.name, user=user)
        elif isinstance(clause, grammar.StartStream):
            wait = None
            if clause.wait:
                wait = (
                    START_STREAM_TIMEOUT if clause.timeout_ms is None else clause.timeout_ms / 1000
                )
            await engine.start_stream(clause.name, clause.limit_batches, wait, user=user)
        elif isinstance(clause, grammar.StopStream):
            await engine.stop_stream(clause.name, user=user)
        elif isinstance(clause, grammar.StartAllStreams):
            await engine.start_all(user=user)
        elif isinstance(clause, grammar.StopAllStreams):
            await engine.stop_all(user=user)
        elif isinstance(clause, grammar.AlterStreamOffset):
            await engine.move_offsets(
                clause.name, clause.target, clause.value, clause.partition, user=user
            )
        elif isinstance(clause, grammar.AlterStreamSkip):
            await engine.skip_failed(clause.name, user=user)
        elif isinstance(clause, grammar.AlterStream):
            await engine.alter(clause.name, options_of(clause), user=user)
        else:  # pragma: no cover - the grammar has no other clause
            raise BackendError(SYNTAX_ERROR, f"unsupported stream clause {clause!r}")
        return QueryResult([], [], type="s")

    def _database(self, named: str | None, session_db: str) -> str | None:
        """Where a new stream writes: the DATABASE it names, else the creating session's
        database; None for the default database."""
        database = (named or session_db or "").lower() or None
        return None if database == self.default_db else database


def _iso(seconds: float | None) -> str | None:
    """A time as ISO 8601 UTC text (as the drivers show it everywhere)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _argument(value: procedures.Argument, ctx: QueryContext, what: str) -> Any:
    if isinstance(value, procedures.Parameter):
        if value.name not in ctx.parameters:
            raise BackendError(
                "Neo.ClientError.Statement.ParameterMissing",
                f"Expected parameter(s): {value.name} ({what})",
            )
        return ctx.parameters[value.name]
    return value


def _text(value: procedures.Argument, ctx: QueryContext, what: str) -> str:
    found = _argument(value, ctx, what)
    if not isinstance(found, str):
        raise BackendError(
            "Neo.ClientError.Statement.TypeError", f"{what} must be a string, not {found!r}"
        )
    return found


def _integer(value: procedures.Argument, ctx: QueryContext, what: str) -> int:
    found = _argument(value, ctx, what)
    if type(found) is not int:
        raise BackendError(
            "Neo.ClientError.Statement.TypeError", f"{what} must be an integer, not {found!r}"
        )
    return found

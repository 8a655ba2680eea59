"""Writing a stream's batches to the graph, with the proxy's own credentials.

A ``GraphWriter`` runs the queries one transform produced for one batch, in order, and says
how it failed: ``TransientWriteError`` (the backend is unavailable, a deadlock, a leader
switch: the engine retries the whole batch with backoff) or ``PermanentWriteError`` (the
backend rejected a query: retrying cannot help; the stream's error policy decides). A
``PermanentWriteError`` says which query failed (``index``, when the queries ran as given, not
grouped) and whether what ran before it was undone (``rolled_back``): that is what the engine
needs to isolate the failing message of a batch without applying the others twice.

``read`` runs one query read-only and returns its rows (``builtin:request``): FalkorDB's
``GRAPH.RO_QUERY``; on Bolt servers a READ transaction that is always rolled back, and refused
if the server reports that it wrote anyway (servers that ignore the access mode).

``FalkorDBWriter``: FalkorDB has no multi-statement transactions, but one query is atomic. A
single batch of an at-least-once stream runs query after query, each atomic on its own; if one
fails or the proxy dies in the middle, the batch is half-applied, its offsets are not
committed, and it is applied again, whole, later (at-least-once: transforms should write
idempotently, ``MERGE``, where duplicates matter). A combined write of several batches, and
every write of an exactly-once stream, is composed into one query (``compose.py``): all or
nothing.

``BoltWriter``: Neo4j, Memgraph, or any Bolt server, through the official async driver with
the service account from the proxy's configuration. One explicit transaction per batch.
Batches run as the stream's owner (``imp_user``) where the backend can impersonate: see
``BoltWriter`` for what happens where it cannot.

Both writers send a batch as fewer ``UNWIND $rows AS row ...`` queries when that provably
gives the same result (``grouping.plan_queries``): transforms typically produce one query per
message, and one round trip per query is the bottleneck of ingestion. The queries given may be
those of several consecutive batches (a combined write): the plan over their concatenation is
the same graph as the batches one after the other.

**Atomic writes and fences.** ``write_batch(..., atomic=True)`` asks for all or nothing: a Bolt
transaction always is; on FalkorDB the planned queries become one composed query
(``compose.py``), or ``NotAtomic`` says that they cannot (the caller then writes one batch at a
time). ``fence=`` (exactly-once streams, ``positions.py``) makes the write also check and set
the stream's positions in the graph, in the same atomic unit, and raise ``FenceLost`` when the
stored positions are not the expected ones (nothing written). ``read_positions`` reads them.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bolt.status import is_transient
from grammar import lexer
from proxy.backends.base import BackendError, BackendUnavailable, QueryBackend, QueryResult
from proxy.backends.falkordb.params import PreparedQuery, prepare_query
from proxy.streams.compose import NotComposable, compose, relationship_types
from proxy.streams.grouping import plan_queries
from proxy.streams.mapping.cud import BOLT, FALKORDB, Dialect
from proxy.streams.positions import (
    FENCE_FAILED,
    PRUNE_EVERY,
    READ_POSITIONS,
    WRITTEN,
    Fence,
    FenceLost,
    TopicPartition,
    fence_statement,
    positions_from_rows,
    prune_statement,
)

log = logging.getLogger("boltstream.streams")

Query = tuple[str, dict[str, Any]]


ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"
UNKNOWN_ERROR = "Neo.DatabaseError.General.UnknownError"
# A batch that an exactly-once stream cannot write as one atomic unit with its position.
CANNOT_BE_ATOMIC = "Neo.ClientError.Statement.NotSupported"


class WriteError(Exception):
    """A batch could not be written; ``str(exc)`` says why."""


class TransientWriteError(WriteError):
    """Retrying later may succeed (backend unavailable, transient database error)."""


class NotAtomic(WriteError):
    """An atomic write was asked for and these queries cannot be one (FalkorDB: a query that
    cannot be a subquery, or too many queries). Nothing was written."""


class PermanentWriteError(WriteError):
    """Retrying cannot succeed (the backend rejected a query, or refused the owner).

    ``code`` and ``detail``: the server's status code and message (``reason`` joins them);
    ``index``: which of the queries given failed (0-based), when known (the queries ran as
    given, not grouped); ``rolled_back``: nothing of this call stayed applied (a Bolt
    transaction). When false (FalkorDB), the queries before ``index`` stayed applied.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = UNKNOWN_ERROR,
        detail: str = "",
        index: int | None = None,
        rolled_back: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail or message
        self.index = index
        self.rolled_back = rolled_back

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


class GraphWriter(Protocol):
    description: str

    async def write_batch(
        self,
        queries: list[Query],
        owner: str | None,
        *,
        group: bool = True,
        atomic: bool = False,
        fence: Fence | None = None,
    ) -> None:
        """Apply the queries in order (as fewer UNWIND queries where that provably gives the
        same graph, unless ``group`` is false). ``atomic``: all or nothing, else ``NotAtomic``
        before anything is written. ``fence``: check and set the stream's positions in the same
        atomic unit; ``FenceLost`` if they moved (nothing written). Raise
        Transient/PermanentWriteError."""
        ...

    async def read_positions(self, stream: str, owner: str | None) -> dict[TopicPartition, int]:
        """The positions of an exactly-once stream stored in the graph (``positions.py``).
        Raise TransientWriteError when the backend cannot be reached."""
        ...

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> QueryResult:
        """Run one query read-only; its columns and rows (graph values as the backend gives
        them). A write is refused with ``PermanentWriteError`` (code ``ACCESS_MODE``)."""
        ...

    def for_database(self, database: str) -> GraphWriter:
        """A writer of another database (graph) of the same backend."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


# ============================================================================================
# FalkorDB
# ============================================================================================


@functools.lru_cache(maxsize=1024)
def _types_of(text: str) -> tuple[tuple[str, str], ...]:
    """``compose.relationship_types`` of a query text (a stream writes few distinct texts)."""
    return tuple(relationship_types(text).items())


def mapping_dialect(writer: object) -> Dialect:
    """How CUD messages find entities by element id on the graph ``writer`` writes to."""
    return FALKORDB if isinstance(writer, FalkorDBWriter) else BOLT


@dataclass(frozen=True)
class PreparedWrite:
    """A FalkorDB write computed ahead (``FalkorDBWriter.prepare``): the planned queries, the
    one query they make (with the fence) and its text with the parameters in it (None: the
    plan is empty, nothing to send)."""

    plan: list[Query]
    text: str
    params: dict[str, Any]
    rendered: PreparedQuery | None
    fence: Fence | None
    grouped: bool


class FalkorDBWriter:
    """Batches to one FalkorDB graph through the proxy's ``QueryBackend``. Each query is atomic;
    a batch of several queries is not, unless it is composed into one (``atomic``, ``fence``:
    see the module docstring). ``owner`` is not used: FalkorDB has no users.

    ``max_combined``: the most queries an atomic write of several batches composes into one
    (beyond it ``NotAtomic``: the caller writes batch by batch); ``max_composed``: the most
    any composed query holds (a fenced write of a batch with more is refused: FalkorDB's
    planning time grows faster than linearly with the length of a query).
    """

    def __init__(
        self,
        backend: QueryBackend,
        graph: str = "neo4j",
        *,
        group: bool = True,
        max_combined: int = 256,
        max_composed: int = 1000,
    ) -> None:
        self.backend = backend
        self.graph = graph
        self.group = group
        self.max_combined = max_combined
        self.max_composed = max_composed
        self.description = f"FalkorDB graph {graph!r}"
        self._known_types: set[str] = set()  # relationship types the graph has
        # Per stream (a writer serves every stream of its graph): fenced writes since its
        # position nodes were last pruned.
        self._fenced_writes: dict[str, int] = {}

    def prepare(self, queries: list[Query], *, fence: Fence | None = None) -> PreparedWrite | None:
        """What ``write_batch(queries, group=True, atomic=True, fence=fence)`` sends, computed
        now: the plan, the composed query and its text with the parameters in it. A stream
        prepares its next write while the graph runs the current one (that CPU work was a
        quarter of the write stage's time, with the graph idle). None where this write cannot
        be prepared (it is not one query; a parameter FalkorDB cannot take): ``write_batch``
        then does it all, and raises what it raises."""
        if getattr(self.backend, "run_prepared", None) is None:
            return None
        plan = plan_queries(queries) if self.group else queries
        try:
            prepared = self._prepared(plan, fence, self.group)
        except WriteError:
            return None
        if prepared.rendered is not None and lexer.after_keyword(prepared.text, "EXPLAIN"):
            return None
        return prepared

    async def write_batch(
        self,
        queries: list[Query],
        owner: str | None,
        *,
        group: bool = True,
        atomic: bool = False,
        fence: Fence | None = None,
    ) -> None:
        grouped = self.group and group
        plan = plan_queries(queries) if grouped else queries
        if fence is not None or (atomic and len(plan) > 1):
            await self._send_composed(self._prepared(plan, fence, grouped))
            return
        for number, (text, params) in enumerate(plan, 1):
            try:
                # One FalkorDB query is atomic: a runtime error undoes what it did.
                await self.backend.run(self.graph, text, params)
            except BackendUnavailable as exc:
                raise TransientWriteError(exc.message) from None
            except BackendError as exc:
                if exc.transient:
                    raise TransientWriteError(exc.message) from None
                raise PermanentWriteError(
                    _rejected(text, exc.code, exc.message, number, len(plan)),
                    code=exc.code,
                    detail=exc.message,
                    index=None if grouped else number - 1,
                    rolled_back=number == 1,
                ) from None

    async def write_prepared(self, prepared: PreparedWrite) -> None:
        """``write_batch`` of what ``prepare`` prepared."""
        if prepared.rendered is not None:
            await self._send_composed(prepared)

    def _prepared(self, plan: list[Query], fence: Fence | None, grouped: bool) -> PreparedWrite:
        """The write of ``plan`` as one query (one already, or composed, with the fence) and
        its text with the parameters in it. Raises ``NotAtomic`` or ``PermanentWriteError``
        (a parameter FalkorDB cannot take) as the write would."""
        if fence is None and len(plan) <= 1:
            text, params = plan[0] if plan else ("", {})
        else:
            text, params = self._compose(plan, fence)
        try:
            rendered = prepare_query(text, params) if text else None
        except BackendError as exc:
            raise self._refused(plan, exc, grouped) from None
        return PreparedWrite(plan, text, params, rendered, fence, grouped)

    def _compose(self, plan: list[Query], fence: Fence | None) -> Query:
        """The plan as one query (with the fence); ``NotAtomic`` (or, for a fenced write, a
        ``PermanentWriteError``) when it cannot be."""
        if fence is None and len(plan) > self.max_combined:
            raise NotAtomic(
                f"{len(plan)} queries are more than one atomic write composes ({self.max_combined})"
            )
        try:
            if len(plan) > self.max_composed:
                raise NotComposable(
                    f"the batch makes {len(plan)} queries (after grouping "
                    f"into UNWIND queries), more than {self.max_composed}; "
                    "use a smaller BATCH_SIZE"
                )
            return compose(plan, fence)
        except NotComposable as exc:
            if fence is None:
                raise NotAtomic(str(exc)) from None
            message = (
                f"DELIVERY EXACTLY ONCE on FalkorDB writes a batch and the stream's "
                f"position as one query, and {exc}"
            )
            raise PermanentWriteError(
                message, code=CANNOT_BE_ATOMIC, detail=message, rolled_back=True
            ) from None

    async def _send_composed(self, prepared: PreparedWrite) -> None:
        plan, fence = prepared.plan, prepared.fence
        assert prepared.rendered is not None
        if len(plan) > 1:
            await self._know_types(plan)
        run_prepared = getattr(self.backend, "run_prepared", None)
        try:
            if run_prepared is not None:
                await run_prepared(self.graph, prepared.text, prepared.rendered)
            else:
                await self.backend.run(self.graph, prepared.text, prepared.params)
        except BackendUnavailable as exc:
            raise TransientWriteError(exc.message) from None
        except BackendError as exc:
            if exc.transient:
                raise TransientWriteError(exc.message) from None
            if fence is not None and FENCE_FAILED in exc.message:
                # The fence's division by zero, or one of the batch's own: the positions
                # tell (nothing was written either way).
                found = await self.read_positions(fence.stream, None)
                if fence.already_applied(found):
                    return
                if any(found.get(tp) != fence.expected.get(tp) for tp in fence.next):
                    raise FenceLost(found) from None
            raise self._refused(plan, exc, prepared.grouped) from None
        if fence is not None:
            await self._prune(fence)

    async def _prune(self, fence: Fence) -> None:
        """Every ``PRUNE_EVERY`` fenced writes, delete the position nodes behind the ones
        ``fence`` just set (``positions.FENCE_TAIL``). Not part of any atomic unit, and safe
        at any moment: the largest ``next`` stays. A failure only leaves more nodes."""
        count = self._fenced_writes.get(fence.stream, 0) + 1
        if count < PRUNE_EVERY:
            self._fenced_writes[fence.stream] = count
            return
        self._fenced_writes.pop(fence.stream, None)
        text, params = prune_statement(fence)
        try:
            await self.backend.run(self.graph, text, params)
        except BackendError as exc:  # BackendUnavailable included
            log.warning("%s: old stream positions not deleted: %s", self.graph, exc)

    @staticmethod
    def _refused(plan: list[Query], exc: BackendError, grouped: bool) -> PermanentWriteError:
        if len(plan) == 1:
            message = _rejected(plan[0][0], exc.code, exc.message, 1, 1)
        else:
            message = (
                f"the backend rejected the write of {len(plan)} queries as one "
                f"atomic query: {exc.code}: {exc.message}"
            )
        return PermanentWriteError(
            message,
            code=exc.code,
            detail=exc.message,
            index=0 if len(plan) == 1 and not grouped else None,
            rolled_back=True,
        )

    async def _know_types(self, plan: list[Query]) -> None:
        """Make the relationship types that the parts of a composed query name known to the
        graph first (``compose``: FalkorDB plans the query whole, and matches no type it does
        not know yet, even one an earlier part creates). A type is made known by creating a
        relationship of it between two new nodes and deleting all three. If that cannot be
        done the write goes on as before."""
        named: dict[str, str] = {}
        for text in {text for text, _ in plan[1:]}:
            named.update(_types_of(text))
        unknown = {name: token for name, token in named.items() if name not in self._known_types}
        if not unknown:
            return
        try:
            result = await self.backend.run(self.graph, "CALL db.relationshipTypes()", {})
            self._known_types.update(str(row[0]) for row in result.rows)
            for name, token in unknown.items():
                if name not in self._known_types:
                    await self.backend.run(
                        self.graph, f"CREATE (a)-[:{token}]->(b) DELETE a, b", {}
                    )
                    self._known_types.add(name)
        except BackendUnavailable as exc:
            raise TransientWriteError(exc.message) from None
        except BackendError as exc:
            if exc.transient:
                raise TransientWriteError(exc.message) from None
            log.warning("%s: relationship types not made known first: %s", self.graph, exc)

    async def read_positions(self, stream: str, owner: str | None) -> dict[TopicPartition, int]:
        try:
            result = await self.backend.run(
                self.graph, READ_POSITIONS, {"stream": stream}, read_only=True
            )
        except BackendUnavailable as exc:
            raise TransientWriteError(exc.message) from None
        except BackendError as exc:
            if exc.transient:
                raise TransientWriteError(exc.message) from None
            if "empty key" in exc.message:  # the graph does not exist yet: no positions
                return {}
            raise PermanentWriteError(
                f"reading the stream's positions: {exc.code}: {exc.message}",
                code=exc.code,
                detail=exc.message,
            ) from None
        return positions_from_rows(result.rows)

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> QueryResult:
        try:
            return await self.backend.run(self.graph, query, params, read_only=True)
        except BackendUnavailable as exc:
            raise TransientWriteError(exc.message) from None
        except BackendError as exc:
            if exc.transient:
                raise TransientWriteError(exc.message) from None
            raise PermanentWriteError(
                f"{exc.code}: {exc.message}",
                code=exc.code,
                detail=exc.message,
                index=0,
                rolled_back=True,
            ) from None

    def for_database(self, database: str) -> FalkorDBWriter:
        """A writer of graph ``database`` through the same backend."""
        return FalkorDBWriter(
            self.backend,
            database.lower(),
            group=self.group,
            max_combined=self.max_combined,
            max_composed=self.max_composed,
        )

    async def close(self) -> None:
        return None


def _rejected(query: str, code: str, message: str, number: int, total: int) -> str:
    shown = query if len(query) <= 200 else query[:197] + "..."
    return f"the backend rejected query {number} of {total} ({shown}): {code}: {message}"


# ============================================================================================
# Bolt (Neo4j, Memgraph, ...)
# ============================================================================================


class BoltWriter:
    """Batches to a Bolt server with the official async ``neo4j`` driver.

    One explicit transaction per batch, committed before the engine commits the offsets.
    ``auth`` is the proxy's service account (configuration only: never in the catalog).
    ``database``: the database every transaction names (``--backend-database``); None leaves
    it to the server's default, which a server may settle per connection: ArcadeDB without
    ``arcadedb.bolt.defaultDatabase`` gives each new connection the first database it lists,
    which creating a database can change, so pooled connections opened at different times
    could write a stream's batches (and exactly-once positions) to different databases.

    Impersonation: a batch of a stream with an owner runs with ``imp_user=owner``. Where the
    protocol cannot carry it (Bolt before 4.4: the driver refuses), the writer logs that once
    and runs as the service account: that backend cannot impersonate anyone, so there is no
    narrower identity to use. Where the server understands impersonation and refuses it (the
    owner does not exist, the service account lacks the IMPERSONATE privilege), the batch
    fails permanently and the stream stops with the server's reason: a stream never writes
    with more rights than its owner because impersonation was refused. Servers that ignore
    ``imp_user`` (FalkorDB's Bolt port) run the batch as the service account.
    """

    def __init__(
        self,
        uri: str,
        auth: tuple[str, str] | None,
        database: str | None = None,
        *,
        group: bool = True,
        connection_timeout: float = 5.0,
    ) -> None:
        import neo4j

        self.uri = uri
        self.database = database
        self.group = group
        self.description = f"Bolt server {uri}" + (f", database {database}" if database else "")
        self._impersonate = True
        self._shared = False  # a writer of another database sharing the driver
        self._driver = neo4j.AsyncGraphDatabase.driver(
            uri,
            auth=auth,
            connection_timeout=connection_timeout,
            max_transaction_retry_time=0.0,
            user_agent="boltstream-streams",
        )

    async def write_batch(
        self,
        queries: list[Query],
        owner: str | None,
        *,
        group: bool = True,
        atomic: bool = False,
        fence: Fence | None = None,
    ) -> None:
        """One transaction: always atomic. With a fence, its check and update come first."""
        import neo4j.exceptions as ne

        grouped = self.group and group
        plan = plan_queries(queries) if grouped else queries
        imp_user = owner if owner and self._impersonate else None
        try:
            fenced = await self._run(plan, imp_user, grouped, fence)
        except ne.ConfigurationError as exc:
            if imp_user is None or "mpersonat" not in str(exc):
                raise PermanentWriteError(f"driver configuration: {exc}") from None
            self._cannot_impersonate(exc)
            await self.write_batch(queries, owner, group=group, atomic=atomic, fence=fence)
            return
        if fence is not None and not fenced:
            found = await self.read_positions(fence.stream, owner)
            if not fence.already_applied(found):
                raise FenceLost(found)

    async def read_positions(self, stream: str, owner: str | None) -> dict[TopicPartition, int]:
        import neo4j
        import neo4j.exceptions as ne

        imp_user = owner if owner and self._impersonate else None
        try:
            async with self._driver.session(
                database=self.database,
                impersonated_user=imp_user,
                default_access_mode=neo4j.READ_ACCESS,
            ) as session:
                result = await session.run(READ_POSITIONS, {"stream": stream})
                rows = [list(record.values()) async for record in result]
        except ne.ConfigurationError as exc:
            if imp_user is None or "mpersonat" not in str(exc):
                raise PermanentWriteError(f"driver configuration: {exc}") from None
            self._cannot_impersonate(exc)
            return await self.read_positions(stream, owner)
        except (ne.ServiceUnavailable, ne.SessionExpired, ne.SessionError, OSError) as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        except ne.Neo4jError as exc:
            code = exc.code or UNKNOWN_ERROR
            message = exc.message or str(exc)
            if exc.is_retryable() or is_transient(code):
                raise TransientWriteError(f"{code}: {message}") from None
            raise PermanentWriteError(
                f"reading the stream's positions: {code}: {message}", code=code, detail=message
            ) from None
        except ne.DriverError as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        return positions_from_rows(rows)

    def _cannot_impersonate(self, exc: Exception) -> None:
        log.warning(
            "%s cannot impersonate (%s); stream batches run as the service account", self.uri, exc
        )
        self._impersonate = False

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> QueryResult:
        """A READ transaction, never committed (a read has nothing to commit; on a server that
        ignores the access mode, rolling back undoes a write where the server can). If the
        summary says the query wrote anyway, the answer is an AccessMode error, which says
        whether the server could roll the write back."""
        import neo4j
        import neo4j.exceptions as ne

        imp_user = owner if owner and self._impersonate else None
        refused = "write queries are refused here (read-only)"
        try:
            async with self._driver.session(
                database=self.database,
                impersonated_user=imp_user,
                default_access_mode=neo4j.READ_ACCESS,
            ) as session:
                tx = await session.begin_transaction()
                try:
                    result = await tx.run(query, params)
                    fields = list(result.keys())
                    rows = [list(record.values()) async for record in result]
                    counters = (await result.consume()).counters
                except BaseException:
                    if not tx.closed():
                        await tx.close()
                    raise
                wrote = counters.contains_updates or counters.contains_system_updates
                try:
                    await tx.rollback()
                except ne.Neo4jError as exc:
                    if not wrote:
                        raise
                    message = (
                        f"{refused}; this server ran it anyway and could not roll it "
                        f"back: {exc.message or exc}"
                    )
                    raise PermanentWriteError(
                        f"{ACCESS_MODE}: {message}", code=ACCESS_MODE, detail=message, index=0
                    ) from None
        except ne.ConfigurationError as exc:
            if imp_user is None or "mpersonat" not in str(exc):
                raise PermanentWriteError(f"driver configuration: {exc}") from None
            self._cannot_impersonate(exc)
            return await self.read(query, params, owner)
        except (ne.ServiceUnavailable, ne.SessionExpired, ne.SessionError, OSError) as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        except ne.Neo4jError as exc:
            code = exc.code or UNKNOWN_ERROR
            message = exc.message or str(exc)
            if exc.is_retryable() or is_transient(code):
                raise TransientWriteError(f"{code}: {message}") from None
            raise PermanentWriteError(
                f"{code}: {message}", code=code, detail=message, index=0, rolled_back=True
            ) from None
        except ne.DriverError as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        if wrote:
            message = f"{refused}; the transaction was rolled back"
            raise PermanentWriteError(
                f"{ACCESS_MODE}: {message}",
                code=ACCESS_MODE,
                detail=message,
                index=0,
                rolled_back=True,
            )
        return QueryResult(fields, rows)

    async def _run(
        self, plan: list[Query], imp_user: str | None, grouped: bool, fence: Fence | None
    ) -> bool:
        """Run the transaction; False when the fence did not hold (rolled back)."""
        import neo4j.exceptions as ne

        number = 0  # the query being run (1-based), 0 outside the loop
        try:
            async with self._driver.session(
                database=self.database, impersonated_user=imp_user
            ) as session:
                tx = await session.begin_transaction()
                try:
                    if fence is not None:
                        text, params = fence_statement(fence)
                        result = await tx.run(text, params)
                        record = await result.single()
                        if record is None or record[WRITTEN] != len(fence.next):
                            await tx.rollback()
                            return False
                    for text, params in plan:
                        number += 1
                        result = await tx.run(text, params)
                        await result.consume()
                    number = 0
                    await tx.commit()
                finally:
                    if not tx.closed():
                        await tx.close()
        except ne.ConfigurationError:
            raise
        except (
            ne.ServiceUnavailable,
            ne.SessionExpired,
            ne.IncompleteCommit,
            ne.SessionError,
            OSError,
        ) as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        except ne.Neo4jError as exc:
            code = exc.code or "Neo.DatabaseError.General.UnknownError"
            message = exc.message or str(exc)
            if exc.is_retryable() or is_transient(code):
                raise TransientWriteError(f"{code}: {message}") from None
            if number:
                raise PermanentWriteError(
                    _rejected(plan[number - 1][0], code, message, number, len(plan)),
                    code=code,
                    detail=message,
                    index=None if grouped else number - 1,
                    rolled_back=True,
                ) from None
            raise PermanentWriteError(
                f"the backend refused the batch: {code}: {message}",
                code=code,
                detail=message,
                rolled_back=True,
            ) from None
        except ne.DriverError as exc:
            raise TransientWriteError(f"{self.uri}: {exc}") from None
        return True

    def for_database(self, database: str) -> BoltWriter:
        """A writer of ``database`` through the same driver (closing it closes nothing)."""
        other = copy.copy(self)
        other.database = database
        other._shared = True
        return other

    async def roles_of(self, user: str) -> frozenset[str] | None:
        """The backend's roles of ``user`` (Neo4j: ``SHOW CURRENT USER`` run as that user,
        impersonated), or None when it cannot tell (no such command, no impersonation)."""
        import neo4j.exceptions as ne

        try:
            async with self._driver.session(database="system", impersonated_user=user) as session:
                result = await session.run("SHOW CURRENT USER YIELD user, roles")
                record = await result.single()
        except (ne.Neo4jError, ne.DriverError, OSError, ValueError):
            return None
        if record is None or record.get("user") != user:
            return None
        roles = record.get("roles")
        if not isinstance(roles, list):
            return None
        return frozenset(str(role) for role in roles)

    async def close(self) -> None:
        if not self._shared:
            await self._driver.close()

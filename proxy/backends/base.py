"""What a query backend (one that the proxy speaks to in its own protocol) provides.

The Bolt relay backend does not implement this: it forwards Bolt messages. A query backend
(FalkorDB over RESP) is driven by the proxy's own Bolt server session, which needs exactly
three things from it: run one parameterised query on a named graph and return the whole
result, list the graphs, and start/stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bolt.errors import ClientError
from bolt.status import DATABASE_UNAVAILABLE

QueryType = Literal["r", "w", "rw", "s"]
Row = list[Any] | tuple[Any, ...]  # one record's values


@dataclass(frozen=True)
class QueryResult:
    """A whole result: column names, rows of typed Bolt values, and the summary facts.

    ``rows`` are sequences of values: lists from the proxy's own answers, tuples from
    FalkorDB (a tuple of plain values costs the garbage collector nothing; see
    ``proxy.backends.resp.RespParser``). Compare them as sequences, not with ``== [[...]]``.
    ``stats`` uses Bolt's summary keys (``nodes-created``, ``properties-set``, ...) and holds
    only non-zero counters, plus ``contains-updates`` when any of them is set.
    ``plan`` is set for an ``EXPLAIN`` query (which returns no rows): the Bolt SUCCESS "plan"
    map (``operatorType``, ``arguments``, ``identifiers``, ``children``).
    """

    fields: list[str]
    rows: Sequence[Row]
    stats: dict[str, Any] = field(default_factory=dict)
    type: QueryType = "r"
    plan: dict[str, Any] | None = None


class BackendError(ClientError):
    """A query the backend refused, with the Neo4j status code for the FAILURE (a ``BoltError``:
    ``failure(version)`` shapes it, ``transient`` says whether retrying may help)."""


class BackendUnavailable(BackendError):
    """The backend could not be reached; the query may be retried later (always transient)."""

    def __init__(self, message: str) -> None:
        super().__init__(DATABASE_UNAVAILABLE, message)
        from proxy.metrics import PROXY  # counted where it is raised: every backend's

        PROXY.backend_errors.inc()


class QueryBackend(Protocol):
    """A graph store the proxy runs Cypher on directly (FalkorDB)."""

    description: str

    async def start(self) -> None:
        """Connect (and for the embedded backend, launch the server). Raises on failure."""

    async def close(self) -> None:
        """Release connections and stop anything ``start`` launched. Idempotent."""

    async def run(
        self, graph: str, query: str, params: dict[str, Any], *, read_only: bool = False
    ) -> QueryResult:
        """Run one query on ``graph``. Raises ``BackendError`` with a classified code.

        ``read_only`` (a Bolt READ-mode transaction): refuse to write, with
        ``Neo.ClientError.Statement.AccessMode``, instead of running the query.
        """
        ...

    async def list_graphs(self) -> list[str]:
        """Names of the graphs that exist now."""
        ...

"""The one place where each RUN is classified: answered by the proxy, or forwarded.

Every RUN's query text passes through ``Router.classify``. It must stay cheap for the queries
the proxy forwards (nearly all of them): a single compiled regex pulls out the first keyword,
and only handlers registered for that keyword look further. A handler that matches returns
a parsed form; the session then calls ``handler.run(parsed, ctx)`` instead of the backend.

Handlers declare which backends they serve: some answers (``dbms.components``, ``SHOW
DATABASES``) are needed only where the backend cannot give them (FalkorDB); others (the
routing table, stream clauses) are always the proxy's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.backends.base import QueryBackend, QueryResult

# The FAILURE code for a locally answered query sent inside an explicit transaction.
LOCAL_IN_TX = "Neo.ClientError.Transaction.ForbiddenDueToTransactionType"


def local_in_tx_message(name: str) -> str:
    """The FAILURE message for ``LOCAL_IN_TX``, with the way out for the usual clients."""
    return (f"`{name}` clauses run only in auto-commit transactions, not inside BEGIN..COMMIT "
            "(driver transaction functions and execute_query open one: use session.run; in "
            "Neo4j Browser, prefix the query with :auto).")
# Leading whitespace and comments are skipped in an atomic group: a nested quantifier over
# comments would otherwise backtrack exponentially on a query like "/**/" * 30 + "(".
_FIRST_WORD = re.compile(r"(?>(?:\s+|//[^\n]*|/\*.*?\*/)*)([A-Za-z]+)", re.DOTALL)


@dataclass
class QueryContext:
    """What a local handler may use to answer one query."""

    db: str
    user: str
    parameters: dict[str, Any]
    advertised_address: str
    backend: QueryBackend | None = None  # None when relaying to a Bolt server
    routing: dict[str, Any] | None = None  # the routing context the client sent in HELLO
    extras: dict[str, Any] = field(default_factory=dict)


class LocalHandler(Protocol):
    """A family of queries the proxy answers itself."""

    name: str
    keywords: tuple[str, ...]  # upper-case first keywords this handler may match
    relay: bool  # also used in front of Bolt backends (else only for query backends)
    # Optional ``autocommit_only: bool`` attribute: refused inside an explicit transaction
    # (stream clauses). In front of Bolt backends every local query is autocommit-only,
    # because the backend holds the transaction.

    def match(self, query: str) -> Any | None:
        """A parsed form of ``query`` if this handler answers it, else None."""
        ...

    async def run(self, parsed: Any, ctx: QueryContext) -> QueryResult:
        """Answer the query. Raise ``BackendError``/``BoltError`` subclasses for FAILUREs."""
        ...


@dataclass(frozen=True)
class Classified:
    handler: LocalHandler
    parsed: Any


class Router:
    def __init__(self, handlers: Iterable[LocalHandler], *, relay: bool) -> None:
        self._by_keyword: dict[str, list[LocalHandler]] = {}
        for handler in handlers:
            if relay and not handler.relay:
                continue
            for keyword in handler.keywords:
                self._by_keyword.setdefault(keyword.upper(), []).append(handler)

    def classify(self, query: str) -> Classified | None:
        """The local handler for ``query``, or None to forward it to the backend."""
        found = _FIRST_WORD.match(query)
        if found is None:
            return None
        candidates = self._by_keyword.get(found.group(1).upper())
        if not candidates:
            return None
        for handler in candidates:
            parsed = handler.match(query)
            if parsed is not None:
                return Classified(handler, parsed)
        return None

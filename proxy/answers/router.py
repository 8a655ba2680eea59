"""The one place where each RUN is classified: answered by the proxy, or forwarded.

Every RUN's query text passes through ``Router.classify``. It must stay cheap for the queries
the proxy forwards (nearly all of them): the lexer's anchored first-keyword match
(``grammar.lexer.first_keyword``), and only handlers registered for that keyword look further.
A handler that matches returns a parsed form; the session then calls ``handler.run(parsed,
ctx)`` instead of the backend.

Handlers declare which backends they serve: some answers (``dbms.components``, ``SHOW
DATABASES``, ``SHOW TRANSACTIONS``) are needed only where the backend cannot give them
(FalkorDB); others (the routing table, stream clauses) are always the proxy's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from grammar.lexer import first_keyword
from proxy.backends.base import QueryBackend, QueryResult

if TYPE_CHECKING:
    from proxy.session.registry import Registry


@dataclass
class QueryContext:
    """What a local handler may use to answer one query."""

    db: str
    user: str
    parameters: dict[str, Any]
    advertised_address: str
    backend: QueryBackend | None = None  # None when relaying to a Bolt server
    routing: dict[str, Any] | None = None  # the routing context the client sent in HELLO
    registry: Registry | None = None  # the proxy's sessions (SHOW / TERMINATE TRANSACTIONS)
    connection_id: str = ""


class LocalHandler(Protocol):
    """A family of queries the proxy answers itself."""

    name: str
    keywords: tuple[str, ...]  # upper-case first keywords this handler may match
    relay: bool  # also used in front of Bolt backends (else only for query backends)

    def match(self, query: str) -> Any | None:
        """A parsed form of ``query`` if this handler answers it, else None."""
        ...

    async def run(self, parsed: Any, ctx: QueryContext) -> QueryResult:
        """Answer the query. Raise a ``BoltError`` (``BackendError``...) for a FAILURE."""
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
        keyword = first_keyword(query)
        if keyword is None:
            return None
        candidates = self._by_keyword.get(keyword)
        if not candidates:
            return None
        for handler in candidates:
            parsed = handler.match(query)
            if parsed is not None:
                return Classified(handler, parsed)
        return None

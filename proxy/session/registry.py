"""Which sessions exist and what each is running, for ``SHOW TRANSACTIONS`` and
``TERMINATE TRANSACTION``.

Every session registers itself for its lifetime. A session reports what the proxy knows runs on
it: its open explicit transaction, or the auto-commit query it is running or streaming (Neo4j
lists that as a transaction too), with the query, user, client address and times.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Activity:
    """One transaction (explicit, or the implicit one of an auto-commit query)."""

    transaction_id: str
    database: str
    explicit: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)  # wall clock, for startTime
    clock: float = field(default_factory=time.monotonic)  # for elapsedTime
    query: str = ""
    query_id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    terminated: str | None = None  # why, once TERMINATE TRANSACTION hit it


class Session(Protocol):
    connection_id: str
    client_address: str
    user: str

    def activity(self) -> Activity | None:
        """What runs on this connection now, if anything."""
        ...

    def terminate(self, transaction_id: str) -> str:
        """End that transaction where the backend allows; the message TERMINATE answers."""
        ...


class Registry:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._transactions = itertools.count(1)
        self._queries = itertools.count(1)

    def add(self, session: Session) -> None:
        self._sessions[session.connection_id] = session

    def remove(self, session: Session) -> None:
        self._sessions.pop(session.connection_id, None)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def new_activity(
        self, database: str, *, explicit: bool, metadata: dict[str, Any] | None = None
    ) -> Activity:
        return Activity(
            f"{database}-transaction-{next(self._transactions)}",
            database,
            explicit,
            dict(metadata or {}),
        )

    def new_query_id(self) -> str:
        return f"query-{next(self._queries)}"

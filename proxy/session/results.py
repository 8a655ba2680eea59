"""Paging a whole result out to a client with PULL ``n`` / DISCARD ``n``.

Local answers (system queries, stream clauses) and the FalkorDB backend produce whole results;
the client takes them in pages, and the summaries go through the connection, which moves the
state and counts open results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bolt.connection import ServerConnection


class Sink(Protocol):
    def add(self, data: bytes) -> None: ...


@dataclass
class ResultStream:
    fields: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any]  # the final SUCCESS metadata, less t_last
    position: int = 0

    @property
    def remaining(self) -> int:
        return len(self.rows) - self.position

    def page(self, n: int, *, records: bool, conn: ServerConnection, out: Sink) -> bool:
        """Send up to ``n`` records (all if n < 0; none for DISCARD) and the SUCCESS that
        follows them, answering the PULL/DISCARD at the head of ``conn``.

        Returns True when rows remain (the SUCCESS said ``has_more``); otherwise the final
        summary was sent and the stream is finished.
        """
        count = self.remaining if n < 0 else min(n, self.remaining)
        if records:
            rows, record, add = self.rows, conn.record, out.add
            for index in range(self.position, self.position + count):
                add(record(rows[index]))
        self.position += count
        if self.remaining > 0:
            out.add(conn.success({"has_more": True}))
            return True
        self.rows = []
        # has_more is sent even when false: pymgclient 1.6 reads it without checking that it
        # is there, and crashes on a summary that leaves it out (Neo4j does; Memgraph does not).
        out.add(conn.success({**self.summary, "has_more": False, "t_last": 0}))
        return False

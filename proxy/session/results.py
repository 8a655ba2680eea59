"""Paging a whole result out to a client with PULL ``n`` / DISCARD ``n``.

Local answers (system queries, stream clauses) and the FalkorDB backend produce whole results;
the client takes them in pages, and the summaries go through the connection, which moves the
state and counts open results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bolt.connection import ServerConnection
from proxy.backends.base import Row

# Records encoded between two returns to the event loop. Encoding a large page in one go
# holds every other connection up (1,000,000 records took 1.7 s); a slice of this size takes
# a few milliseconds.
SLICE = 2000
# And at most about this many bytes per slice: the next slice waits until the client has
# taken enough of the last one (the write buffer below its high-water mark), so what waits
# for a slow client is a slice and the socket's buffers, whatever the size of the records.
SLICE_BYTES = 1 << 20


class Sink(Protocol):
    def add(self, data: bytes) -> None: ...


@dataclass
class ResultStream:
    fields: list[str]
    rows: Sequence[Row]
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
        count = self.count(n)
        if records:
            rows, record, add = self.rows, conn.record, out.add
            for index in range(self.position, self.position + count):
                add(record(rows[index]))
        self.position += count
        return self._summary(conn, out)

    def count(self, n: int) -> int:
        """How many records PULL ``n`` takes."""
        return self.remaining if n < 0 else min(n, self.remaining)

    async def page_in_slices(
        self,
        n: int,
        *,
        conn: ServerConnection,
        out: Sink,
        pause: Callable[[], Awaitable[bool]],
    ) -> bool:
        """``page`` for a PULL of many records: ``SLICE`` records at a time, awaiting
        ``pause()`` between slices (which writes what is encoded and lets other connections
        run; it returns False when the connection is gone, and then nothing more is sent)."""
        end = self.position + self.count(n)
        rows, record, add = self.rows, conn.record, out.add
        while self.position < end:
            size = 0
            stop = min(end, self.position + SLICE)
            for index in range(self.position, stop):
                data = record(rows[index])
                add(data)
                size += len(data)
                if size >= SLICE_BYTES:
                    stop = index + 1
                    break
            self.position = stop
            if self.position < end and not await pause():
                return False
        return self._summary(conn, out)

    def _summary(self, conn: ServerConnection, out: Sink) -> bool:
        if self.remaining > 0:
            out.add(conn.success({"has_more": True}))
            return True
        self.rows = []
        # has_more is sent even when false: pymgclient 1.6 reads it without checking that it
        # is there, and crashes on a summary that leaves it out (Neo4j does; Memgraph does not).
        out.add(conn.success({**self.summary, "has_more": False, "t_last": 0}))
        return False

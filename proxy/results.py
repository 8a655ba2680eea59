"""Paging a whole result out to a client with PULL ``n`` / DISCARD ``n``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bolt.messages import encode_record, encode_success
from bolt.packstream import Packer


class Sink(Protocol):
    """Where response payloads go (``BoltWire`` or the relay's output buffer)."""

    def send(self, payload: bytes) -> None: ...


@dataclass
class ResultStream:
    fields: list[str]
    rows: list[list[Any]]
    summary: dict[str, Any]  # the final SUCCESS metadata, less t_last
    position: int = 0

    @property
    def remaining(self) -> int:
        return len(self.rows) - self.position

    def page(self, n: int, *, send_records: bool, wire: Sink, packer: Packer) -> bool:
        """Send up to ``n`` records (all if n < 0) and the SUCCESS that follows them.

        Returns True when rows remain (the SUCCESS said ``has_more``); otherwise the final
        summary was sent and the stream is finished.
        """
        count = self.remaining if n < 0 else min(n, self.remaining)
        if send_records:
            send, rows = wire.send, self.rows
            for index in range(self.position, self.position + count):
                send(encode_record(rows[index], packer))
        self.position += count
        if self.remaining > 0:
            wire.send(encode_success({"has_more": True}, packer))
            return True
        self.rows = []
        # has_more is sent even when false: pymgclient 1.6 reads it without checking that it
        # is there, and crashes on a summary that leaves it out (Neo4j does; Memgraph does not).
        wire.send(encode_success({**self.summary, "has_more": False, "t_last": 0}, packer))
        return False

"""Replaying what a client that cannot run here (cypher-shell is Java, Neo4j Browser a web
page) sends on connect, byte-exact where it matters (the handshake offer), and checking the
answers have the shapes that client reads (shared/reference/bolt.md §2.3 and §10)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bolt.handshake import MAGIC, MANIFEST_V1
from bolt.messages import Failure, Ignored, Pull, Record, Request, Success
from bolt.versions import Version
from tests.boltclient import RawBolt

VALID_QUERY_TYPES = ("r", "w", "rw", "s")


@dataclass
class Exchange:
    """The answer to one request: its records (PULL) and its summary message."""

    request: Request
    records: list[list[Any]] = field(default_factory=list)
    summary: Success | Failure | Ignored | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        assert isinstance(self.summary, Success), (
            f"{type(self.request).__name__} answered {self.summary!r}, not SUCCESS"
        )
        return self.summary.metadata


class Replay(RawBolt):
    """A raw Bolt connection that offers exactly what a given client offers."""

    def __init__(self, address: tuple[str, int], supports: list[Version]) -> None:
        super().__init__(address)
        self.supports = supports  # what the replayed client can speak (manifest pick)
        self.manifest: list[Version] | None = None

    def negotiate(self, offer: bytes) -> bytes:
        """Send the 16 proposal bytes after the magic; returns the server's first 4 bytes.

        A manifest answer (``00 00 01 FF``...) is completed like the Java and Python drivers
        do: pick the highest version offered that the client supports, capabilities 0.
        """
        assert len(offer) == 16
        self.sock.sendall(MAGIC + offer)
        reply = self._read_exactly(4)
        if reply != MANIFEST_V1:
            assert reply != b"\0\0\0\0", "the server refused every version offered"
            self.version = Version(reply[3], reply[2])
            return reply
        count = self._varint()
        offered: list[Version] = []
        for _ in range(count):
            _zero, rng, minor, major = self._read_exactly(4)
            offered += [Version(major, m) for m in range(minor, max(minor - rng, 0) - 1, -1)]
        assert self._varint() == 0, "no capabilities are defined: the server must offer none"
        self.manifest = offered
        chosen = max(v for v in offered if v in self.supports)
        self.sock.sendall(bytes((0, 0, chosen.minor, chosen.major)) + b"\x00")
        self.version = chosen
        return reply

    def _varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._read_exactly(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def exchange(self, *requests: Request) -> list[Exchange]:
        """Send ``requests`` pipelined in one write, then read one answer per request."""
        self.send(*requests)
        answers = []
        for request in requests:
            answer = Exchange(request)
            while True:
                message = self.recv()
                if isinstance(message, Record):
                    assert isinstance(request, Pull), f"RECORD in answer to {request!r}"
                    answer.records.append(message.values)
                    continue
                answer.summary = message
                break
            answers.append(answer)
        return answers


def check_run_success(metadata: dict[str, Any]) -> list[str]:
    """RUN SUCCESS: a ``fields`` list (drivers key records by it) and an integer ``t_first``
    (JS computes ``resultAvailableAfter`` with Integer arithmetic: a float breaks it)."""
    fields = metadata.get("fields")
    assert isinstance(fields, list) and all(isinstance(f, str) for f in fields), metadata
    assert type(metadata.get("t_first")) is int, f"t_first must be an Integer: {metadata}"
    return fields


def check_pull_summary(metadata: dict[str, Any], db: str | None = None) -> None:
    """The summary after the last record: a query ``type`` the drivers accept (Python raises,
    Java throws on others), an integer ``t_last``, and the database name (cypher-shell's prompt,
    Browser's ``useDb``)."""
    assert metadata.get("type") in VALID_QUERY_TYPES, f"invalid query type: {metadata}"
    assert type(metadata.get("t_last")) is int, f"t_last must be an Integer: {metadata}"
    assert isinstance(metadata.get("db"), str), f"no database name: {metadata}"
    if db is not None:
        assert metadata["db"].lower() == db.lower(), metadata
    has_more = metadata.get("has_more", False)
    assert has_more is False, f"the last summary says has_more={has_more!r}"


def check_failure_5_7(failure: Any, code: str) -> None:
    """A Bolt >= 5.7 FAILURE: the JS driver reads ``neo4j_code`` (``code`` is gone), Python and
    Java need ``gql_status``, ``description`` and ``message``."""
    assert isinstance(failure, Failure), f"expected a FAILURE, got {failure!r}"
    meta = failure.metadata
    assert meta.get("neo4j_code") == code, meta
    status = meta.get("gql_status")
    assert isinstance(status, str) and len(status) == 5, meta
    assert isinstance(meta.get("description"), str) and meta["description"], meta
    assert isinstance(meta.get("message"), str) and meta["message"], meta

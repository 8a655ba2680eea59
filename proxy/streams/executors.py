"""Applying a batch's per-message outcomes: how a stream isolates the messages that fail.

The engine's runner hands an ``Applier`` the outcome of each message of a batch (its queries,
or why the transform rejected it) and a ``Host`` that can write and read with retries of
transient failures. The applier does what the stream's mode says and calls ``fail(i, reason)``
for each message that cannot be done: with the STOP policy that raises ``StopAt(i)`` at the
first one (the messages before it are done, and only those are committed); otherwise the
failure is collected, and the runner dead-letters or skips it after the rest is applied.

Write modes (``write``: user transforms and ``builtin:depc``; ``command``: ``builtin:command``).
Runs of accepted messages are written in one writer call; when it is rejected permanently,
the failing message is found:

* the writer says which query failed (the queries ran as given: ``command`` mode, never
  grouped) and what stayed applied. A Bolt transaction was rolled back: the messages before
  the culprit are written again (once: nothing of them stayed), the culprit fails, the rest
  continue. On FalkorDB the queries before the failing one stayed applied (each FalkorDB query
  is atomic, a batch is not): the messages before the culprit are done, exactly once;
* otherwise (``write`` mode: queries grouped into UNWINDs, so the failing one does not map to
  a message) every message of the run is written again on its own, in order. On a Bolt server
  that is exact (the failed transaction left nothing); on FalkorDB the messages before the
  culprit may be applied twice (as in any replay: ``MERGE`` makes that harmless, and
  ``builtin:depc`` only merges), except for exactly-once streams, whose writes on FalkorDB are
  one composed query each (all or nothing, as a transaction).

An exactly-once stream's writes also move its positions in the graph (``Host.write``'s
``through``: the write completes the batch's first ``through`` messages).

A message of several queries that fails on FalkorDB may be half-applied (its queries before
the failing one stay); on a Bolt server each message's queries are one transaction.

Request mode (``builtin:request``): each request runs read-only through the host; its rows or
its error become a response record; a request that cannot be answered fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.backends.base import QueryResult
from proxy.streams.jsonvalues import to_json
from proxy.streams.outcomes import Accepted, Outcome, Query, Rejected, shorten
from proxy.streams.producer import Record
from proxy.streams.writers import PermanentWriteError

INVALID_REQUEST = "Neo.ClientError.Request.Invalid"
HEADER_PREFIX = "boltstream."


class Host(Protocol):
    """What the applier needs from the runner: writes and reads, transient failures retried
    (only ``PermanentWriteError`` comes out). ``through``: the write completes the batch's
    first ``through`` messages (an exactly-once stream moves its position there in the same
    atomic unit)."""

    async def write(
        self, queries: list[Query], group: bool, *, through: int | None = None
    ) -> None: ...

    async def read(self, query: str, params: dict[str, Any]) -> QueryResult: ...


@dataclass(frozen=True)
class Failure:
    index: int  # the message's position in the batch
    reason: str


class StopAt(Exception):
    """STOP policy: message ``index`` failed; the messages before it are done."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def source_headers(stream: str, message: Any) -> list[tuple[str, bytes]]:
    """Where a record came from: stream, topic, partition, offset (and timestamp)."""
    headers = [
        (HEADER_PREFIX + "stream", stream.encode()),
        (HEADER_PREFIX + "topic", str(message.topic()).encode()),
        (HEADER_PREFIX + "partition", str(message.partition()).encode()),
        (HEADER_PREFIX + "offset", str(message.offset()).encode()),
    ]
    kind, stamp = message.timestamp()
    if kind != 0 and stamp is not None and stamp >= 0:  # 0: TIMESTAMP_NOT_AVAILABLE
        headers.append((HEADER_PREFIX + "timestamp", str(stamp).encode()))
    return headers


def dead_letter(stream: str, topic: str, message: Any, reason: str) -> Record:
    """The dead-letter record of ``message``: its key and value bytes as they were, its headers,
    then ``boltstream.stream/topic/partition/offset/timestamp/error``."""
    headers = list(message.headers() or [])
    headers += source_headers(stream, message)
    headers.append((HEADER_PREFIX + "error", shorten(reason).encode("utf-8", "replace")))
    return Record(topic, message.key(), message.value(), headers)


class Applier:
    """Applies one batch's outcomes; see the module docstring."""

    def __init__(
        self,
        host: Host,
        *,
        stop_on_failure: bool,
        stream: str = "",
        max_response_bytes: int = 1000000,
    ) -> None:
        self.host = host
        self.stop_on_failure = stop_on_failure
        self.stream = stream
        self.max_response_bytes = max_response_bytes
        self.failures: list[Failure] = []
        self.responses: list[tuple[int, Record]] = []  # request mode: (message index, record)

    def fail(self, index: int, reason: str) -> None:
        reason = shorten(reason)
        if self.stop_on_failure:
            raise StopAt(index, reason)
        self.failures.append(Failure(index, reason))

    # -- write modes --------------------------------------------------------------------------

    async def write_outcomes(self, outcomes: Sequence[Outcome], *, group: bool) -> None:
        """Write every accepted message, in order; fail the others."""
        start = 0
        while start < len(outcomes):
            end = start
            while end < len(outcomes) and isinstance(outcomes[end], Accepted):
                end += 1
            await self._write_run(outcomes, start, end, group)
            if end < len(outcomes):
                rejected = outcomes[end]
                assert isinstance(rejected, Rejected)
                self.fail(end, rejected.reason)
            start = end + 1

    async def _write_run(self, outcomes: Sequence[Outcome], lo: int, hi: int, group: bool) -> None:
        queries: list[Query] = []
        owners: list[int] = []
        for index in range(lo, hi):
            outcome = outcomes[index]
            assert isinstance(outcome, Accepted)
            queries += outcome.queries
            owners += [index] * len(outcome.queries)
        if not queries:
            return
        try:
            await self.host.write(queries, group, through=hi)
        except PermanentWriteError as exc:
            if hi - lo == 1:
                self.fail(lo, f"the backend rejected it: {exc.reason}")
                return
            if exc.index is None or not 0 <= exc.index < len(owners):
                for index in range(lo, hi):
                    await self._write_run(outcomes, index, index + 1, group)
                return
            culprit = owners[exc.index]
            if exc.rolled_back:
                await self._write_run(outcomes, lo, culprit, group)
            self.fail(culprit, f"the backend rejected it: {exc.reason}")
            await self._write_run(outcomes, culprit + 1, hi, group)

    # -- request mode -------------------------------------------------------------------------

    async def serve(self, outcomes: Sequence[Outcome], messages: Sequence[Any]) -> None:
        """Run each request read-only; its response goes to ``self.responses``."""
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Rejected):
                self.fail(index, outcome.reason)
                continue
            message = messages[index]
            request = _request(outcome)
            if request is None:
                self.fail(index, "the built-in request transform returned no request")
                continue
            query, to, key, params, error = request
            if to == message.topic():
                self.fail(index, f"the response topic {to!r} is the request topic")
                continue
            if error is not None:
                body = _error_body(INVALID_REQUEST, error)
            else:
                try:
                    result = await self.host.read(query, params)
                except PermanentWriteError as exc:
                    body = _error_body(exc.code, exc.detail)
                else:
                    body = _rows_body(result)
            body["with_key"] = key
            value = self._encode(body, key)
            headers = source_headers(self.stream, message)
            self.responses.append((index, Record(to, key.encode("utf-8"), value, headers)))

    def _encode(self, body: dict[str, Any], key: str) -> bytes:
        value = _dumps(body)
        room = self.max_response_bytes - len(key.encode("utf-8")) - 2048  # headers, framing
        if len(value) > room:
            message = (
                f"the result is {len(value)} bytes of JSON, more than a Kafka message "
                f"may hold here ({self.max_response_bytes}); ask for fewer rows"
            )
            value = _dumps({**_error_body(INVALID_REQUEST, message), "with_key": key})
        return value


def _request(outcome: Accepted) -> tuple[str, str, str, dict[str, Any], str | None] | None:
    """(query, to, key, params, error) from a ``builtin:request`` item."""
    if len(outcome.queries) != 1:
        return None
    query, envelope = outcome.queries[0]
    to, key, params = envelope.get("to"), envelope.get("key"), envelope.get("params", {})
    error = envelope.get("error")
    if not isinstance(to, str) or not isinstance(key, str) or not isinstance(params, dict):
        return None
    return query, to, key, params, error if isinstance(error, str) else None


def _rows_body(result: QueryResult) -> dict[str, Any]:
    fields = list(result.fields)
    rows = [
        {field: to_json(value) for field, value in zip(fields, row, strict=False)}
        for row in result.rows
    ]
    return {"ok": True, "fields": fields, "rows": rows}


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )

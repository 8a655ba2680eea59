"""The applier's isolation of failing messages, against fake backends that behave like
FalkorDB (each query atomic, a batch not) and like a Bolt server (a batch is a transaction);
and request serving. The real thing, with Kafka and FalkorDB, is in test_builtin_streams.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.backends.base import QueryResult
from proxy.streams.executors import Applier, StopAt, dead_letter
from proxy.streams.outcomes import Accepted, Outcome, Query, Rejected
from proxy.streams.writers import ACCESS_MODE, PermanentWriteError

pytestmark = pytest.mark.timeout(30)


@dataclass
class FakeBackend:
    """``transactions``: a failing call leaves nothing (Bolt); else the queries before the
    failing one stay applied (FalkorDB)."""

    transactions: bool
    bad: set[str] = field(default_factory=lambda: {"BAD"})
    applied: list[str] = field(default_factory=list)
    calls: int = 0
    rows: dict[str, QueryResult] = field(default_factory=dict)

    async def write(self, queries: list[Query], group: bool, *, through: int | None = None) -> None:
        self.calls += 1
        done: list[str] = []
        for position, (text, _params) in enumerate(queries):
            if text in self.bad:
                if not self.transactions:
                    self.applied += done
                raise PermanentWriteError(
                    f"rejected {text}",
                    code="Neo.ClientError.Statement.SyntaxError",
                    detail=f"no {text}",
                    index=None if group else position,
                    rolled_back=self.transactions or position == 0,
                )
            done.append(text)
        self.applied += done

    async def read(self, query: str, params: dict[str, Any]) -> QueryResult:
        if query in self.bad:
            raise PermanentWriteError(
                "refused", code=ACCESS_MODE, detail="read only", index=0, rolled_back=True
            )
        return self.rows.get(query, QueryResult(["x"], [[params.get("x")]]))


def ok(*texts: str) -> Accepted:
    return Accepted([(text, {}) for text in texts])


BATCH: list[Outcome] = [ok("A"), ok("B"), ok("BAD"), ok("D"), Rejected("invalid"), ok("F")]


def apply(
    backend: FakeBackend, outcomes: list[Outcome], *, group: bool, stop: bool = False
) -> Applier:
    applier = Applier(backend, stop_on_failure=stop)
    asyncio.run(applier.write_outcomes(outcomes, group=group))
    return applier


@pytest.mark.parametrize("transactions", [False, True], ids=["falkordb", "bolt"])
def test_ungrouped_isolation_applies_every_other_message_exactly_once(transactions: bool) -> None:
    backend = FakeBackend(transactions)
    applier = apply(backend, BATCH, group=False)
    assert backend.applied == ["A", "B", "D", "F"]
    assert [(f.index, f.reason) for f in applier.failures] == [
        (2, "the backend rejected it: Neo.ClientError.Statement.SyntaxError: no BAD"),
        (4, "invalid"),
    ]


def test_grouped_isolation_on_a_transactional_backend_is_exact() -> None:
    backend = FakeBackend(transactions=True)
    applier = apply(backend, BATCH, group=True)
    assert backend.applied == ["A", "B", "D", "F"]
    assert [f.index for f in applier.failures] == [2, 4]


def test_grouped_isolation_on_falkordb_may_apply_earlier_messages_twice() -> None:
    """Grouped queries do not map back to messages: each message of the run is written again
    alone. What ran before the failure stayed (FalkorDB): at-least-once, as documented."""
    backend = FakeBackend(transactions=False)
    applier = apply(backend, BATCH, group=True)
    assert backend.applied == ["A", "B", "A", "B", "D", "F"]
    assert [f.index for f in applier.failures] == [2, 4]


@pytest.mark.parametrize("transactions", [False, True], ids=["falkordb", "bolt"])
def test_stop_fails_at_the_first_failure_with_the_messages_before_it_done(
    transactions: bool,
) -> None:
    backend = FakeBackend(transactions)
    with pytest.raises(StopAt) as caught:
        apply(backend, BATCH, group=False, stop=True)
    assert caught.value.index == 2 and "no BAD" in caught.value.reason
    assert backend.applied == ["A", "B"]
    backend = FakeBackend(transactions)
    with pytest.raises(StopAt) as caught:
        apply(backend, [ok("A"), Rejected("nope"), ok("C")], group=False, stop=True)
    assert (caught.value.index, caught.value.reason) == (1, "nope")
    assert backend.applied == ["A"]


def test_a_message_of_several_queries_fails_whole_on_bolt_and_half_on_falkordb() -> None:
    outcomes: list[Outcome] = [ok("A"), ok("X", "BAD", "Y"), ok("C")]
    bolt = FakeBackend(transactions=True)
    assert [f.index for f in apply(bolt, outcomes, group=False).failures] == [1]
    assert bolt.applied == ["A", "C"]
    falkordb = FakeBackend(transactions=False)
    assert [f.index for f in apply(falkordb, outcomes, group=False).failures] == [1]
    assert falkordb.applied == ["A", "X", "C"]  # X stayed: documented


def test_no_failure_is_one_call() -> None:
    backend = FakeBackend(transactions=False)
    applier = apply(backend, [ok("A"), ok("B", "C"), Accepted([])], group=True)
    assert (backend.applied, backend.calls, applier.failures) == (["A", "B", "C"], 1, [])


# -- dead letters and requests ----------------------------------------------------------------


class Message:
    def __init__(
        self,
        value: bytes,
        offset: int = 5,
        topic: str = "requests",
        key: bytes | None = b"k",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._value, self._offset, self._topic = value, offset, topic
        self._key, self._headers = key, headers

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1700000000123)


def test_a_dead_letter_keeps_key_value_and_headers_and_says_where_and_why() -> None:
    message = Message(b"\xff raw", key=b"\x00key", headers=[("trace", b"t1")])
    record = dead_letter("s1", "dlq", message, "bad: " + "x" * 2000)
    assert (record.topic, record.key, record.value) == ("dlq", b"\x00key", b"\xff raw")
    names = [name for name, _ in record.headers]
    assert names == [
        "trace",
        "boltstream.stream",
        "boltstream.topic",
        "boltstream.partition",
        "boltstream.offset",
        "boltstream.timestamp",
        "boltstream.error",
    ]
    headers = dict(record.headers)
    assert headers["boltstream.stream"] == b"s1"
    assert headers["boltstream.topic"] == b"requests"
    assert (headers["boltstream.partition"], headers["boltstream.offset"]) == (b"3", b"5")
    assert headers["boltstream.timestamp"] == b"1700000000123"
    assert len(headers["boltstream.error"]) == 1000 and headers["boltstream.error"].endswith(b"...")


def request(to: str, key: str, query: str, **extra: Any) -> Accepted:
    return Accepted([(query, {"to": to, "key": key, **extra})])


def test_serve_answers_each_request_or_fails_it() -> None:
    backend = FakeBackend(transactions=True, bad={"CREATE (:X)"})
    backend.rows["BIG"] = QueryResult(["s"], [["x" * 1000]] * 10)
    outcomes: list[Outcome] = [
        request("r", "k0", "RETURN $x", params={"x": 7}),
        request("r", "k1", "CREATE (:X)", params={}),
        Rejected("no to"),
        request("requests", "k3", "RETURN 1", params={}),
        request("r", "k4", "", error='unknown field "x"'),
        request("r", "k5", "BIG", params={}),
    ]
    messages = [Message(b"{}", offset=i) for i in range(len(outcomes))]
    applier = Applier(backend, stop_on_failure=False, stream="srv", max_response_bytes=8000)
    asyncio.run(applier.serve(outcomes, messages))
    assert [(f.index, f.reason) for f in applier.failures] == [
        (2, "no to"),
        (3, "the response topic 'requests' is the request topic"),
    ]
    responses = {index: record for index, record in applier.responses}
    assert sorted(responses) == [0, 1, 4, 5]
    bodies = {index: json.loads(record.value or b"") for index, record in responses.items()}
    assert bodies[0] == {"ok": True, "fields": ["x"], "rows": [{"x": 7}], "with_key": "k0"}
    assert bodies[1] == {
        "ok": False,
        "error": {"code": ACCESS_MODE, "message": "read only"},
        "with_key": "k1",
    }
    assert bodies[4]["error"] == {
        "code": "Neo.ClientError.Request.Invalid",
        "message": 'unknown field "x"',
    }
    assert bodies[5]["ok"] is False and "ask for fewer rows" in bodies[5]["error"]["message"]
    assert (responses[0].topic, responses[0].key) == ("r", b"k0")
    assert dict(responses[0].headers)["boltstream.offset"] == b"0"
    assert "boltstream.error" not in dict(responses[0].headers)

"""Memgraph transformation modules and message metadata, against real worker processes: a
module written the way Memgraph's documentation writes them runs unchanged; a legacy script
that defines ``stream_messages`` sees key, headers, timestamp, topic, partition and offset, and
tells a tombstone from an empty value; one that does not keeps getting values."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from proxy.streams.transform import (
    FailureKind,
    TransformError,
    TransformFailed,
    TransformRunner,
    TransformSource,
    check_transform,
    fetch_module,
)

pytestmark = pytest.mark.timeout(60)


class FakeMessage:
    """What confluent-kafka's Message offers (the methods the transform runner reads)."""

    def __init__(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        topic: str = "t",
        partition: int = 0,
        offset: int = 0,
        timestamp: int | None = 1_700_000_000_000,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        self._value, self._key, self._topic = value, key, topic
        self._partition, self._offset, self._timestamp = partition, offset, timestamp
        self._headers = headers

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (0, 0) if self._timestamp is None else (1, self._timestamp)

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers


# Memgraph's documented example module (memgraph/documentation, transformation modules):
# JSON payloads, several records per message, mgp.Nullable[mgp.Map], and a procedure beside.
MOVIELENS = """
import json
import mgp


@mgp.transformation
def rating(messages: mgp.Messages
           ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    result_queries = []
    for i in range(messages.total_messages()):
        message = messages.message_at(i)
        movie_dict = json.loads(message.payload().decode("utf8"))
        result_queries.append(
            mgp.Record(
                query=("MERGE (u:User {id: $userId}) "
                       "MERGE (m:Movie {id: $movieId, title: $title})"),
                parameters={
                    "userId": movie_dict["userId"],
                    "movieId": movie_dict["movieId"],
                    "title": movie_dict["title"]}))
        for genre in movie_dict["genres"]:
            result_queries.append(
                mgp.Record(
                    query="MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
                    parameters={"movieId": movie_dict["movieId"], "genre": genre}))
    return result_queries


@mgp.transformation
def metadata(context: mgp.TransCtx, messages: mgp.Messages
             ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    out = []
    for i in range(messages.total_messages()):
        m = messages.message_at(i)
        out.append(mgp.Record(query="CREATE (:Msg $props)", parameters={"props": {
            "payload": m.payload().decode("utf-8"), "topic": m.topic_name(),
            "key": m.key().decode("utf-8"), "timestamp": m.timestamp(), "offset": m.offset(),
            "source": m.source_type() == mgp.SOURCE_TYPE_KAFKA}}))
    return out


@mgp.transformation
def no_parameters(messages: mgp.Messages
                  ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    return mgp.Record(query="CREATE (:Tick)", parameters=None)


@mgp.read_proc
def procedure(context: mgp.ProcCtx) -> mgp.Record(n=int):
    return mgp.Record(n=1)
"""

LEGACY_WITH_METADATA = """
def stream_messages(messages):
    return [("CREATE (:M $p)", {"p": {
        "value": None if m.value is None else m.value.decode(),
        "tombstone": m.is_tombstone,
        "key": None if m.key is None else m.key.decode(),
        "topic": m.topic, "partition": m.partition, "offset": m.offset,
        "timestamp": m.timestamp,
        "headers": [[name, None if v is None else v.decode()] for name, v in m.headers],
    }}) for m in messages]
"""

MOVIE = json.dumps(
    {"userId": "u1", "movieId": "m1", "title": "Heat", "genres": ["Crime", "Drama"]}
).encode()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def module_source(code: str, name: str = "movielens") -> TransformSource:
    return TransformSource.from_code(f"/modules/{name}.py", textwrap.dedent(code))


async def transform(code: str, transformation: str | None, batches: list[list[Any]]) -> list[Any]:
    runner = TransformRunner(
        module_source(code), name="t", transformation=transformation, batch_timeout=20
    )
    async with runner:
        results: list[Any] = []
        for batch in batches:
            results.append(await runner.run(batch))
        results.append(await runner.run_many(batches))
        return results


def test_a_memgraph_module_runs_unchanged() -> None:
    message = FakeMessage(MOVIE, key=b"k1", topic="ratings", offset=7)
    single, many = run(transform(MOVIELENS, "movielens.rating", [[message, message]]))
    expected = [
        (
            "MERGE (u:User {id: $userId}) MERGE (m:Movie {id: $movieId, title: $title})",
            {"userId": "u1", "movieId": "m1", "title": "Heat"},
        ),
        (
            "MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
            {"movieId": "m1", "genre": "Crime"},
        ),
        (
            "MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
            {"movieId": "m1", "genre": "Drama"},
        ),
    ] * 2
    assert single == expected
    assert many == [expected]


def test_a_module_reads_the_metadata_memgraph_offers() -> None:
    messages = [
        FakeMessage(b"one", key=b"k", topic="a", offset=3, timestamp=1234),
        FakeMessage(None, key=None, topic="b", offset=9, timestamp=None),
    ]
    (single, _many) = run(transform(MOVIELENS, "movielens.metadata", [messages]))
    assert [params["props"] for _query, params in single] == [
        {
            "payload": "one",
            "topic": "a",
            "key": "k",
            "timestamp": 1234,
            "offset": 3,
            "source": True,
        },
        # Memgraph gives a tombstone an empty payload, a missing key b"" and timestamp 0
        {"payload": "", "topic": "b", "key": "", "timestamp": 0, "offset": 9, "source": True},
    ]


def test_a_single_record_with_null_parameters() -> None:
    (single, _many) = run(transform(MOVIELENS, "movielens.no_parameters", [[FakeMessage(b"x")]]))
    assert single == [("CREATE (:Tick)", {})]


def test_legacy_scripts_opt_in_to_metadata_and_see_tombstones() -> None:
    messages = [
        FakeMessage(b"", key=b"k", topic="t1", partition=2, offset=5, headers=[("h", b"v")]),
        FakeMessage(
            None, key=b"k", topic="t2", partition=0, offset=6, timestamp=None, headers=[("n", None)]
        ),
    ]
    (single, _many) = run(transform(LEGACY_WITH_METADATA, None, [messages]))
    assert [params["p"] for _query, params in single] == [
        {
            "value": "",
            "tombstone": False,
            "key": "k",
            "topic": "t1",
            "partition": 2,
            "offset": 5,
            "timestamp": 1_700_000_000_000,
            "headers": [["h", "v"]],
        },
        {
            "value": None,
            "tombstone": True,
            "key": "k",
            "topic": "t2",
            "partition": 0,
            "offset": 6,
            "timestamp": None,
            "headers": [["n", None]],
        },
    ]


def test_legacy_scripts_without_stream_messages_get_values() -> None:
    code = "def stream(batch):\n    return [('CREATE (:V {v: $v})', {'v': repr(batch)})]\n"
    (single, many) = run(transform(code, None, [[FakeMessage(b"a"), FakeMessage(None)]]))
    assert single == [("CREATE (:V {v: $v})", {"v": "[b'a', b'']"})]
    assert many == [single]


def test_a_module_without_the_procedure_fails_to_load() -> None:
    with pytest.raises(TransformError, match="the module has no transformation 'nope'"):
        run(check_transform(module_source(MOVIELENS), transformation="movielens.nope"))
    with pytest.raises(TransformError, match=r"is not decorated with @mgp\.transformation"):
        run(check_transform(module_source(MOVIELENS), transformation="movielens.procedure"))


def test_a_broken_module_gives_its_error_and_line() -> None:
    broken = "import mgp\n\n\nraise RuntimeError('boom')\n"
    with pytest.raises(TransformError) as raised:
        run(check_transform(module_source(broken, "broken"), transformation="broken.x"))
    assert "RuntimeError: boom" in str(raised.value)
    assert "line 4" in str(raised.value)


def test_a_module_error_names_its_line() -> None:
    code = (
        "import mgp\n\n@mgp.transformation\ndef t(messages):\n"
        "    return [mgp.Record(query='x', parameters={'v': 1 // 0})]\n"
    )

    async def scenario() -> TransformFailed:
        async with TransformRunner(
            module_source(code, "m"), name="t", transformation="m.t"
        ) as runner:
            with pytest.raises(TransformFailed) as raised:
                await runner.run([FakeMessage(b"x")])
            return raised.value

    failure = run(scenario())
    assert failure.kind is FailureKind.EXCEPTION
    assert "ZeroDivisionError" in str(failure) and "line 5" in str(failure)


def test_reading_the_graph_is_not_supported() -> None:
    code = (
        "import mgp\n\n@mgp.transformation\ndef t(context, messages):\n"
        "    context.graph.vertices\n    return []\n"
    )

    async def scenario() -> str:
        async with TransformRunner(
            module_source(code, "m"), name="t", transformation="m.t"
        ) as runner:
            with pytest.raises(TransformFailed) as raised:
                await runner.run([FakeMessage(b"x")])
            return str(raised.value)

    assert "NotSupported" in run(scenario())


def test_fetch_module_reads_the_transformations_directory(tmp_path: Path) -> None:
    (tmp_path / "movielens.py").write_text(MOVIELENS)
    source = run(fetch_module(tmp_path, "movielens.rating"))
    assert source.uri == str(tmp_path / "movielens.py")
    assert source.code == MOVIELENS
    with pytest.raises(TransformError, match="no such file"):
        run(fetch_module(tmp_path, "missing.rating"))
    (tmp_path / "bad.py").write_text("def (:\n")
    with pytest.raises(TransformError, match="syntax error at line 1"):
        run(fetch_module(tmp_path, "bad.t"))
    with pytest.raises(TransformError, match="identifiers"):
        run(fetch_module(tmp_path, "../x.t"))

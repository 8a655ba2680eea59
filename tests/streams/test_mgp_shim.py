"""The ``mgp`` module given to Memgraph transformation modules: modules written the way
Memgraph's documentation writes them load and run unchanged (the worker's wiring of it is
tested end to end with the streams)."""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SHIM = Path(__file__).resolve().parents[2] / "proxy" / "streams" / "mgp_shim.py"


@pytest.fixture
def mgp() -> Iterator[types.ModuleType]:
    module = types.ModuleType("mgp")
    exec(compile(SHIM.read_text(), str(SHIM), "exec"), module.__dict__)
    saved = sys.modules.get("mgp")
    sys.modules["mgp"] = module
    try:
        yield module
    finally:
        if saved is None:
            del sys.modules["mgp"]
        else:
            sys.modules["mgp"] = saved


def load(code: str) -> types.ModuleType:
    module = types.ModuleType("user_module")
    exec(compile(textwrap.dedent(code), "user_module.py", "exec"), module.__dict__)
    return module


def batch(*values: bytes | None, key: bytes | None = b"k") -> list[dict[str, Any]]:
    return [
        {
            "value": v,
            "key": key,
            "topic": "movies",
            "partition": 2,
            "offset": 40 + i,
            "timestamp": 1700000000000 + i,
            "headers": [("h", b"x")],
        }
        for i, v in enumerate(values)
    ]


# The shape of Memgraph's documented example modules: JSON payloads, several records per
# message, mgp.Nullable[mgp.Map] in the signature, a read procedure in the same file.
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
            result_queries.append(mgp.Record(
                query=("MERGE (u:User {id: $userId}) "
                       "MERGE (m:Movie {id: $movieId, title: $title})"),
                parameters={"userId": movie_dict["userId"], "movieId": movie_dict["movieId"],
                            "title": movie_dict["title"]}))
            for genre in movie_dict["genres"]:
                result_queries.append(mgp.Record(
                    query="MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
                    parameters={"movieId": movie_dict["movieId"], "genre": genre}))
        return result_queries


    @mgp.transformation
    def with_context(context: mgp.TransCtx, messages: mgp.Messages
                     ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
        m = messages.message_at(0)
        return mgp.Record(query="CREATE (:Meta {t: $t, o: $o, k: $k, ts: $ts, src: $s})",
                          parameters={"t": m.topic_name(), "o": m.offset(),
                                      "k": m.key().decode(), "ts": m.timestamp(),
                                      "s": m.source_type()})


    @mgp.read_proc
    def procedure(context: mgp.ProcCtx, vertex: mgp.Vertex) -> mgp.Record(n=mgp.Number):
        return mgp.Record(n=1)
"""


def test_a_memgraph_module_runs_unchanged(mgp: types.ModuleType) -> None:
    module = load(MOVIELENS)
    rating = mgp.find_transformation(module, "rating")
    pairs = mgp.run_transformation(
        rating,
        batch(b'{"userId": 1, "movieId": 10, "title": "Heat", "genres": ["Crime", "Drama"]}'),
    )
    assert pairs == [
        (
            "MERGE (u:User {id: $userId}) MERGE (m:Movie {id: $movieId, title: $title})",
            {"userId": 1, "movieId": 10, "title": "Heat"},
        ),
        (
            "MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
            {"movieId": 10, "genre": "Crime"},
        ),
        (
            "MERGE (m:Movie {id: $movieId}) MERGE (g:Genre {name: $genre})",
            {"movieId": 10, "genre": "Drama"},
        ),
    ]
    context = mgp.find_transformation(module, "with_context")
    assert mgp.run_transformation(context, batch(b"x")) == [
        (
            "CREATE (:Meta {t: $t, o: $o, k: $k, ts: $ts, src: $s})",
            {"t": "movies", "o": 40, "k": "k", "ts": 1700000000000, "s": "kafka"},
        )
    ]


def test_messages_expire_after_the_call_and_the_graph_is_not_there(mgp: types.ModuleType) -> None:
    module = load("""
        import mgp
        kept = []

        @mgp.transformation
        def keep(messages):
            kept.append(messages.message_at(0))
            return []

        @mgp.transformation
        def read_graph(context, messages):
            return [mgp.Record(query="RETURN 1", parameters={"n": len(context.graph.vertices)})]
    """)
    assert mgp.run_transformation(mgp.find_transformation(module, "keep"), batch(b"a")) == []
    with pytest.raises(mgp.InvalidMessageError):
        module.kept[0].payload()
    with pytest.raises(mgp.NotSupported, match=r"TransCtx\.graph"):
        mgp.run_transformation(mgp.find_transformation(module, "read_graph"), batch(b"a"))


def test_null_payloads_and_bad_results(mgp: types.ModuleType) -> None:
    module = load("""
        import mgp

        @mgp.transformation
        def echo(messages):
            m = messages.message_at(0)
            return [mgp.Record(query="Q", parameters=None),
                    mgp.Record(query="P", parameters={"v": m.payload(), "k": m.key(),
                                                      "p": m.partition(),
                                                      "h": m.headers()})]

        @mgp.transformation
        def missing_field(messages):
            return [mgp.Record(query="Q")]

        @mgp.transformation
        def not_records(messages):
            return [("Q", {})]

        def undecorated(messages):
            return []
    """)
    pairs = mgp.run_transformation(mgp.find_transformation(module, "echo"), batch(None, key=None))
    assert pairs == [("Q", {}), ("P", {"v": b"", "k": b"", "p": 2, "h": [("h", b"x")]})]
    with pytest.raises(TypeError, match="yield all fields"):
        mgp.run_transformation(mgp.find_transformation(module, "missing_field"), batch(b"a"))
    with pytest.raises(TypeError, match=r"not an mgp\.Record"):
        mgp.run_transformation(mgp.find_transformation(module, "not_records"), batch(b"a"))
    with pytest.raises(LookupError, match="not decorated"):
        mgp.find_transformation(module, "undecorated")
    with pytest.raises(LookupError, match="no transformation"):
        mgp.find_transformation(module, "nope")
    with pytest.raises(NotImplementedError, match="Valid signatures"):
        load("""
            import mgp

            @mgp.transformation
            def bad(a, b, c):
                return []
        """)

"""The batch planner (UNWIND grouping and moving queries that commute) gives exactly the graph
that running the queries one by one gives: same nodes and relationships, same properties,
same internal ids. Checked on a real FalkorDB against sequential execution, with hypothesis
choosing the batches."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.backends.embedded import EmbeddedFalkorDB
from proxy.backends.falkordb import FalkorDBBackend
from proxy.streams.grouping import ROWS_PARAM, analyse, plan_queries
from proxy.streams.writers import FalkorDBWriter, PermanentWriteError
from tests.integration.falkordb_fixtures import falkordb_server  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

NODE = "CREATE (:Node {id: $id})"
EDGE = "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)"


@pytest.mark.parametrize(
    "query, kind",
    [
        (NODE, "C"),
        (EDGE, "M"),
        ("CREATE (a:A {x: $x})-[:R {w: 1}]->(b:B {y: 'two'}), (a)-[:S]->(b);", "C"),
        ("create (:N {id: toInteger($id)})", "C"),
        ("CREATE (a {x: 'MATCH $y'}) // $z", "C"),
        ("MATCH (n:Node), (m:Node) WHERE n.id = $a AND m.id = $b CREATE (n)-[:E]->(m)", "M"),
        ("MATCH (n {id: $a}), (m {id: $b}) CREATE (n)-[:E {w: $w}]->(m)", "M"),
        ("CREATE (n:N {id: $id}) RETURN n", None),
        ("MERGE (n:N {id: $id})", None),
        ("CREATE (:N {c: COUNT { MATCH (x) RETURN x }})", None),
        ("CREATE (:N {c: size([(x)-->() | x])})", None),
        ("MATCH (n:Node) WHERE n.id = $a AND m.id = $b CREATE (n)-[:E]->(m)", None),  # m unbound
        ("MATCH (n:Node {id: $a}) CREATE (n)-[:E]->(:X)", None),  # creates a node
        ("MATCH (n)-[:E]->(m) CREATE (n)-[:E]->(m)", None),  # reads relationships
        ("MATCH (n {id: $a}) SET n.x = 1 CREATE (n)-[:E]->(n)", None),
        ("MATCH (n {id:$a}) WITH n MATCH (m) CREATE (n)-[:E]->(m)", None),
        ("CREATE (n {id: $id}); CREATE (m)", None),
        ("create (:N {id: $`x y`})", None),
        ("RETURN $x", None),
        # A parameter as a pattern's whole property map cannot become __boltstream_row.p.
        ("CREATE (:MgMsg $props)", None),
        ("CREATE (n:A:B $props), (m $other)", None),
        ("MATCH (a {id: $a}), (b {id: $b}) CREATE (a)-[:T $props]->(b)", None),
        ("CREATE (:N {id: toInteger($id)})", "C"),
    ],
)
def test_shapes(query: str, kind: str | None) -> None:
    assert analyse(query).kind == kind


def node(i: Any) -> tuple[str, dict[str, Any]]:
    return NODE, {"id": i}


def edge(a: Any, b: Any) -> tuple[str, dict[str, Any]]:
    return EDGE, {"from_id": a, "to_id": b}


def test_the_tutorial_batch_becomes_two_queries() -> None:
    batch = [node(str(i)) for i in range(5)] + [edge(str(i), str(i + 1)) for i in range(4)]
    planned = plan_queries(batch)
    assert len(planned) == 2
    assert (
        planned[0][0] == f"UNWIND ${ROWS_PARAM} AS __boltstream_row CREATE (:Node {{id: "
        "__boltstream_row.id})"
    )
    assert planned[0][1] == {ROWS_PARAM: [{"id": str(i)} for i in range(5)]}


def test_queries_move_only_past_what_they_cannot_see() -> None:
    # e(1,2) must stay before v2 (it would match node 2), the rest can gather.
    planned = plan_queries([node(1), edge(1, 2), node(2), edge(1, 2), node(3), edge(5, 6), node(4)])
    assert [(q, p.get(ROWS_PARAM, p)) for q, p in planned] == [
        (NODE, {"id": 1}),
        (EDGE, {"from_id": 1, "to_id": 2}),
        (
            f"UNWIND ${ROWS_PARAM} AS __boltstream_row CREATE (:Node {{id: __boltstream_row.id}})",
            [{"id": 2}, {"id": 3}, {"id": 4}],
        ),
        (
            "UNWIND $__boltstream_rows AS __boltstream_row MATCH (n:Node {id: "
            "__boltstream_row.from_id}), (m:Node {id: __boltstream_row.to_id}) CREATE "
            "(n)-[:Edge]->(m)",
            [{"from_id": 1, "to_id": 2}, {"from_id": 5, "to_id": 6}],
        ),
    ]


def test_missing_parameters_and_other_queries_are_left_alone() -> None:
    batch = [node(1), (NODE, {}), node(2), ("MERGE (:Node {id: $id})", {"id": 3}), node(4), node(5)]
    planned = plan_queries(batch)
    assert planned[:4] == batch[:4]
    assert len(planned) == 5 and planned[4][1] == {ROWS_PARAM: [{"id": 4}, {"id": 5}]}


# -- against a real FalkorDB ----------------------------------------------------------------

TEMPLATES: list[tuple[str, tuple[str, ...]]] = [
    (NODE, ("id",)),
    ("CREATE (:Node:Extra {id: $id, v: $v})", ("id", "v")),
    ("CREATE (a:Other {k: $id})-[:R]->(b:Node {id: $v})", ("id", "v")),
    ("CREATE (:Node {id: 2})", ()),
    (EDGE, ("from_id", "to_id")),
    ("MATCH (n {id: $from_id}) CREATE (n)-[:Self {w: $w}]->(n)", ("from_id", "w")),
    (
        "MATCH (n:Node), (m:Other) WHERE n.id = $from_id AND m.k = $to_id CREATE (n)-[:Link]->(m)",
        ("from_id", "to_id"),
    ),
    ("MATCH (n:Node) CREATE (n)-[:All]->(n)", ()),
    ("MERGE (:Node {id: $id})", ("id",)),
    ("MATCH (n:Node {id: $id}) SET n.touched = true", ("id",)),
]
VALUES = st.sampled_from(["1", "2", "3", 1, 2, 3, True, 2.0])


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    batch = []
    for _ in range(draw(st.integers(1, 25))):
        # Mostly the tutorial's two queries, so long runs and moves happen.
        text, names = TEMPLATES[draw(st.sampled_from([0, 0, 0, 4, 4, 4, 1, 2, 3, 5, 6, 7, 8, 9]))]
        batch.append((text, {name: draw(VALUES) for name in names}))
    return batch


async def snapshot(backend: FalkorDBBackend, graph: str) -> tuple[list[Any], list[Any]]:
    nodes = await backend.run(
        graph, "MATCH (n) RETURN id(n), labels(n), properties(n) ORDER BY id(n)", {}
    )
    edges = await backend.run(
        graph,
        "MATCH (a)-[r]->(b) RETURN id(r), type(r), id(a), id(b), properties(r) ORDER BY id(r)",
        {},
    )
    return [list(row) for row in nodes.rows], [list(row) for row in edges.rows]


_graphs = itertools.count(1)


@pytest.fixture(scope="module")
def falkordb(falkordb_server: EmbeddedFalkorDB) -> Iterator[EmbeddedFalkorDB]:  # noqa: F811
    yield falkordb_server


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=batches())
def test_planned_equals_sequential(
    falkordb: EmbeddedFalkorDB, batch: list[tuple[str, dict[str, Any]]]
) -> None:
    async def check() -> None:
        backend = falkordb.make_backend(owns_server=False)
        await backend.start()
        try:
            n = next(_graphs)
            one, planned = f"seq{n}", f"plan{n}"
            for text, params in batch:
                await backend.run(one, text, params)
            await FalkorDBWriter(backend, planned).write_batch(batch, None)
            assert await snapshot(backend, planned) == await snapshot(backend, one)
        finally:
            await backend.close()

    asyncio.run(check())


def test_writer_errors(falkordb: EmbeddedFalkorDB) -> None:
    async def check() -> None:
        backend = falkordb.make_backend(owns_server=False)
        await backend.start()
        try:
            writer = FalkorDBWriter(backend, "errors")
            with pytest.raises(PermanentWriteError) as caught:
                await writer.write_batch([node(1), ("RETURN RETURN", {})], "owner")
            assert str(caught.value).startswith(
                "the backend rejected query 2 of 2 "
                "(RETURN RETURN): Neo.ClientError.Statement."
                "SyntaxError: "
            )
            with pytest.raises(PermanentWriteError, match="ParameterMissing"):
                await writer.write_batch([(NODE, {})], None)
        finally:
            await backend.close()

    asyncio.run(check())

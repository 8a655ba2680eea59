"""Several queries as one FalkorDB query (compose.py), on a real FalkorDB: the same graph as the
queries one by one (hypothesis picks them, several "batches" at once as a combined write
sends them), all or nothing when one fails, and the exactly-once fence."""

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
from proxy.streams.compose import NotComposable, composable, compose
from proxy.streams.grouping import plan_queries
from proxy.streams.positions import LABEL, PRUNE_EVERY, Fence, FenceLost
from proxy.streams.writers import FalkorDBWriter, NotAtomic, PermanentWriteError
from tests.integration.falkordb_fixtures import falkordb_server  # noqa: F401 - fixture
from tests.streams.test_grouping import TEMPLATES, VALUES, snapshot

pytestmark = pytest.mark.timeout(120)

Query = tuple[str, dict[str, Any]]
# Beyond the planner's shapes: rows multiplied and none at all, a subquery of the user's own,
# a comment at the end, labels the graph does not know yet matched after being created.
MORE: list[tuple[str, tuple[str, ...]]] = [
    ("UNWIND [1, 2] AS x CREATE (:Pair {x: x, id: $id})", ("id",)),
    ("CALL { CREATE (:Inner {id: $id}) } CREATE (:Outer {id: $id})", ("id",)),
    ("CREATE (:Commented {id: $id}) // the end", ("id",)),
    ("MATCH (n:Nope) SET n.x = $id", ("id",)),
    ("CREATE (:Fresh {id: $id})", ("id",)),
    ("MATCH (n:Fresh) CREATE (n)-[:Seen]->(n)", ()),
    ("MERGE (n:Fresh {id: $id}) ON MATCH SET n.again = true", ("id",)),
]


@st.composite
def combined(draw: st.DrawFn) -> list[list[Query]]:
    """One to four batches of queries (as a combined write gets them)."""
    templates = TEMPLATES + MORE
    out = []
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(0, 8))):
            text, names = templates[draw(st.integers(0, len(templates) - 1))]
            batch.append((text, {name: draw(VALUES) for name in names}))
        out.append(batch)
    return out


_graphs = itertools.count(1)


@pytest.fixture(scope="module")
def falkordb(falkordb_server: EmbeddedFalkorDB) -> Iterator[EmbeddedFalkorDB]:  # noqa: F811
    yield falkordb_server


def on(falkordb: EmbeddedFalkorDB, check: Any) -> None:
    async def run() -> None:
        backend = falkordb.make_backend(owns_server=False)
        await backend.start()
        try:
            await check(backend)
        finally:
            await backend.close()

    asyncio.run(run())


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches=combined())
def test_composed_equals_one_by_one(falkordb: EmbeddedFalkorDB, batches: list[list[Query]]) -> None:
    async def check(backend: FalkorDBBackend) -> None:
        n = next(_graphs)
        one, composed = f"cseq{n}", f"ccomp{n}"
        for batch in batches:
            for text, params in batch:
                await backend.run(one, text, params)
        queries = [query for batch in batches for query in batch]
        plan = plan_queries(queries)
        if plan:
            text, params = compose(plan)
            await backend.run(composed, text, params)
        assert await snapshot(backend, composed) == await snapshot(backend, one)

    on(falkordb, check)


def test_a_failing_query_undoes_the_whole_write(falkordb: EmbeddedFalkorDB) -> None:
    async def check(backend: FalkorDBBackend) -> None:
        writer = FalkorDBWriter(backend, "undo")
        batch = [("CREATE (:Node {id: $id})", {"id": i}) for i in range(5)]
        bad = [("MERGE (m:Mixed {b: $b}) SET m.x = 1 / $zero", {"b": "x", "zero": 0})]
        with pytest.raises(PermanentWriteError) as caught:
            await writer.write_batch(batch + bad + batch, None, atomic=True)
        assert caught.value.rolled_back and caught.value.index is None
        assert "Division by zero" in caught.value.reason
        assert await snapshot(backend, "undo") == ([], [])  # nothing, not even the first five

    on(falkordb, check)


@pytest.mark.parametrize(
    "text",
    [
        "CREATE INDEX FOR (n:Node) ON (n.id)",
        "DROP INDEX ON :Node(id)",
        "EXPLAIN CREATE (:N)",
        "CYPHER x=1 CREATE (:N)",
        "CREATE (:N); CREATE (:M)",
        "MATCH (n:Node {id: $id}) RETURN n",
        "CREATE (:U) RETURN 1 AS a UNION CREATE (:U) RETURN 2 AS a",
        "CALL db.labels()",
    ],
)
def test_what_cannot_be_composed(text: str) -> None:
    assert not composable(text)
    with pytest.raises(NotComposable):
        compose([("CREATE (:A)", {}), (text, {})])


def test_what_can_be_composed() -> None:
    for text, _names in TEMPLATES + MORE:
        assert composable(text), text
    assert composable("CALL db.labels() YIELD label CREATE (:L {name: label})")
    assert composable("MATCH (n {return: 1}) SET n.return = 2")  # keys named like keywords
    text, params = compose(
        [
            ("CREATE (:N {a: $a, b: $`b c`})", {"a": 1, "b c": 2, "unused": 3}),
            ("MATCH (n {a: '$a'}) SET n.b = $a", {"a": 4}),
        ]
    )
    assert params == {"__boltstream_p0_0": 1, "__boltstream_p0_1": 2, "__boltstream_p1_0": 4}
    assert "'$a'" in text  # strings are not parameters


def test_atomic_writes_too_large_or_impossible_say_so(falkordb: EmbeddedFalkorDB) -> None:
    async def check(backend: FalkorDBBackend) -> None:
        writer = FalkorDBWriter(backend, "notatomic", max_combined=3)
        merges = [("MERGE (:M {id: $id})", {"id": i}) for i in range(4)]  # never grouped
        with pytest.raises(NotAtomic, match="more than one atomic write composes"):
            await writer.write_batch(merges, None, atomic=True)
        with pytest.raises(NotAtomic, match="index or constraint"):
            await writer.write_batch(
                [("CREATE (:A)", {}), ("CREATE INDEX FOR (n:A) ON (n.x)", {})], None, atomic=True
            )
        assert await snapshot(backend, "notatomic") == ([], [])
        # Without asking for atomicity, the same writes go query by query, as before.
        await writer.write_batch(merges, None)
        nodes, _edges = await snapshot(backend, "notatomic")
        assert len(nodes) == 4

    on(falkordb, check)


def test_the_fence(falkordb: EmbeddedFalkorDB) -> None:
    async def check(backend: FalkorDBBackend) -> None:
        writer = FalkorDBWriter(backend, "fenced")
        node = [("CREATE (:Node {id: $id})", {"id": 1})]
        first = Fence("s", {("t", 0): None, ("t", 1): None}, {("t", 0): 5, ("t", 1): 3})
        await writer.write_batch(node, None, fence=first)
        assert await writer.read_positions("s", None) == {("t", 0): 5, ("t", 1): 3}
        assert await writer.read_positions("other", None) == {}
        # The same write again (an earlier attempt that did commit): already applied.
        await writer.write_batch(node, None, fence=first)
        # A stale writer (it expects the positions before the first write): refused, nothing
        # written, and it learns where the positions are.
        stale = Fence("s", {("t", 0): None}, {("t", 0): 9})
        with pytest.raises(FenceLost) as caught:
            await writer.write_batch(node, None, fence=stale)
        assert caught.value.found == {("t", 0): 5, ("t", 1): 3}
        second = Fence("s", {("t", 0): 5}, {("t", 0): 7})
        await writer.write_batch(node * 2, None, fence=second)
        # A position-only write (a batch whose messages were all skipped).
        await writer.write_batch([], None, fence=Fence("s", {("t", 1): 3}, {("t", 1): 4}))
        assert await writer.read_positions("s", None) == {("t", 0): 7, ("t", 1): 4}
        count = await backend.run("fenced", "MATCH (n:Node) RETURN count(n)", {})
        assert count.rows == [(3,)]
        # A write adds a position node per partition it moves (positions.FENCE_TAIL).
        labels = await backend.run("fenced", f"MATCH (n:{LABEL}) RETURN count(n)", {})
        assert labels.rows == [(4,)]
        # A query the fence cannot be composed with: refused, clearly, nothing written.
        with pytest.raises(PermanentWriteError, match="DELIVERY EXACTLY ONCE on FalkorDB"):
            await writer.write_batch(
                [("CREATE INDEX FOR (n:Node) ON (n.id)", {})],
                None,
                fence=Fence("s", {("t", 0): 7}, {("t", 0): 8}),
            )
        assert await writer.read_positions("s", None) == {("t", 0): 7, ("t", 1): 4}

    on(falkordb, check)


def test_positions_move_back_and_old_ones_are_pruned(falkordb: EmbeddedFalkorDB) -> None:
    """On FalkorDB a position is the largest ``next`` of its nodes: a write that moves it back
    (SET OFFSET) replaces them, and every PRUNE_EVERY writes the ones behind go."""

    async def nodes(backend: FalkorDBBackend) -> dict[int, list[int]]:
        result = await backend.run(
            "pruned", f"MATCH (n:{LABEL}) RETURN n.partition, n.next ORDER BY n.next", {}
        )
        found: dict[int, list[int]] = {}
        for partition, offset in result.rows:
            found.setdefault(partition, []).append(offset)
        return found

    async def check(backend: FalkorDBBackend) -> None:
        writer = FalkorDBWriter(backend, "pruned")
        at = {("t", 0): None, ("t", 1): None}
        for step in range(1, PRUNE_EVERY):
            moved = {("t", 0): step, ("t", 1): 2 * step}
            await writer.write_batch([("CREATE (:Node)", {})], None, fence=Fence("s", at, moved))
            at = dict(moved)
        assert await nodes(backend) == {
            0: list(range(1, PRUNE_EVERY)),
            1: list(range(2, 2 * PRUNE_EVERY, 2)),
        }
        last = {("t", 0): PRUNE_EVERY, ("t", 1): 2 * PRUNE_EVERY}
        await writer.write_batch([], None, fence=Fence("s", at, last))
        assert await nodes(backend) == {0: [PRUNE_EVERY], 1: [2 * PRUNE_EVERY]}
        # Back to offset 3 on partition 0 (ALTER STREAM ... SET OFFSET): its nodes replaced,
        # partition 1's kept; the write after it expects 3.
        await writer.write_batch([], None, fence=Fence("s", {("t", 1): 128}, {("t", 1): 130}))
        await writer.write_batch([], None, fence=Fence("s", {("t", 0): 64}, {("t", 0): 3}))
        assert await nodes(backend) == {0: [3], 1: [128, 130]}
        assert await writer.read_positions("s", None) == {("t", 0): 3, ("t", 1): 130}
        with pytest.raises(FenceLost):
            await writer.write_batch([], None, fence=Fence("s", {("t", 0): 64}, {("t", 0): 65}))
        await writer.write_batch([], None, fence=Fence("s", {("t", 0): 3}, {("t", 0): 4}))
        assert await writer.read_positions("s", None) == {("t", 0): 4, ("t", 1): 130}
        # Another stream's positions on the same partitions are its own, and its writes do
        # not count towards this stream's pruning (one writer serves every stream of a
        # graph): two streams writing in turn each get pruned at their own 64th write.
        await writer.write_batch([], None, fence=Fence("o", {("t", 0): None}, {("t", 0): 99}))
        await writer.write_batch([], None, fence=Fence("s", {("t", 0): 4}, {("t", 0): 5}))
        assert await writer.read_positions("s", None) == {("t", 0): 5, ("t", 1): 130}
        assert await writer.read_positions("o", None) == {("t", 0): 99}
        for step in range(PRUNE_EVERY):
            for stream, start in (("s", 5), ("o", 99)):
                fence = Fence(stream, {("t", 0): start + step}, {("t", 0): start + step + 1})
                await writer.write_batch([], None, fence=fence)
        result = await backend.run(
            "pruned", f"MATCH (n:{LABEL}) WHERE n.partition = 0 RETURN n.stream, count(n)", {}
        )
        # "s" had made four counted writes since its last pruning, "o" one: each was pruned
        # at its own 64th write, leaving the node pruned to and the writes after it.
        assert sorted(result.rows) == [("o", 2), ("s", 5)]

    on(falkordb, check)

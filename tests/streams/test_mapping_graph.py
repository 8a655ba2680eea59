"""What the mapping strategies' queries do to real graphs: FalkorDB and ArcadeDB (a Bolt
server with Neo4j's Cypher dialect), with the Neo4j connector's documented examples, every CUD
operation, tombstones, several patterns on one topic, and injection attempts.

Each test gets a fresh graph on both databases. Messages go through ``decode`` and a mapper,
the per-message queries are joined by ``combine`` (one query per run, as a stream writes
them), and the graph is then read back.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import neo4j
import pytest

from grammar.pattern import parse_pattern
from proxy.backends.embedded import EmbeddedFalkorDB
from proxy.streams.mapping import combine, decode
from proxy.streams.mapping.cud import BOLT, FALKORDB, CudMapper
from proxy.streams.mapping.cypher import BadName
from proxy.streams.mapping.pattern import PatternMapper, PatternOptions
from proxy.streams.mapping.template import Template
from proxy.streams.outcomes import Accepted, Outcome, Rejected
from tests.arcadedb import ArcadeDB
from tests.integration.falkordb_fixtures import falkordb_server
from tests.streams.test_mapping_units import message

__all__ = ["falkordb_server"]
pytestmark = pytest.mark.timeout(120)
_graphs = itertools.count(1)


class Graph(Protocol):
    dialect: Any

    def write(self, queries: Sequence[tuple[str, dict[str, Any]]]) -> None: ...

    def rows(self, query: str) -> list[list[Any]]: ...


class FalkorGraph:
    dialect = FALKORDB

    def __init__(self, server: EmbeddedFalkorDB) -> None:
        self.runner = asyncio.Runner()
        self.backend = server.make_backend(owns_server=False, pool_size=1)
        self.runner.run(self.backend.start())
        self.name = f"mapping_{os.getpid()}_{next(_graphs)}"

    def write(self, queries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for text, params in queries:
            self.runner.run(self.backend.run(self.name, text, params))

    def rows(self, query: str) -> list[list[Any]]:
        return [list(row) for row in self.runner.run(self.backend.run(self.name, query, {})).rows]

    def close(self) -> None:
        self.runner.run(self.backend.close())
        self.runner.close()


class ArcadeGraph:
    dialect = BOLT

    def __init__(self, server: ArcadeDB) -> None:
        self.database = server.create_database("mapping")
        self.driver = neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth)

    def write(self, queries: Sequence[tuple[str, dict[str, Any]]]) -> None:
        with (
            self.driver.session(database=self.database) as session,
            session.begin_transaction() as tx,
        ):
            for text, params in queries:
                tx.run(text, params).consume()
            tx.commit()

    def rows(self, query: str) -> list[list[Any]]:
        with self.driver.session(database=self.database) as session:
            return [list(record.values()) for record in session.run(query)]

    def close(self) -> None:
        self.driver.close()


@pytest.fixture(params=["falkordb", "arcadedb"])
def graph(request: pytest.FixtureRequest) -> Iterator[Graph]:
    made: FalkorGraph | ArcadeGraph
    if request.param == "falkordb":
        made = FalkorGraph(request.getfixturevalue("falkordb_server"))
    else:
        made = ArcadeGraph(request.getfixturevalue("arcadedb"))
    yield made
    made.close()


def apply(graph: Graph, mapper: Any, messages: Sequence[Any]) -> list[Outcome]:
    """Map ``messages`` and write what was accepted, batched as a stream does."""
    outcomes = [mapper.outcome(decode(m)) for m in messages]
    queries = [q for o in outcomes if isinstance(o, Accepted) for q in o.queries]
    graph.write(combine(queries))
    return outcomes


def nodes(graph: Graph, label: str, *props: str) -> list[list[Any]]:
    fields = ", ".join(f"n.`{p}`" for p in props)
    return sorted(graph.rows(f"MATCH (n:`{label}`) RETURN {fields}"), key=repr)


# -- templates -------------------------------------------------------------------------------


def test_cypher_template_runs_once_per_batch_with_the_connector_bindings(graph: Graph) -> None:
    template = Template(
        "MERGE (p:Person {id: event.id}) SET p.name = __value.name, "
        "p.topic = __topic, p.offset = __offset, p.k = __key, "
        "p.h = __header.source"
    )
    apply(
        graph,
        template,
        [
            message(
                {"id": 1, "name": "Ann"},
                key="a",
                raw_headers=[("source", b"crm")],
                where=("people", 0, 10),
            ),
            message({"id": 2, "name": "Bob"}, key="b", where=("people", 0, 11)),
            message({"id": 1, "name": "Annie"}, key="a", where=("people", 0, 12)),
        ],
    )
    assert nodes(graph, "Person", "id", "name", "topic", "offset", "k", "h") == [
        [1, "Annie", "people", 12, "a", None],
        [2, "Bob", "people", 11, "b", None],
    ]
    # The first message's header was set, and the third (without it) set it to null.


def test_updates_to_one_entity_in_one_batch_apply_in_order(graph: Graph) -> None:
    """FalkorDB's MERGE does not keep row order for rows of one entity within a query; the
    batches are cut so that the last message wins, as it would one by one."""
    template = Template("MERGE (p:Acct {id: event.id}) SET p.balance = event.balance")
    apply(
        graph, template, [message({"id": i % 3, "balance": i}, key=str(i % 3)) for i in range(30)]
    )
    assert nodes(graph, "Acct", "id", "balance") == [[0, 27], [1, 28], [2, 29]]
    pattern = PatternMapper([parse_pattern("(:Item{!id, *})")])
    apply(graph, pattern, [message({"id": i % 2, "n": i}) for i in range(10)])
    assert nodes(graph, "Item", "id", "n") == [[0, 8], [1, 9]]
    cud = CudMapper(graph.dialect)
    apply(
        graph,
        cud,
        [
            message(
                {
                    "type": "node",
                    "op": "merge",
                    "labels": ["C"],
                    "ids": {"id": i % 2},
                    "properties": {"n": i},
                }
            )
            for i in range(10)
        ],
    )
    assert nodes(graph, "C", "id", "n") == [[0, 8], [1, 9]]


# -- patterns ------------------------------------------------------------------------------------

DOC_USER = {
    "userId": 1,
    "name": "John",
    "surname": "Doe",
    "address": {"since": "2012-05", "city": "London", "country": "UK"},
}


def test_documented_node_pattern(graph: Graph) -> None:
    apply(graph, PatternMapper([parse_pattern("(:User{!id: userId})")]), [message(DOC_USER)])
    assert nodes(
        graph, "User", "id", "name", "surname", "address.city", "address.since", "userId"
    ) == [[1, "John", "Doe", "London", "2012-05", None]]


def test_documented_relationship_pattern(graph: Graph) -> None:
    mapper = PatternMapper(
        [
            parse_pattern(
                "(:User{!id: userId})-[:LIVES_IN{since: address.since}]->"
                "(:City{!name: address.city, !country: address.country})"
            )
        ]
    )
    apply(graph, mapper, [message(DOC_USER), message(DOC_USER)])  # a replay changes nothing
    assert graph.rows(
        "MATCH (u:User)-[r:LIVES_IN]->(c:City) RETURN u.id, r.since, c.name, c.country"
    ) == [[1, "2012-05", "London", "UK"]]


def test_replace_or_merge_properties(graph: Graph) -> None:
    pattern = [parse_pattern("(:P{!id, *})")]
    apply(graph, PatternMapper(pattern), [message({"id": 1, "a": 1, "b": 2})])
    apply(graph, PatternMapper(pattern), [message({"id": 1, "a": 10})])
    assert nodes(graph, "P", "id", "a", "b") == [[1, 10, None]]  # replaced: b is gone
    merging = PatternMapper(pattern, PatternOptions(merge_node_properties=True))
    apply(graph, merging, [message({"id": 1, "b": 20})])
    assert nodes(graph, "P", "id", "a", "b") == [[1, 10, 20]]  # merged: a stays


def test_tombstones_delete_nodes_and_relationships(graph: Graph) -> None:
    users = PatternMapper([parse_pattern("(:U{!id})")])
    follows = PatternMapper([parse_pattern("(:U{!id: from})-[:F]->(:U{!id: to})")])
    apply(graph, users, [message({"id": i}) for i in (1, 2, 3)])
    apply(graph, follows, [message({"from": 1, "to": 2}), message({"from": 2, "to": 3})])
    apply(graph, follows, [message(None, key={"from": 1, "to": 2})])
    assert graph.rows("MATCH (a)-[:F]->(b) RETURN a.id, b.id") == [[2, 3]]
    apply(graph, users, [message(None, key={"id": 3})])  # DETACH DELETE
    assert nodes(graph, "U", "id") == [[1], [2]]
    assert graph.rows("MATCH ()-[r:F]->() RETURN count(r)") == [[0]]


def test_several_patterns_on_one_topic_apply_in_order(graph: Graph) -> None:
    mapper = PatternMapper(
        [
            parse_pattern("(:Customer{!id: customerId, name})"),
            parse_pattern("(:Customer{!id: customerId})-[:ORDERED{qty}]->(:Item{!sku})"),
        ],
        PatternOptions(merge_node_properties=True),
    )
    outcomes = apply(
        graph,
        mapper,
        [
            message({"customerId": 7, "name": "Zoe", "sku": "A1", "qty": 2}),
            message({"customerId": 7, "name": "Zoe", "sku": "B2", "qty": 1}),
            message({"customerId": 8, "name": "Yan"}),  # no sku: bad for the second pattern
        ],
    )
    assert isinstance(outcomes[2], Rejected) and "sku" in outcomes[2].reason
    assert graph.rows(
        "MATCH (c:Customer)-[o:ORDERED]->(i:Item) RETURN c.name, o.qty, i.sku ORDER BY i.sku"
    ) == [["Zoe", 2, "A1"], ["Zoe", 1, "B2"]]
    assert nodes(graph, "Customer", "id") == [[7]]


# -- CUD -------------------------------------------------------------------------------------------


def test_every_cud_operation(graph: Graph) -> None:
    mapper = CudMapper(graph.dialect)
    node = {"type": "node", "labels": ["Foo", "Bar"]}
    apply(
        graph,
        mapper,
        [
            message({**node, "op": "create", "properties": {"id": 1, "name": "one"}}),
            message({**node, "op": "MERGE", "ids": {"id": 2}, "properties": {"name": "two"}}),
            message({**node, "op": "update", "ids": {"id": 1}, "properties": {"name": "uno"}}),
            message(
                {
                    "type": "relationship",
                    "op": "merge",
                    "rel_type": "BOUGHT",
                    "from": {"labels": ["User"], "ids": {"userId": 1}, "op": "merge"},
                    "to": {"labels": ["Product"], "ids": {"productId": 100}, "op": "merge"},
                    "properties": {"price": 10},
                }
            ),
            message(
                {
                    "type": "relationship",
                    "op": "create",
                    "rel_type": "NEXT",
                    "from": {"labels": ["Foo"], "ids": {"id": 1}},
                    "to": {"labels": ["Foo"], "ids": {"id": 2}},
                    "properties": {"w": 1},
                }
            ),
            message(
                {
                    "type": "relationship",
                    "op": "update",
                    "rel_type": "BOUGHT",
                    "from": {"labels": ["User"], "ids": {"userId": 1}},
                    "to": {"labels": ["Product"], "ids": {"productId": 100}},
                    "properties": {"currency": "EUR"},
                }
            ),
        ],
    )
    assert nodes(graph, "Foo", "id", "name") == [[1, "uno"], [2, "two"]]
    assert graph.rows("MATCH (:User)-[r:BOUGHT]->(:Product) RETURN r.price, r.currency") == [
        [10, "EUR"]
    ]
    assert graph.rows("MATCH (a:Foo)-[r:NEXT]->(b:Foo) RETURN a.id, r.w, b.id") == [[1, 1, 2]]
    outcomes = apply(
        graph,
        mapper,
        [
            message(
                {
                    "type": "relationship",
                    "op": "delete",
                    "rel_type": "NEXT",
                    "from": {"labels": ["Foo"], "ids": {"id": 1}},
                    "to": {"labels": ["Foo"], "ids": {"id": 2}},
                }
            ),
            message({"type": "node", "op": "delete", "labels": ["Foo"], "ids": {"id": 2}}),
            message({"type": "node", "op": "delete", "ids": {"userId": 1}, "detach": True}),
        ],
    )
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert nodes(graph, "Foo", "id") == [[1]]
    assert graph.rows("MATCH (n:User) RETURN count(n)") == [[0]]
    assert graph.rows("MATCH ()-[r]->() RETURN count(r)") == [[0]]


def test_cud_by_internal_id(graph: Graph) -> None:
    mapper = CudMapper(graph.dialect)
    apply(
        graph,
        mapper,
        [message({"type": "node", "op": "create", "labels": ["Q"], "properties": {"v": 1}})],
    )
    ((node_id, element_id),) = graph.rows(
        "MATCH (n:Q) RETURN id(n), " + graph.dialect.element_id.format("n")
    )
    apply(
        graph,
        mapper,
        [
            message(
                {"type": "node", "op": "update", "ids": {"_id": node_id}, "properties": {"v": 2}}
            )
        ],
    )
    assert nodes(graph, "Q", "v") == [[2]]
    apply(
        graph,
        mapper,
        [message({"type": "node", "op": "delete", "ids": {"_elementId": element_id}})],
    )
    assert nodes(graph, "Q", "v") == []


# -- injection -----------------------------------------------------------------------------------

HOSTILE = ["A`) DETACH DELETE n //", "A` {x: 1}) MATCH (m) DETACH DELETE m //", "`", "A\nB"]


def test_hostile_names_never_reach_the_graph(graph: Graph) -> None:
    apply(
        graph,
        CudMapper(graph.dialect),
        [message({"type": "node", "op": "create", "labels": ["Keep"], "properties": {}})],
    )
    for name in HOSTILE:
        outcomes = apply(
            graph,
            CudMapper(graph.dialect),
            [
                message({"type": "node", "op": "create", "labels": [name], "properties": {}}),
                message({"type": "node", "op": "merge", "ids": {name: 1}, "properties": {}}),
                message(
                    {
                        "type": "relationship",
                        "op": "create",
                        "rel_type": name,
                        "from": {"ids": {"a": 1}},
                        "to": {"ids": {"a": 2}},
                        "properties": {},
                    }
                ),
            ],
        )
        assert all(isinstance(o, Rejected) for o in outcomes), outcomes
        with pytest.raises(BadName):
            PatternMapper([parse_pattern(f"(:`{name.replace('`', '``')}`{{!id}})")])
    # Hostile text in values and in property names of maps is only ever data.
    apply(
        graph,
        CudMapper(graph.dialect),
        [
            message(
                {
                    "type": "node",
                    "op": "create",
                    "labels": ["Data"],
                    "properties": {"v": HOSTILE[1], "n) DETACH DELETE n //": "x"},
                }
            )
        ],
    )
    apply(
        graph,
        PatternMapper([parse_pattern("(:Data2{!id})")]),
        [message({"id": HOSTILE[0], "x": "'); MATCH (n) DETACH DELETE n //"})],
    )
    assert graph.rows("MATCH (n) RETURN labels(n)[0] AS l ORDER BY l") == [
        ["Data"],
        ["Data2"],
        ["Keep"],
    ]
    assert graph.rows("MATCH (n:Data) RETURN n.v") == [[HOSTILE[1]]]
    assert graph.rows("MATCH (n:Data2) RETURN n.id") == [[HOSTILE[0]]]

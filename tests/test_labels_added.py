"""labels-added as Neo4j counts it (once per node that gets a label), from FalkorDB's figures
and the query text (proxy/backends/falkordb/stats.py)."""

from __future__ import annotations

import pytest

from proxy.backends.falkordb.stats import label_shape, neo4j_labels_added


@pytest.mark.parametrize(
    ("query", "patterns", "labels", "sets"),
    [
        ("CREATE (:Person), (:Person)", 2, 2, False),
        ("CREATE (:A:B), (:C)", 2, 3, False),
        ("CREATE (n:Person:Person)", 1, 1, False),
        ("MATCH (a:X) CREATE (a)-[:R]->(b:T)", 1, 1, False),
        ("UNWIND $rows AS row CREATE (:N {id: row, d: date('x')})", 1, 1, False),
        ("MERGE (n:P {id: 1}) ON CREATE SET n:New", 1, 1, True),
        ("MATCH (n) SET n:X", 0, 0, True),
        ("MATCH (n) SET n.x = {set: 1}", 0, 0, False),
        ("CREATE (n {set: 1})", 1, 0, False),
        ("CREATE (`a b`:`L x`)", 1, 1, False),
        ("CREATE (a:A) WITH a CREATE (a)-[:R]->(:B)", 2, 2, False),
        ("RETURN 1", 0, 0, False),
    ],
)
def test_label_shape(query: str, patterns: int, labels: int, sets: bool) -> None:
    shape = label_shape(query)
    assert (shape.creating_patterns, shape.created_labels, shape.sets_labels) == (
        patterns,
        labels,
        sets,
    )


def test_created_nodes_count_each_label_they_get() -> None:
    # FalkorDB says 1 the first time (a label new to the graph), 0 afterwards.
    for falkordb_says in ({"labels-added": 1}, {}):
        stats = {"nodes-created": 2, **falkordb_says}
        assert neo4j_labels_added(stats, "CREATE (:Person), (:Person)", []) == 2
    stats = {"nodes-created": 3, "labels-added": 1}
    assert neo4j_labels_added(stats, "UNWIND range(1, 3) AS i CREATE (:Q)", []) == 3


def test_set_labels_keep_falkordbs_per_node_count() -> None:
    assert neo4j_labels_added({"labels-added": 4}, "MATCH (n) SET n:X", ["X"]) is None


def test_created_and_set_labels_together() -> None:
    # MERGE creates one :P (new to the graph) and SET adds :New to it: FalkorDB says 2 (P new
    # to the schema, New per node); Neo4j says 2 as well (P on the node, New on the node).
    stats = {"nodes-created": 1, "labels-added": 2}
    query = "MERGE (n:P {id: 1}) ON CREATE SET n:New"
    assert neo4j_labels_added(stats, query, labels_before=[]) == 2
    # The same with :P already in the graph: FalkorDB says 1 (New only).
    assert neo4j_labels_added({"nodes-created": 1, "labels-added": 1}, query, ["P"]) == 2

"""The ArcadeDB fixture is the real thing: Bolt 5.4, Cypher, transactions that roll back."""

from __future__ import annotations

import os

import neo4j
import pytest

from tests.arcadedb import ArcadeDB

pytestmark = pytest.mark.timeout(120)


def test_arcadedb_speaks_bolt_and_rolls_back(arcadedb: ArcadeDB) -> None:
    db = arcadedb.create_database("rollback")
    with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as driver:
        info = driver.get_server_info()
        assert info.agent.startswith("Neo4j/") and "ArcadeDB" in info.agent
        assert info.protocol_version >= (5, 0)
        with driver.session(database=db) as session:
            tx = session.begin_transaction()
            tx.run("CREATE (:Gone {v: 1})").consume()
            tx.rollback()
            session.run("CREATE (:Kept {v: 2})").consume()
        records, _, _ = driver.execute_query(
            "MATCH (n) RETURN labels(n)[0] AS label, n.v AS v", database_=db
        )
        assert [(r["label"], r["v"]) for r in records] == [("Kept", 2)]
        # Another database is another graph.
        other = arcadedb.create_database("other")
        records, _, _ = driver.execute_query("MATCH (n) RETURN count(n) AS c", database_=other)
        assert records[0]["c"] == 0


def test_the_default_database_stays_put_as_databases_are_created(arcadedb: ArcadeDB) -> None:
    """A connection that names no database gets ArcadeDB's default, chosen when it first runs
    a query and kept. The fixture pins it to ``neo4j``: unpinned, it is the first database
    ArcadeDB lists, and creating databases moves it (with 20 new names, one comes first
    almost surely, in hash order and in sorted order alike), so a proxy's stream writer
    (connections opened earlier) and its clients (opened later) used different graphs."""
    label = f"Stays{os.getpid()}"
    with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as early:
        early.execute_query(f"CREATE (:{label} {{by: 'early'}})")
        for _ in range(20):
            arcadedb.create_database("a_default")
        early.execute_query(f"CREATE (:{label} {{by: 'early, later'}})")
        with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as late:
            late.execute_query(f"CREATE (:{label} {{by: 'late'}})")
            for driver in (early, late):
                records, _, _ = driver.execute_query(f"MATCH (n:{label}) RETURN n.by AS by")
                assert sorted(r["by"] for r in records) == ["early", "early, later", "late"]

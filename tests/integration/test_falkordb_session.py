"""What the proxy does itself in front of FalkorDB: system queries, graphs, transactions."""

from __future__ import annotations

import uuid

import neo4j
import pytest
from neo4j.exceptions import ClientError, DatabaseError

from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def driver(embedded_proxy: ProxyProcess):
    with neo4j.GraphDatabase.driver(embedded_proxy.bolt_uri, auth=embedded_proxy.auth) as drv:
        yield drv


def run(driver: neo4j.Driver, query: str, database: str | None = None, **params):
    with driver.session(database=database) as session:
        return session.run(query, params).data()


def test_connect_time_queries(driver: neo4j.Driver) -> None:
    assert run(driver, "CALL db.ping()") == [{"success": True}]
    components = run(driver, "CALL dbms.components() YIELD name, versions, edition", "system")
    assert components[0]["name"] == "Neo4j Kernel"
    assert components[0]["versions"][0].startswith("5.")
    assert components[0]["edition"] == "community"
    assert run(driver, "CALL dbms.components() YIELD versions") == [
        {"versions": components[0]["versions"]}
    ]
    assert run(driver, "CALL dbms.clientConfig()", "system") == []
    user = run(driver, "CALL dbms.showCurrentUser()", "system")
    assert user == [{"username": "neo4j", "roles": ["admin"], "flags": []}]


def test_show_databases_lists_graphs(driver: neo4j.Driver) -> None:
    graph = "g" + uuid.uuid4().hex[:8]
    run(driver, "CREATE (:X)", graph)
    rows = run(driver, "SHOW DATABASES", "SYSTEM")
    names = [row["name"] for row in rows]
    assert "system" in names and "neo4j" in names and graph in names
    home = [row for row in rows if row["home"]]
    assert [row["name"] for row in home] == ["neo4j"]
    assert all(row["currentStatus"] == "online" for row in rows)
    only = run(driver, f"SHOW DATABASES YIELD name, currentStatus WHERE name = '{graph}'")
    assert only == [{"name": graph, "currentStatus": "online"}]


def test_database_name_selects_the_graph_case_insensitively(driver: neo4j.Driver) -> None:
    graph = "Mixed" + uuid.uuid4().hex[:6]
    run(driver, "CREATE (:Only {here: true})", graph)
    assert run(driver, "MATCH (n:Only) RETURN count(n) AS c", graph.upper()) == [{"c": 1}]
    assert run(driver, "MATCH (n:Only) RETURN count(n) AS c", graph.lower()) == [{"c": 1}]
    assert run(driver, "MATCH (n:Only) RETURN count(n) AS c") == [{"c": 0}]


def test_browser_meta_query(driver: neo4j.Driver) -> None:
    graph = "meta" + uuid.uuid4().hex[:6]
    run(driver, "CREATE (:Alpha {p1: 1})-[:LINKS {p2: 2}]->(:Beta)", graph)
    rows = run(
        driver,
        "CALL db.labels() YIELD label RETURN {name:'labels', data:COLLECT(label)[..1000]} "
        "AS result UNION ALL CALL db.relationshipTypes() YIELD relationshipType RETURN "
        "{name:'relationshipTypes', data:COLLECT(relationshipType)[..1000]} AS result "
        "UNION ALL CALL db.propertyKeys() YIELD propertyKey RETURN {name:'propertyKeys', "
        "data:COLLECT(propertyKey)[..1000]} AS result",
        graph,
    )
    by_name = {row["result"]["name"]: set(row["result"]["data"]) for row in rows}
    assert by_name == {
        "labels": {"Alpha", "Beta"},
        "relationshipTypes": {"LINKS"},
        "propertyKeys": {"p1", "p2"},
    }


def test_show_procedures_lists_what_falkordb_has(driver: neo4j.Driver) -> None:
    rows = run(driver, "SHOW PROCEDURES YIELD name, description, signature", "system")
    assert "db.labels" in {row["name"] for row in rows}
    assert run(driver, "SHOW FUNCTIONS YIELD name, description, signature", "system") == []


def test_unknown_procedure_is_procedure_not_found(driver: neo4j.Driver) -> None:
    with pytest.raises(ClientError) as caught:
        run(driver, "CALL db.nope()")
    assert caught.value.code == "Neo.ClientError.Procedure.ProcedureNotFound"


def test_rollback_after_a_write_says_the_writes_were_applied(driver: neo4j.Driver) -> None:
    label = "Rb" + uuid.uuid4().hex[:8]
    with driver.session() as session:
        tx = session.begin_transaction()
        tx.run(f"CREATE (:{label})").consume()
        with pytest.raises(DatabaseError, match="already applied"):
            tx.rollback()
        assert session.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"] == 1
        read_only = session.begin_transaction()
        read_only.run("RETURN 1").consume()
        read_only.rollback()  # nothing written: a plain success


def test_transaction_as_query_text(driver: neo4j.Driver) -> None:
    """pymgclient sends BEGIN / COMMIT / ROLLBACK as the text of auto-commit queries."""
    label = "Txt" + uuid.uuid4().hex[:8]
    with driver.session() as session:
        for text in ("BEGIN", f"CREATE (:{label})", "COMMIT"):
            session.run(text).consume()
        session.run("BEGIN").consume()
        session.run("RETURN 1").consume()
        session.run("ROLLBACK").consume()
        session.run("BEGIN").consume()
        session.run(f"CREATE (:{label})").consume()
        with pytest.raises(DatabaseError, match="already applied"):
            session.run("ROLLBACK").consume()
        assert session.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"] == 2


def test_route_message_names_the_proxy(embedded_proxy: ProxyProcess) -> None:
    with neo4j.GraphDatabase.driver(embedded_proxy.neo4j_uri, auth=embedded_proxy.auth) as drv:
        drv.verify_connectivity()
        records, summary, _ = drv.execute_query("RETURN 1 AS x", database_="neo4j")
    assert records[0]["x"] == 1
    assert summary.server.address == (embedded_proxy.host, embedded_proxy.port)


def test_explain_returns_a_plan_and_runs_nothing(driver: neo4j.Driver) -> None:
    label = "Ex" + uuid.uuid4().hex[:8]
    with driver.session() as session:
        summary = session.run(f"EXPLAIN CREATE (:{label})").consume()
        assert summary.plan is not None
        assert summary.plan["operatorType"]
        assert session.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"] == 0

"""The official neo4j Python driver through the proxy, on both kinds of backend.

``embedded``: the proxy is the Bolt server, on FalkorDB over RESP (the default product).
``relay``: the proxy relays to FalkorDB's own Bolt port (payloads kept under 4 KB there:
FalkorDB 4.16's Bolt server crashes on larger messages).
"""

from __future__ import annotations

import threading
import uuid

import neo4j
import pytest
from neo4j.exceptions import ClientError, CypherSyntaxError

from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)


def unique_label() -> str:
    return "T" + uuid.uuid4().hex[:12]


@pytest.fixture
def driver(proxy: ProxyProcess):
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=proxy.auth) as drv:
        yield drv


def test_autocommit_write_then_read(driver: neo4j.Driver) -> None:
    label = unique_label()
    with driver.session() as session:
        summary = session.run(
            f"CREATE (:{label} {{name: $name, n: 1}}), (:{label} {{n: 2}})", name="ada"
        ).consume()
        assert summary.counters.nodes_created == 2
        assert summary.counters.properties_set == 3
        rows = session.run(f"MATCH (n:{label}) RETURN n.n AS n ORDER BY n").data()
    assert rows == [{"n": 1}, {"n": 2}]


def test_node_comes_back_as_a_node(driver: neo4j.Driver) -> None:
    label = unique_label()
    with driver.session() as session:
        record = session.run(
            f"CREATE (a:{label} {{name: 'x'}})-[r:KNOWS {{since: 3}}]->"
            f"(b:{label} {{name: 'y'}}) RETURN a, r, b"
        ).single()
    assert record is not None
    a, r, b = record["a"], record["r"], record["b"]
    assert isinstance(a, neo4j.graph.Node) and label in a.labels and a["name"] == "x"
    assert isinstance(r, neo4j.graph.Relationship) and r.type == "KNOWS" and r["since"] == 3
    assert r.start_node.element_id == a.element_id
    assert r.end_node.element_id == b.element_id


def test_explicit_transaction_commits(driver: neo4j.Driver) -> None:
    label = unique_label()
    with driver.session() as session:
        with session.begin_transaction() as tx:
            first = tx.run(f"CREATE (n:{label} {{i: 1}}) RETURN n.i AS i")
            second = tx.run(f"CREATE (n:{label} {{i: 2}}) RETURN n.i AS i")
            # Two open results in one transaction, consumed out of order (qids).
            assert second.single()["i"] == 2
            assert first.single()["i"] == 1
            tx.commit()
        count = session.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()
    assert count is not None and count["c"] == 2


def test_managed_transaction(driver: neo4j.Driver) -> None:
    label = unique_label()

    def work(tx: neo4j.ManagedTransaction) -> int:
        tx.run(f"CREATE (:{label})").consume()
        return tx.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"]

    with driver.session() as session:
        assert session.execute_write(work) == 1


def test_large_result_in_small_batches(driver: neo4j.Driver) -> None:
    with driver.session(fetch_size=7) as session:
        values = [r["x"] for r in session.run("UNWIND range(1, 1000) AS x RETURN x")]
    assert values == list(range(1, 1001))


def test_error_then_connection_reused(driver: neo4j.Driver) -> None:
    with driver.session() as session:
        # a syntax error for all three backends (ArcadeDB calls RETURN RETURN a semantic one)
        with pytest.raises(CypherSyntaxError):
            session.run("MATCH (n RETURN n").consume()
        assert session.run("RETURN 1 AS one").single()["one"] == 1
        with pytest.raises(ClientError):
            session.run("RETURN $missing AS x").consume()
        assert session.run("RETURN 2 AS two").single()["two"] == 2


def test_error_inside_transaction_then_reuse(driver: neo4j.Driver) -> None:
    with driver.session() as session:
        tx = session.begin_transaction()
        with pytest.raises(CypherSyntaxError):
            tx.run("MATCH (n RETURN n").consume()
        tx.close()
        assert session.run("RETURN 3 AS three").single()["three"] == 3


def test_sixteen_concurrent_sessions(proxy: ProxyProcess) -> None:
    label = unique_label()
    errors: list[BaseException] = []
    with neo4j.GraphDatabase.driver(
        proxy.bolt_uri, auth=proxy.auth, max_connection_pool_size=16
    ) as driver:

        def worker(index: int) -> None:
            try:
                with driver.session() as session:
                    for step in range(10):
                        session.run(
                            f"CREATE (:{label} {{w: $w, s: $s}})", w=index, s=step
                        ).consume()
                        got = session.run("RETURN $w AS w", w=index).single()["w"]
                        assert got == index
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(45)
        assert not errors, errors
        with driver.session() as session:
            count = session.run(f"MATCH (n:{label}) RETURN count(n) AS c").single()["c"]
    assert count == 160


def test_neo4j_scheme_routes_through_the_proxy(proxy: ProxyProcess) -> None:
    with neo4j.GraphDatabase.driver(proxy.neo4j_uri, auth=proxy.auth) as driver:
        driver.verify_connectivity()
        records, _summary, _keys = driver.execute_query("RETURN 41 + 1 AS answer")
        assert records[0]["answer"] == 42
        with driver.session(default_access_mode=neo4j.READ_ACCESS) as session:
            assert session.run("RETURN 'read' AS r").single()["r"] == "read"


def test_routing_table_names_the_proxy(proxy: ProxyProcess) -> None:
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=proxy.auth) as driver:
        with driver.session(database="system") as session:
            record = session.run("CALL dbms.routing.getRoutingTable({}, 'neo4j')").single()
    assert record is not None
    assert record["ttl"] > 0
    roles = {server["role"]: server["addresses"] for server in record["servers"]}
    expected = [f"{proxy.host}:{proxy.port}"]
    assert roles == {"WRITE": expected, "READ": expected, "ROUTE": expected}

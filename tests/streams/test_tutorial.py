"""The tutorial of the manual (seeds/000), step by step, through the proxy with the official
driver: topic with the messages ``1`` and ``1 2``, the manual's transform, CREATE, SHOW
(stopped), TEST (the exact table), START, SHOW (running), the graph, STOP, SHOW, DROP; in
front of the embedded FalkorDB and of ArcadeDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.streams.conftest import Broker, count, run, show, stream_name, wait_until

pytestmark = pytest.mark.timeout(60)

FIRST_FIVE = ["name", "uri", "topic", "transform", "status"]


def test_the_tutorial(backend: Any, broker: Broker, topic: str, transforms: Path) -> None:
    driver = backend
    run(driver, "MATCH (n:Node) DETACH DELETE n")
    broker.produce(topic, ["1", "1 2"])
    name = stream_name("mystream")
    transform = str(transforms / "manual.py")

    # CREATE STREAM: no rows, stream recorded, stopped.
    rows = run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{transform}'",
    )
    assert rows == []

    with driver.session() as session:
        result = session.run("SHOW STREAMS")
        keys = result.keys()
        records = [r.data() for r in result if r["name"] == name]
    assert keys[:5] == FIRST_FIVE
    assert keys == [
        *FIRST_FIVE,
        "batch_interval",
        "batch_size",
        "consumer_group",
        "owner",
        "messages_processed",
        "lag",
        "last_error",
        "on_error",
        "dead_letter_topic",
        "dead_lettered",
        "skipped",
        "delivery",
        "holders",
        "status_detail",
        "type",
        "transformation_name",
        "is running",
        "configs",
        "credentials",
        "database",
    ]
    assert len(records) == 1
    row = records[0]
    assert [row[k] for k in FIRST_FIVE] == [name, broker.bootstrap, topic, transform, "stopped"]
    assert row["batch_interval"] == 100 and row["batch_size"] == 10
    assert row["consumer_group"] == name
    assert row["owner"] == backend.user
    assert row["messages_processed"] == 0
    assert row["last_error"] is None
    # A user transform stops on errors unless the clause says otherwise.
    assert (row["on_error"], row["dead_letter_topic"], row["dead_lettered"], row["skipped"]) == (
        "stop",
        None,
        0,
        0,
    )
    assert row["delivery"] == "at least once"  # the default
    assert row["holders"] == {}  # not running: nobody holds a partition
    assert row["status_detail"] is None  # not running
    # Memgraph 2.x's columns: a legacy stream is a Kafka stream too.
    assert (row["type"], row["transformation_name"], row["is running"]) == (
        "kafka",
        transform,
        False,
    )
    assert (row["configs"], row["credentials"]) == ({}, {})

    # TEST STREAM: exactly the manual's table; nothing written, nothing committed.
    with driver.session() as session:
        result = session.run(f"TEST STREAM {name};")
        assert result.keys() == ["query", "params"]
        table = [(r["query"], r["params"]) for r in result]
    assert table == [
        ("CREATE (:Node {id: $id})", {"id": "1"}),
        (
            "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
            {"from_id": "1", "to_id": "2"},
        ),
    ]
    assert count(driver, "(n:Node)") == 0
    assert broker.committed(name, topic) == {0: -1001}  # nothing committed (OFFSET_INVALID)
    # Testing again shows the same batch: the test consumed nothing for good.
    again = [(r["query"], r["params"]) for r in run(driver, f"TEST STREAM {name}")]
    assert again == table

    # START STREAM: running; the messages reach the graph.
    assert run(driver, f"START STREAM {name}") == []
    assert show(driver, name)["status"] == "running"
    try:
        wait_until(lambda: count(driver, "(n:Node)") == 1, message="the node")
    except AssertionError as exc:  # say where the stream is
        direct = ""
        if hasattr(backend, "arcadedb"):
            import neo4j

            with neo4j.GraphDatabase.driver(
                backend.arcadedb.bolt_uri, auth=backend.arcadedb.auth
            ) as straight:
                direct = f"; straight to ArcadeDB: {count(straight, '(n:Node)')} nodes"
            direct += "; proxy log: " + backend.proxy.log_text()[-3000:]
        raise AssertionError(
            f"{exc}; nodes: {count(driver, '(n:Node)')}; the stream: {show(driver, name)}{direct}"
        ) from None
    # The edge query matched node 1 and (no node 2) created nothing, as in the tutorial.
    assert run(driver, "MATCH (n:Node) RETURN n.id AS id") == [{"id": "1"}]
    wait_until(lambda: show(driver, name)["messages_processed"] == 2, message="the counter")
    assert broker.committed(name, topic) == {0: 2}
    # A later message arrives while it runs.
    broker.produce(topic, ["2", "1 2"])
    wait_until(
        lambda: count(driver, "(:Node {id: '1'})-[:Edge]->(:Node {id: '2'})") == 1,
        message="the edge",
    )
    row = wait_until(
        lambda: (r := show(driver, name))["messages_processed"] == 4 and r, message="the counter"
    )
    assert row["status"] == "running" and row["lag"] == 0 and row["last_error"] is None
    assert row["status_detail"] == "healthy"

    # STOP STREAM: stopped; DROP STREAM: gone.
    assert run(driver, f"STOP STREAM {name}") == []
    assert show(driver, name)["status"] == "stopped"
    assert run(driver, f"DROP STREAM {name}") == []
    assert all(row["name"] != name for row in run(driver, "SHOW STREAMS"))


def test_the_tutorial_through_execute_query(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    """The same tutorial with ``execute_query``, which runs each statement in a managed
    transaction (BEGIN, RUN, PULL, COMMIT), as Neo4j Browser's editor does."""

    def query(text: str) -> list[dict[str, Any]]:
        records, _summary, _keys = driver.execute_query(text)
        return [record.data() for record in records]

    def status(name: str) -> dict[str, Any]:
        (row,) = [row for row in query("SHOW STREAMS") if row["name"] == name]
        return row

    query("MATCH (n:Node) DETACH DELETE n")
    broker.produce(topic, ["1", "1 2"])
    name = stream_name("mystream")
    assert (
        query(
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
            f"WITH TOPIC '{topic}' WITH TRANSFORM '{transforms / 'manual.py'}'"
        )
        == []
    )
    assert status(name)["status"] == "stopped" and status(name)["owner"] == "alice"
    assert [(r["query"], r["params"]) for r in query(f"TEST STREAM {name}")] == [
        ("CREATE (:Node {id: $id})", {"id": "1"}),
        (
            "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
            {"from_id": "1", "to_id": "2"},
        ),
    ]
    assert query(f"START STREAM {name}") == []
    assert status(name)["status"] == "running"
    wait_until(lambda: count(driver, "(n:Node)") == 1, message="the node")
    assert query(f"STOP STREAM {name}") == []
    assert status(name)["status"] == "stopped"
    assert query(f"DROP STREAM {name}") == []
    assert all(row["name"] != name for row in query("SHOW STREAMS"))

"""Every clause and every error, through the proxy with the official driver."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import neo4j
import pytest
from neo4j.exceptions import ClientError, Neo4jError

from tests.streams.conftest import (
    Broker,
    create_stream,
    run,
    show,
    stream_name,
    wait_until,
)
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)


def fails(driver: Any, query: str) -> Neo4jError:
    with pytest.raises(Neo4jError) as caught:
        run(driver, query)
    return caught.value


def names(driver: Any) -> set[str]:
    return {row["name"] for row in run(driver, "SHOW STREAMS")}


def test_syntax_error_says_where_and_what(driver: Any) -> None:
    error = fails(
        driver,
        "CREATE STREAM s AS LOAD DATA KAFKA 'localhost:9092'\n"
        "WITH TOPIK 'test' WITH TRANSFORM 't.py'",
    )
    assert error.code == "Neo.ClientError.Statement.SyntaxError"
    assert "line 2, column 6" in error.message
    assert error.message == "Invalid input 'TOPIK' (line 2, column 6): expected TOPIC"
    error = fails(driver, "START STREAM s LIMIT 0 BATCHES")
    assert error.code == "Neo.ClientError.Statement.SyntaxError"
    assert "line 1, column 22" in error.message
    # The connection is fine afterwards.
    assert run(driver, "RETURN 1 AS one") == [{"one": 1}]


def test_ordinary_queries_that_look_alike_are_forwarded(driver: Any) -> None:
    run(driver, "CREATE (:STREAM {name: 'not a clause'})")
    assert run(driver, "MATCH (s:STREAM) RETURN s.name AS name") == [{"name": "not a clause"}]
    run(driver, "MATCH (s:STREAM) DELETE s")
    assert "neo4j" in {row["name"] for row in run(driver, "SHOW DATABASES")}


def test_unknown_stream(driver: Any) -> None:
    for clause in ("DROP STREAM", "START STREAM", "STOP STREAM", "TEST STREAM"):
        error = fails(driver, f"{clause} nosuchstream")
        assert error.code == "Neo.ClientError.Statement.EntityNotFound"
        assert error.message == "Kafka stream nosuchstream doesn't exist."


def test_create_options_and_name_in_use(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    create_stream(
        driver, name, broker, topic, transforms / "manual.py", "BATCH INTERVAL 250 BATCH SIZE 7"
    )
    row = show(driver, name)
    assert (row["batch_interval"], row["batch_size"], row["status"]) == (250, 7, "stopped")
    error = fails(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{transforms / 'msg.py'}' "
        "BATCH_SIZE 1",
    )
    assert error.message == f"Kafka stream {name} already exists."
    assert isinstance(error, ClientError)
    assert show(driver, name)["batch_size"] == 7  # unchanged
    run(driver, f"drop stream {name};")
    assert name not in names(driver)


def test_topic_not_found_creates_no_topic(driver: Any, broker: Broker, transforms: Path) -> None:
    name = stream_name()
    missing = f"missing_{name}"
    error = fails(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{missing}' WITH TRANSFORM '{transforms / 'manual.py'}'",
    )
    assert error.code == "Neo.ClientError.Statement.ExternalResourceFailed"
    assert error.message == f"Kafka stream {name}, topic not found"
    assert name not in names(driver)
    assert missing not in broker.topics()


@pytest.mark.parametrize(
    "transform, reason",
    [
        ("nothere.py", "Couldn't get the transform script from {uri}"),
        ("syntaxerror.py", "Couldn't get the transform script from {uri}"),
        ("nostream.py", "stream"),
    ],
)
def test_transform_that_cannot_be_loaded(
    driver: Any, broker: Broker, topic: str, transforms: Path, transform: str, reason: str
) -> None:
    name = stream_name()
    uri = str(transforms / transform)
    error = fails(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{uri}'",
    )
    assert error.code == "Neo.ClientError.Statement.ExternalResourceFailed"
    assert reason.format(uri=uri) in error.message
    assert name not in names(driver)


def test_transform_outside_the_allowed_places(
    driver: Any, broker: Broker, topic: str, tmp_path: Path
) -> None:
    outside = tmp_path / "t.py"
    outside.write_text("def stream(batch):\n    return []\n")
    name = stream_name()
    for uri in (str(outside), "http://example.com/t.py"):
        error = fails(
            driver,
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
            f"WITH TOPIC '{topic}' WITH TRANSFORM '{uri}'",
        )
        assert error.message.startswith(f"Couldn't get the transform script from {uri}: ")
    assert name not in names(driver)


def test_broker_down(driver: Any, transforms: Path) -> None:
    name = stream_name()
    started = time.monotonic()
    error = fails(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '127.0.0.1:{free_port()}' "
        f"WITH TOPIC 't' WITH TRANSFORM '{transforms / 'manual.py'}'",
    )
    assert time.monotonic() - started < 30  # a bounded check, not librdkafka's minutes
    assert error.code == "Neo.ClientError.Statement.ExternalResourceFailed"
    assert error.message.startswith(
        f"Failed to initialize Kafka stream {name} : the Kafka broker at '127.0.0.1:"
    )
    assert "did not answer within 3 s" in error.message
    assert name not in names(driver)


def test_clauses_in_explicit_transactions(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    """Inside BEGIN..COMMIT: SHOW answers at once, CREATE takes effect at COMMIT (not before,
    not even for the transaction itself) and a ROLLBACK discards it."""
    name = stream_name()
    create = (
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{transforms / 'manual.py'}'"
    )
    with driver.session() as session:
        tx = session.begin_transaction()
        assert tx.run(create).data() == []
        assert name not in {row["name"] for row in tx.run("SHOW STREAMS").data()}
        tx.rollback()
        assert name not in names(driver)
        tx = session.begin_transaction()
        tx.run(create).consume()
        tx.commit()
    assert show(driver, name)["status"] == "stopped"
    assert show(driver, name)["owner"] == "alice"
    # A clause that fails at COMMIT makes COMMIT fail with its own error.
    with driver.session() as session:
        tx = session.begin_transaction()
        tx.run(create).consume()
        with pytest.raises(ClientError) as caught:
            tx.commit()
    assert caught.value.code == "Neo.ClientError.Statement.SemanticError"
    assert caught.value.message.startswith(f"Kafka stream {name} already exists.")
    run(driver, f"DROP STREAM {name}")


def test_start_stop_are_idempotent_and_test_needs_a_stopped_stream(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    broker.produce(topic, ["x:1"])
    name = stream_name()
    create_stream(driver, name, broker, topic, transforms / "msg.py")
    assert run(driver, f"STOP STREAM {name}") == []  # stopped: nothing changes
    assert show(driver, name)["status"] == "stopped"
    run(driver, f"START STREAM {name}")
    run(driver, f"START STREAM {name}")  # started: nothing changes
    assert show(driver, name)["status"] == "running"
    error = fails(driver, f"TEST STREAM {name}")
    assert error.code == "Neo.ClientError.Statement.SemanticError"
    assert error.message == f"Kafka stream {name} is running; stop it before testing it"
    wait_until(lambda: show(driver, name)["messages_processed"] == 1)
    run(driver, f"STOP STREAM {name}")
    run(driver, f"STOP STREAM {name}")
    assert show(driver, name)["status"] == "stopped"
    # Everything was consumed: TEST has nothing to show (after waiting for messages).
    assert run(driver, f"TEST STREAM {name}") == []
    run(driver, f"DROP STREAM {name}")


def test_start_all_and_stop_all(driver: Any, broker: Broker, transforms: Path) -> None:
    run(driver, "STOP ALL STREAMS")  # other tests' streams are not ours to leave running
    created = []
    for _ in range(3):
        name = stream_name("all")
        topic = broker.create_topic(f"topic_{name}")
        broker.produce(topic, [f"{name}:1", f"{name}:2"])
        create_stream(driver, name, broker, topic, transforms / "msg.py")
        created.append(name)
    assert run(driver, "START ALL STREAMS") == []
    statuses = {row["name"]: row["status"] for row in run(driver, "SHOW STREAMS")}
    assert all(status == "running" for status in statuses.values()), statuses
    for name in created:
        wait_until(lambda name=name: show(driver, name)["messages_processed"] == 2)
    assert run(driver, "STOP ALL STREAMS") == []
    statuses = {row["name"]: row["status"] for row in run(driver, "SHOW STREAMS")}
    assert all(status == "stopped" for status in statuses.values()), statuses
    for name in created:
        run(driver, f"DROP STREAM {name}")


def test_drop_a_running_stream(driver: Any, broker: Broker, topic: str, transforms: Path) -> None:
    name = stream_name()
    create_stream(driver, name, broker, topic, transforms / "msg.py")
    run(driver, f"START STREAM {name}")
    run(driver, f"DROP STREAM {name}")
    assert name not in names(driver)
    # The name is free again.
    create_stream(driver, name, broker, topic, transforms / "msg.py")
    run(driver, f"DROP STREAM {name}")


def test_show_streams_through_neo4j_scheme(streams_proxy: Any) -> None:
    """Routing drivers (neo4j://) reach the proxy's answers too, in auto-commit transactions
    and in ``execute_query``'s managed transaction."""
    with neo4j.GraphDatabase.driver(streams_proxy.neo4j_uri, auth=("bob", "x")) as drv:
        with drv.session() as session:
            keys = session.run("SHOW STREAMS").keys()
        _records, summary, query_keys = drv.execute_query("SHOW STREAMS")
    assert keys[:5] == ["name", "uri", "topic", "transform", "status"]
    assert query_keys == keys and summary.query_type == "r"


# -- bounds, TEST's time limit, STOP and DROP before a TEST (issue 14) --------------------------


@pytest.mark.parametrize(
    "option, message",
    [
        ("BATCH_SIZE 1000001", "BATCH_SIZE must be between 1 and 1000000 messages, not 1000001"),
        ("BATCH_SIZE 9223372036854775807", "BATCH_SIZE must be between 1 and 1000000 messages"),
        (
            "BATCH_INTERVAL 3600001",
            "BATCH_INTERVAL must be between 1 and 3600000 milliseconds (one hour), not 3600001",
        ),
    ],
)
def test_batch_options_have_bounds(
    driver: Any, broker: Broker, topic: str, transforms: Path, option: str, message: str
) -> None:
    name = stream_name()
    error = fails(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{transforms / 'msg.py'}' "
        f"{option}",
    )
    assert error.code == "Neo.ClientError.Statement.ArgumentError"
    assert error.message.startswith(f"Failed to initialize Kafka stream {name} : {message}")
    assert name not in names(driver)
    create_stream(
        driver,
        name,
        broker,
        topic,
        transforms / "msg.py",
        "BATCH_SIZE 1000000 BATCH_INTERVAL 3600000",
    )  # the bounds themselves
    run(driver, f"DROP STREAM {name}")


def test_test_stream_keeps_its_time_limit_whatever_the_interval(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    """An hour's interval and fewer messages than a batch: TEST returns what the open batch
    holds when its own time limit is up, instead of waiting for the interval."""
    name = stream_name()
    broker.produce(topic, [f"{name}:1", f"{name}:2"])
    create_stream(
        driver, name, broker, topic, transforms / "msg.py", "BATCH_INTERVAL 3600000 BATCH_SIZE 100"
    )
    rows = run(driver, f"TEST STREAM {name}")
    assert [r["params"]["body"] for r in rows] == [f"{name}:1", f"{name}:2"]
    run(driver, f"DROP STREAM {name}")


@pytest.mark.parametrize("clause", ["STOP STREAM", "DROP STREAM"])
def test_stop_and_drop_preempt_a_test_in_progress(
    driver: Any, broker: Broker, topic: str, transforms: Path, clause: str
) -> None:
    import threading

    name = stream_name()
    broker.produce(topic, [f"{name}:1"])
    create_stream(
        driver, name, broker, topic, transforms / "msg.py", "BATCH_INTERVAL 3600000 BATCH_SIZE 100"
    )
    outcome: dict[str, Any] = {}

    def test_it() -> None:
        try:
            outcome["rows"] = run(driver, f"TEST STREAM {name}")
        except Neo4jError as exc:
            outcome["error"] = exc

    tester = threading.Thread(target=test_it)
    tester.start()
    time.sleep(1.0)  # the TEST is waiting for its batch to fill
    run(driver, f"{clause} {name}")
    tester.join(30)
    # The clause did not queue behind the TEST (which would then have shown the message):
    # it interrupted it.
    assert "rows" not in outcome, outcome
    error = outcome["error"]
    assert error.code == "Neo.ClientError.Statement.SemanticError"
    assert error.message == (
        f"TEST STREAM {name} was interrupted: the stream was stopped or dropped meanwhile"
    )
    if clause == "STOP STREAM":
        run(driver, f"DROP STREAM {name}")
    assert name not in names(driver)

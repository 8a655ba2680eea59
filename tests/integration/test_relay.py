"""The relay in front of a real Bolt server with transactions (ArcadeDB, Bolt 5.4): rollback and
bookmarks relayed, payloads far over 4 KB, every value type exactly as the server gives it, and
stream clauses inside the server's transactions.

(The same driver scenarios run against FalkorDB's Bolt port too: ``test_driver.py``, where the
``proxy`` fixture covers the embedded FalkorDB, FalkorDB's Bolt port and ArcadeDB.)
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
import pytz
from neo4j.exceptions import ClientError
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from tests.arcadedb import ArcadeDB
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def database(arcadedb: ArcadeDB) -> str:
    return arcadedb.create_database("relay")


@pytest.fixture
def via_proxy(arcadedb_proxy: ProxyProcess) -> Iterator[neo4j.Driver]:
    with neo4j.GraphDatabase.driver(arcadedb_proxy.bolt_uri, auth=arcadedb_proxy.auth) as drv:
        yield drv


@pytest.fixture
def direct(arcadedb: ArcadeDB) -> Iterator[neo4j.Driver]:
    with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as drv:
        yield drv


def count(driver: neo4j.Driver, database: str, label: str) -> int:
    records, _, _ = driver.execute_query(
        f"MATCH (n:{label}) RETURN count(n) AS c", database_=database
    )
    return int(records[0]["c"])


def test_rollback_is_relayed(via_proxy: neo4j.Driver, database: str) -> None:
    with via_proxy.session(database=database) as session:
        tx = session.begin_transaction()
        tx.run("CREATE (:Gone {v: 1})").consume()
        assert tx.run("MATCH (n:Gone) RETURN count(n) AS c").single()["c"] == 1
        tx.rollback()
        tx = session.begin_transaction()
        tx.run("CREATE (:Kept {v: 2})").consume()
        tx.commit()
    assert count(via_proxy, database, "Gone") == 0
    assert count(via_proxy, database, "Kept") == 1


def test_bookmarks_are_relayed(via_proxy: neo4j.Driver, database: str) -> None:
    with via_proxy.session(database=database) as session:
        session.execute_write(lambda tx: tx.run("CREATE (:Marked)").consume())
        bookmarks = session.last_bookmarks()
    (bookmark,) = bookmarks.raw_values
    assert bookmark.startswith("arcade:tx:"), bookmark  # the server's own, untouched
    # A new session that starts from that bookmark reads what it marks.
    with via_proxy.session(database=database, bookmarks=bookmarks) as session:
        assert (
            session.execute_read(
                lambda tx: tx.run("MATCH (n:Marked) RETURN count(n) AS c").single()["c"]
            )
            == 1
        )
        assert session.last_bookmarks().raw_values, "a read transaction gets a bookmark too"


def test_payloads_over_four_kilobytes(via_proxy: neo4j.Driver, database: str) -> None:
    """FalkorDB's Bolt port crashes on any message over about 4 KB; through the proxy to a
    server that takes them, large messages go both ways intact."""
    names = [f"name-{i}-{'x' * 20}" for i in range(3000)]  # a ~90 KB RUN message
    big = "é" * 100_000  # a 200 KB string in a record
    records, _, _ = via_proxy.execute_query(
        "UNWIND $names AS n RETURN count(n) AS c, $big AS big",
        names=names,
        big=big,
        database_=database,
    )
    assert records[0]["c"] == 3000 and records[0]["big"] == big
    with via_proxy.session(database=database, fetch_size=100) as session:
        values = [r["x"] for r in session.run("UNWIND range(1, 20000) AS x RETURN x")]
    assert values == list(range(1, 20001))


VALUES: dict[str, Any] = {
    "null": None,
    "true": True,
    "int_min": -(2**63),
    "int_max": 2**63 - 1,
    "float": -1.5e300,
    "string": "ünïcödé ✓ 'q' \"qq\" \\",
    "bytes": bytes(range(256)),
    "list": [1, "two", [3.0, None]],
    "map": {"a": {"b": [1, {"c": "d"}]}, "e": []},
    "date": Date(2024, 2, 29),
    "local_time": Time(23, 59, 58, 123456789),
    "time": Time(1, 2, 3, 4000, tzinfo=pytz.FixedOffset(120)),
    "local_datetime": DateTime(1969, 7, 20, 20, 17, 40, 1),
    "datetime": DateTime(2021, 6, 1, 7, 8, 9, 10, tzinfo=datetime.UTC),
    "zoned_datetime": DateTime(2021, 3, 28, 2, 30, tzinfo=pytz.timezone("Europe/Paris")),
    "duration": Duration(months=14, days=-3, seconds=7, nanoseconds=8),
    "point": CartesianPoint((1.5, -2.5)),
    "point3d": CartesianPoint((1.0, 2.0, 3.0)),
    "wgs84": WGS84Point((2.35, 48.85)),
}


@pytest.mark.parametrize("name", list(VALUES))
def test_every_value_type_as_the_server_gives_it(
    via_proxy: neo4j.Driver, direct: neo4j.Driver, name: str
) -> None:
    """Parameters go in and records come out as the server's own bytes: whatever the server
    does with a value, the client sees exactly the same through the proxy."""
    query = "RETURN $v AS v, [$v] AS l, {k: $v} AS m"

    def answer(driver: neo4j.Driver) -> tuple[str, Any]:
        try:
            record = driver.execute_query(query, v=VALUES[name]).records[0]
        except neo4j.exceptions.Neo4jError as exc:
            return "error", (exc.code, exc.message)
        return "value", (record["v"], record["l"], record["m"])

    got, expected = answer(via_proxy), answer(direct)
    assert got == expected
    if expected[0] == "value":
        assert expected[1][0] == VALUES[name] or name in ("time", "zoned_datetime")


def test_stream_clauses_in_the_servers_transaction(via_proxy: neo4j.Driver, database: str) -> None:
    """A transaction mixing graph statements and stream clauses: the graph part is the
    server's transaction, the stream clauses wait for its COMMIT; qids stay the client's."""
    label = "Mixed" + uuid.uuid4().hex[:6]
    with via_proxy.session(database=database) as session:
        tx = session.begin_transaction()
        streams = tx.run("SHOW STREAMS")  # answered by the proxy: qid 0
        created = tx.run(f"CREATE (n:{label}) RETURN 1 AS one")  # the server's: qid 1
        stopped = tx.run("STOP ALL STREAMS")  # waits for COMMIT: qid 2
        assert created.single()["one"] == 1
        assert streams.keys()[:2] == ["name", "uri"]
        assert stopped.consume().query_type == "s"
        tx.rollback()
        assert count(via_proxy, database, label) == 0
        tx = session.begin_transaction()
        tx.run("STOP ALL STREAMS").consume()
        tx.run(f"CREATE (:{label})").consume()
        tx.run("SHOW STREAMS").consume()
        tx.commit()
    assert count(via_proxy, database, label) == 1


def test_execute_query_runs_stream_clauses(via_proxy: neo4j.Driver) -> None:
    _records, summary, keys = via_proxy.execute_query("SHOW STREAMS")
    assert keys[:5] == ["name", "uri", "topic", "transform", "status"]
    assert summary.query_type == "r"
    _records, summary, _keys = via_proxy.execute_query("STOP ALL STREAMS")
    assert summary.query_type == "s"


def test_a_failed_begin_fails_the_first_statement(via_proxy: neo4j.Driver) -> None:
    """The proxy answers BEGIN itself and sends it to the server with the first statement; when
    the server refuses it, that statement fails with the server's reason."""
    with via_proxy.session(database="nosuchdb") as session, pytest.raises(ClientError) as caught:
        session.execute_write(lambda tx: tx.run("RETURN 1").consume())
    assert caught.value.code == "Neo.ClientError.Database.DatabaseNotFound"
    assert "nosuchdb" in caught.value.message

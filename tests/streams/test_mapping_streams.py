"""Streams without Python, end to end: the real broker, the proxy on its embedded FalkorDB (and
on ArcadeDB, a Bolt database with transactions, for CUD and exactly-once), the official neo4j
driver. The Neo4j Connector for Kafka's own examples for each strategy
(neo4j_kafka.md 1.3, 1.4, 1.6, 2.2), tombstones, every CUD operation, several patterns on one
topic, bad messages under each error policy, injection attempts, TEST STREAM, exactly-once.

Every test uses labels of its own (the session's proxy and graph are shared)."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest
from neo4j.exceptions import ClientError

from proxy.streams.mapping.cypher import EVENTS
from proxy.streams.outcomes import DEAD_LETTER_QUERY
from proxy.streams.positions import LABEL
from tests.integration.falkordb_fixtures import falkordb_server
from tests.streams.conftest import Broker, run, show, stream_name, wait_until

__all__ = ["falkordb_server"]
pytestmark = pytest.mark.timeout(120)
_labels = itertools.count(1)
ARGUMENT_ERROR = "Neo.ClientError.Statement.ArgumentError"


def label(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_labels)}"


def quoted(text: str) -> str:
    """A Cypher string literal (single quotes) for ``text``."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create(driver: Any, name: str, broker: Broker, topic: str, *options: str) -> None:
    run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' {' '.join(options)}",
    )


def produce(
    broker: Broker,
    topic: str,
    records: list[tuple[Any, Any]],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[int]:
    """(key, value) pairs, JSON-encoded unless bytes (None stays None: a tombstone)."""

    def raw(value: Any) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        return json.dumps(value).encode()

    if headers is None:
        return broker.produce_records(topic, [(raw(k), raw(v)) for k, v in records])
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for key, value in records:
        producer.produce(topic, raw(value), key=raw(key), headers=headers)
    assert producer.flush(30) == 0
    return []


def processed(driver: Any, name: str, count: int) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (row := show(driver, name))["messages_processed"] >= count and row,
        message=f"{name} to process {count} messages",
    )


def refusal(driver: Any, query: str) -> ClientError:
    with pytest.raises(ClientError) as raised:
        run(driver, query)
    return raised.value


# -- Cypher templates ---------------------------------------------------------------------------


def test_connector_quickstart_template_with_every_binding(
    driver: Any, broker: Broker, topic: str
) -> None:
    person = label("Person")
    name = stream_name("tpl")
    # The connector's quickstart (neo4j_kafka.md 1.3), plus the bindings it has and ours.
    template = (
        f"CREATE (p:{person}) SET p.id = __value.id, p.name = __value.name, "
        "p.surname = __value.surname, p.same = event.id, p.key = __key, "
        "p.header = __header.source, p.ts = __timestamp, p.topic = __topic, "
        "p.partition = __partition, p.offset = __offset"
    )
    produce(
        broker,
        topic,
        [("k1", {"id": 1, "name": "Jane", "surname": "Doe"}), ("k2", {"id": 2, "name": "Max"})],
        headers=[("source", b"crm")],
    )
    create(driver, name, broker, topic, f"WITH CYPHER {quoted(template)}", "BATCH_SIZE 10")
    row = show(driver, name)
    assert row["transform"] == f"CYPHER {quoted(template)}"
    # TEST STREAM: the query that would run, once for the batch, with one row per message.
    wait_until(
        lambda: (rows := run(driver, f"TEST STREAM {name}")) and rows,
        message="TEST STREAM to see the messages",
    )
    rows = run(driver, f"TEST STREAM {name}")
    assert len(rows) == 1
    assert rows[0]["query"].startswith(f"UNWIND ${EVENTS} AS ")
    assert rows[0]["query"].endswith(template)
    events = rows[0]["params"][EVENTS]
    assert [(e["key"], e["value"]["id"], e["offset"]) for e in events] == [
        ("k1", 1, 0),
        ("k2", 2, 1),
    ]
    assert run(driver, f"MATCH (p:{person}) RETURN count(p) AS c") == [{"c": 0}]  # tests only

    run(driver, f"START STREAM {name}")
    processed(driver, name, 2)
    found = run(
        driver,
        f"MATCH (p:{person}) RETURN p.id AS id, p.name AS name, p.surname AS surname, "
        "p.same AS same, p.key AS key, p.header AS header, p.ts AS ts, p.topic AS topic, "
        "p.partition AS partition, p.offset AS offset ORDER BY id",
    )
    assert [{k: v for k, v in f.items() if k != "ts"} for f in found] == [
        {
            "id": 1,
            "name": "Jane",
            "surname": "Doe",
            "same": 1,
            "key": "k1",
            "header": "crm",
            "topic": topic,
            "partition": 0,
            "offset": 0,
        },
        {
            "id": 2,
            "name": "Max",
            "surname": None,
            "same": 2,
            "key": "k2",
            "header": "crm",
            "topic": topic,
            "partition": 0,
            "offset": 1,
        },
    ]
    assert all(isinstance(f["ts"], int) and f["ts"] > 1_600_000_000_000 for f in found)
    run(driver, f"DROP STREAM {name}")


def test_streams_plugin_merge_template_keeps_keyed_updates_in_order(
    driver: Any, broker: Broker, topic: str
) -> None:
    """neo4j-streams' example (neo4j_kafka.md 2.2); updates of one key within one batch apply
    in order (FalkorDB's MERGE would otherwise keep the wrong one)."""
    node = label("Label")
    name = stream_name("tplmerge")
    template = (
        f"MERGE (n:{node} {{id: event.id}}) ON CREATE SET n += event.properties SET n.v = event.v"
    )
    produce(
        broker,
        topic,
        [("a", {"id": 1, "properties": {"p": 1}, "v": v}) for v in range(1, 6)]
        + [("b", {"id": 2, "properties": {"p": 2}, "v": 9})],
    )
    create(driver, name, broker, topic, f"WITH CYPHER {quoted(template)}", "BATCH_SIZE 100")
    run(driver, f"START STREAM {name}")
    processed(driver, name, 6)
    assert run(driver, f"MATCH (n:{node}) RETURN n.id AS id, n.p AS p, n.v AS v ORDER BY id") == [
        {"id": 1, "p": 1, "v": 5},
        {"id": 2, "p": 2, "v": 9},
    ]
    run(driver, f"DROP STREAM {name}")


def test_text_values(driver: Any, broker: Broker, topic: str) -> None:
    line = label("Line")
    name = stream_name("text")
    broker.produce(topic, ["first line", "not {json"])
    create(
        driver,
        name,
        broker,
        topic,
        f"WITH CYPHER 'CREATE (:{line} {{text: event, at: __offset}})'",
        "WITH FORMAT TEXT",
    )
    assert show(driver, name)["transform"].endswith(" FORMAT TEXT")
    run(driver, f"START STREAM {name}")
    processed(driver, name, 2)
    assert run(driver, f"MATCH (l:{line}) RETURN l.text AS t ORDER BY l.at") == [
        {"t": "first line"},
        {"t": "not {json"},
    ]
    run(driver, f"DROP STREAM {name}")


# -- patterns -------------------------------------------------------------------------------------


def test_connector_pattern_examples_several_on_one_topic_and_tombstones(
    driver: Any, broker: Broker, topic: str
) -> None:
    user, city = label("User"), label("City")
    name = stream_name("pat")
    # The connector's documented patterns (neo4j_kafka.md 1.4), both on one topic (which the
    # connector refuses, neo4j-streams#269), applied in order.
    node_pattern = f"(:{user}{{!id: userId, name, address.city}})"
    rel_pattern = (
        f"(:{user}{{!id: userId}})-[:LIVES_IN{{since}}]->"
        f"(:{city}{{!name: address.city, !country: address.country}})"
    )
    doc = {
        "userId": 1,
        "name": "John",
        "surname": "Doe",
        "since": 2012,
        "address": {"city": "London", "country": "UK"},
    }
    produce(
        broker,
        topic,
        [
            ({"userId": 1}, doc),
            ({"userId": 2}, {**doc, "userId": 2, "name": "Ann"}),
            ({"userId": 1}, {**doc, "name": "Johnny"}),  # the same user again: replaced
        ],
    )
    create(
        driver,
        name,
        broker,
        topic,
        f"WITH PATTERN {quoted(node_pattern)}",
        f"WITH PATTERN {quoted(rel_pattern)}",
        "BATCH_SIZE 10",
    )
    assert show(driver, name)["transform"] == (
        f"PATTERN {quoted(node_pattern)} PATTERN {quoted(rel_pattern)}"
    )
    run(driver, f"START STREAM {name}")
    processed(driver, name, 3)
    assert run(
        driver,
        f"MATCH (u:{user}) RETURN u.id AS id, u.name AS name, u.`address.city` AS city, "
        "u.surname AS surname ORDER BY id",
    ) == [
        {"id": 1, "name": "Johnny", "city": "London", "surname": None},
        {"id": 2, "name": "Ann", "city": "London", "surname": None},
    ]
    assert run(
        driver,
        f"MATCH (u:{user})-[r:LIVES_IN]->(c:{city}) "
        "RETURN u.id AS id, r.since AS since, c.name AS city, c.country AS country ORDER BY id",
    ) == [
        {"id": 1, "since": 2012, "city": "London", "country": "UK"},
        {"id": 2, "since": 2012, "city": "London", "country": "UK"},
    ]
    assert run(driver, f"MATCH (c:{city}) RETURN count(c) AS c") == [{"c": 1}]
    # A tombstone: key present, value null. The node pattern's key is in it: the user goes,
    # with its relationship (DETACH DELETE); the relationship pattern's keys are not: skipped.
    produce(broker, topic, [({"userId": 2}, None)])
    processed(driver, name, 4)
    assert run(driver, f"MATCH (u:{user}) RETURN u.id AS id") == [{"id": 1}]
    assert run(driver, f"MATCH (:{user})-[r:LIVES_IN]->() RETURN count(r) AS c") == [{"c": 1}]
    assert show(driver, name)["status"] == "running"
    run(driver, f"DROP STREAM {name}")


def test_merge_node_properties_option(driver: Any, broker: Broker, topic: str) -> None:
    replaced, merged = label("Replaced"), label("Merged")
    names = stream_name("replace"), stream_name("merge")
    produce(broker, topic, [(None, {"id": 1, "a": 1}), (None, {"id": 1, "b": 2})])
    create(driver, names[0], broker, topic, f"WITH PATTERN '(:{replaced}{{!id, *}})'")
    create(
        driver,
        names[1],
        broker,
        topic,
        f"WITH PATTERN '{merged}{{!id, *}}'",  # the simple form
        "MERGE NODE PROPERTIES",
    )
    for name in names:
        run(driver, f"START STREAM {name}")
    for name in names:
        processed(driver, name, 2)
    assert run(driver, f"MATCH (n:{replaced}) RETURN n.id AS id, n.a AS a, n.b AS b") == [
        {"id": 1, "a": None, "b": 2}
    ]
    assert run(driver, f"MATCH (n:{merged}) RETURN n.id AS id, n.a AS a, n.b AS b") == [
        {"id": 1, "a": 1, "b": 2}
    ]
    for name in names:
        run(driver, f"DROP STREAM {name}")


# -- CUD ------------------------------------------------------------------------------------------


def test_every_cud_operation(backend: Any, broker: Broker, topic: str) -> None:
    driver = backend  # the embedded FalkorDB, and ArcadeDB (Bolt, transactions)
    foo, user, product = label("Foo"), label("User"), label("Product")
    name = stream_name("cud")
    rel = {"type": "relationship", "rel_type": "BOUGHT"}
    ends = {
        "from": {"labels": [user], "ids": {"userId": 1}},
        "to": {"labels": [product], "ids": {"productId": 100}},
    }
    documents: list[tuple[Any, Any]] = [
        (None, {"type": "node", "op": "create", "labels": [foo], "properties": {"id": 1}}),
        (
            None,
            {
                "type": "NODE",
                "op": "Merge",
                "labels": [foo],
                "ids": {"id": 2},
                "properties": {"n": "two"},
            },
        ),
        (
            None,
            {
                "type": "node",
                "op": "update",
                "labels": [foo],
                "ids": {"id": 1},
                "properties": {"n": "one"},
            },
        ),
        # The connector's documented example (neo4j_kafka.md 1.6).
        (
            None,
            {
                **rel,
                "op": "merge",
                "from": {"labels": [user], "ids": {"userId": 1}, "op": "merge"},
                "to": {"labels": [product], "ids": {"productId": 100}, "op": "merge"},
                "properties": {"price": 10},
            },
        ),
    ]
    # In a second round too (the first has to be written first: the type then exists).
    later: list[tuple[Any, Any]] = [
        (None, {**rel, **ends, "op": "update", "properties": {"currency": "EUR"}}),
        (None, {**rel, **ends, "op": "create", "rel_type": "VIEWED", "properties": {"at": 5}}),
        ("a key", None),  # a tombstone: no operation, nothing changes
        (None, {"type": "node", "op": "delete", "labels": [foo], "ids": {"id": 2}}),
    ]
    produce(broker, topic, documents)
    create(driver, name, broker, topic, "WITH FORMAT CUD", "BATCH_SIZE 3")
    assert show(driver, name)["transform"] == "FORMAT CUD"
    run(driver, f"START STREAM {name}")
    processed(driver, name, len(documents))
    produce(broker, topic, later)
    documents += later
    processed(driver, name, len(documents))
    assert run(driver, f"MATCH (n:{foo}) RETURN n.id AS id, n.n AS n") == [{"id": 1, "n": "one"}]
    assert run(
        driver,
        f"MATCH (:{user})-[r:BOUGHT]->(:{product}) RETURN r.price AS price, r.currency AS cur",
    ) == [{"price": 10, "cur": "EUR"}]
    assert run(driver, f"MATCH (:{user})-[r:VIEWED]->(:{product}) RETURN r.at AS at") == [{"at": 5}]
    more: list[tuple[Any, Any]] = [
        (None, {**rel, **ends, "op": "delete"}),
        (
            None,
            {
                "type": "node",
                "op": "delete",
                "labels": [user],
                "ids": {"userId": 1},
                "detach": True,
            },
        ),
    ]
    produce(broker, topic, more)
    processed(driver, name, len(documents) + len(more))
    assert run(driver, f"MATCH (n:{user}) RETURN count(n) AS c") == [{"c": 0}]
    assert run(driver, f"MATCH (:{product})<-[r]-() RETURN count(r) AS c") == [{"c": 0}]
    row = show(driver, name)
    assert (row["status"], row["skipped"], row["dead_lettered"]) == ("running", 0, 0)
    run(driver, f"DROP STREAM {name}")


# -- bad messages and error policies --------------------------------------------------------------


def test_bad_messages_go_where_the_policy_says(driver: Any, broker: Broker) -> None:
    """A value that is not JSON and a message the template fails on (division by zero), under
    each policy; the rest of each batch is applied."""
    node = label("Ok")
    template = f"CREATE (:{node} {{stream: event.s, v: 10 / event.d}})"
    dead, skip, stop = stream_name("dl"), stream_name("skip"), stream_name("stop")
    topics = {}
    for name in (dead, skip, stop):
        topics[name] = broker.create_topic(f"topic_{name}")
        produce(
            broker,
            topics[name],
            [
                (None, {"s": name, "d": 1}),
                (None, b"{not json"),
                (None, {"s": name, "d": 2}),
                (None, {"s": name, "d": 0}),
                (None, {"s": name, "d": 5}),
            ],
        )
    dlq = broker.create_topic(f"topic_{dead}.dlq")
    create(
        driver,
        dead,
        broker,
        topics[dead],
        f"WITH CYPHER {quoted(template)}",
        f"ON ERROR DEAD LETTER '{dlq}'",
    )
    create(driver, skip, broker, topics[skip], f"WITH CYPHER {quoted(template)}", "ON ERROR SKIP")
    create(driver, stop, broker, topics[stop], f"WITH CYPHER {quoted(template)}", "BATCH_SIZE 5")
    for name in (dead, skip, stop):
        run(driver, f"START STREAM {name}")
    for name in (dead, skip):
        row = processed(driver, name, 5)
        assert row["status"] == "running"
        values = run(driver, f"MATCH (n:{node}) WHERE n.stream = $s RETURN n.v AS v", s=name)
        assert sorted(v["v"] for v in values) == [2, 5, 10]
        assert broker.committed(name, topics[name]) == {0: 5}
    assert (show(driver, dead)["dead_lettered"], show(driver, skip)["skipped"]) == (2, 2)
    records = broker.consume(dlq, 2)
    reasons = {r.offset(): dict(r.headers())["boltstream.error"].decode() for r in records}
    assert [r.value() for r in records] == [b"{not json", json.dumps({"s": dead, "d": 0}).encode()]
    first, second = (reasons[r.offset()] for r in records)
    assert first.startswith("the message cannot be read: ")
    assert second.startswith("the backend rejected it: ") and "zero" in second.lower()
    # STOP: the message before the bad one is written and committed; the stream stops at it.
    row = wait_until(
        lambda: (r := show(driver, stop))["status"] == "error" and r, message="the stop"
    )
    assert row["last_error"].startswith(
        f"topic '{topics[stop]}' partition 0 offset 1: the message cannot be read: "
    )
    assert run(driver, f"MATCH (n:{node}) WHERE n.stream = $s RETURN n.v AS v", s=stop) == [
        {"v": 10}
    ]
    assert broker.committed(stop, topics[stop]) == {0: 1}
    for name in (dead, skip, stop):
        run(driver, f"DROP STREAM {name}")


def test_pattern_and_cud_messages_that_cannot_be_mapped(
    driver: Any, broker: Broker, topic: str
) -> None:
    person = label("P")
    pat, cud = stream_name("badpat"), stream_name("badcud")
    cud_topic = broker.create_topic(f"topic_{cud}")
    produce(
        broker,
        topic,
        [(None, {"name": "no id"}), (None, [1, 2]), (None, None), (None, {"id": 3})],
    )
    produce(
        broker,
        cud_topic,
        [
            (
                None,
                {
                    "type": "node",
                    "op": "create",
                    "labels": [person],
                    "properties": {"id": 1},
                    "extra": 1,
                },
            ),
            (
                None,
                {"type": "node", "op": "merge", "labels": [person], "ids": {}, "properties": {}},
            ),
            (None, {"type": "rel", "op": "create"}),
            (None, {"type": "node", "op": "create", "labels": [person], "properties": {"id": 2}}),
        ],
    )
    create(driver, pat, broker, topic, f"WITH PATTERN '(:{person}{{!id}})'", "ON ERROR SKIP")
    create(driver, cud, broker, cud_topic, "WITH FORMAT CUD", "ON ERROR SKIP")
    for name in (pat, cud):
        run(driver, f"START STREAM {name}")
    assert processed(driver, pat, 4)["skipped"] == 3  # no key, not a map, a keyless tombstone
    assert processed(driver, cud, 4)["skipped"] == 3
    assert run(driver, f"MATCH (n:{person}) RETURN n.id AS id ORDER BY id") == [
        {"id": 2},
        {"id": 3},
    ]
    for name in (pat, cud):
        run(driver, f"DROP STREAM {name}")


# -- index advice -------------------------------------------------------------------------------


def test_start_names_the_index_a_pattern_merges_on_when_it_is_missing(
    driver: Any, streams_proxy: Any, broker: Broker, topic: str
) -> None:
    """Without an index on a merged node's key, every message scans the label (found by
    bench/soak.py: the stream fell behind and FalkorDB's write lock held every query)."""
    person, org = label("Person"), label("Org")
    run(driver, f"CREATE INDEX FOR (n:{org}) ON (n.code)")
    name = stream_name("idx")
    create(
        driver, name, broker, topic, f"WITH PATTERN '(:{person}{{!id}})-[:AT]->(:{org}{{!code}})'"
    )
    run(driver, f"START STREAM {name}")
    line = streams_proxy.wait_for_log(rf"stream {name}: no index on :{person}\(id\)")
    assert line.endswith(f"create one: CREATE INDEX FOR (n:{person}) ON (n.id)")
    assert "WARNING" in line
    assert not any(f"no index on :{org}" in seen for seen in streams_proxy.lines)
    run(driver, f"STOP STREAM {name}")
    run(driver, f"CREATE INDEX FOR (n:{person}) ON (n.id)")
    run(driver, f"START STREAM {name}")
    streams_proxy.wait_for_log(rf"stream {name}: every node its pattern MERGEs has an index")
    assert sum(f"stream {name}: no index" in seen for seen in streams_proxy.lines) == 1
    run(driver, f"DROP STREAM {name}")


# -- injection ----------------------------------------------------------------------------------


def test_hostile_labels_types_and_keys_never_become_cypher(
    driver: Any, broker: Broker, topic: str
) -> None:
    canary = label("Canary")
    run(driver, f"CREATE (:{canary} {{id: 1}})")
    name = stream_name("evil")
    evil = f"X`) MATCH (c:{canary}) DETACH DELETE c //"
    produce(
        broker,
        topic,
        [
            (None, {"type": "node", "op": "create", "labels": [evil], "properties": {"id": 1}}),
            (
                None,
                {
                    "type": "node",
                    "op": "merge",
                    "labels": ["L"],
                    "ids": {evil: 1},
                    "properties": {},
                },
            ),
            (
                None,
                {
                    "type": "relationship",
                    "op": "create",
                    "rel_type": "R]->() WITH 1 AS x MATCH (c) DETACH DELETE c //",
                    "from": {"ids": {"id": 1}, "labels": [canary]},
                    "to": {"ids": {"id": 1}, "labels": [canary]},
                    "properties": {},
                },
            ),
            # A property key travels in a parameter map, but FalkorDB cannot take every key:
            # refused like a label.
            (None, {"type": "node", "op": "create", "labels": [canary], "properties": {evil: 2}}),
        ],
    )
    create(driver, name, broker, topic, "WITH FORMAT CUD", "ON ERROR SKIP")
    run(driver, f"START STREAM {name}")
    row = processed(driver, name, 4)
    assert row["skipped"] == 3  # the backtick in a label, an id key, a property key
    assert run(driver, f"MATCH (c:{canary}) RETURN count(c) AS c") == [{"c": 1}]
    # The relationship type with brackets but no backtick is a (strange) type, quoted.
    assert run(driver, f"MATCH (:{canary})-[r]->(:{canary}) RETURN type(r) AS t") == [
        {"t": "R]->() WITH 1 AS x MATCH (c) DETACH DELETE c //"}
    ]
    run(driver, f"DROP STREAM {name}")
    # Patterns are checked at CREATE: a label that could break out is refused there.
    error = refusal(
        driver,
        f"CREATE STREAM {stream_name('evilpat')} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH PATTERN '(:`A``) DETACH DELETE (x`{{!id}})'",
    )
    assert error.code == ARGUMENT_ERROR
    assert "contains a backtick" in (error.message or "")


# -- CREATE's refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("", "a stream needs WITH TRANSFORM 'uri' or a mapping: WITH CYPHER"),
        ("WITH TRANSFORM 'builtin:depc' WITH CYPHER 'CREATE ()'", "not both"),
        ("WITH CYPHER 'CREATE (n) SET n.x = $x'", "uses the parameter $x"),
        ("WITH CYPHER 'CREATE (:N {a: 1)'", "unmatched ')' at column 17"),
        (  # lexically fine; FalkorDB's EXPLAIN finds it wrong
            "WITH CYPHER 'CREATE (n:N) SET n.x = nope'",
            "the backend refuses the Cypher template: 'nope' not defined",
        ),
        ("WITH PATTERN '(:N{id})'", "the pattern '(:N{id})' is invalid"),
        ("WITH PATTERN '(:N{!id})' WITH FORMAT TEXT", "does not go with WITH PATTERN"),
        ("WITH FORMAT CUD MERGE NODE PROPERTIES", "applies to WITH PATTERN only"),
    ],
)
def test_create_refuses_what_is_not_a_stream(
    driver: Any, broker: Broker, topic: str, options: str, message: str
) -> None:
    name = stream_name("refused")
    error = refusal(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' {options}",
    )
    assert error.code == ARGUMENT_ERROR
    assert (error.message or "").startswith(f"Failed to initialize Kafka stream {name} : ")
    assert message in (error.message or "")
    assert not [r for r in run(driver, "SHOW STREAMS") if r["name"] == name]


def test_test_stream_shows_bad_messages_as_dead_letter_items(
    driver: Any, broker: Broker, topic: str
) -> None:
    name = stream_name("testbad")
    produce(broker, topic, [(None, {"id": 1}), (None, {"no": "id"})])
    create(driver, name, broker, topic, "WITH PATTERN '(:T{!id})'")
    rows = wait_until(
        lambda: (found := run(driver, f"TEST STREAM {name}")) and len(found) == 2 and found,
        message="TEST STREAM to see both messages",
    )
    assert rows[0]["query"].startswith(f"UNWIND ${EVENTS} AS ev MERGE (n:`T` ")
    assert rows[0]["params"] == {EVENTS: [{"k": [1], "p": {}}]}
    assert rows[1] == {
        "query": DEAD_LETTER_QUERY,
        "params": {"index": 1, "reason": "Key 'id' could not be located in the message."},
    }
    run(driver, f"DROP STREAM {name}")


# -- exactly once -------------------------------------------------------------------------------


def test_exactly_once_template(backend: Any, broker: Broker, topic: str) -> None:
    driver = backend  # the embedded FalkorDB, and ArcadeDB (Bolt, transactions)
    rec = label("Rec")
    name = stream_name("eotpl")
    template = f"CREATE (:{rec} {{n: event.n}})"  # CREATE: a replay would show twice
    produce(broker, topic, [(None, {"n": n}) for n in range(50)])
    create(
        driver,
        name,
        broker,
        topic,
        f"WITH CYPHER {quoted(template)}",
        "BATCH_SIZE 7",
        "DELIVERY EXACTLY ONCE",
    )
    assert show(driver, name)["delivery"] == "exactly once"
    run(driver, f"START STREAM {name}")
    processed(driver, name, 50)
    run(driver, f"STOP STREAM {name}")
    produce(broker, topic, [(None, {"n": n}) for n in range(50, 60)])
    run(driver, f"START STREAM {name}")
    processed(driver, name, 60)
    found = run(driver, f"MATCH (r:{rec}) RETURN r.n AS n ORDER BY n")
    assert [f["n"] for f in found] == list(range(60))
    stored = run(
        driver,
        f"MATCH (p:{LABEL}) WHERE p.stream = $s RETURN max(p.next) AS next",
        s=name,
    )
    assert stored == [{"next": 60}]
    run(driver, f"DROP STREAM {name}")


def test_the_connector_strategy_names_as_transforms_point_to_the_mapping_options(
    driver: Any, broker: Broker, topic: str
) -> None:
    error = refusal(
        driver,
        f"CREATE STREAM {stream_name('bcud')} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM 'builtin:cud'",
    )
    assert "there is no such built-in transform" in (error.message or "")
    assert "WITH FORMAT CUD" in (error.message or "")


def test_falkordb_composed_writes_see_relationship_types_new_to_the_graph(
    falkordb_server: Any,
) -> None:
    """A CUD merge then update of one new relationship type, written as one atomic (composed)
    write, as a stream behind on its topic writes waiting batches. FalkorDB 4.16 plans a
    composed query whole and matches no type it does not know yet: without the writer making
    the type known first, the update was lost."""
    import asyncio

    from proxy.streams.definition import MappingSpec
    from proxy.streams.mapping.cud import FALKORDB
    from proxy.streams.mapping.mapper import Mapper
    from proxy.streams.writers import FalkorDBWriter
    from tests.streams.test_mapping_units import message

    rel_type = label("NEW_TYPE")
    ends = {
        "from": {"labels": ["U"], "ids": {"id": 1}, "op": "merge"},
        "to": {"labels": ["V"], "ids": {"id": 1}, "op": "merge"},
    }
    rel = {"type": "relationship", "rel_type": rel_type, **ends}
    mapper = Mapper(MappingSpec("cud"), FALKORDB)
    outcomes = mapper.outcomes(
        [
            message({**rel, "op": "merge", "properties": {"a": 1}}),
            message({**rel, "op": "update", "properties": {"b": 2}}),
        ]
    )
    queries = mapper.prepare([q for o in outcomes for q in o.queries])  # type: ignore[union-attr]

    async def scenario() -> list[list[Any]]:
        backend = falkordb_server.make_backend(owns_server=False, pool_size=1)
        await backend.start()
        try:
            graph = label("composed")
            await FalkorDBWriter(backend, graph).write_batch(queries, None, atomic=True)
            result = await backend.run(graph, f"MATCH ()-[r:{rel_type}]->() RETURN r.a, r.b", {})
            nodes = await backend.run(graph, "MATCH (n) RETURN count(n)", {})
            assert nodes.rows == [(2,)]  # nothing left of making the type known
            return [list(row) for row in result.rows]
        finally:
            await backend.close()

    assert asyncio.run(scenario()) == [[1, 2]]

"""Built-in transforms and error policies end to end: the real broker, real FalkorDB backends,
the proxy as users run it, the official driver.

* builtin:depc: valid and invalid messages of both formats (every rule), the dead-letter
  records with their headers, replay changes nothing;
* builtin:command: two proxies, each on its own FalkorDB, one created later, end with the same
  graph; a failing command stops both at it; a dead-letter topic or SKIP lets them go on;
* builtin:request: answers on the response topic, refuses writes, dead-letters requests that
  cannot be answered;
* user transforms under ON ERROR DEAD LETTER / SKIP / STOP;
* what CREATE STREAM refuses.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import neo4j
import pytest
from neo4j.exceptions import ClientError

from tests.streams.conftest import (
    Broker,
    count,
    create_stream,
    run,
    show,
    start_proxy,
    stream_name,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

_labels = itertools.count(1)


def unique_label(prefix: str) -> str:
    """A label no other test (or run against the shared graph) uses: [A-Z]+[a-zA-Z0-9]*."""
    return f"{prefix}{os.getpid()}x{next(_labels)}"


def headers_of(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers() or []}


def fails(driver: Any, query: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        run(driver, query)
    return caught.value


def encode(message: Any) -> bytes:
    return message if isinstance(message, bytes) else json.dumps(message).encode()


# -- builtin:depc -----------------------------------------------------------------------------


def depc_graph(driver: Any, base: str) -> tuple[list[Any], list[Any]]:
    nodes = sorted(
        (row["label"], row["name"], json.dumps(row["props"], sort_keys=True))
        for row in run(
            driver, "MATCH (n) RETURN labels(n)[0] AS label, n.name AS name, properties(n) AS props"
        )
        if str(row["label"]).startswith(base)
    )
    rels = sorted(
        (row["a"], row["b"], row["type"], json.dumps(row["props"], sort_keys=True))
        for row in run(
            driver,
            "MATCH (a)-[r]->(b) RETURN labels(a)[0] + ':' + a.name "
            "AS a, labels(b)[0] + ':' + b.name AS b, type(r) AS "
            "type, properties(r) AS props",
        )
        if str(row["a"]).startswith(base)
    )
    return nodes, rels


def test_depc_messages_into_the_graph_and_the_dead_letter_topic(
    driver: Any, broker: Broker
) -> None:
    base = unique_label("Dep")
    app, db, host = f"{base}App", f"{base}Db", f"{base}Host"
    valid = [
        {
            "source": {
                "label": app,
                "name": "web",
                "props": {"from": 1515241242, "to": 1515244850},
            },
            "target": {"label": db, "name": "pg", "props": {"from": 1533636245, "to": 1533643445}},
            "rel": {"from": 1527847440, "to": 1527854640},
        },
        {
            "source_label": app,
            "source_name": "api",
            "source_from": 5,
            "target_label": db,
            "target_name": "pg",
            "target_from": 1533636245,
            "target_to": 1533643445,
            "rel_from": 1,
            "rel_to": 2,
        },
        {"source": {"label": host, "name": "h#1"}},
        {"source_label": host, "source_name": "h$2"},
        {"source": {"label": app, "name": "web"}, "target": {"label": host, "name": "h#1"}},
        {"metadata": {"source_label": app, "source_name": "cache", "source_to": 9}},
        # A name that looks like Cypher is only ever a parameter value.
        {"source_label": host, "source_name": "x'})DETACH_DELETE(n)//".replace("'", "")},
    ]
    invalid: list[tuple[Any, str]] = [
        ({"source": {"label": "app", "name": "x"}}, "source.label must be a string matching"),
        ({"source_label": "1App", "source_name": "x"}, "source_label must be a string matching"),
        (
            {"source": {"label": f"{app}`) DETACH DELETE (n) //", "name": "x"}},
            "source.label must be a string matching",
        ),
        ({"source_label": f"{app}`:X", "source_name": "x"}, "source_label must be a string"),
        ({"source": {"label": app, "name": "foo bar"}}, "source.name must be a non-empty"),
        ({"source_label": app, "source_name": "foo'bar"}, "source_name must be a non-empty"),
        (
            {"source": {"label": app, "name": "x", "props": {"from": -1}}},
            "source.props.from must be an integer >= 0",
        ),
        (
            {"source_label": app, "source_name": "x", "source_from": "1"},
            "source_from must be an integer >= 0",
        ),
        (
            {
                "source": {"label": app, "name": "x"},
                "target": {"label": db, "name": "y"},
                "rel": {"to": 0},
            },
            "rel.to must be an integer >= 1",
        ),
        (
            {
                "source_label": app,
                "source_name": "x",
                "target_label": db,
                "target_name": "y",
                "target_to": 0,
            },
            "target_to must be an integer >= 1",
        ),
        (
            {"source": {"label": app, "name": "x"}, "target": {"label": db}},
            "target needs both label and name",
        ),
        (
            {"source_label": app, "source_name": "x", "target_label": db},
            "a target needs both label and name: target_label without target_name",
        ),
        ({"source": {"label": app, "name": "x"}, "extra": 1}, 'unknown field "extra"'),
        (
            {"source_label": app, "source_name": "x", "source_colour": "red"},
            'unknown field "source_colour"',
        ),
        (b"{not json", "the message is not JSON"),
    ]
    # Interleaved, each with its own key: the dead-letter records keep them.
    messages: list[tuple[bytes, bytes, str | None]] = []
    for index in range(max(len(valid), len(invalid))):
        if index < len(valid):
            messages.append((f"v{index}".encode(), encode(valid[index]), None))
        if index < len(invalid):
            message, reason = invalid[index]
            messages.append((f"i{index}".encode(), encode(message), reason))
    topic = broker.create_topic(f"depc_{base}")
    dlq = broker.create_topic(f"depc_{base}.dlq")
    offsets = broker.produce_records(topic, [(key, value) for key, value, _ in messages])
    name = stream_name("depc")
    run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' WITH TOPIC "
        f"'{topic}' WITH TRANSFORM 'builtin:depc' ON ERROR DEAD LETTER '{dlq}' "
        "BATCH_SIZE 8",
    )
    row = show(driver, name)
    assert (row["transform"], row["on_error"], row["dead_letter_topic"]) == (
        "builtin:depc",
        "dead letter",
        dlq,
    )
    run(driver, f"START STREAM {name}")
    row = wait_until(
        lambda: (r := show(driver, name))["messages_processed"] == len(messages) and r,
        message="every message",
    )
    assert (row["status"], row["dead_lettered"], row["skipped"], row["last_error"]) == (
        "running",
        len(invalid),
        0,
        None,
    )

    nodes, rels = depc_graph(driver, base)
    assert nodes == sorted(
        [
            (app, "web", json.dumps({"from": 1515241242, "name": "web", "to": 1515244850})),
            (app, "api", json.dumps({"from": 5, "name": "api"})),
            (app, "cache", json.dumps({"name": "cache", "to": 9})),
            (db, "pg", json.dumps({"from": 1533636245, "name": "pg", "to": 1533643445})),
            (host, "h#1", json.dumps({"name": "h#1"})),
            (host, "h$2", json.dumps({"name": "h$2"})),
            (host, "x})DETACH_DELETE(n)//", json.dumps({"name": "x})DETACH_DELETE(n)//"})),
        ]
    )
    assert rels == sorted(
        [
            (
                f"{app}:web",
                f"{db}:pg",
                "DEPENDS_ON",
                json.dumps({"from": 1527847440, "to": 1527854640}),
            ),
            (f"{app}:api", f"{db}:pg", "DEPENDS_ON", json.dumps({"from": 1, "to": 2})),
            (f"{app}:web", f"{host}:h#1", "DEPENDS_ON", "{}"),
        ]
    )
    labels = {row["label"] for row in run(driver, "CALL db.labels()")}
    assert not any("DETACH" in label or "`" in label for label in labels)

    # Each invalid message is in the dead-letter topic: same key and bytes, where it came from,
    # and why.
    records = broker.consume(dlq, len(invalid) + 1, timeout=1.5)
    assert len(records) == len(invalid)
    by_key = {record.key(): record for record in records}
    for (key, value, reason), offset in zip(messages, offsets, strict=True):
        if reason is None:
            assert key not in by_key
            continue
        record = by_key[key]
        assert record.value() == value
        headers = headers_of(record)
        assert (
            headers["boltstream.stream"],
            headers["boltstream.topic"],
            headers["boltstream.partition"],
            headers["boltstream.offset"],
        ) == (name, topic, "0", str(offset))
        assert int(headers["boltstream.timestamp"]) > 0
        assert reason in headers["boltstream.error"], (reason, headers["boltstream.error"])

    # Replaying the valid messages changes nothing.
    broker.produce(topic, [encode(message) for message in valid])
    wait_until(
        lambda: show(driver, name)["messages_processed"] == len(messages) + len(valid),
        message="the replay",
    )
    assert depc_graph(driver, base) == (nodes, rels)
    assert show(driver, name)["dead_lettered"] == len(invalid)
    run(driver, f"DROP STREAM {name}")


# -- builtin:command --------------------------------------------------------------------------


def whole_graph(driver: Any) -> tuple[list[Any], list[Any]]:
    nodes = sorted(
        json.dumps([row["labels"], row["props"]], sort_keys=True)
        for row in run(driver, "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    )
    rels = sorted(
        json.dumps([row["a"], row["type"], row["props"], row["b"]], sort_keys=True)
        for row in run(
            driver,
            "MATCH (a)-[r]->(b) RETURN properties(a) AS a, "
            "type(r) AS type, properties(r) AS props, "
            "properties(b) AS b",
        )
    )
    return nodes, rels


def command(text: str, **params: Any) -> bytes:
    message: dict[str, Any] = {"command": text, "with_key": "replication"}
    if params:
        message["params"] = params
    return json.dumps(message).encode()


def test_command_replication_into_two_backends(
    broker: Broker, transforms: Path, tmp_path: Path
) -> None:
    topic = broker.create_topic(f"commands_{os.getpid()}_{next(_labels)}")
    dlq = broker.create_topic(f"{topic}.dlq")
    # Order matters to most of these: a replica that reordered or repeated one would differ.
    first = [
        command("CREATE (:User {name: $name, n: $n})", name="u1", n=1),
        command("CREATE (:User {name: 'u2', n: 2})"),
        command(
            "MATCH (a:User {name: 'u1'}), (b:User {name: 'u2'}) "
            "CREATE (a)-[:FOLLOWS {since: $year}]->(b)",
            year=2020,
        ),
        command('MERGE (u:User {name: "user_1"}) ON MATCH SET u.password = "pass"'),
        command("MATCH (u:User {name: 'u2'}) SET u.n = u.n * 10 + 1"),
        command("CREATE (:Counter {v: 0})"),
    ] + [command("MATCH (c:Counter) SET c.v = c.v * 3 + $i", i=i) for i in range(5)]
    second = [
        command('MERGE (u:User {name: "user_1"}) ON MATCH SET u.password = "pass"'),
        command("MATCH (u:User {name: 'u1'}) DETACH DELETE u"),
        command("CREATE (:User {name: 'u3', tags: $tags})", tags=["a", "b"]),
    ] + [command("MATCH (c:Counter) SET c.v = c.v * 3 + $i", i=i) for i in range(5, 9)]
    broker.produce(topic, first)
    expected_counter = 0
    for i in range(9):
        expected_counter = expected_counter * 3 + i

    replica_a = start_proxy(tmp_path / "a", transforms)
    replica_b = None
    try:
        with neo4j.GraphDatabase.driver(replica_a.bolt_uri, auth=("ops", "x")) as a:
            ra = stream_name("replica_a")
            create_stream(a, ra, broker, topic, "builtin:command", "BATCH_SIZE 4")
            assert (show(a, ra)["on_error"], show(a, ra)["transform"]) == (
                "stop",
                "builtin:command",
            )
            run(a, f"START STREAM {ra}")
            wait_until(
                lambda: show(a, ra)["messages_processed"] == len(first),
                message="replica a, first commands",
            )
            broker.produce(topic, second)

            # A replica created later reads the topic from its beginning.
            replica_b = start_proxy(tmp_path / "b", transforms)
            with neo4j.GraphDatabase.driver(replica_b.bolt_uri, auth=("ops", "x")) as b:
                rb = stream_name("replica_b")
                create_stream(b, rb, broker, topic, "builtin:command", "BATCH_SIZE 3")
                run(b, f"START STREAM {rb}")
                total = len(first) + len(second)
                for drv, name in ((a, ra), (b, rb)):
                    wait_until(
                        lambda drv=drv, name=name: show(drv, name)["messages_processed"] == total,
                        message=f"{name} caught up",
                    )
                graph = whole_graph(a)
                assert graph == whole_graph(b)
                assert run(a, "MATCH (c:Counter) RETURN c.v AS v") == [{"v": expected_counter}]
                assert run(a, "MATCH (u:User) RETURN u.name AS name, u.n AS n ORDER BY name") == [
                    {"name": "u2", "n": 21},
                    {"name": "u3", "n": None},
                    {"name": "user_1", "n": None},
                ]

                # A failing command stops every replica at it; the ones before it are done
                # (once) and committed, the ones after it wait.
                offsets = broker.produce_records(
                    topic,
                    [
                        (None, command("MATCH (c:Counter) SET c.v = c.v + 1")),
                        (None, command("MATCH (c:Counter) SET c.v = c.v / 0")),
                        (None, command("MATCH (c:Counter) SET c.v = c.v + 100")),
                    ],
                )
                for drv, name in ((a, ra), (b, rb)):
                    row = wait_until(
                        lambda drv=drv, name=name: (
                            (r := show(drv, name))["status"] == "error" and r
                        ),
                        message=f"{name} to stop",
                    )
                    assert row["last_error"].startswith(
                        f"topic '{topic}' partition 0 offset {offsets[1]}: the backend rejected "
                        "it: Neo.ClientError.Statement.ArithmeticError: Division by zero"
                    )
                    assert broker.committed(name, topic) == {0: offsets[1]}
                    assert run(drv, "MATCH (c:Counter) RETURN c.v AS v") == [
                        {"v": expected_counter + 1}
                    ]

                # With a dead-letter topic (or SKIP) a replica goes on past it: the same
                # stream names, so the same consumer groups, resuming at the failed command.
                run(a, f"DROP STREAM {ra}")
                create_stream(
                    a, ra, broker, topic, "builtin:command", f"ON ERROR DEAD LETTER '{dlq}'"
                )
                run(b, f"DROP STREAM {rb}")
                create_stream(b, rb, broker, topic, "builtin:command", "ON ERROR SKIP")
                run(a, f"START STREAM {ra}")
                run(b, f"START STREAM {rb}")
                for drv, name in ((a, ra), (b, rb)):
                    wait_until(
                        lambda drv=drv, name=name: show(drv, name)["messages_processed"] == 2,
                        message=f"{name} past the failed command",
                    )
                assert whole_graph(a) == whole_graph(b)
                assert run(a, "MATCH (c:Counter) RETURN c.v AS v") == [
                    {"v": expected_counter + 101}
                ]
                assert (show(a, ra)["dead_lettered"], show(b, rb)["skipped"]) == (1, 1)
                (record,) = broker.consume(dlq, 2, timeout=1.5)
                assert record.value() == command("MATCH (c:Counter) SET c.v = c.v / 0")
                headers = headers_of(record)
                assert (headers["boltstream.stream"], headers["boltstream.offset"]) == (
                    ra,
                    str(offsets[1]),
                )
                assert "Division by zero" in headers["boltstream.error"]
    finally:
        replica_a.stop()
        if replica_b is not None:
            replica_b.stop()


# -- builtin:request --------------------------------------------------------------------------


def test_requests_answered_on_their_response_topic(driver: Any, broker: Broker) -> None:
    label = unique_label("Req")
    run(
        driver,
        f"CREATE (a:{label} {{name: 'a', born: date('2020-01-02')}})"
        f"-[:KNOWS {{w: 1.5}}]->(b:{label} {{name: 'b'}})",
    )
    requests = broker.create_topic(f"requests_{label}")
    responses = broker.create_topic(f"responses_{label}")
    dlq = broker.create_topic(f"requests_{label}.dlq")

    def ask(key: str, query: str, **params: Any) -> bytes:
        message: dict[str, Any] = {"to": responses, "with_key": key, "command": query}
        if params:
            message["params"] = params
        return json.dumps(message).encode()

    answered = {
        "rows": ask(
            "rows",
            f"MATCH (a:{label} {{name: $n}})-[r]->(b) RETURN a, r, b, "
            "a.born AS born, [a.name, b.name] AS names",
            n="a",
        ),
        "path": ask("path", f"MATCH p = (:{label})-[:KNOWS]->(:{label}) RETURN p"),
        "write": ask("write", f"CREATE (:{label} {{name: 'evil'}})"),
        "none": ask("none", f"MATCH (n:{label} {{name: 'nobody'}}) RETURN n.name AS name"),
        "unknown": json.dumps(
            {"to": responses, "with_key": "unknown", "execute": "RETURN 1"}
        ).encode(),
        "syntax": ask("syntax", "RETURN RETURN"),
    }
    unanswerable = [
        json.dumps({"with_key": "x", "command": "RETURN 1"}).encode(),
        json.dumps({"to": requests, "with_key": "loop", "command": "RETURN 1"}).encode(),
        b"MATCH (n) RETURN n",
    ]
    broker.produce(requests, [*answered.values(), *unanswerable])
    name = stream_name("server")
    create_stream(
        driver, name, broker, requests, "builtin:request", f"ON ERROR DEAD LETTER '{dlq}'"
    )
    run(driver, f"START STREAM {name}")
    total = len(answered) + len(unanswerable)
    row = wait_until(
        lambda: (r := show(driver, name))["messages_processed"] == total and r,
        message="every request",
    )
    assert (row["status"], row["dead_lettered"]) == ("running", len(unanswerable))

    records = broker.consume(responses, len(answered) + 1, timeout=1.5)
    assert sorted(record.key().decode() for record in records) == sorted(answered)
    body = {record.key().decode(): json.loads(record.value()) for record in records}
    rows = body["rows"]
    assert (rows["ok"], rows["fields"], rows["with_key"]) == (
        True,
        ["a", "r", "b", "born", "names"],
        "rows",
    )
    (result,) = rows["rows"]
    assert result["a"]["labels"] == [label]
    assert result["a"]["properties"] == {"name": "a", "born": "2020-01-02"}
    assert result["r"]["type"] == "KNOWS" and result["r"]["properties"] == {"w": 1.5}
    assert (result["r"]["start"], result["r"]["end"]) == (result["a"]["id"], result["b"]["id"])
    assert result["b"]["properties"] == {"name": "b"}
    assert (result["born"], result["names"]) == ("2020-01-02", ["a", "b"])
    (path,) = body["path"]["rows"]
    assert [node["properties"]["name"] for node in path["p"]["nodes"]] == ["a", "b"]
    assert path["p"]["relationships"][0]["type"] == "KNOWS"
    assert body["write"]["ok"] is False
    assert body["write"]["error"]["code"] == "Neo.ClientError.Statement.AccessMode"
    assert count(driver, f"(n:{label})", "WHERE n.name = 'evil'") == 0
    assert body["none"] == {"ok": True, "fields": ["name"], "rows": [], "with_key": "none"}
    assert body["unknown"]["error"]["code"] == "Neo.ClientError.Request.Invalid"
    assert 'unknown field "execute"' in body["unknown"]["error"]["message"]
    assert body["syntax"]["error"]["code"] == "Neo.ClientError.Statement.SyntaxError"
    record = next(r for r in records if r.key() == b"rows")
    assert headers_of(record)["boltstream.topic"] == requests

    dead = broker.consume(dlq, len(unanswerable) + 1, timeout=1.5)
    assert [record.value() for record in dead] == unanswerable
    reasons = [headers_of(record)["boltstream.error"] for record in dead]
    assert reasons[0].startswith("to must name the response topic")
    assert reasons[1] == f"the response topic '{requests}' is the request topic"
    assert reasons[2].startswith("the request is not JSON")
    run(driver, f"DROP STREAM {name}")


# -- user transforms under each policy --------------------------------------------------------


def test_user_transform_failures_go_where_the_policy_says(
    driver: Any, broker: Broker, transforms: Path
) -> None:
    parts = ["ok1", "reject1", "ok2", "poison1", "ok3", "boom1", "ok4"]
    dead_name, skip_name, stop_name = (stream_name("dl"), stream_name("skip"), stream_name("stop"))
    topics = {}
    for name in (dead_name, skip_name, stop_name):
        topics[name] = broker.create_topic(f"topic_{name}")
        broker.produce(topics[name], [f"{name}-{part}" for part in parts])
    dlq = broker.create_topic(f"topic_{dead_name}.dlq")
    create_stream(
        driver,
        dead_name,
        broker,
        topics[dead_name],
        transforms / "mixed.py",
        f"ON ERROR DEAD LETTER '{dlq}'",
        "BATCH_SIZE 5",
    )
    create_stream(
        driver,
        skip_name,
        broker,
        topics[skip_name],
        transforms / "mixed.py",
        "BATCH_SIZE 5 ON ERROR SKIP",
    )
    create_stream(
        driver,
        stop_name,
        broker,
        topics[stop_name],
        transforms / "mixed.py",
        "ON ERROR STOP",
        "BATCH_SIZE 2",
    )
    for name in (dead_name, skip_name, stop_name):
        run(driver, f"START STREAM {name}")

    for name in (dead_name, skip_name):
        row = wait_until(
            lambda name=name: (r := show(driver, name))["messages_processed"] == len(parts) and r,
            message=f"{name} to get through",
        )
        assert row["status"] == "running"
        bodies = sorted(
            r["b"]
            for r in run(
                driver,
                "MATCH (m:Mixed) WHERE m.body STARTS WITH $p RETURN m.body AS b",
                p=f"{name}-",
            )
        )
        assert bodies == [f"{name}-ok{i}" for i in range(1, 5)]  # each once, nothing else
        assert broker.committed(name, topics[name]) == {0: len(parts)}
    assert (show(driver, dead_name)["dead_lettered"], show(driver, dead_name)["skipped"]) == (3, 0)
    assert (show(driver, skip_name)["dead_lettered"], show(driver, skip_name)["skipped"]) == (0, 3)
    records = broker.consume(dlq, 4, timeout=1.5)
    reasons = {
        record.value().decode().rsplit("-", 1)[1]: headers_of(record)["boltstream.error"]
        for record in records
    }
    assert sorted(reasons) == ["boom1", "poison1", "reject1"]
    assert reasons["reject1"] == f"rejected: {dead_name}-reject1"
    assert reasons["poison1"].startswith(
        "the backend rejected it: Neo.ClientError.Statement.ArithmeticError"
    )
    assert reasons["boom1"].startswith(
        f"the transform failed: transform raised ValueError: cannot digest {dead_name}-boom1"
    )

    # STOP: the first batch (ok1, reject1) holds a rejected message; nothing of it is written
    # or committed.
    row = wait_until(
        lambda: (r := show(driver, stop_name))["status"] == "error" and r,
        message="the STOP stream to stop",
    )
    assert row["last_error"] == (
        f"topic '{topics[stop_name]}' partition 0 offset 1: rejected "
        f"by the transform: rejected: {stop_name}-reject1"
    )
    assert broker.committed(stop_name, topics[stop_name]) == {0: -1001}
    assert count(driver, "(m:Mixed)", f"WHERE m.body STARTS WITH '{stop_name}-'") == 0
    for name in (dead_name, skip_name, stop_name):
        run(driver, f"DROP STREAM {name}")


# -- what CREATE STREAM refuses ---------------------------------------------------------------


def test_create_checks_the_error_policy(driver: Any, broker: Broker, topic: str) -> None:
    name = stream_name("checks")
    head = (
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' WITH TOPIC "
        f"'{topic}' WITH TRANSFORM"
    )
    dlq = broker.create_topic(f"{topic}.dlq")
    for clause in ("", "ON ERROR SKIP", "ON ERROR STOP"):
        error = fails(driver, f"{head} 'builtin:depc' {clause}")
        assert error.code == "Neo.ClientError.Statement.ArgumentError"
        assert error.message == (
            f"Failed to initialize Kafka stream {name} : builtin:depc needs "
            "ON ERROR DEAD LETTER 'topic': an invalid message goes there "
            "with the reason; it is never dropped and never stops the "
            "stream"
        )
    error = fails(driver, f"{head} 'builtin:depc' ON ERROR DEAD LETTER 'missing_{name}'")
    assert error.code == "Neo.ClientError.Statement.ExternalResourceFailed"
    assert error.message == (f"Kafka stream {name}, dead-letter topic 'missing_{name}' not found")
    assert f"missing_{name}" not in broker.topics()  # looking did not create it
    error = fails(driver, f"{head} 'builtin:command' ON ERROR DEAD LETTER '{topic}'")
    assert error.message.endswith("the dead-letter topic cannot be the stream's own topic")
    error = fails(driver, f"{head} 'builtin:command' ON ERROR DEAD LETTER 'not a topic'")
    assert error.message.startswith(
        "'not a topic' is an invalid dead-letter topic name: Kafka allows 1 to 249 ASCII letters"
    )
    error = fails(driver, f"{head} 'builtin:nope'")
    assert error.code == "Neo.ClientError.Statement.ExternalResourceFailed"
    assert error.message == (
        "Couldn't get the transform script from builtin:nope: there is no "
        "such built-in transform (builtin:depc, builtin:command, "
        "builtin:request)"
    )
    assert name not in {row["name"] for row in run(driver, "SHOW STREAMS")}

    # Defaults: command stops, request skips; the shown transform is the built-in's name.
    for transform, policy in (("command", "stop"), ("request", "skip")):
        run(driver, f"{head} 'builtin:{transform}'")
        row = show(driver, name)
        assert (row["transform"], row["on_error"], row["dead_letter_topic"]) == (
            f"builtin:{transform}",
            policy,
            None,
        )
        run(driver, f"DROP STREAM {name}")

    # TEST STREAM shows what the built-in makes of each message, dead letters included.
    broker.produce(topic, [json.dumps({"source_label": "A", "source_name": "x"}), "nope"])
    run(driver, f"{head} 'builtin:depc' ON ERROR DEAD LETTER '{dlq}'")
    rows = run(driver, f"TEST STREAM {name}")
    assert rows == [
        {
            "query": "MERGE (s:`A` {name: $source_name}) SET s += $source_props",
            "params": {"source_name": "x", "source_props": {}},
        },
        {
            "query": "// boltstream: dead letter",
            "params": {
                "index": 1,
                "reason": "the message is not JSON: Expecting value: line 1 column 1 (char 0)",
            },
        },
    ]
    run(driver, f"DROP STREAM {name}")

"""Memgraph 2.x streams end to end: the real broker (Tansu), the embedded FalkorDB, the proxy as
users run it, the official driver.

* CREATE KAFKA STREAM with a Memgraph transformation module from the transformations
  directory, several topics, the proxy's --kafka-bootstrap-servers, per-stream CONSUMER_GROUP,
  CONFIGS and CREDENTIALS (client.id seen by the broker; the credential never shown, logged or
  written outside the catalog); message metadata and tombstones;
* the legacy clause with several topics, per-stream settings and ``stream_messages``;
* CHECK STREAM, START STREAM ... BATCH_LIMIT / TIMEOUT;
* mg.kafka_set_stream_offset and mg.kafka_stream_info;
* module errors at CREATE and while running; clauses that are refused.
"""

from __future__ import annotations

import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest
from neo4j.exceptions import ClientError

from tests.streams.broker import Broker
from tests.streams.conftest import (
    KAFKA_TEST_CONFIG,
    count,
    run,
    show,
    stream_name,
    wait_until,
)
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(120)

SECRET = "hunter2-mg10-never-shown"

MODULE = """
import json
import mgp


@mgp.transformation
def record(messages: mgp.Messages
           ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    result_queries = []
    for i in range(messages.total_messages()):
        message = messages.message_at(i)
        result_queries.append(mgp.Record(
            query=("CREATE (:MgMsg {payload: $payload, topic: $topic, key: $key, "
                   "timestamp: $timestamp, offset: $offset, stream: $stream})"),
            parameters={
                "payload": message.payload().decode("utf-8"),
                "topic": message.topic_name(),
                "key": message.key().decode("utf-8"),
                "timestamp": message.timestamp(),
                "offset": message.offset(),
                "stream": STREAM}))
    return result_queries


STREAM = "module"
"""

JSON_MODULE = """
import json
import mgp


@mgp.transformation
def people(context: mgp.TransCtx, messages: mgp.Messages
           ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    out = []
    for i in range(messages.total_messages()):
        person = json.loads(messages.message_at(i).payload())
        out.append(mgp.Record(query="MERGE (:MgPerson {name: $name, tag: $tag})",
                              parameters={"name": person["name"], "tag": person["tag"]}))
        for friend in person.get("friends", []):
            out.append(mgp.Record(
                query="MERGE (a:MgPerson {name: $a, tag: $tag}) "
                      "MERGE (b:MgPerson {name: $b, tag: $tag}) MERGE (a)-[:KNOWS]->(b)",
                parameters={"a": person["name"], "b": friend, "tag": person["tag"]}))
    return out
"""

FAILING_MODULE = """
import mgp


@mgp.transformation
def strict(messages: mgp.Messages) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    out = []
    for i in range(messages.total_messages()):
        value = int(messages.message_at(i).payload())
        out.append(mgp.Record(query="CREATE (:MgInt {v: $v})", parameters={"v": value}))
    return out
"""

BROKEN_MODULE = "import mgp\n\n\nundefined_name_here\n"

LEGACY_METADATA = """
def stream_messages(messages):
    return [("CREATE (n:LegacyMsg) SET n = $p", {"p": {
        "value": None if m.value is None else m.value.decode(),
        "tombstone": m.is_tombstone,
        "key": None if m.key is None else m.key.decode(),
        "topic": m.topic, "partition": m.partition, "offset": m.offset,
        "has_timestamp": m.timestamp is not None,
        "headers": ",".join(name + "=" + (v or b"").decode() for name, v in m.headers),
    }}) for m in messages]
"""

COUNTING = """
def stream(batch):
    return [("CREATE (:MgCount {body: $b, tag: $t})",
             {"b": item.decode(), "t": item.decode().split(":")[0]}) for item in batch]
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("transformations")
    for name, code in {
        "mgmeta": MODULE,
        "mgjson": JSON_MODULE,
        "mgfail": FAILING_MODULE,
        "mgbroken": BROKEN_MODULE,
    }.items():
        (folder / f"{name}.py").write_text(code)
    (folder / "legacy_meta.py").write_text(textwrap.dedent(LEGACY_METADATA))
    (folder / "counting.py").write_text(textwrap.dedent(COUNTING))
    return folder


@pytest.fixture(scope="module")
def mg_proxy(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker, modules: Path
) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(
        "--data-dir",
        str(tmp_path_factory.mktemp("mg-proxy")),
        "--transform-allowed-dirs",
        str(modules),
        "--transformations-dir",
        str(modules),
        "--kafka-bootstrap-servers",
        broker.bootstrap,
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        "--transform-timeout",
        "5",
        "--log-level",
        "debug",
    ).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def mg(mg_proxy: ProxyProcess) -> Iterator[Any]:
    with neo4j.GraphDatabase.driver(mg_proxy.bolt_uri, auth=("alice", "pw")) as drv:
        yield drv


def fails(driver: Any, query: str, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        run(driver, query, **params)
    return caught.value


def produce_records(
    broker: Broker,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]] | None]],
) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
    for key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(10) == 0


# -- CREATE KAFKA STREAM: modules, several topics, per-stream settings -----------------------


def test_module_stream_over_several_topics_with_its_own_settings(
    mg: Any, mg_proxy: ProxyProcess, broker: Broker, topic: str
) -> None:
    other = broker.create_topic(topic + "_b")
    name = stream_name("mgmod")
    group = f"grp-{name}.x"
    client_id = f"client-{name}"
    run(
        mg,
        f"CREATE KAFKA STREAM {name} TOPICS {topic}, {other} TRANSFORM mgmeta.record "
        f"CONSUMER_GROUP {group} BATCH_INTERVAL 50 BATCH_SIZE 100 "
        f"CONFIGS {{'client.id': '{client_id}'}} "
        f"CREDENTIALS {{'sasl.password': '{SECRET}', 'ssl.key.password': '{SECRET}-2'}}",
    )
    assert SECRET not in mg_proxy.log_text()
    row = show(mg, name)
    assert row["topic"] == f"{topic},{other}"
    assert row["uri"] == broker.bootstrap  # the proxy's --kafka-bootstrap-servers
    assert row["consumer_group"] == group
    assert row["type"] == "kafka"
    assert row["transformation_name"] == "mgmeta.record"
    assert row["transform"].endswith("mgmeta.py")
    assert row["is running"] is False and row["status"] == "stopped"
    assert (row["batch_interval"], row["batch_size"]) == (50, 100)
    assert row["configs"] == {"client.id": client_id}
    assert row["credentials"] == {"sasl.password": "<REDACTED>", "ssl.key.password": "<REDACTED>"}
    (info,) = run(mg, f"CALL mg.kafka_stream_info('{name}') YIELD *")
    assert info == {
        "consumer_group": group,
        "topics": [topic, other],
        "bootstrap_servers": broker.bootstrap,
        "configs": {"client.id": client_id},
        "credentials": {"sasl.password": "<REDACTED>", "ssl.key.password": "<REDACTED>"},
    }

    produce_records(broker, topic, [(b"k1", b"first", [("h", b"v")]), (None, b"second", None)])
    produce_records(broker, other, [(b"k3", None, None)])  # a tombstone
    run(mg, f"START STREAM {name}")
    wait_until(lambda: count(mg, "(n:MgMsg)", "WHERE n.stream = 'module'") >= 3, 40)
    rows = run(
        mg,
        "MATCH (n:MgMsg) WHERE n.topic IN [$a, $b] RETURN n.payload AS payload, "
        "n.topic AS topic, n.key AS key, n.offset AS offset, n.timestamp AS ts "
        "ORDER BY topic, offset",
        a=topic,
        b=other,
    )
    assert [(r["payload"], r["topic"], r["key"], r["offset"]) for r in rows] == [
        ("first", topic, "k1", 0),
        ("second", topic, "", 1),
        ("", other, "k3", 0),  # Memgraph's API: a tombstone's payload is empty
    ]
    assert all(r["ts"] > 1_600_000_000_000 for r in rows)  # the producer's create time
    assert show(mg, name)["is running"] is True

    run(mg, f"STOP STREAM {name}")
    run(mg, f"DROP STREAM {name}")
    # The credentials: never in the log (debug level), only in the catalog in the data dir,
    # which only the proxy's user can read.
    assert SECRET not in mg_proxy.log_text()
    holders = []
    data_dir = Path(mg_proxy.args[mg_proxy.args.index("--data-dir") + 1])
    for path in data_dir.rglob("*"):
        if path.is_file() and SECRET.encode() in path.read_bytes():
            holders.append(path)
    for path in holders:
        assert path.name.startswith("streams"), holders
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_mapping_stream_in_memgraph_syntax_altered_keeps_its_position(
    mg: Any, mg_proxy: ProxyProcess, broker: Broker, topic: str
) -> None:
    """CREATE KAFKA STREAM with a template instead of TRANSFORM; ALTER ... SET changes the
    template and the stream's own Kafka settings, checked as CREATE checks them (EXPLAIN of
    the template included); no message is lost or applied twice across the ALTER."""
    name = stream_name("mgtpl")
    first, second = f"MgTplA_{name}", f"MgTplB_{name}"
    run(
        mg,
        f"CREATE KAFKA STREAM {name} TOPICS {topic} "
        f"WITH CYPHER 'CREATE (:{first} {{v: event.v}})' BATCH_SIZE 5",
    )
    row = show(mg, name)
    assert (
        row["transform"]
        == row["transformation_name"]
        == f"CYPHER 'CREATE (:{first} {{v: event.v}})'"
    )
    group = row["consumer_group"]
    produce_records(broker, topic, [(None, b'{"v": %d}' % i, None) for i in range(10)])
    run(mg, f"START STREAM {name}")
    wait_until(lambda: count(mg, f"(n:{first})") == 10, 40, message="the first template")
    run(mg, f"STOP STREAM {name}")

    run(
        mg,
        f"ALTER STREAM {name} SET WITH CYPHER 'CREATE (:{second} {{v: event.v}})' "
        f"CONFIGS {{'client.id': 'altered-{name}'}} CREDENTIALS {{'sasl.password': '{SECRET}'}}",
    )
    row = show(mg, name)
    assert row["transform"] == f"CYPHER 'CREATE (:{second} {{v: event.v}})'"
    assert row["configs"] == {"client.id": f"altered-{name}"}
    assert row["credentials"] == {"sasl.password": "<REDACTED>"}
    assert (row["consumer_group"], row["batch_size"]) == (group, 5)
    # Refused as CREATE refuses them, and nothing changes.
    for options, message in [
        (
            "WITH CYPHER 'CREATE (n:X) SET n.x = nope'",
            "the backend refuses the Cypher template: 'nope' not defined",
        ),
        ("CONFIGS {'group.id': 'other'}", "CONFIGS may not set 'group.id'"),
        ("CONFIGS {'no.such.setting': '1'}", "no.such.setting"),
        ("MERGE NODE PROPERTIES", "applies to WITH PATTERN only"),
        ("TRANSFORM 'builtin:depc' WITH CYPHER 'CREATE ()'", "not both"),
    ]:
        error = fails(mg, f"ALTER STREAM {name} SET {options}")
        assert error.code == "Neo.ClientError.Statement.ArgumentError", options
        assert (error.message or "").startswith("Failed to alter Kafka stream "), options
        assert message in (error.message or ""), options
    assert show(mg, name) == row

    produce_records(broker, topic, [(None, b'{"v": %d}' % i, None) for i in range(10, 20)])
    run(mg, f"START STREAM {name}")
    wait_until(lambda: count(mg, f"(n:{second})") == 10, 40, message="the second template")
    run(mg, f"STOP STREAM {name}")
    assert count(mg, f"(n:{first})") == 10
    values = run(mg, f"MATCH (n:{second}) RETURN n.v AS v ORDER BY v")
    assert [r["v"] for r in values] == list(range(10, 20))

    # A module replaces the mapping; the settings stay.
    run(mg, f"ALTER STREAM {name} SET TRANSFORM mgmeta.record")
    row = show(mg, name)
    assert row["transformation_name"] == "mgmeta.record"
    assert row["configs"] == {"client.id": f"altered-{name}"}
    run(mg, f"DROP STREAM {name}")
    assert SECRET not in mg_proxy.log_text()


def test_json_module_with_several_records_per_message(mg: Any, broker: Broker, topic: str) -> None:
    name = stream_name("mgjson")
    tag = name
    broker.produce(
        topic,
        [
            f'{{"name": "ann", "tag": "{tag}", "friends": ["bob", "cid"]}}',
            f'{{"name": "bob", "tag": "{tag}"}}',
        ],
    )
    # 2.0's spelling, without KAFKA; parts in another order.
    run(mg, f"CREATE STREAM {name} TRANSFORM mgjson.people TOPICS '{topic}'")
    run(mg, f"START STREAM {name} BATCH_LIMIT 1 TIMEOUT 30000")  # returns once written
    assert count(mg, "(n:MgPerson)", f"WHERE n.tag = '{tag}'") == 3
    assert count(mg, "(:MgPerson)-[r:KNOWS]->(b:MgPerson)", f"WHERE b.tag = '{tag}'") == 2
    row = show(mg, name)
    assert row["status"] == "stopped" and row["is running"] is False
    assert row["messages_processed"] >= 1
    run(mg, f"DROP STREAM {name}")


def test_legacy_clause_several_topics_settings_and_metadata(
    mg: Any, broker: Broker, topic: str, modules: Path
) -> None:
    second, third = broker.create_topic(topic + "_2"), broker.create_topic(topic + "_3")
    name = stream_name("legacy")
    group = f"legacy-{name}"
    produce_records(broker, topic, [(b"a", b"", [("h1", b"x"), ("h2", b"y")])])
    produce_records(broker, second, [(None, None, None)])
    produce_records(broker, third, [(b"c", b"three", None)])
    run(
        mg,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic},{second}' WITH TOPIC '{third}' "
        f"WITH TRANSFORM '{modules / 'legacy_meta.py'}' CONSUMER_GROUP {group} "
        f"CONFIGS {{'client.id': 'legacy-client'}}",
    )
    row = show(mg, name)
    assert row["topic"] == f"{topic},{second},{third}"
    assert row["consumer_group"] == group
    assert row["transformation_name"] == str(modules / "legacy_meta.py")
    tested = run(mg, f"CHECK STREAM {name} BATCH_LIMIT 3 TIMEOUT 5000")
    assert {r["params"]["p"]["topic"] for r in tested} == {topic, second, third}
    run(mg, f"START STREAM {name}")
    wait_until(
        lambda: (
            count(mg, "(n:LegacyMsg)", f"WHERE n.topic IN ['{topic}', '{second}', '{third}']") == 3
        )
    )
    rows = {
        r["p"]["topic"]: r["p"]
        for r in run(
            mg,
            "MATCH (n:LegacyMsg) WHERE n.topic IN [$a, $b, $c] RETURN properties(n) AS p",
            a=topic,
            b=second,
            c=third,
        )
    }
    assert rows[topic]["value"] == "" and rows[topic]["tombstone"] is False
    assert rows[topic]["key"] == "a" and rows[topic]["headers"] == "h1=x,h2=y"
    assert rows[second].get("value") is None and rows[second]["tombstone"] is True
    assert rows[third]["value"] == "three" and rows[third]["partition"] == 0
    assert all(p["has_timestamp"] for p in rows.values())
    run(mg, f"DROP STREAM {name}")


def test_per_stream_client_id_reaches_the_broker(mg: Any, tmp_path: Path) -> None:
    """Tansu's DescribeGroups lists no members, so the client id is read where the broker
    logs every request's header (its debug log)."""
    log = tmp_path / "tansu.log"
    own = Broker(log).start()
    try:
        topic = own.create_topic("ids")
        own.produce(topic, ["x"])
        name = stream_name("cid")
        client_id = f"client-{name}"
        run(
            mg,
            f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgmeta.record "
            f"BOOTSTRAP_SERVERS '{own.bootstrap}' CONFIGS {{'client.id': '{client_id}'}}",
        )
        run(mg, f"START STREAM {name} BATCH_LIMIT 1 TIMEOUT 30000")
        seen = log.read_text(errors="replace")
        assert f'client_id: Some("{client_id}")' in seen
        # JoinGroup (api key 11) came from the stream's consumer under that id.
        assert any(
            "api_key: 11" in line and f'client_id: Some("{client_id}")' in line
            for line in seen.splitlines()
        )
        run(mg, f"DROP STREAM {name}")
    finally:
        own.stop()


# -- CHECK STREAM, START ... BATCH_LIMIT, offsets ----------------------------------------------


def test_check_limited_start_and_offsets(
    mg: Any, broker: Broker, topic: str, modules: Path
) -> None:
    name = stream_name("offs")
    tag = name
    broker.produce(topic, [f"{tag}:{i}" for i in range(3)], one_by_one=True)
    run(
        mg,
        f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM '{modules / 'counting.py'}' "
        "BATCH_SIZE 1 BATCH_INTERVAL 50",
    )
    checked = run(mg, f"CHECK STREAM {name} BATCH_LIMIT 2")
    assert [r["params"]["b"] for r in checked] == [f"{tag}:0", f"{tag}:1"]
    assert count(mg, "(n:MgCount)", f"WHERE n.tag = '{tag}'") == 0  # CHECK writes nothing
    # 60 s: a group join and a worker start, on a machine the whole suite loads (30 s was
    # once not enough there).
    run(mg, f"START STREAM {name} BATCH_LIMIT 3 TIMEOUT 60000")
    assert count(mg, "(n:MgCount)", f"WHERE n.tag = '{tag}'") == 3
    assert show(mg, name)["is running"] is False

    # Nothing more to read: the limited start times out and leaves the stream stopped.
    error = fails(mg, f"START STREAM {name} BATCH_LIMIT 1 TIMEOUT 1500")
    assert "Timeout reached" in error.message
    assert show(mg, name)["status"] == "stopped"
    assert run(mg, f"CHECK STREAM {name} TIMEOUT 1000") == []

    # Back to the beginning: CHECK sees the first message again, START applies them again.
    assert run(mg, f"CALL mg.kafka_set_stream_offset('{name}', -1)") == []
    checked = run(mg, f"CHECK STREAM {name}")
    assert [r["params"]["b"] for r in checked] == [f"{tag}:0"]
    run(mg, f"START STREAM {name} BATCH_LIMIT 3 TIMEOUT 60000")
    assert count(mg, "(n:MgCount)", f"WHERE n.tag = '{tag}'") == 6

    # An absolute offset, with parameters; then the end.
    run(mg, "CALL mg.kafka_set_stream_offset($s, $o)", s=name, o=2)
    assert [r["params"]["b"] for r in run(mg, f"CHECK STREAM {name}")] == [f"{tag}:2"]
    run(mg, f"CALL mg.kafka_set_stream_offset('{name}', -2)")
    assert run(mg, f"CHECK STREAM {name} TIMEOUT 1000") == []

    run(mg, f"START STREAM {name}")
    error = fails(mg, f"CALL mg.kafka_set_stream_offset('{name}', -1)")
    assert "stop it before setting its offset" in error.message
    assert "-3" in fails(mg, f"CALL mg.kafka_set_stream_offset('{name}', -3)").message
    # Past Kafka's 64-bit offsets: an ArgumentError naming the bound (found by the clause
    # fuzzer: it was ExternalResourceFailed "int too big to convert", from confluent-kafka).
    error = fails(mg, f"CALL mg.kafka_set_stream_offset('{name}', {2**63})")
    assert error.code == "Neo.ClientError.Statement.ArgumentError", error.message
    assert f"from 0 to {2**63 - 1}" in error.message
    run(mg, f"DROP STREAM {name}")
    assert "doesn't exist" in fails(mg, f"CALL mg.kafka_stream_info('{name}')").message


# -- errors and refusals -----------------------------------------------------------------------


def test_module_errors(mg: Any, broker: Broker, topic: str) -> None:
    name = stream_name("mgerr")
    error = fails(mg, f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgbroken.x")
    assert "NameError" in error.message and "line 4" in error.message
    error = fails(mg, f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgmeta.nope")
    assert "the module has no transformation 'nope'" in error.message
    error = fails(mg, f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM missing.t")
    assert "no such file" in error.message
    assert not [r for r in run(mg, "SHOW STREAMS") if r["name"] == name]

    run(mg, f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgfail.strict")
    broker.produce(topic, ["12", "not a number"])
    run(mg, f"START STREAM {name}")
    row = wait_until(
        lambda: (r := show(mg, name))["status"] == "error" and r, message="the stream to fail"
    )
    assert "ValueError" in row["last_error"] and "mgfail.py, line 9" in row["last_error"]
    run(mg, f"DROP STREAM {name}")


def test_settings_the_engine_owns_and_bad_values_are_refused(
    mg: Any, mg_proxy: ProxyProcess, topic: str
) -> None:
    name = stream_name("mgbad")
    base = f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgmeta.record"
    error = fails(mg, f"{base} CONFIGS {{'group.id': 'x'}}")
    assert "CONFIGS may not set 'group.id'" in error.message and "CONSUMER_GROUP" in error.message
    error = fails(mg, f"{base} CREDENTIALS {{'bootstrap.servers': 'h:1'}}")
    assert "CREDENTIALS may not set 'bootstrap.servers'" in error.message
    error = fails(mg, f"{base} CONFIGS {{'no.such.setting': '1'}}")
    assert "no.such.setting" in error.message
    # librdkafka quotes a bad value; a credential's is redacted.
    error = fails(mg, f"{base} CREDENTIALS {{'security.protocol': '{SECRET}'}}")
    assert SECRET not in error.message and "<REDACTED>" in error.message
    error = fails(mg, f"{base} CONFIGS {{'client.id': 'a\\u0000b'}}")
    assert "control character" in error.message
    error = fails(mg, f"CREATE KAFKA STREAM {name} TOPICS {topic}, {topic} TRANSFORM mgmeta.record")
    assert "more than once" in error.message
    assert SECRET not in mg_proxy.log_text()
    assert not [r for r in run(mg, "SHOW STREAMS") if r["name"] == name]


def test_unsupported_stream_clauses_are_refused_by_the_proxy(mg: Any) -> None:
    for query in (
        "CREATE PULSAR STREAM p TOPICS t TRANSFORM m.p SERVICE_URL 'pulsar://h:6650'",
        "CALL mg.pulsar_stream_info('p') YIELD *",
    ):
        error = fails(mg, query)
        assert "Pulsar streams are not supported" in error.message, error.message
    error = fails(mg, "CHECK STREAM")
    assert error.code == "Neo.ClientError.Statement.SyntaxError"
    assert "expected a stream name" in error.message  # the proxy's parser, not FalkorDB's


def test_without_bootstrap_servers_the_proxy_setting_is_needed(driver: Any, topic: str) -> None:
    """The session proxy has no --kafka-bootstrap-servers."""
    name = stream_name("nobs")
    error = fails(driver, f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM m.p")
    assert "no BOOTSTRAP_SERVERS given" in error.message


def test_bootstrap_servers_option(mg: Any, broker: Broker, topic: str, modules: Path) -> None:
    name = stream_name("bs")
    run(
        mg,
        f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM '{modules / 'counting.py'}' "
        f"BOOTSTRAP_SERVERS '{broker.bootstrap}'",
    )
    assert show(mg, name)["uri"] == broker.bootstrap
    run(mg, f"DROP STREAM {name}")
    error = fails(
        mg,
        f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM mgmeta.record "
        "BOOTSTRAP_SERVERS '127.0.0.1:1'",
    )
    assert "did not answer" in error.message


def test_stream_clauses_in_a_transaction_wait_for_commit(
    mg: Any, topic: str, modules: Path
) -> None:
    name = stream_name("tx")
    with mg.session() as session:
        with session.begin_transaction() as tx:
            tx.run(
                f"CREATE KAFKA STREAM {name} TOPICS {topic} TRANSFORM '{modules / 'counting.py'}'"
            ).consume()
            assert not [r for r in run(mg, "SHOW STREAMS") if r["name"] == name]
            tx.commit()
    assert show(mg, name)["status"] == "stopped"
    run(mg, f"DROP STREAM {name}")


def test_a_limited_start_is_not_resumed_after_a_crash(
    broker: Broker, topic: str, modules: Path, tmp_path: Path
) -> None:
    """START STREAM ... BATCH_LIMIT is not recorded as running (as in Memgraph): a proxy killed
    while one waits comes back with the stream stopped."""
    import signal
    import threading

    args = (
        "--data-dir",
        str(tmp_path / "data"),
        "--transform-allowed-dirs",
        str(modules),
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
    )
    name = stream_name("crashlim")
    first = ProxyProcess(*args).start()
    try:
        with neo4j.GraphDatabase.driver(first.bolt_uri, auth=("a", "b")) as drv:
            run(
                drv,
                f"CREATE KAFKA STREAM {name} TOPICS {topic} "
                f"TRANSFORM '{modules / 'counting.py'}' BOOTSTRAP_SERVERS '{broker.bootstrap}'",
            )
            ended: list[BaseException] = []

            def limited_start() -> None:
                try:
                    run(drv, f"START STREAM {name} BATCH_LIMIT 5 TIMEOUT 60000")
                except neo4j.exceptions.Neo4jError as exc:  # the proxy's answer, if any
                    ended.append(exc)
                except neo4j.exceptions.DriverError as exc:  # the proxy died meanwhile
                    ended.append(exc)

            waiting = threading.Thread(target=limited_start, daemon=True)
            waiting.start()
            wait_until(lambda: show(drv, name)["is running"], 20, message="the limited run")
            first.stop(signal.SIGKILL)
            waiting.join(20)
            assert [type(e) for e in ended if isinstance(e, neo4j.exceptions.Neo4jError)] == []
    finally:
        first.stop()
    second = ProxyProcess(*args).start()
    try:
        with neo4j.GraphDatabase.driver(second.bolt_uri, auth=("a", "b")) as drv:
            row = show(drv, name)
            assert (row["status"], row["is running"]) == ("stopped", False)
            run(drv, f"DROP STREAM {name}")
    finally:
        second.stop()


def test_procedures_are_the_proxys_on_every_backend(
    backend: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    """In front of ArcadeDB (a Bolt relay) as in front of FalkorDB: the proxy answers
    Memgraph's stream procedures; the backend never sees them."""
    name = stream_name("procs")
    run(
        backend,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' WITH TOPIC '{topic}' "
        f"WITH TRANSFORM '{transforms / 'msg.py'}' CONSUMER_GROUP g-{name} "
        f"CREDENTIALS {{'sasl.password': '{SECRET}'}}",
    )
    (info,) = run(backend, "CALL mg.kafka_stream_info($s) YIELD *", s=name)
    assert info["consumer_group"] == f"g-{name}" and info["topics"] == [topic]
    assert info["credentials"] == {"sasl.password": "<REDACTED>"}
    assert run(backend, f"CALL mg.kafka_set_stream_offset('{name}', -2)") == []
    run(backend, f"DROP STREAM {name}")
    error = fails(backend, f"CALL mg.kafka_stream_info('{name}')")
    assert "doesn't exist" in error.message
    assert "Pulsar" in fails(backend, "CREATE PULSAR STREAM p TOPICS t TRANSFORM m.p").message

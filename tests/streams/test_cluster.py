"""Several proxies, one set of streams (``--cluster``): three members on loopback against one
Tansu broker and one FalkorDB (``falkordb://``, shared), a 6-partition topic.

The kill test sends 300,000 messages (``BOLTSTREAM_CLUSTER_MESSAGES`` changes that) over
about 30 s: each delivery guarantee took 45-50 s on the shared 2-core machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest

from proxy.streams.cluster import topic_names
from tests.streams.broker import Broker
from tests.streams.members import (
    CLUSTER_TRANSFORM,
    bodies_for,
    cluster_name,
    graph_counts,
    holders,
    produce,
    run,
    start_member,
    stream_row,
    wait_for,
)
from tests.support import FalkorDBProcess, ProxyProcess

pytestmark = pytest.mark.timeout(600)

PARTITIONS = 6
MESSAGES = int(os.environ.get("BOLTSTREAM_CLUSTER_MESSAGES", "300000"))


@pytest.fixture
def falkordb(tmp_path: Path) -> Iterator[FalkorDBProcess]:
    server = FalkorDBProcess(tmp_path / "falkordb").start()
    yield server
    server.stop()


@pytest.fixture
def cluster_transform(transforms: Path) -> Path:
    path = transforms / "cluster.py"
    path.write_text(CLUSTER_TRANSFORM)
    return path


class Members:
    """The members of one cluster, with a driver each; all stopped at the end."""

    def __init__(self, tmp: Path, transforms: Path, broker: Broker, falkordb: FalkorDBProcess):
        self.tmp, self.transforms, self.broker = tmp, transforms, broker
        self.backend = f"falkordb://127.0.0.1:{falkordb.port}"
        self.cluster = cluster_name()
        self.proxies: list[ProxyProcess] = []
        self.drivers: list[Any] = []

    def start(self) -> Any:
        index = len(self.proxies)
        proxy = start_member(
            self.tmp / f"member{index}", self.transforms, self.cluster, self.broker, self.backend
        )
        self.proxies.append(proxy)
        driver = neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "x"))
        self.drivers.append(driver)
        return driver

    def member(self, index: int) -> str:
        host, port = self.proxies[index].address
        return f"{host}:{port}"

    def close(self) -> None:
        for driver in self.drivers:
            driver.close()
        for proxy in self.proxies:
            proxy.stop()


@pytest.fixture
def members(
    tmp_path: Path, transforms: Path, broker: Broker, falkordb: FalkorDBProcess
) -> Iterator[Members]:
    found = Members(tmp_path, transforms, broker, falkordb)
    yield found
    found.close()


def create(
    driver: Any, name: str, broker: Broker, topic: str, transform: Path, *options: str
) -> None:
    run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' WITH TOPIC '{topic}' "
        f"WITH TRANSFORM '{transform}' BATCH_SIZE 1000 BATCH_INTERVAL 50 {' '.join(options)}",
    )


def status(driver: Any, name: str) -> str | None:
    row = stream_row(driver, name)
    return None if row is None else str(row["status"])


def spread_among(found: dict[str, list[int]], count: int) -> bool:
    """Whether ``count`` members hold every partition between them, each some, none twice."""
    held = sorted(p for parts in found.values() for p in parts)
    busy = [m for m, parts in found.items() if parts]
    return len(busy) == count and held == list(range(PARTITIONS))


def spread(driver: Any, name: str, count: int) -> dict[str, list[int]] | None:
    """The holders, once ``count`` members hold all the partitions between them."""
    found = holders(driver, name)
    return found if spread_among(found, count) else None


def test_catalog_changes_on_one_member_are_seen_on_the_others(
    members: Members, broker: Broker, cluster_transform: Path
) -> None:
    """CREATE on one, START on another, STOP on a third: every member follows, the stream
    runs on all three (the partitions spread over them) and stops everywhere; DROP too."""
    drivers = [members.start() for _ in range(3)]
    name = f"cs_{members.cluster}"
    topic = broker.create_topic(f"t_{name}", partitions=PARTITIONS)
    assert set(topic_names(members.cluster)) <= broker.topics()
    create(drivers[0], name, broker, topic, cluster_transform)
    for driver in drivers:  # the clause returned once its own member applied it
        row = wait_for(lambda d=driver: stream_row(d, name), 2.0, "the stream on every member")
        assert row["status"] == "stopped" and row["holders"] == {}
    with pytest.raises(neo4j.exceptions.Neo4jError, match="already exists"):
        create(drivers[2], name, broker, topic, cluster_transform)

    run(drivers[1], f"START STREAM {name}")
    for driver in drivers:
        wait_for(lambda d=driver: status(d, name) == "running", 2.0, "running")
    found = wait_for(lambda: spread(drivers[2], name, 3), 60, "partitions spread over three")
    assert set(found) == {members.member(i) for i in range(3)}
    produce(broker, topic, bodies_for(name, PARTITIONS, 3000))
    wait_for(lambda: graph_counts(drivers[0], name)[1] == 3000, 60, "3000 messages")
    # The counters of every member add up, as seen from any of them.
    wait_for(
        lambda: all(
            (stream_row(d, name) or {}).get("messages_processed", 0) >= 3000 for d in drivers
        ),
        10,
        "the counters of every member",
    )

    run(drivers[2], f"STOP STREAM {name}")
    for driver in drivers:
        wait_for(lambda d=driver: status(d, name) == "stopped", 2.0, "stopped")
    wait_for(lambda: holders(drivers[0], name) == {}, 10, "no member holding a partition")
    for proxy in members.proxies:
        proxy.wait_for_log(f"stream {name}: (stopped here|.*revoked)", 10)
    produce(broker, topic, bodies_for(name, PARTITIONS, 600, start=3000))
    time.sleep(3)
    assert graph_counts(drivers[0], name) == (3000, 3000), "a stopped stream went on somewhere"

    run(drivers[0], f"DROP STREAM {name}")
    for driver in drivers:
        wait_for(lambda d=driver: stream_row(d, name) is None, 2.0, "the stream gone")

    # Two members CREATE one name at the same moment: one wins, on every member.
    twin = f"twin_{members.cluster}"
    other = broker.create_topic(f"t2_{name}", partitions=1)
    outcomes: dict[str, str] = {}

    def creating(index: int, on: str) -> None:
        try:
            create(drivers[index], twin, broker, on, cluster_transform)
            outcomes[on] = "created"
        except neo4j.exceptions.Neo4jError as exc:
            outcomes[on] = exc.message or ""

    racers = [
        threading.Thread(target=creating, args=(0, topic)),
        threading.Thread(target=creating, args=(1, other)),
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    winners = [on for on, outcome in outcomes.items() if outcome == "created"]
    assert len(winners) == 1, outcomes
    assert "already exists" in outcomes[other if winners == [topic] else topic]
    for driver in drivers:
        row = wait_for(lambda d=driver: stream_row(d, twin), 2.0, "the winner everywhere")
        assert row["topic"] == winners[0]


@pytest.mark.parametrize("delivery", ["EXACTLY ONCE", "AT LEAST ONCE"])
def test_members_share_partitions_and_survive_a_kill(
    members: Members, broker: Broker, cluster_transform: Path, delivery: str
) -> None:
    """Three members run one stream over a 6-partition topic while messages keep coming; one
    is killed (kill -9) and a fourth joins mid-ingestion. Every message is in the graph: once
    each with exactly-once delivery, at least once otherwise."""
    drivers = [members.start() for _ in range(3)]
    name = f"kill_{members.cluster}"
    topic = broker.create_topic(f"t_{name}", partitions=PARTITIONS)
    create(drivers[0], name, broker, topic, cluster_transform, f"DELIVERY {delivery}")
    run(drivers[0], f"START STREAM {name}")
    wait_for(lambda: spread(drivers[1], name, 3), 60, "partitions spread over three")

    # Sent over about 30 s, so that the kill and the join happen while messages come.
    messages = bodies_for(name, PARTITIONS, MESSAGES)
    steps = 30
    chunk = len(messages) // steps + 1

    def producing() -> None:
        for start in range(0, len(messages), chunk):
            produce(broker, topic, messages[start : start + chunk])
            time.sleep(1.0)

    producer = threading.Thread(target=producing)
    producer.start()
    try:
        wait_for(lambda: graph_counts(drivers[0], name)[1] > MESSAGES // 10, 120, "a tenth")
        victim = members.member(1)
        members.proxies[1].stop(signal.SIGKILL)
        # The others take its partitions over once the group's session timeout passed (and
        # its last heartbeat aged out of the holders).
        found = wait_for(
            lambda: (lambda h: h if victim not in h and spread_among(h, 2) else None)(
                holders(drivers[0], name)
            ),
            60,
            "the partitions held by the two members left",
        )
        # Then a new member joins, mid-ingestion. (Not in the same rebalance as the kill:
        # Tansu 0.6 loses a group's assignment when a member leaves while it rebalances.)
        drivers.append(members.start())
        newcomer = members.member(3)
        found = wait_for(
            lambda: (lambda h: h if newcomer in h and spread_among(h, 3) else None)(
                holders(drivers[2], name)
            ),
            60,
            "the new member holding partitions",
        )
        assert victim not in found
        assert producer.is_alive(), "ingestion was over already"
    finally:
        producer.join()
    wait_for(lambda: graph_counts(drivers[0], name)[1] == MESSAGES, 300, "every message")
    time.sleep(2)  # anything still in flight lands now
    nodes, distinct = graph_counts(drivers[0], name)
    assert distinct == MESSAGES
    if delivery == "EXACTLY ONCE":
        assert nodes == MESSAGES, f"{nodes - MESSAGES} duplicates"
    else:
        assert nodes >= MESSAGES
    row = stream_row(drivers[3], name)
    assert row is not None and row["status"] == "running"


def test_a_standalone_proxy_brings_its_streams_into_the_cluster(
    members: Members, broker: Broker, cluster_transform: Path, falkordb: FalkorDBProcess
) -> None:
    """A proxy that stood alone, restarted with --cluster: its streams join the cluster's
    catalog once (the SQLite file is renamed), and the other members see them."""
    name = f"adopt_{members.cluster}"
    topic = broker.create_topic(f"t_{name}", partitions=PARTITIONS)
    alone_dir = members.tmp / "member0"  # the data dir members.start() gives the first member
    alone = ProxyProcess(
        "--data-dir",
        str(alone_dir),
        "--backend",
        members.backend,
        "--transform-allowed-dirs",
        str(members.transforms),
    ).start()
    try:
        with neo4j.GraphDatabase.driver(alone.bolt_uri, auth=("u", "x")) as driver:
            create(driver, name, broker, topic, cluster_transform)
    finally:
        alone.stop()
    first = members.start()
    second = members.start()
    assert stream_row(first, name) is not None
    row = wait_for(lambda: stream_row(second, name), 2.0, "the adopted stream elsewhere")
    assert row["status"] == "stopped" and row["topic"] == topic
    assert not (alone_dir / "streams.sqlite3").exists()
    assert (alone_dir / "streams.sqlite3.adopted-by-cluster").exists()
    # Dropped in the cluster, it stays dropped when that member restarts.
    run(second, f"DROP STREAM {name}")
    members.proxies[0].stop()
    members.proxies[0].start()
    members.drivers[0].close()
    members.drivers[0] = neo4j.GraphDatabase.driver(members.proxies[0].bolt_uri, auth=("u", "x"))
    assert stream_row(members.drivers[0], name) is None

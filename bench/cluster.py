"""A cluster of proxies (``--cluster``): ingestion with one, two and three members, and the
time from a member's death to its partitions flowing again.

    .venv/bin/python bench/cluster.py [--messages 300000] [--delivery exactly|least]

Starts its own Tansu broker and one FalkorDB (``falkordb://``, shared by every member), then
in one run:

1. **scaling**: for 1, 2 and 3 members (started one after another, each a ``boltstream
   serve`` process with ``--cluster``), a new 6-partition topic holding ``--messages``
   messages and a new stream with a write-light transform (one small node per message),
   timed from START until every message is in the graph; the rate, and the partitions each
   member held;
2. **failover**: three members run a stream while a producer sends a steady flow to every
   partition; one member is killed (``kill -9``); measured: the time from the kill until every
   partition it held has new nodes in the graph again (the group's session timeout,
   ``session.timeout.ms`` = 2000 here, is most of it), and the graph checked at the end
   (exactly once: no duplicates; at least once: none missing).

Every member shares the machine's cores with the broker, FalkorDB and the others: on a
2-core machine do not expect the rate to grow with members (see README, Clusters).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.streams.broker import Broker  # noqa: E402
from tests.streams.members import (  # noqa: E402
    CLUSTER_TRANSFORM,
    bodies_for,
    cluster_name,
    graph_counts,
    holders,
    partition_counts,
    produce,
    run,
    start_member,
    wait_for,
)
from tests.support import FalkorDBProcess, ProxyProcess  # noqa: E402

PARTITIONS = 6


def create_stream(
    driver: Any, name: str, broker: Broker, topic: str, transform: Path, delivery: str
) -> None:
    run(
        driver,
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' WITH TOPIC '{topic}' "
        f"WITH TRANSFORM '{transform}' BATCH_SIZE 1000 BATCH_INTERVAL 50 DELIVERY {delivery}",
    )


def spread_over(driver: Any, name: str, count: int) -> dict[str, list[int]] | None:
    found = holders(driver, name)
    held = sorted(p for parts in found.values() for p in parts)
    busy = [m for m, parts in found.items() if parts]
    return found if len(busy) == count and held == list(range(PARTITIONS)) else None


def scaling(
    members: list[ProxyProcess],
    drivers: list[Any],
    broker: Broker,
    transform: Path,
    messages: int,
    delivery: str,
) -> tuple[float, float, dict[str, list[int]]]:
    """Messages per second through ``len(members)`` members: from START to the last message
    (the group forming included), and from the first message in the graph to the last."""
    name = f"scale{len(members)}_{cluster_name()}"
    topic = broker.create_topic(f"t_{name}", partitions=PARTITIONS)
    produce(broker, topic, bodies_for(name, PARTITIONS, messages))
    create_stream(drivers[0], name, broker, topic, transform, delivery)
    started = time.monotonic()
    run(drivers[-1], f"START STREAM {name}")
    seen: dict[str, list[int]] = {}
    first: list[float] = []

    def done() -> bool:
        found = {m: parts for m, parts in holders(drivers[0], name).items() if parts}
        if len(found) >= len(seen):
            seen.clear()
            seen.update(found)
        count = graph_counts(drivers[0], name)[1]
        if count and not first:
            first.append(time.monotonic())
        return count >= messages

    wait_for(done, 1800, f"{messages} messages", interval=0.25)
    ended = time.monotonic()
    elapsed = ended - started
    nodes, distinct = graph_counts(drivers[0], name)
    assert distinct == messages, (nodes, distinct)
    run(drivers[0], f"STOP STREAM {name}")
    run(drivers[0], f"DROP STREAM {name}")
    run(drivers[0], "MATCH (r:CRec {tag: $t}) DELETE r", t=name)
    return messages / elapsed, messages / max(ended - first[0], 1e-3), seen


def failover(
    members: list[ProxyProcess],
    drivers: list[Any],
    broker: Broker,
    transform: Path,
    delivery: str,
    rate: int,
) -> tuple[float, str, list[int], tuple[int, int], int]:
    """Seconds from a kill to the killed member's partitions flowing again."""
    name = f"fail_{cluster_name()}"
    topic = broker.create_topic(f"t_{name}", partitions=PARTITIONS)
    create_stream(drivers[0], name, broker, topic, transform, delivery)
    run(drivers[0], f"START STREAM {name}")
    found = wait_for(lambda: spread_over(drivers[0], name, 3), 120, "partitions spread over 3")
    stop = threading.Event()
    sent = [0]

    def producing() -> None:
        while not stop.is_set():
            batch = bodies_for(name, PARTITIONS, rate // 10, start=sent[0])
            produce(broker, topic, batch)
            sent[0] += len(batch)
            time.sleep(0.1)

    producer = threading.Thread(target=producing)
    producer.start()
    try:
        time.sleep(5)
        host, port = members[1].address
        victim = f"{host}:{port}"
        lost = sorted(found.get(victim, []))
        before = partition_counts(drivers[0], name)
        killed = time.monotonic()
        members[1].stop(signal.SIGKILL)
        # Its partitions flow again once each has nodes beyond what it had at the kill plus
        # what was in flight (a second of the flow).
        margin = rate // PARTITIONS
        wait_for(
            lambda: all(
                partition_counts(drivers[0], name).get(p, 0) > before.get(p, 0) + margin
                for p in lost
            ),
            120,
            "the killed member's partitions flowing again",
            interval=0.05,
        )
        recovered = time.monotonic() - killed
        time.sleep(3)
    finally:
        stop.set()
        producer.join()
    wait_for(lambda: graph_counts(drivers[0], name)[1] >= sent[0], 300, "every message")
    time.sleep(2)
    return recovered, victim, lost, graph_counts(drivers[0], name), sent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--delivery", choices=("exactly", "least"), default="exactly")
    parser.add_argument("--failover-rate", type=int, default=6000, help="messages/s")
    args = parser.parse_args()
    delivery = "EXACTLY ONCE" if args.delivery == "exactly" else "AT LEAST ONCE"
    import neo4j

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        transforms = tmp / "transforms"
        transforms.mkdir()
        transform = transforms / "cluster.py"
        transform.write_text(CLUSTER_TRANSFORM)
        broker = Broker().start()
        falkordb = FalkorDBProcess(tmp / "falkordb").start()
        backend = f"falkordb://127.0.0.1:{falkordb.port}"
        cluster = cluster_name()
        members: list[ProxyProcess] = []
        drivers: list[Any] = []

        def add_member() -> None:
            proxy = start_member(
                tmp / f"member{len(members)}", transforms, cluster, broker, backend
            )
            members.append(proxy)
            drivers.append(neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "x")))

        try:
            print(
                f"{args.messages:,} messages over {PARTITIONS} partitions, delivery "
                f"{delivery.lower()}, one FalkorDB shared by every member"
            )
            rates = []
            for count in (1, 2, 3):
                while len(members) < count:
                    add_member()
                rate, steady, seen = scaling(
                    members, drivers, broker, transform, args.messages, delivery
                )
                rates.append(steady)
                held = ", ".join(f"{m} {parts}" for m, parts in sorted(seen.items()))
                print(
                    f"  {count} member(s): {rate:8,.0f} messages/s from START, "
                    f"{steady:8,.0f} from the first message in the graph "
                    f"({steady / rates[0]:.2f}x one member); partitions held: {held}"
                )
            recovered, victim, lost, (nodes, distinct), sent = failover(
                members, drivers, broker, transform, delivery, args.failover_rate
            )
            print(
                f"failover: killed {victim} (held partitions {lost}); its partitions "
                f"flowed again after {recovered:.2f} s (session.timeout.ms 2000)"
            )
            duplicates = nodes - distinct
            print(
                f"  {sent:,} messages sent, {distinct:,} in the graph, {duplicates:,} "
                f"applied twice ({'must be 0' if args.delivery == 'exactly' else 'allowed'})"
            )
            if distinct != sent or (args.delivery == "exactly" and duplicates):
                raise SystemExit("the graph is wrong")
        finally:
            for driver in drivers:
                driver.close()
            for proxy in members:
                proxy.stop()
            falkordb.stop()
            broker.stop()


if __name__ == "__main__":
    main()

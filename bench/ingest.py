"""Stream ingestion, end to end, next to its two bounds: reading Kafka and writing the graph.

    .venv/bin/python bench/ingest.py [--messages 200000] [--batch-sizes 10,1000]

Starts its own Tansu broker and FalkorDB on loopback, and ``boltstream serve --backend
falkordb://...`` in front of that FalkorDB. Produces N messages in the tutorial's format
(seeds/000): ``ID`` (a node) or ``ID1 ID2`` (an edge between two nodes that appeared
earlier), about half each. Then, in one run:

1. **consume**: the rate of merely reading the topic with confluent-kafka (one consumer,
   assigned to the partition from the beginning, no group, no commits);
2. **direct**: the rate of writing the same data straight to FalkorDB with UNWIND batches of
   5,000 rows (all nodes, then all edges; every edge names earlier nodes, so the graph is the
   same as message order gives), through the proxy's own RESP client, no proxy in between;
3. **stream**: for each ``--batch-sizes`` value, a stream with the manual's transform over the
   topic through the proxy (``CREATE STREAM ... BATCH_SIZE b``, ``START STREAM``), timed from
   START until the consumer group has committed all N offsets. The rate is given over that
   whole time and over the steady part (first commit to last: without the ~3 s a new
   consumer group takes to form).

Each target graph gets an index on ``:Node(id)`` first (the transform's edge query matches
nodes by id; without an index every edge is a full scan, for every path alike). The graphs
are checked to be equal (node and edge counts) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.streams.broker import Broker  # noqa: E402
from tests.streams.conftest import MANUAL_TRANSFORM  # noqa: E402
from tests.support import FalkorDBProcess, ProxyProcess  # noqa: E402

DIRECT_BATCH = 5000


def make_messages(count: int, seed: int = 7) -> list[str]:
    """Half nodes, half edges between earlier nodes (the first message is a node)."""
    rng = random.Random(seed)
    messages: list[str] = []
    nodes = 0
    for _ in range(count):
        if nodes < 2 or rng.random() < 0.5:
            messages.append(str(nodes))
            nodes += 1
        else:
            messages.append(f"{rng.randrange(nodes)} {rng.randrange(nodes)}")
    return messages


def consume_rate(broker: Broker, topic: str, count: int) -> float:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "bench-consume",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    started = time.perf_counter()
    seen = 0
    while seen < count:
        for message in consumer.consume(num_messages=10000, timeout=1.0):
            if message.error() is None:
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return count / elapsed


async def direct_rate(port: int, messages: list[str]) -> tuple[float, int, int]:
    from proxy.backends.falkordb import FalkorDBBackend

    backend = FalkorDBBackend("127.0.0.1", port, default_graph="direct")
    await backend.start()
    try:
        await backend.run("direct", "CREATE INDEX FOR (n:Node) ON (n.id)", {})
        nodes = [m for m in messages if " " not in m]
        edges = [{"from_id": a, "to_id": b} for a, b in (m.split() for m in messages if " " in m)]
        started = time.perf_counter()
        for i in range(0, len(nodes), DIRECT_BATCH):
            await backend.run(
                "direct",
                "UNWIND $rows AS r CREATE (:Node {id: r})",
                {"rows": nodes[i : i + DIRECT_BATCH]},
            )
        for i in range(0, len(edges), DIRECT_BATCH):
            await backend.run(
                "direct",
                "UNWIND $rows AS r MATCH (n:Node {id: r.from_id}), "
                "(m:Node {id: r.to_id}) CREATE (n)-[:Edge]->(m)",
                {"rows": edges[i : i + DIRECT_BATCH]},
            )
        elapsed = time.perf_counter() - started
        counted = await graph_counts(backend, "direct")
        return len(messages) / elapsed, *counted
    finally:
        await backend.close()


async def graph_counts(backend: Any, graph: str) -> tuple[int, int]:
    nodes = await backend.run(graph, "MATCH (n:Node) RETURN count(n)", {})
    edges = await backend.run(graph, "MATCH ()-[e:Edge]->() RETURN count(e)", {})
    return nodes.rows[0][0], edges.rows[0][0]


def stream_rate(
    proxy: ProxyProcess,
    broker: Broker,
    topic: str,
    transform: Path,
    count: int,
    batch_size: int,
    graph: str,
) -> tuple[float, float, float]:
    import neo4j

    name = f"bench_{batch_size}"
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("bench", "x")) as driver:
        with driver.session(database=graph) as session:
            session.run("CREATE INDEX FOR (n:Node) ON (n.id)").consume()
        with driver.session() as session:
            session.run(
                f"CREATE STREAM {name} AS LOAD DATA KAFKA '{broker.bootstrap}' "
                f"WITH TOPIC '{topic}' WITH TRANSFORM '{transform}' "
                f"BATCH_SIZE {batch_size}"
            ).consume()
            started = time.perf_counter()
            session.run(f"START STREAM {name}").consume()
        first: float | None = None
        done = 0
        while done < count:
            time.sleep(0.05)
            done = max(0, broker.committed(name, topic).get(0, 0))
            if done and first is None:
                first = time.perf_counter()
                first_done = done
        ended = time.perf_counter()
        with driver.session() as session:
            status = next(r.data() for r in session.run("SHOW STREAMS") if r["name"] == name)
            session.run(f"STOP STREAM {name}").consume()
            session.run(f"DROP STREAM {name}").consume()
    assert status["status"] == "running" and status["last_error"] is None, status
    assert first is not None
    steady = (count - first_done) / (ended - first) if ended > first else float("nan")
    return count / (ended - started), steady, ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--batch-sizes",
        default="10,1000,10000",
        help="comma-separated BATCH_SIZE values to run the stream with",
    )
    args = parser.parse_args()
    count = args.messages
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        transforms = work / "transforms"
        transforms.mkdir()
        transform = transforms / "manual.py"
        transform.write_text(MANUAL_TRANSFORM)
        broker = Broker().start()
        falkordb = FalkorDBProcess(work / "falkordb").start()
        proxy = ProxyProcess(
            "--backend",
            f"falkordb://127.0.0.1:{falkordb.port}/stream",
            "--data-dir",
            str(work / "proxy"),
            "--transform-allowed-dirs",
            str(transforms),
        ).start()
        try:
            topic = broker.create_topic("ingest")
            messages = make_messages(count)
            started = time.perf_counter()
            broker.produce(topic, messages)
            print(
                f"produced {count} messages in {time.perf_counter() - started:.1f} s "
                f"({sum(' ' not in m for m in messages)} nodes, "
                f"{sum(' ' in m for m in messages)} edges)"
            )

            rate = consume_rate(broker, topic, count)
            print(f"consume only (confluent-kafka):        {rate:>10,.0f} messages/s")
            rate, nodes, edges = asyncio.run(direct_rate(falkordb.port, messages))
            print(
                f"direct UNWIND writes (5,000 per query): {rate:>10,.0f} messages/s "
                f"({nodes} nodes, {edges} edges)"
            )
            for index, size in enumerate(batch_sizes):
                graph = "stream" if index == 0 else f"stream{index}"
                if index:
                    restart = ProxyProcess(
                        "--backend",
                        f"falkordb://127.0.0.1:{falkordb.port}/{graph}",
                        "--data-dir",
                        str(work / f"proxy{index}"),
                        "--transform-allowed-dirs",
                        str(transforms),
                    )
                    proxy.stop()
                    proxy = restart.start()
                total, steady, seconds = stream_rate(
                    proxy, broker, topic, transform, count, size, graph
                )
                counted = asyncio.run(_counts(falkordb.port, graph))
                print(
                    f"stream, BATCH_SIZE {size:<5} end to end:  {total:>10,.0f} messages/s "
                    f"({seconds:.1f} s; steady {steady:,.0f}/s; "
                    f"{counted[0]} nodes, {counted[1]} edges)"
                )
                if counted != (nodes, edges):
                    print(
                        f"  MISMATCH: the stream's graph differs from the direct one: "
                        f"{counted} != {(nodes, edges)}"
                    )
        finally:
            proxy.stop()
            falkordb.stop()
            broker.stop()


async def _counts(port: int, graph: str) -> tuple[int, int]:
    from proxy.backends.falkordb import FalkorDBBackend

    backend = FalkorDBBackend("127.0.0.1", port, default_graph=graph)
    await backend.start()
    try:
        return await graph_counts(backend, graph)
    finally:
        await backend.close()


if __name__ == "__main__":
    main()

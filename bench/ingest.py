"""Stream ingestion, end to end, next to its bounds: reading Kafka and writing the graph.

    .venv/bin/python bench/ingest.py [--messages 1000000] [--batch-sizes 10,1000,10000]

Starts its own Tansu broker and ``boltstream serve`` on its embedded FalkorDB (``appendfsync
always``, as users run it), and in one run measures, side by side:

1. **consume**: merely reading the topic with confluent-kafka (one consumer assigned to the
   partition from the beginning, no group, no commits);
2. **direct**: writing the same data straight to a second embedded FalkorDB of the same kind
   (``appendfsync always``) with UNWIND queries of 5,000 rows, through the proxy's own RESP
   client, no proxy in between: for the manual's data all nodes, then all edges (every edge
   names earlier nodes, so the graph is the one message order gives); for the CREATE-only
   data, the nodes;
   and, for the Cypher template below, the template itself as ``UNWIND $rows AS event
   <template>`` over the manual's messages, 5,000 per query (*direct template*);
3. **stream**: for each transform (the manual's, and a CREATE-only one: a node per message)
   and for a Cypher template over the manual's messages (``WITH CYPHER ... WITH FORMAT
   TEXT``: no Python at all, mapped in the proxy), each ``--batch-sizes`` value and each
   delivery guarantee, a stream over the topic through the proxy, timed from START until the
   group has committed every offset: *whole* (START to the last commit, the consumer group
   forming included) and *steady* (first commit to last);
4. **latency**: a trickle of 100 messages/s to a stream at the default settings; each message
   carries the time it was produced, its node the time FalkorDB wrote it (``timestamp()``):
   p50 and p99 of the difference;
5. the proxy's RSS before the first stream and after the last;
6. for each stream, the CPU microseconds per message of the proxy, its transform worker and
   FalkorDB (from /proc, START to the last commit): a figure that hardly moves with the
   machine's load, where rates do.

Each aim of issues 8 and 12 is printed as a ratio measured in this run. An index on ``:Node(id)``
exists in both graphs (the manual's edge query matches nodes by id). The graphs are checked
(node and edge counts) after every stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.streams.broker import Broker  # noqa: E402
from tests.streams.conftest import MANUAL_TRANSFORM  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402

DIRECT_BATCH = 5000
CREATE_TRANSFORM = """\
def stream(batch):
    return [("CREATE (:Item {id: $id})", {"id": item.decode()}) for item in batch]
"""
# The manual's data as a template stream (issue 12): a message is "id" (a node) or "from to"
# (an edge between earlier nodes). MERGE, not CREATE, because the messages of a batch run as
# one UNWIND query, and FalkorDB does not promise that a row sees what an earlier row of the
# same query created; MERGE gives the manual's graph whatever the order within a query.
TEMPLATE = (
    "WITH split(event, ' ') AS ids MERGE (n:Node {id: ids[0]}) "
    "WITH n, ids WHERE size(ids) = 2 "
    "MERGE (m:Node {id: ids[1]}) CREATE (n)-[:Edge]->(m)"
)
LATENCY_TRANSFORM = """\
def stream(batch):
    out = []
    for item in batch:
        seq, sent = item.decode().split(":")
        out.append(("CREATE (:Lat {seq: $seq, sent: $sent, seen: timestamp()})",
                    {"seq": int(seq), "sent": int(sent)}))
    return out
"""


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


async def direct_rates(
    folder: Path, manual: list[str], items: list[str]
) -> tuple[float, tuple[int, int], float, float]:
    """(manual messages/s, (nodes, edges), CREATE-only messages/s, template messages/s) on an
    embedded FalkorDB like the proxy's."""
    from proxy.backends.embedded import EmbeddedFalkorDB

    server = EmbeddedFalkorDB(folder, fsync="always")
    backend = server.make_backend()
    await backend.start()
    try:
        await backend.run("direct", "CREATE INDEX FOR (n:Node) ON (n.id)", {})
        nodes = [m for m in manual if " " not in m]
        edges = [{"from_id": a, "to_id": b} for a, b in (m.split() for m in manual if " " in m)]
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
        manual_rate = len(manual) / (time.perf_counter() - started)
        counted = await graph_counts(backend, "direct")
        started = time.perf_counter()
        for i in range(0, len(items), DIRECT_BATCH):
            await backend.run(
                "items",
                "UNWIND $rows AS r CREATE (:Item {id: r})",
                {"rows": items[i : i + DIRECT_BATCH]},
            )
        create_rate = len(items) / (time.perf_counter() - started)
        await backend.run("template", "CREATE INDEX FOR (n:Node) ON (n.id)", {})
        started = time.perf_counter()
        for i in range(0, len(manual), DIRECT_BATCH):
            await backend.run(
                "template",
                f"UNWIND $rows AS event {TEMPLATE}",
                {"rows": manual[i : i + DIRECT_BATCH]},
            )
        template_rate = len(manual) / (time.perf_counter() - started)
        templated = await graph_counts(backend, "template")
        assert templated == counted, f"the template made {templated}, the manual {counted}"
        return manual_rate, counted, create_rate, template_rate
    finally:
        await backend.close()


async def graph_counts(backend: Any, graph: str) -> tuple[int, int]:
    nodes = await backend.run(graph, "MATCH (n:Node) RETURN count(n)", {})
    edges = await backend.run(graph, "MATCH ()-[e:Edge]->() RETURN count(e)", {})
    return nodes.rows[0][0], edges.rows[0][0]


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the proxy, its transform workers and its
    FalkorDB, by kind: unlike rates, CPU per message hardly moves with the machine's load."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {"proxy": 0.0, "worker": 0.0, "graph": 0.0}
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    for each in [str(pid), *kids]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{each}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        kind = (
            "worker"
            if b"transform_worker" in command
            else "graph"
            if b"redis-server" in command
            else "proxy"
        )
        used[kind] += (int(fields[11]) + int(fields[12])) / tick
    return used


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(
        self, proxy: ProxyProcess, broker: Broker, transforms: Path, data_dir: Path
    ) -> None:
        import neo4j

        self.data_dir = data_dir
        self.proxy = proxy
        self.broker = broker
        self.transforms = transforms
        self.driver = neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("bench", "x"))
        self.cpu: dict[str, float] = {}  # CPU microseconds per message of the last stream
        self.rewrites = 0  # FalkorDB AOF rewrites (forks) during the last stream

    def aof_rewrites(self) -> int:
        """AOF rewrites FalkorDB has started so far (its log): each forks the server, and its
        copy-on-write faults land on FalkorDB's CPU while the stream writes."""
        return sum(
            log.read_text(errors="replace").count("Background append only file rewriting started")
            for log in self.data_dir.rglob("falkordb.log")
        )

    def run(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self.driver.session() as session:
            return [record.data() for record in session.run(query, params)]

    def stream(
        self, name: str, topic: str, source: str, count: int, options: str
    ) -> tuple[float, float, float]:
        """(whole rate, steady rate, seconds) of a stream from START to its last commit.
        ``source``: ``WITH TRANSFORM ...`` or a mapping (``WITH CYPHER ...``)."""
        self.run(
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{self.broker.bootstrap}' "
            f"WITH TOPIC '{topic}' {source} {options}"
        )
        assert self.proxy.proc is not None
        cpu_before = cpu_seconds(self.proxy.proc.pid)
        rewrites_before = self.aof_rewrites()
        started = time.perf_counter()
        self.run(f"START STREAM {name}")
        first: float | None = None
        first_done = done = 0
        while done < count:
            time.sleep(0.05)
            done = max(0, self.broker.committed(name, topic).get(0, 0))
            if done and first is None:
                first, first_done = time.perf_counter(), done
        ended = time.perf_counter()
        cpu_after = cpu_seconds(self.proxy.proc.pid)  # before STOP: the worker still runs
        self.cpu = {k: (cpu_after[k] - cpu_before[k]) / count * 1e6 for k in cpu_after}
        self.rewrites = self.aof_rewrites() - rewrites_before
        status = next(r for r in self.run("SHOW STREAMS") if r["name"] == name)
        self.run(f"STOP STREAM {name}")
        self.run(f"DROP STREAM {name}")
        assert status["status"] == "running" and status["last_error"] is None, status
        assert first is not None
        steady = (count - first_done) / (ended - first) if ended > first else float("nan")
        return count / (ended - started), steady, ended - started

    def counts(self, label: str) -> tuple[int, int]:
        nodes = self.run(f"MATCH (n:{label}) RETURN count(n) AS c")[0]["c"]
        edges = self.run("MATCH ()-[e:Edge]->() RETURN count(e) AS c")[0]["c"]
        return nodes, edges

    def clear(self) -> None:
        for label in ("Node", "Item", "Lat"):
            while self.run(
                f"MATCH (n:{label}) WITH n LIMIT 200000 DETACH DELETE n RETURN count(n) AS c"
            )[0]["c"]:
                pass

    def latency(self, seconds: float, rate: int = 100) -> list[float]:
        """Produce-to-visible times (ms) of a trickle at ``rate`` messages/s."""
        from confluent_kafka import Producer

        topic = self.broker.create_topic("latency")
        name = "bench_latency"
        self.run(
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{self.broker.bootstrap}' "
            f"WITH TOPIC '{topic}' WITH TRANSFORM '{self.transforms / 'latency.py'}'"
        )
        self.run(f"START STREAM {name}")
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 0})
        # Warm up: the consumer group forms first.
        producer.produce(topic, f"-1:{time.time_ns() // 1_000_000}".encode())
        producer.flush(10)
        while not self.run("MATCH (n:Lat) RETURN count(n) AS c")[0]["c"]:
            time.sleep(0.05)
        total = int(seconds * rate)
        started = time.perf_counter()
        for seq in range(total):
            due = started + seq / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            producer.produce(topic, f"{seq}:{time.time_ns() // 1_000_000}".encode())
            producer.poll(0)
        producer.flush(10)
        while self.run("MATCH (n:Lat) WHERE n.seq >= 0 RETURN count(n) AS c")[0]["c"] < total:
            time.sleep(0.1)
        rows = self.run("MATCH (n:Lat) WHERE n.seq >= 0 RETURN n.seen - n.sent AS ms")
        self.run(f"DROP STREAM {name}")
        return sorted(float(row["ms"]) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-sizes",
        default="10,1000,10000",
        help="comma-separated BATCH_SIZE values to run the streams with",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    count = args.messages
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        transforms = work / "transforms"
        transforms.mkdir()
        for file, code in (
            ("manual.py", MANUAL_TRANSFORM),
            ("create.py", CREATE_TRANSFORM),
            ("latency.py", LATENCY_TRANSFORM),
        ):
            (transforms / file).write_text(code)
        broker = Broker().start()
        proxy = ProxyProcess(
            "--data-dir",
            str(work / "proxy"),
            "--fsync",
            "always",
            "--transform-allowed-dirs",
            str(transforms),
            "--log-level",
            "warning",
        ).start()
        bench = Bench(proxy, broker, transforms, work / "proxy")
        try:
            manual = make_messages(count)
            items = [str(i) for i in range(count)]
            started = time.perf_counter()
            manual_topic = broker.create_topic("manual")
            broker.produce(manual_topic, manual)
            create_topic = broker.create_topic("create")
            broker.produce(create_topic, items)
            print(
                f"produced {count:,} messages twice in {time.perf_counter() - started:.1f} s "
                f"(manual: {sum(' ' not in m for m in manual):,} nodes, "
                f"{sum(' ' in m for m in manual):,} edges; CREATE-only: {count:,} nodes)"
            )
            consume = consume_rate(broker, manual_topic, count)
            direct, expected, direct_create, direct_template = asyncio.run(
                direct_rates(work / "direct", manual, items)
            )
            print(f"consume only (confluent-kafka):           {consume:>10,.0f} messages/s")
            print(
                f"direct UNWIND, manual data (5,000/query): {direct:>10,.0f} messages/s "
                f"({expected[0]:,} nodes, {expected[1]:,} edges)"
            )
            print(f"direct UNWIND, CREATE-only:               {direct_create:>10,.0f} messages/s")
            print(f"direct UNWIND, the template (5,000/query):{direct_template:>10,.0f} messages/s")
            bench.run("CREATE INDEX FOR (n:Node) ON (n.id)")
            assert proxy.proc is not None
            rss_before = rss_mb(proxy.proc.pid)
            results: dict[tuple[str, int, str], tuple[float, float, float]] = {}
            print(
                f"\n{'transform':<12}{'BATCH_SIZE':>10}  {'delivery':<14}{'whole/s':>10}"
                f"{'steady/s':>10}{'seconds':>9}  graph  CPU us/msg: proxy worker graph"
                "  AOF rewrites"
            )
            template = TEMPLATE.replace("'", "\\'")
            for transform, topic, label, source in (
                ("manual", manual_topic, "Node", f"WITH TRANSFORM '{transforms / 'manual.py'}'"),
                ("create", create_topic, "Item", f"WITH TRANSFORM '{transforms / 'create.py'}'"),
                ("template", manual_topic, "Node", f"WITH CYPHER '{template}' WITH FORMAT TEXT"),
            ):
                for size in batch_sizes:
                    for delivery in ("AT LEAST ONCE", "EXACTLY ONCE"):
                        name = f"bench_{transform}_{size}_{delivery[0]}"
                        whole, steady, seconds = bench.stream(
                            name,
                            topic,
                            source,
                            count,
                            f"BATCH_SIZE {size} DELIVERY {delivery}",
                        )
                        results[(transform, size, delivery)] = (whole, steady, seconds)
                        got = bench.counts(label)
                        want = expected if transform != "create" else (count, 0)
                        check = "ok" if got == want else f"MISMATCH {got} != {want}"
                        print(
                            f"{transform:<12}{size:>10}  {delivery.lower():<14}{whole:>10,.0f}"
                            f"{steady:>10,.0f}{seconds:>9.1f}  {check}"
                            f"{bench.cpu['proxy']:>19.1f}{bench.cpu['worker']:>7.1f}"
                            f"{bench.cpu['graph']:>6.1f}{bench.rewrites:>14}",
                            flush=True,
                        )
                        bench.clear()
            latencies = bench.latency(args.latency_seconds)
            time.sleep(2)
            rss_after = rss_mb(proxy.proc.pid)
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"\nlatency at 100 messages/s, default settings (BATCH_SIZE 10, "
                f"BATCH_INTERVAL 100 ms): p50 {p50:.0f} ms, p99 {p99:.0f} ms "
                f"({len(latencies)} messages)"
            )
            print(
                f"proxy RSS: {rss_before:.0f} MB before the first stream, {rss_after:.0f} MB "
                f"after the last ({rss_after - rss_before:+.0f} MB)"
            )
            print_aims(results, direct, direct_template, batch_sizes, p50, rss_after - rss_before)
        finally:
            bench.driver.close()
            proxy.stop()
            broker.stop()


def print_aims(
    results: dict[tuple[str, int, str], tuple[float, float, float]],
    direct: float,
    direct_template: float,
    sizes: list[int],
    p50: float,
    rss_growth: float,
) -> None:
    print("\naims (issues 8 and 12), measured in this run:")

    def steady(transform: str, size: int, delivery: str = "AT LEAST ONCE") -> float:
        return results[(transform, size, delivery)][1]

    def line(text: str, value: float, aim: str, met: bool) -> None:
        print(f"  {text:<58} {value:>8.2f}  (aim {aim}) {'met' if met else 'MISSED'}")

    if 10 in sizes:
        ratio = steady("manual", 10) / direct
        line("BATCH_SIZE 10, manual, steady / direct UNWIND", ratio, ">= 0.5", ratio >= 0.5)
    if 10000 in sizes:
        ratio = steady("manual", 10000) / direct
        line("BATCH_SIZE 10000, manual, steady / direct UNWIND", ratio, ">= 0.7", ratio >= 0.7)
    if 10 in sizes:  # the default BATCH_SIZE
        ratio = steady("template", 10) / direct_template
        line("BATCH_SIZE 10, template, steady / direct template", ratio, ">= 0.7", ratio >= 0.7)
    for size in sizes:
        print(
            f"  {'(template, BATCH_SIZE ' + str(size) + ', steady / direct manual UNWIND)':<58} "
            f"{steady('template', size) / direct:>8.2f}"
        )
    best = max(steady("create", size) for size in sizes)
    line("CREATE-only, best steady (thousand messages/s)", best / 1000, ">= 100", best >= 100_000)
    for transform in ("manual", "create", "template"):
        for size in sizes:
            cost = 1 - steady(transform, size, "EXACTLY ONCE") / steady(transform, size)
            line(
                f"exactly-once cost, {transform}, BATCH_SIZE {size}", cost, "<= 0.20", cost <= 0.20
            )
    line("light-load p50 (ms)", p50, "<= 110", p50 <= 110)
    line("proxy RSS growth (MB)", rss_growth, "< 50", rss_growth < 50)


if __name__ == "__main__":
    main()

"""A soak: many client connections running queries for minutes while four streams ingest.

    .venv/bin/python -m bench.soak [--minutes 10] [--connections 500] [--processes 4]

Starts its own Tansu broker and ``boltstream serve`` on its embedded FalkorDB (``appendfsync
always``, as users run it, log level info), then:

1. **four streams**, each on a topic of its own fed by a producer at a steady rate
   (``--rate`` messages/s each): the manual's transform (nodes, and edges between earlier
   nodes), a CREATE-only transform (``:Item``), a mapping stream ``WITH PATTERN
   '(:Person{!id, name})'`` over JSON messages, and a CREATE-only transform with ``DELIVERY
   EXACTLY ONCE`` (``:Once``);
2. **the clients**: ``--connections`` real Bolt connections, the official ``neo4j`` async
   driver, one driver with a pool of one connection per simulated client (so every client
   holds its own connection for the whole run), spread over ``--processes`` worker processes
   (each on uvloop); each client runs a mix of queries (``RETURN $i``, an indexed lookup, a
   100-row read, a label count, a small CREATE, a managed write transaction, and now and then
   ``SHOW STREAMS``), waiting a random think time (mean ``--think`` s) between queries, each
   query bounded by ``--query-timeout`` s. Every answer is checked. Each worker measures its
   own event-loop lag and CPU time, to show that the load generator is not what is measured;
3. **every 10 s**: the proxy's RSS and descriptors (by kind, from ``/proc``), its client
   connections, the transform workers' and FalkorDB's RSS, ``SHOW STREAMS`` (status, lag,
   messages processed, last error), the messages produced, the load average;
4. **at the end**: the producers stop, the streams drain, and every message produced must be
   in the graph (exact counts: nothing lost, and for exactly-once nothing twice), as must
   every acknowledged client write; the clients disconnect and the proxy's descriptors are
   counted again.

Reported: queries done, errors by kind, p50/p99/max latency per minute and per kind, the
proxy's RSS with its linear slope (MB/min, over the whole run and its second half), open
descriptors at start and end by kind, the streams' counts, log lines by level (warnings and
errors grouped), and the load average. ``--json FILE`` writes it all as JSON as well. Exits
non-zero when something was lost, a query failed, or the proxy died.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fuzz import LogWatch, ProcStats, proc_stats  # noqa: E402
from bench.ingest import CREATE_TRANSFORM, make_messages, rss_mb  # noqa: E402
from tests.streams.broker import Broker  # noqa: E402
from tests.streams.conftest import MANUAL_TRANSFORM  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402

SAMPLE_EVERY = 10.0  # seconds between samples of the proxy, the streams and the load
CHUNK_EVERY = 5.0  # seconds between a worker's reports to the parent
SOAK_KAFKA_CONFIG = "session.timeout.ms=10000,heartbeat.interval.ms=1000"
FD_SLACK = 4  # descriptors the proxy may hold more after the clients left than before them
ONCE_TRANSFORM = CREATE_TRANSFORM.replace(":Item", ":Once")
PATTERN = "(:Person{!id, name})"
ROWS = 100

# (kind, weight): what a client runs, drawn at random for each query.
MIX = [
    ("return", 35),  # RETURN $i
    ("lookup", 20),  # an indexed read of a stream's node
    ("rows", 10),  # a 100-row result
    ("count", 8),  # a label count
    ("write", 20),  # a small CREATE, auto-commit
    ("tx", 6),  # a managed write transaction (BEGIN, RUN, COMMIT)
    ("show", 1),  # SHOW STREAMS
]


# -- the clients (in worker processes) ------------------------------------------------------------


@dataclass
class Chunk:
    """What a worker measured since its last report."""

    worker: int
    latencies: dict[int, list[float]] = field(default_factory=dict)  # minute -> ms
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # kind -> ms
    errors: dict[str, int] = field(default_factory=dict)  # kind of error -> count
    examples: dict[str, str] = field(default_factory=dict)  # kind of error -> first message
    writes: dict[str, int] = field(default_factory=dict)  # "write"/"tx" -> acknowledged
    loop_lag: list[float] = field(default_factory=list)  # ms the worker's loop woke late
    cpu: float = 0.0  # CPU seconds the worker used so far (user + system)
    connected: int = 0  # its clients with a connection, when it says it is ready
    done: bool = False


class Client:
    """One simulated user: a driver whose pool holds one connection, a query loop."""

    def __init__(self, number: int, args: dict[str, Any], chunk: Chunk) -> None:
        self.number = number
        self.args = args
        self.chunk_ref = [chunk]
        self.rng = random.Random(number)
        self.seq = 0
        self.driver: Any = None

    @property
    def chunk(self) -> Chunk:
        return self.chunk_ref[0]

    async def connect(self) -> bool:
        import neo4j

        self.driver = neo4j.AsyncGraphDatabase.driver(
            self.args["uri"],
            auth=("soak", "x"),
            max_connection_pool_size=1,
            connection_acquisition_timeout=self.args["query_timeout"],
            connection_timeout=self.args["query_timeout"],
        )
        try:
            await self.driver.verify_connectivity()
            return True
        except Exception as exc:
            self.record_error("connect", exc)
            return False

    def record_error(self, kind: str, exc: BaseException) -> None:
        code = getattr(exc, "code", None)
        what = f"{kind}: {type(exc).__name__}" + (f" {code}" if code else "")
        self.chunk.errors[what] = self.chunk.errors.get(what, 0) + 1
        self.chunk.examples.setdefault(what, str(exc)[:300])

    async def run(self, start: float, end: float, release: Any) -> None:
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        think = self.args["think"]
        # Spread the first queries over one think time, so the clients do not move in step.
        await asyncio.sleep(self.rng.uniform(0, think))
        while time.time() < end and not release.is_set():  # release: the parent gave up
            kind = self.rng.choices(kinds, weights)[0]
            began = time.time()
            try:
                await asyncio.wait_for(self.one(kind), self.args["query_timeout"])
            except Exception as exc:  # TimeoutError from wait_for included
                self.record_error(kind, exc)
            else:
                ms = (time.time() - began) * 1000
                minute = int((began - start) // 60)
                self.chunk.latencies.setdefault(minute, []).append(ms)
                self.chunk.by_kind.setdefault(kind, []).append(ms)
            await asyncio.sleep(self.rng.uniform(0, 2 * think))

    async def one(self, kind: str) -> None:
        self.seq += 1
        i = self.number * 1_000_000 + self.seq
        async with self.driver.session() as session:
            if kind == "return":
                rows = await (await session.run("RETURN $i AS i", i=i)).values()
                check(rows == [[i]], kind, rows)
            elif kind == "lookup":
                # An id that the CREATE-only stream has probably written by now.
                high = max(1, int((time.time() - self.args["streams_since"]) * self.args["rate"]))
                key = str(self.rng.randrange(high))
                rows = await (
                    await session.run("MATCH (n:Item {id: $id}) RETURN n.id AS id", id=key)
                ).values()
                check(all(row == [key] for row in rows), kind, rows)
            elif kind == "rows":
                rows = await (
                    await session.run("UNWIND range(1, $n) AS x RETURN x", n=ROWS)
                ).values()
                check(rows == [[x] for x in range(1, ROWS + 1)], kind, rows[:3])
            elif kind == "count":
                rows = await (await session.run("MATCH (n:Person) RETURN count(n) AS c")).values()
                check(len(rows) == 1 and rows[0][0] >= 0, kind, rows)
            elif kind == "write":
                summary = await (
                    await session.run(
                        "CREATE (:SoakWrite {client: $c, seq: $s})", c=self.number, s=self.seq
                    )
                ).consume()
                check(summary.counters.nodes_created == 1, kind, summary.counters)
                self.chunk.writes["write"] = self.chunk.writes.get("write", 0) + 1
            elif kind == "tx":
                c, s = self.number, self.seq

                async def work(tx: Any) -> int:
                    result = await tx.run(
                        "CREATE (n:SoakTx {client: $c, seq: $s}) RETURN n.seq AS s", c=c, s=s
                    )
                    return int((await result.single(strict=True))["s"])

                check(await session.execute_write(work) == s, kind, s)
                self.chunk.writes["tx"] = self.chunk.writes.get("tx", 0) + 1
            elif kind == "show":
                rows = await (await session.run("SHOW STREAMS")).data()
                check(len(rows) == 4, kind, [row.get("name") for row in rows])

    async def close(self) -> None:
        if self.driver is not None:
            with contextlib.suppress(Exception):
                await self.driver.close()


class WrongAnswer(Exception):
    pass


def check(ok: bool, kind: str, got: object) -> None:
    if not ok:
        raise WrongAnswer(f"{kind}: unexpected answer {str(got)[:200]}")


def worker_main(
    worker: int, numbers: list[int], args: dict[str, Any], queue: Any, go: Any, release: Any
) -> None:
    """A worker process: its clients connect, wait for ``go``, run until the end, and keep
    their connections until ``release`` (so the proxy is measured with them open)."""
    import uvloop

    uvloop.run(_worker(worker, numbers, args, queue, go, release))


async def _worker(
    worker: int, numbers: list[int], args: dict[str, Any], queue: Any, go: Any, release: Any
) -> None:
    parent = os.getppid()

    async def orphaned() -> None:
        # A parent killed without its clean-up leaves no worker hammering a dead proxy.
        while os.getppid() == parent:
            await asyncio.sleep(1)
        os._exit(1)

    watchdog = asyncio.create_task(orphaned())
    chunk = Chunk(worker)
    clients = [Client(n, args, chunk) for n in numbers]
    # Connect a few at a time: 500 logins at once would measure a login storm, not the soak.
    semaphore = asyncio.Semaphore(16)

    async def connect(client: Client) -> bool:
        async with semaphore:
            return await client.connect()

    connected = await asyncio.gather(*(connect(c) for c in clients))
    chunk.connected = sum(connected)
    queue.put(asdict(chunk))
    chunk = Chunk(worker)
    for client in clients:
        client.chunk_ref[0] = chunk
    while not go.is_set():
        await asyncio.sleep(0.05)
    start, end = args["start"].value, args["start"].value + args["seconds"]
    stop = asyncio.Event()

    async def lag() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.1)
            clients[0].chunk.loop_lag.append((time.perf_counter() - before - 0.1) * 1000)

    async def report() -> None:
        while not stop.is_set():
            await asyncio.sleep(CHUNK_EVERY)
            send()

    def send(done: bool = False) -> None:
        current = clients[0].chunk
        fresh = Chunk(worker)
        for client in clients:
            client.chunk_ref[0] = fresh
        usage = resource.getrusage(resource.RUSAGE_SELF)
        current.cpu = usage.ru_utime + usage.ru_stime
        current.done = done
        queue.put(asdict(current))  # plain data: the parent knows no __mp_main__ classes

    watchers = [asyncio.create_task(lag()), asyncio.create_task(report())]
    await asyncio.gather(*(c.run(start, end, release) for c in clients))
    stop.set()
    for task in watchers:
        task.cancel()
    send(done=True)
    while not release.is_set():
        await asyncio.sleep(0.05)
    await asyncio.gather(*(c.close() for c in clients))
    watchdog.cancel()


# -- the streams and their producers (in the parent) ----------------------------------------------


@dataclass
class Feed:
    """A stream, its topic, and what its producer has had acknowledged."""

    name: str
    topic: str
    source: str  # WITH TRANSFORM ... / WITH PATTERN ...
    options: str
    bodies: Any  # index -> bytes
    delivered: int = 0
    failed: int = 0
    sent: int = 0
    records: list[bytes] | None = None  # what the topic holds, read at the end


def make_feeds(transforms: Path, rate: int, seconds: float) -> list[Feed]:
    manual = make_messages(int(rate * (seconds + 600)))
    return [
        Feed(
            "soak_manual",
            "soak_manual",
            f"WITH TRANSFORM '{transforms / 'manual.py'}'",
            "",
            lambda i: manual[i].encode(),
        ),
        Feed(
            "soak_create",
            "soak_create",
            f"WITH TRANSFORM '{transforms / 'create.py'}'",
            "",
            lambda i: str(i).encode(),
        ),
        Feed(
            "soak_pattern",
            "soak_pattern",
            f"WITH PATTERN '{PATTERN}'",
            "",
            lambda i: json.dumps({"id": i, "name": f"person {i}"}).encode(),
        ),
        Feed(
            "soak_once",
            "soak_once",
            f"WITH TRANSFORM '{transforms / 'once.py'}'",
            "DELIVERY EXACTLY ONCE",
            lambda i: str(i).encode(),
        ),
    ]


def manual_edges(records: list[bytes]) -> int:
    """Edges the manual's transform makes of ``records`` in order: an edge message joins every
    node of each id made so far (a node message the producer sent twice made two)."""
    made: collections.Counter[bytes] = collections.Counter()
    edges = 0
    for record in records:
        ids = record.split()
        if len(ids) == 1:
            made[ids[0]] += 1
        elif len(ids) == 2:
            edges += made[ids[0]] * made[ids[1]]
    return edges


class Producers:
    """One producer thread feeding every topic at ``rate`` messages/s each, in 100 ms ticks."""

    def __init__(self, broker: Broker, feeds: list[Feed], rate: int) -> None:
        self.broker = broker
        self.feeds = feeds
        self.rate = rate
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.behind = 0.0  # the longest the producer fell behind its schedule (s)

    def start(self) -> Producers:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)

    def _run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "linger.ms": 5,
                "log.connection.close": False,  # Tansu closes idle connections; not news
            }
        )

        def on_delivery(feed: Feed) -> Any:
            def delivered(error: Any, _message: Any) -> None:
                if error is None:
                    feed.delivered += 1
                else:
                    feed.failed += 1

            return delivered

        callbacks = {feed.name: on_delivery(feed) for feed in self.feeds}
        tick = 0.1
        started = time.monotonic()
        ticks = 0
        while not self.stop_event.is_set():
            due = started + ticks * tick
            now = time.monotonic()
            if due > now:
                self.stop_event.wait(due - now)
                continue
            self.behind = max(self.behind, now - due)
            ticks += 1
            target = int(ticks * tick * self.rate)
            for feed in self.feeds:
                while feed.sent < target:
                    producer.produce(
                        feed.topic,
                        feed.bodies(feed.sent),
                        on_delivery=callbacks[feed.name],
                    )
                    feed.sent += 1
            producer.poll(0)
        producer.flush(60)


# -- measuring ------------------------------------------------------------------------------------


class TeeLog(LogWatch):
    """The proxy's log, watched (``LogWatch``) and, with a path, also written there whole."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.file = path.open("a", encoding="utf-8", buffering=1) if path else None

    def append(self, line: str) -> None:
        super().append(line)
        if self.file is not None:
            self.file.write(line + "\n")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; nan for fewer than three."""
    if len(points) < 3:
        return float("nan")
    xs, ys = zip(*points, strict=True)
    return statistics.linear_regression(xs, ys).slope


def children(pid: int) -> list[int]:
    """``pid``'s child processes (transform workers, FalkorDB)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(child) for child in text.split())
    return found


def children_rss(pid: int) -> tuple[int, float]:
    """(how many, MB) of ``pid``'s child processes."""
    found = children(pid)
    return len(found), sum(rss_mb(child) for child in found)


def falkordb_pid(pid: int) -> int | None:
    for child in children(pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/comm").read_text().strip() == "redis-server":
                return child
    return None


def sched(pid: int, thread: int | None = None) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of every thread of ``pid``, or
    of one ``thread`` (``/proc/PID/task/TID/schedstat``): the wait is how starved it was."""
    ran = waited = 0
    with contextlib.suppress(OSError):
        for task in [str(thread)] if thread else os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                on_cpu, on_queue, _ = Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()
                ran += int(on_cpu)
                waited += int(on_queue)
    return ran / 1e9, waited / 1e9


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def stats_dict(stats: ProcStats) -> dict[str, Any]:
    established = len(stats.conns_in("ESTABLISHED"))
    return {
        "rss_mb": round(stats.rss_kb / 1024, 1),
        "fds": stats.fds,
        "fd_kinds": stats.fd_kinds,
        "client_connections": established,
        "other_client_states": collections.Counter(
            s for s in stats.client_conns.values() if s != "ESTABLISHED"
        ),
        "orphan_sockets": stats.orphans,
    }


@dataclass
class Sample:
    at: float  # seconds since the clients started
    rss_mb: float
    fds: int
    clients: int
    children: int
    children_mb: float
    load: tuple[float, float, float]
    streams: dict[str, dict[str, Any]]
    produced: dict[str, int]
    queries: int
    errors: int


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        import neo4j

        self.args = args
        self.work = work
        self.transforms = work / "transforms"
        self.transforms.mkdir()
        for file, code in (
            ("manual.py", MANUAL_TRANSFORM),
            ("create.py", CREATE_TRANSFORM),
            ("once.py", ONCE_TRANSFORM),
        ):
            (self.transforms / file).write_text(code)
        self.log = TeeLog(args.proxy_log)
        self.broker = Broker().start()
        self.proxy = ProxyProcess(
            "--data-dir",
            str(work / "proxy"),
            "--transform-allowed-dirs",
            str(self.transforms),
            "--kafka-client-config",
            args.kafka_config,
            "--log-level",
            "info",
        )
        self.proxy.lines = self.log
        self.proxy.start()
        assert self.proxy.proc is not None
        self.pid = self.proxy.proc.pid
        self.driver = neo4j.GraphDatabase.driver(self.proxy.bolt_uri, auth=("monitor", "x"))
        self.feeds = make_feeds(self.transforms, args.rate, args.minutes * 60)
        self.samples: list[Sample] = []
        self.latencies: dict[int, list[float]] = collections.defaultdict(list)
        self.by_kind: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}
        self.writes: collections.Counter[str] = collections.Counter()
        self.loop_lag: list[float] = []
        self.cpu: dict[int, float] = {}
        self.queries = 0
        self.monitor_errors: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def run_query(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self.driver.session() as session:
            return [record.data() for record in session.run(query, params)]

    def stats(self) -> ProcStats:
        return proc_stats(self.pid, self.proxy.port)

    def start_streams(self) -> None:
        # An index on every key a stream matches or merges on, as users must make: without
        # one on :Person(id) the pattern's MERGE scans the label, and FalkorDB's write lock
        # then holds every query of the graph (1 s per 50 messages at 20,000 people).
        for label in ("Node", "Item", "Once", "Person"):
            self.run_query(f"CREATE INDEX FOR (n:{label}) ON (n.id)")
        for feed in self.feeds:
            self.broker.create_topic(feed.topic)
            self.run_query(
                f"CREATE STREAM {feed.name} AS LOAD DATA KAFKA '{self.broker.bootstrap}' "
                f"WITH TOPIC '{feed.topic}' {feed.source} {feed.options}"
            )
            self.run_query(f"START STREAM {feed.name}")

    def show_streams(self) -> dict[str, dict[str, Any]]:
        keep = ("status", "lag", "messages_processed", "last_error", "status_detail")
        return {
            row["name"]: {k: row.get(k) for k in keep} for row in self.run_query("SHOW STREAMS")
        }

    def absorb(self, data: dict[str, Any]) -> Chunk:
        chunk = Chunk(**data)
        for minute, values in chunk.latencies.items():
            self.latencies[minute].extend(values)
            self.queries += len(values)
        for kind, values in chunk.by_kind.items():
            self.by_kind[kind].extend(values)
        self.errors.update(chunk.errors)
        for kind, example in chunk.examples.items():
            self.examples.setdefault(kind, example)
        self.writes.update(chunk.writes)
        self.loop_lag.extend(chunk.loop_lag)
        if chunk.cpu:
            self.cpu[chunk.worker] = chunk.cpu
        return chunk

    def sample(self, start: float) -> Sample:
        stats = self.stats()
        children, children_mb = children_rss(self.pid)
        try:
            streams = self.show_streams()
        except Exception as exc:
            self.monitor_errors.append(f"{time.time() - start:.0f} s: {exc}"[:300])
            streams = {}
        sample = Sample(
            at=time.time() - start,
            rss_mb=stats.rss_kb / 1024,
            fds=stats.fds,
            clients=len(stats.conns_in("ESTABLISHED")),
            children=children,
            children_mb=children_mb,
            load=loadavg(),
            streams=streams,
            produced={f.name: f.delivered for f in self.feeds},
            queries=self.queries,
            errors=sum(self.errors.values()),
        )
        self.samples.append(sample)
        lags = " ".join(
            f"{name[5:]}={row['lag']}{'' if row['status'] == 'running' else '!' + row['status']}"
            for name, row in streams.items()
        )
        self.say(
            f"{sample.at:6.0f} s  q {sample.queries:>8,}  err {sample.errors:>4}  "
            f"rss {sample.rss_mb:6.1f} MB  fds {sample.fds:>4}  conns {sample.clients:>3}  "
            f"children {children} {children_mb:6.1f} MB  load {sample.load[0]:.2f}  lag {lags}"
        )
        return sample

    def graph(self) -> dict[str, int]:
        one = self.run_query
        return {
            "Node": one("MATCH (n:Node) RETURN count(n) AS c")[0]["c"],
            "Node distinct": one("MATCH (n:Node) RETURN count(DISTINCT n.id) AS c")[0]["c"],
            "Edge": one("MATCH (:Node)-[e:Edge]->(:Node) RETURN count(e) AS c")[0]["c"],
            "Item": one("MATCH (n:Item) RETURN count(n) AS c")[0]["c"],
            "Item distinct": one("MATCH (n:Item) RETURN count(DISTINCT n.id) AS c")[0]["c"],
            "Person": one("MATCH (n:Person) RETURN count(n) AS c")[0]["c"],
            "Once": one("MATCH (n:Once) RETURN count(n) AS c")[0]["c"],
            "Once distinct": one("MATCH (n:Once) RETURN count(DISTINCT n.id) AS c")[0]["c"],
            "SoakWrite": one("MATCH (n:SoakWrite) RETURN count(n) AS c")[0]["c"],
            "SoakTx": one("MATCH (n:SoakTx) RETURN count(n) AS c")[0]["c"],
        }

    def read_topics(self) -> None:
        """Every record now in each stream's topic: what the graph must hold. A producer may
        write a message twice (it resends when an acknowledgement is late, and Tansu has no
        idempotent producer), and a stream rightly applies both records."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        for feed in self.feeds:
            consumer = Consumer(
                {"bootstrap.servers": self.broker.bootstrap, "group.id": "soak-check"}
            )
            consumer.assign([TopicPartition(feed.topic, 0, OFFSET_BEGINNING)])
            records: list[bytes] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                batch = consumer.consume(10000, timeout=2.0)
                records += [m.value() or b"" for m in batch if m.error() is None]
                if not batch and len(records) >= feed.delivered:
                    break
            consumer.close()
            feed.records = records

    def expected(self) -> dict[str, int]:
        """What the graph must hold: from the topics' records once read, else from what the
        producers had acknowledged."""
        values = [
            f.records if f.records is not None else [f.bodies(i) for i in range(f.delivered)]
            for f in self.feeds
        ]
        manual, create, pattern, once = values
        nodes = [b for b in manual if b" " not in b]
        return {
            "Node": len(nodes),
            "Node distinct": len(set(nodes)),
            "Edge": manual_edges(manual),
            "Item": len(create),
            "Item distinct": len(set(create)),
            "Person": len(set(pattern)),  # merged
            "Once": len(once),
            "Once distinct": len(set(once)),
        }

    def drain(self, timeout: float) -> tuple[float, dict[str, int]]:
        """Seconds until the graph holds every message delivered (or ``timeout``)."""
        started = time.monotonic()
        want = self.expected()
        while True:
            got = self.graph()
            if all(got[k] >= v for k, v in want.items()) or time.monotonic() > started + timeout:
                return time.monotonic() - started, got
            time.sleep(1)

    def run(self) -> dict[str, Any]:
        args = self.args
        seconds = args.minutes * 60
        self.start_streams()
        producers = Producers(self.broker, self.feeds, args.rate).start()
        streams_since = time.time()
        # Let the streams form their groups and reach a steady state before the clients come.
        time.sleep(args.settle)
        self.show_streams()  # its lag probes are part of the proxy's steady state
        fds_before = stats_dict(self.stats())
        self.say(f"streams running; proxy before clients: {fds_before}")
        ctx = multiprocessing.get_context("spawn")  # never fork: the parent has Kafka threads
        queue = ctx.Queue()
        go = ctx.Event()
        release = ctx.Event()
        start_at = ctx.Value("d", 0.0)
        shared = {
            "uri": self.proxy.bolt_uri,
            "think": args.think,
            "query_timeout": args.query_timeout,
            "seconds": seconds,
            "rate": args.rate,
            "streams_since": streams_since,
            "start": start_at,
        }
        numbers = list(range(args.connections))
        workers = [
            ctx.Process(
                target=worker_main,
                args=(w, numbers[w :: args.processes], shared, queue, go, release),
                daemon=True,
            )
            for w in range(args.processes)
        ]
        for process in workers:
            process.start()
        try:
            return self._measure(workers, queue, go, release, start_at, producers, fds_before)
        finally:
            release.set()
            for process in workers:
                process.join(5)
                if process.is_alive():
                    process.terminate()

    def _measure(
        self,
        workers: list[Any],
        queue: Any,
        go: Any,
        release: Any,
        start_at: Any,
        producers: Producers,
        fds_before: dict[str, Any],
    ) -> dict[str, Any]:
        args = self.args
        seconds = args.minutes * 60
        connected = 0
        for _ in workers:
            connected += self.absorb(queue.get(timeout=300)).connected
        time.sleep(1)
        fds_start = stats_dict(self.stats())
        load_start = loadavg()
        self.say(f"{connected} clients connected; proxy: {fds_start}; load {load_start}")
        start = time.time()
        falkordb = falkordb_pid(self.pid) or 0
        pids = [p.pid or 0 for p in workers]

        def schedules() -> list[tuple[float, float]]:
            clients = [sched(pid) for pid in pids]
            return [
                sched(self.pid),
                sched(self.pid, self.pid),
                sched(falkordb),
                (sum(c[0] for c in clients), sum(c[1] for c in clients)),
            ]

        sched_start = schedules()
        start_at.value = start
        go.set()
        done = 0
        next_sample = start
        while done < len(workers):
            with contextlib.suppress(Exception):  # every report waiting, then at most 0.5 s
                done += self.absorb(queue.get(timeout=0.5)).done
                while True:
                    done += self.absorb(queue.get_nowait()).done
            if time.time() >= next_sample:
                self.sample(start)
                # A slow sample (a starved proxy) skips samples rather than bunching them up:
                # the RSS slope wants them evenly spread.
                next_sample = max(next_sample + SAMPLE_EVERY, time.time())
            if time.time() > start + seconds + args.query_timeout + 60:
                self.say("workers did not finish in time")
                break
            if self.proxy.proc is not None and self.proxy.proc.poll() is not None:
                self.say(f"THE PROXY DIED (exit code {self.proxy.proc.returncode}); its log ends:")
                self.say("\n".join(list(self.log)[-40:]))
                raise SystemExit(2)
        elapsed = time.time() - start
        sched_end = schedules()
        shares = {
            who: {
                "cpu": (end[0] - begin[0]) / elapsed,
                "waiting_for_cpu": (end[1] - begin[1]) / elapsed,
            }
            for who, begin, end in zip(
                ("proxy", "proxy event loop thread", "falkordb", "client workers"),
                sched_start,
                sched_end,
                strict=True,
            )
        }
        fds_end = stats_dict(self.stats())
        load_end = loadavg()
        self.sample(start)
        release.set()
        for process in workers:
            process.join(60)
        time.sleep(3)
        fds_after_clients = stats_dict(self.stats())
        producers.stop()
        self.read_topics()
        drained_in, graph = self.drain(args.drain_timeout)
        final_streams = self.show_streams()
        return {
            "settings": {
                "minutes": args.minutes,
                "connections": args.connections,
                "processes": args.processes,
                "think_s": args.think,
                "rate_per_stream": args.rate,
                "query_timeout_s": args.query_timeout,
            },
            "connected": connected,
            "elapsed_s": elapsed,
            "queries": self.queries,
            "writes_acknowledged": dict(self.writes),
            "errors": dict(self.errors),
            "error_examples": self.examples,
            "monitor_errors": self.monitor_errors,
            "per_minute": {
                m: summary(v) for m, v in sorted(self.latencies.items()) if m * 60 < seconds
            },
            "per_kind": {k: summary(v) for k, v in sorted(self.by_kind.items())},
            "all": summary([x for v in self.latencies.values() for x in v]),
            "client_loop_lag_ms": summary(self.loop_lag),
            "client_cpu_s": self.cpu,
            "cpu_shares": shares,
            "fds": {
                "before_clients": fds_before,
                "start": fds_start,
                "end": fds_end,
                "after_clients": fds_after_clients,
            },
            "rss_mb": [(round(s.at), round(s.rss_mb, 1)) for s in self.samples],
            "rss_slope_mb_per_min": slope([(s.at / 60, s.rss_mb) for s in self.samples]),
            "rss_slope_second_half_mb_per_min": slope(
                [(s.at / 60, s.rss_mb) for s in self.samples if s.at >= seconds / 2]
            ),
            "children_mb": [(round(s.at), round(s.children_mb, 1)) for s in self.samples],
            "load": {
                "start": load_start,
                "end": load_end,
                "samples": [s.load for s in self.samples],
            },
            "lag_max": {
                name: max(
                    (s.streams[name]["lag"] or 0 for s in self.samples if name in s.streams),
                    default=None,
                )
                for name in (f.name for f in self.feeds)
            },
            "not_running_samples": sum(
                1 for s in self.samples for row in s.streams.values() if row["status"] != "running"
            ),
            "produced": {f.name: f.delivered for f in self.feeds},
            "produce_failed": {f.name: f.failed for f in self.feeds},
            "in_topics": {f.name: len(f.records or ()) for f in self.feeds},
            "duplicated_by_producer": {
                f.name: len(f.records or ()) - f.delivered for f in self.feeds
            },
            "producer_behind_s": producers.behind,
            "drained_in_s": drained_in,
            "graph": graph,
            "expected": self.expected(),
            "final_streams": final_streams,
            "proxy_alive": self.proxy.proc is not None and self.proxy.proc.poll() is None,
            "log_levels": dict(self.log.levels),
            "log_warnings": dict(self.log.warnings.most_common(20)),
            "log_errors": collections.Counter(e.signature for e in self.log.since(0)),
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.close()
        self.proxy.stop()
        self.broker.stop()


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2) if values else float("nan"),
    }


def format_report(r: dict[str, Any]) -> str:
    s = r["settings"]
    out = [
        "",
        f"soak: {s['connections']} connections ({r['connected']} connected) over "
        f"{s['processes']} worker processes, think time mean {s['think_s']} s, "
        f"{r['elapsed_s'] / 60:.1f} min; four streams at {s['rate_per_stream']} messages/s each",
        f"queries: {r['queries']:,} ({r['queries'] / r['elapsed_s']:,.0f}/s), errors: "
        f"{sum(r['errors'].values())}; acknowledged writes {r['writes_acknowledged']}",
    ]
    for kind, count in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
        out.append(f"  {count:>6}  {kind}: {r['error_examples'].get(kind, '')[:160]}")

    def latency_row(label: str, row: dict[str, float]) -> str:
        return (
            f"  {label:<22} {row['n']:>8,} {row['p50']:>7.1f} {row['p99']:>7.1f} {row['max']:>8.1f}"
        )

    out.append("latency per minute (ms):   queries     p50     p99      max")
    for minute, row in r["per_minute"].items():
        out.append(latency_row(f"minute {int(minute) + 1}", row))
    out.append(latency_row("whole run", r["all"]))
    out.append("latency per kind (ms):")
    for kind, row in r["per_kind"].items():
        out.append(latency_row(kind, row))
    lag = r["client_loop_lag_ms"]
    cpu = ", ".join(
        f"{v / r['elapsed_s'] * 100:.0f}%" for _, v in sorted(r["client_cpu_s"].items())
    )
    out.append(
        f"load generator: event-loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms, max "
        f"{lag['max']} ms; CPU per worker process {cpu} of one core"
    )
    for who, share in r["cpu_shares"].items():
        out.append(
            f"{who}: on a CPU {share['cpu'] * 100:.0f}% of the run, runnable but waiting for "
            f"a CPU {share['waiting_for_cpu'] * 100:.0f}% (per thread, added up)"
        )
    rss = r["rss_mb"]
    out.append(
        f"proxy RSS: {rss[0][1]} MB at start, {rss[-1][1]} MB at the end, max "
        f"{max(v for _, v in rss)} MB; slope {r['rss_slope_mb_per_min']:+.3f} MB/min "
        f"(second half {r['rss_slope_second_half_mb_per_min']:+.3f} MB/min)"
    )
    children = r["children_mb"]
    out.append(
        f"its children (transform workers, FalkorDB): {children[0][1]} MB -> {children[-1][1]} MB"
    )
    for when in ("before_clients", "start", "end", "after_clients"):
        f = r["fds"][when]
        out.append(
            f"fds {when:<15} {f['fds']:>4} {f['fd_kinds']} client connections "
            f"{f['client_connections']} {dict(f['other_client_states']) or ''}"
        )
    load = r["load"]
    ones = [x[0] for x in load["samples"]]
    out.append(
        f"load average (1 min): {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at the "
        f"end, {min(ones):.2f} to {max(ones):.2f} during"
    )
    out.append(
        f"streams: max lag seen {r['lag_max']}; samples not running: {r['not_running_samples']}; "
        f"producer behind schedule at most {r['producer_behind_s']:.2f} s"
    )
    for name, row in r["final_streams"].items():
        out.append(
            f"  {name:<14} {row['status']:<8} processed {row['messages_processed']:>8,} "
            f"lag {row['lag']} last_error {row['last_error']}"
        )
    out.append(
        f"produced (acknowledged by the broker) {r['produced']}, failed {r['produce_failed']}; "
        f"drained in {r['drained_in_s']:.1f} s"
    )
    out.append(
        f"records in the topics {r['in_topics']}, more than acknowledged (the producer resent "
        f"them) {r['duplicated_by_producer']}; the graph must hold every record:"
    )
    graph, expected = r["graph"], r["expected"]
    for key, want in expected.items():
        got = graph[key]
        out.append(
            f"  {key:<14} graph {got:>9,}  in topic {want:>9,}  {'ok' if got == want else 'WRONG'}"
        )
    writes = r["writes_acknowledged"]
    for label, kind in (("SoakWrite", "write"), ("SoakTx", "tx")):
        acked = writes.get(kind, 0)
        got = graph[label]
        verdict = "ok" if got >= acked else "LOST"
        out.append(f"  {label:<14} graph {got:>9,}  acknowledged {acked:>9,}  {verdict}")
    out.append(f"log lines by level: {r['log_levels']}")
    for text, count in r["log_warnings"].items():
        out.append(f"  {count:>6} WARNING {text}")
    for text, count in r["log_errors"].items():
        out.append(f"  {count:>6} {text}")
    if r["monitor_errors"]:
        out.append(f"monitor errors: {r['monitor_errors'][:5]}")
    out.append(f"proxy alive at the end: {r['proxy_alive']}")
    return "\n".join(out)


def failed(r: dict[str, Any]) -> list[str]:
    problems = []
    if not r["proxy_alive"]:
        problems.append("the proxy died")
    if r["errors"]:
        problems.append(f"{sum(r['errors'].values())} query errors")
    for key, want in r["expected"].items():
        if r["graph"][key] != want:
            problems.append(f"{key}: {r['graph'][key]} in the graph, {want} produced")
    for label, kind in (("SoakWrite", "write"), ("SoakTx", "tx")):
        if r["graph"][label] < r["writes_acknowledged"].get(kind, 0):
            problems.append(f"acknowledged {kind} writes missing")
    before, after = r["fds"]["before_clients"], r["fds"]["after_clients"]
    if after["fds"] > before["fds"] + FD_SLACK:
        problems.append(f"{after['fds'] - before['fds']} more descriptors after the clients left")
    if r["connected"] != r["settings"]["connections"]:
        problems.append("not every client connected")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--processes", type=int, default=4, help="worker processes for clients")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between queries")
    parser.add_argument("--rate", type=int, default=100, help="messages/s into each stream")
    parser.add_argument("--query-timeout", type=float, default=60.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds of streams alone before the clients"
    )
    parser.add_argument(
        "--kafka-config",
        default=SOAK_KAFKA_CONFIG,
        help="the proxy's --kafka-client-config (the tests' 2 s session timeout makes groups "
        "rebalance on a starved machine)",
    )
    parser.add_argument("--proxy-log", type=Path, help="write the proxy's whole log here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load {loadavg()}", flush=True)

    def interrupted(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so that the clean-up below stops the proxy and the broker

    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        soak = Soak(args, Path(tmp))
        try:
            report = soak.run()
        finally:
            soak.close()
    print(format_report(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    problems = failed(report)
    if problems:
        print("FAILED: " + "; ".join(problems), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

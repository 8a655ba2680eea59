"""The proxy's metrics, in the Prometheus text format (``GET /metrics``; README "Operating
streams"), built with ``prometheus-client``.

Two kinds of figures:

* **events**, counted where they happen (``PROXY``): connections opened by transport, queries
  forwarded and answered locally, FAILUREs by code, backend connection errors; and, per stream
  (``StreamObserver``, a ``runner.RunObserver``), batch sizes, the time each pipeline stage
  takes, failures by kind. Counting costs a lock and an addition;
* **state**, read when scraped (``StreamCollector``): per stream its status, the messages and
  batches processed, skipped and dead-lettered (the catalog's totals plus what running streams
  have not flushed yet), and the lag of each partition (asked of the broker at scrape time,
  bounded by a timeout). ``refresh()`` gathers them (it is asynchronous); ``collect()`` hands
  over the last gathered figures.

Every metric lives in ``REGISTRY``, not the library's global one, so nothing else a process
imports shows up, and ``render()`` is what ``GET /metrics`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from proxy.streams.engine import StreamEngine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 10, 100, 1000, 10_000, 100_000, 1_000_000)


class ProxyMetrics:
    """What the proxy counts as it serves (one per process: ``PROXY``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "boltstream_connections",
            "Client connections open now, by transport",
            ["transport"],
            registry=registry,
        )
        self.connections_opened = Counter(
            "boltstream_connections_opened",
            "Client connections accepted (after the Bolt handshake), by transport",
            ["transport"],
            registry=registry,
        )
        self.queries = Counter(
            "boltstream_queries",
            "Queries run: forwarded to the backend, or answered by the proxy itself",
            ["route"],
            registry=registry,
        )
        self.failures = Counter(
            "boltstream_failures",
            "FAILURE messages sent to clients, by Neo4j status code (relayed ones: 'backend')",
            ["code"],
            registry=registry,
        )
        self.backend_errors = Counter(
            "boltstream_backend_connection_errors",
            "Times the backend could not be reached",
            registry=registry,
        )
        self.stream_batch_size = Histogram(
            "boltstream_stream_batch_size",
            "Messages per batch written",
            ["stream"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.stream_stage_seconds = Histogram(
            "boltstream_stream_stage_seconds",
            "Time a pipeline stage took: transform (a round trip to the transform worker), "
            "write (to the graph, retries included), commit (offsets to Kafka, from request "
            "to answer)",
            ["stream", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.stream_failures = Counter(
            "boltstream_stream_failures",
            "Failures: message (a message the error policy skipped, dead-lettered or stopped "
            "at), batch (a batch that stopped the stream as a whole), stream (the stream "
            "could not go on: its transform did not load, its consumer failed)",
            ["stream", "kind"],
            registry=registry,
        )
        self.forwarded = self.queries.labels("forwarded")
        self.local = self.queries.labels("local")

    def failure(self, code: str) -> None:
        self.failures.labels(code).inc()


PROXY = ProxyMetrics(REGISTRY)


class StreamObserver:
    """A stream's ``runner.RunObserver``: its events as metrics."""

    def __init__(self, stream: str, metrics: ProxyMetrics = PROXY) -> None:
        self.stream = stream
        self._size = metrics.stream_batch_size.labels(stream)
        self._stages = {
            stage: metrics.stream_stage_seconds.labels(stream, stage)
            for stage in ("transform", "write", "commit")
        }
        self._failures = metrics.stream_failures

    def batch_size(self, messages: int) -> None:
        self._size.observe(messages)

    def stage(self, stage: str, seconds: float) -> None:
        histogram = self._stages.get(stage)
        if histogram is not None:
            histogram.observe(seconds)

    def failure(self, kind: str) -> None:
        self._failures.labels(self.stream, kind).inc()


@dataclass
class _Snapshot:
    """The stream figures gathered at the last refresh."""

    rows: list[Any] = field(default_factory=list)  # clauses.StreamStatus
    batches: dict[str, int] = field(default_factory=dict)
    lags: dict[tuple[str, str, int], int] = field(default_factory=dict)


class StreamCollector(Collector):
    """The streams' state, as gathered by the last ``refresh()``."""

    STATUSES = ("running", "stopped", "error")

    def __init__(self, engine: StreamEngine, timeout: float = 2.0) -> None:
        self.engine = engine
        self.timeout = timeout
        self._snapshot = _Snapshot()

    async def refresh(self) -> None:
        engine = self.engine
        snapshot = _Snapshot()
        with contextlib.suppress(Exception):
            snapshot.rows = await engine.show()
        with contextlib.suppress(Exception):
            snapshot.batches = await engine.batch_totals()
        running = [row.name for row in snapshot.rows if row.status == "running"]
        lags = await asyncio.gather(
            *(
                asyncio.wait_for(engine.offsets(name, holders=False), self.timeout)
                for name in running
            ),
            return_exceptions=True,
        )
        for name, found in zip(running, lags, strict=True):
            if isinstance(found, BaseException):
                continue
            for row in found:
                snapshot.lags[(name, row.topic, row.partition)] = row.lag
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot
        status = GaugeMetricFamily(
            "boltstream_stream_status",
            "1 for the stream's status (running, stopped, error), 0 for the others",
            labels=["stream", "status"],
        )
        messages = CounterMetricFamily(
            "boltstream_stream_messages",
            "Messages processed (skipped and dead-lettered ones included)",
            labels=["stream"],
        )
        batches = CounterMetricFamily(
            "boltstream_stream_batches", "Batches processed", labels=["stream"]
        )
        skipped = CounterMetricFamily(
            "boltstream_stream_messages_skipped",
            "Messages skipped by ON ERROR SKIP",
            labels=["stream"],
        )
        dead = CounterMetricFamily(
            "boltstream_stream_messages_dead_lettered",
            "Messages sent to the dead-letter topic",
            labels=["stream"],
        )
        lag = GaugeMetricFamily(
            "boltstream_stream_lag",
            "Messages in the partition after the stream's position (running streams)",
            labels=["stream", "topic", "partition"],
        )
        for row in snapshot.rows:
            for name in self.STATUSES:
                status.add_metric([row.name, name], 1.0 if row.status == name else 0.0)
            messages.add_metric([row.name], row.messages_processed)
            batches.add_metric([row.name], snapshot.batches.get(row.name, 0))
            skipped.add_metric([row.name], row.skipped)
            dead.add_metric([row.name], row.dead_lettered)
        for (name, topic, partition), value in sorted(snapshot.lags.items()):
            lag.add_metric([name, topic, str(partition)], value)
        yield from (status, messages, batches, skipped, dead, lag)


class _Registered:
    """The collector of the engine being served (one per process)."""

    collector: StreamCollector | None = None


def serve_streams(engine: StreamEngine) -> StreamCollector:
    """Register ``engine``'s streams for ``/metrics`` (replacing an earlier engine's)."""
    if _Registered.collector is not None:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(_Registered.collector)
    collector = _Registered.collector = StreamCollector(engine)
    REGISTRY.register(collector)
    return collector


async def render() -> bytes:
    """The exposition ``GET /metrics`` answers (stream figures gathered now)."""
    collector = _Registered.collector
    if collector is not None:
        await collector.refresh()
    return generate_latest(REGISTRY)


def parse(text: str) -> Iterator[Any]:
    """The metric families of an exposition (tests, and anyone checking one)."""
    from prometheus_client.parser import text_string_to_metric_families

    return iter(text_string_to_metric_families(text))

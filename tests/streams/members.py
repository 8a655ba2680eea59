"""Clusters of proxies for tests and bench/cluster.py: members started with ``--cluster`` on
one broker and one FalkorDB (``falkordb://``), a write-light transform that records each
message's partition, and a fast producer that spreads messages over the partitions."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.streams.broker import Broker
from tests.streams.conftest import KAFKA_TEST_CONFIG, wait_until
from tests.support import ProxyProcess

# One small node per message: the run's tag, the partition (from the message), the body.
CLUSTER_TRANSFORM = """\
def stream(batch):
    out = []
    for item in batch:
        body = item.decode()
        tag, partition, _seq = body.split(":")
        out.append(("CREATE (:CRec {tag: $t, p: $p, body: $b})",
                    {"t": tag, "p": int(partition), "b": body}))
    return out
"""

_numbers = itertools.count(1)


def cluster_name() -> str:
    return f"c{os.getpid()}_{next(_numbers)}"


def start_member(
    data_dir: Path,
    transforms: Path,
    cluster: str,
    broker: Broker,
    backend: str,
    *extra: str,
) -> ProxyProcess:
    """A member of ``cluster`` writing to ``backend`` (``falkordb://...``)."""
    return ProxyProcess(
        "--data-dir",
        str(data_dir),
        "--backend",
        backend,
        "--cluster",
        cluster,
        "--cluster-bootstrap",
        broker.bootstrap,
        "--transform-allowed-dirs",
        str(transforms),
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        "--transform-timeout",
        "20",
        *extra,
    ).start()


def bodies_for(tag: str, partitions: int, count: int, start: int = 0) -> list[tuple[int, str]]:
    """(partition, body) for messages ``start`` .. ``start + count - 1``, round-robin."""
    return [(i % partitions, f"{tag}:{i % partitions}:{i}") for i in range(start, start + count)]


def produce(broker: Broker, topic: str, messages: Iterable[tuple[int, str]]) -> int:
    """Send fast (large batches) and wait until every message is acknowledged."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1000000,
        }
    )
    sent = 0
    for partition, body in messages:
        producer.produce(topic, body.encode(), partition=partition)
        sent += 1
        if sent % 20000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "messages left undelivered"
    return sent


def run(driver: Any, query: str, **params: Any) -> list[dict[str, Any]]:
    with driver.session() as session:
        return [record.data() for record in session.run(query, params)]


def graph_counts(driver: Any, tag: str) -> tuple[int, int]:
    """(nodes, distinct bodies) of run ``tag``."""
    rows = run(
        driver,
        "MATCH (r:CRec) WHERE r.tag = $t RETURN count(r) AS n, count(DISTINCT r.body) AS d",
        t=tag,
    )
    return int(rows[0]["n"]), int(rows[0]["d"])


def partition_counts(driver: Any, tag: str) -> dict[int, int]:
    rows = run(driver, "MATCH (r:CRec) WHERE r.tag = $t RETURN r.p AS p, count(r) AS n", t=tag)
    return {int(row["p"]): int(row["n"]) for row in rows}


def stream_row(driver: Any, name: str) -> dict[str, Any] | None:
    rows = [row for row in run(driver, "SHOW STREAMS") if row["name"] == name]
    return rows[0] if rows else None


def holders(driver: Any, name: str) -> dict[str, list[int]]:
    row = stream_row(driver, name)
    return dict(row["holders"]) if row else {}


def wait_for(check: Any, timeout: float, message: str, interval: float = 0.1) -> Any:
    return wait_until(check, timeout, interval, message)

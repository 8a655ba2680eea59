"""kill -9 at random moments while 200,000 messages are ingested, five times per run: of the
proxy (its embedded FalkorDB dies with it), separately of the embedded FalkorDB alone, and of
a proxy in front of ArcadeDB. At least once: nothing is lost. Exactly once: every message is
in the graph exactly once.

Each incarnation of the proxy starts behind (batches combine into large writes) and is killed
while it catches up. The random moments come from a seed printed with each run."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import neo4j
import pytest

from tests.arcadedb import ArcadeDB
from tests.streams.conftest import (
    Broker,
    arcade_proxy,
    create_stream,
    run,
    show,
    start_proxy,
    stream_name,
    wait_until,
)
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(300)

TOTAL = 200_000
KILLS = 5


def transform(folder: Path, label: str) -> Path:
    path = folder / f"crash_{label}.py"
    query = f"CREATE (:{label} {{i: $i}})"
    path.write_text(
        f"def stream(batch):\n    return [({query!r}, {{'i': int(m)}}) for m in batch]\n"
    )
    return path


def counts(driver: Any, label: str) -> tuple[int, int]:
    """(nodes, distinct messages) of ``label``."""
    row = run(driver, f"MATCH (n:{label}) RETURN count(n) AS n, count(DISTINCT n.i) AS d")[0]
    return int(row["n"]), int(row["d"])


def ingest_with_kills(
    start: Callable[[], ProxyProcess],
    kill: Callable[[ProxyProcess], None],
    auth: tuple[str, str],
    broker: Broker,
    transforms: Path,
    label: str,
    delivery: str,
) -> tuple[int, int]:
    """Run a stream of TOTAL messages through ``KILLS`` kills; (nodes, distinct) at the end.

    A quarter of the messages wait before the stream starts; after each kill, while the proxy
    is down, another part arrives: every incarnation starts behind, and is killed at a random
    moment after its first write, while it catches up."""
    seed = random.randrange(2**32)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    name = stream_name(f"crash_{label}")
    topic = broker.create_topic(f"t_{name}", partitions=2)
    script = transform(transforms, label)
    values = [str(i) for i in range(TOTAL)]
    first = TOTAL // 4
    part = (TOTAL - first) // KILLS
    broker.produce(topic, values[:first])
    produced = first
    proxy = start()
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=auth) as drv:
            create_stream(drv, name, broker, topic, script, f"DELIVERY {delivery}")
            run(drv, f"START STREAM {name}")
        for number in range(KILLS):
            with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=auth) as drv:
                before = counts(drv, label)[0]
                wait_until(
                    lambda drv=drv, before=before: counts(drv, label)[0] > before,
                    timeout=60,
                    interval=0.05,
                    message=f"progress before kill {number}",
                )
            time.sleep(rng.uniform(0.0, 0.3))
            kill(proxy)
            end = TOTAL if number == KILLS - 1 else produced + part
            broker.produce(topic, values[produced:end])
            produced = end
            proxy = start()
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=auth) as drv:
            wait_until(
                lambda: counts(drv, label)[1] == TOTAL,
                timeout=120,
                interval=0.5,
                message="every message",
            )
            row = show(drv, name)
            assert row["status"] == "running" and row["delivery"] == delivery.lower()
            wait_until(
                lambda: (
                    broker.committed(name, topic, 2)
                    and sum(broker.committed(name, topic, 2).values()) == TOTAL
                ),
                timeout=30,
            )
            time.sleep(0.5)
            result = counts(drv, label)
            run(drv, f"DROP STREAM {name}")
        return result
    finally:
        proxy.stop()


def kill_proxy(proxy: ProxyProcess) -> None:
    proxy.stop(signal.SIGKILL)


def kill_falkordb(proxy: ProxyProcess) -> None:
    """kill -9 the proxy's embedded FalkorDB (the proxy lives on, retrying); then restart the
    proxy, which starts FalkorDB again from its append-only file."""
    os.kill(proxy.embedded_falkordb_pid(), signal.SIGKILL)
    time.sleep(0.3)  # the stream sees the outage
    proxy.stop()


@pytest.mark.parametrize("delivery", ["AT LEAST ONCE", "EXACTLY ONCE"])
def test_kill_9_of_the_proxy(
    broker: Broker, transforms: Path, tmp_path: Path, delivery: str
) -> None:
    label = f"P{os.getpid()}{delivery[0]}"
    nodes, distinct = ingest_with_kills(
        lambda: start_proxy(tmp_path / "data", transforms),
        kill_proxy,
        ("u", "x"),
        broker,
        transforms,
        label,
        delivery,
    )
    assert distinct == TOTAL  # nothing lost
    if delivery == "EXACTLY ONCE":
        assert nodes == TOTAL  # nothing twice
    print(f"{delivery}: {nodes - TOTAL} messages applied twice")


@pytest.mark.parametrize("delivery", ["AT LEAST ONCE", "EXACTLY ONCE"])
def test_kill_9_of_the_embedded_falkordb(
    broker: Broker, transforms: Path, tmp_path: Path, delivery: str
) -> None:
    label = f"F{os.getpid()}{delivery[0]}"
    nodes, distinct = ingest_with_kills(
        lambda: start_proxy(tmp_path / "data", transforms),
        kill_falkordb,
        ("u", "x"),
        broker,
        transforms,
        label,
        delivery,
    )
    assert distinct == TOTAL
    if delivery == "EXACTLY ONCE":
        assert nodes == TOTAL
    print(f"{delivery}: {nodes - TOTAL} messages applied twice")


def test_kill_9_of_a_proxy_in_front_of_arcadedb(
    arcadedb: ArcadeDB, broker: Broker, transforms: Path, tmp_path: Path
) -> None:
    label = f"A{os.getpid()}"
    nodes, distinct = ingest_with_kills(
        lambda: arcade_proxy(arcadedb, tmp_path / "data", transforms),
        kill_proxy,
        arcadedb.auth,
        broker,
        transforms,
        label,
        "EXACTLY ONCE",
    )
    assert (nodes, distinct) == (TOTAL, TOTAL)

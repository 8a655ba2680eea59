"""Stream definitions and states survive a restart of the proxy, ``kill -9`` included: running
streams resume from their committed offsets and no message is lost; two proxies running the
same stream share its partitions."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import neo4j
import pytest

from tests.streams.conftest import (
    Broker,
    create_stream,
    run,
    show,
    start_proxy,
    stream_name,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def bodies(driver: Any) -> list[str]:
    return [row["b"] for row in run(driver, "MATCH (r:Rec) RETURN r.body AS b")]


def test_kill_9_mid_stream_loses_nothing(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    """A kill -9 while messages keep coming: nothing is lost, and the only messages applied
    twice are ones whose offsets were not committed yet (written, commit still under way)."""
    total = 3000
    name = stream_name("crash")
    bodies_in_order = [f"{name}:{i}" for i in range(total)]
    expected = set(bodies_in_order)
    broker.produce(topic, bodies_in_order[:300])
    data = tmp_path / "data"
    proxy = start_proxy(data, transforms)
    late = threading.Thread(target=produce_slowly, args=(broker, topic, bodies_in_order[300:]))
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("carol", "x")) as drv:
            # Small batches: many commits, so the kill lands between some of them.
            create_stream(drv, name, broker, topic, transforms / "create.py", "BATCH_SIZE 5")
            stopped = stream_name("stays_stopped")
            create_stream(drv, stopped, broker, topic, transforms / "create.py")
            run(drv, f"START STREAM {name}")
            wait_until(
                lambda: len(bodies(drv)) > 200, timeout=30, interval=0.02, message="progress"
            )
            late.start()  # the rest arrives while the stream runs, and when it is killed
            time.sleep(0.3)
        proxy.stop(signal.SIGKILL)
        before = broker.committed(name, topic)[0]
        assert 0 < before < total, before
    finally:
        late.join()
        proxy.stop()

    proxy = start_proxy(data, transforms)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("carol", "x")) as drv:
            applied = len(bodies(drv))
            assert applied >= before  # every committed batch is in the graph
            row = show(drv, name)
            assert row["status"] == "running" and row["owner"] == "carol"
            assert show(drv, stopped)["status"] == "stopped"
            wait_until(lambda: set(bodies(drv)) >= expected, timeout=60, message="every message")
            seen = bodies(drv)
            assert set(seen) == expected  # none lost ...
            # ... and applied twice only past the committed offset (a body's offset is its
            # number: one partition, produced in order), each at most twice.
            counts = Counter(seen)
            twice = sorted(int(body.rsplit(":", 1)[1]) for body, n in counts.items() if n > 1)
            assert max(counts.values()) <= 2
            assert all(offset >= before for offset in twice), (before, twice[:5])
            wait_until(lambda: broker.committed(name, topic) == {0: total})
            # A graceful restart keeps it running as well.
        proxy.stop()
        proxy = start_proxy(data, transforms)
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("carol", "x")) as drv:
            assert show(drv, name)["status"] == "running"
            broker.produce(topic, [f"{name}:after"])
            wait_until(lambda: f"{name}:after" in bodies(drv), message="the later message")
            run(drv, f"STOP STREAM {name}")
        proxy.stop()
        proxy = start_proxy(data, transforms)
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("carol", "x")) as drv:
            row = show(drv, name)
            assert row["status"] == "stopped"
            # Counters are saved every second: the kill may have cost the last second's; the
            # messages applied twice were counted twice.
            assert 0 < row["messages_processed"] <= total + len(twice) + 1
    finally:
        proxy.stop()


def produce_slowly(broker: Broker, topic: str, values: list[str]) -> None:
    """About 2,000 messages a second, in small record batches."""
    for start in range(0, len(values), 100):
        broker.produce(topic, values[start : start + 100])
        time.sleep(0.05)


def test_limit_and_error_states_survive_a_restart(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    name = stream_name("failing")
    broker.produce(topic, ["boom"])
    data = tmp_path / "data"
    proxy = start_proxy(data, transforms)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("dave", "x")) as drv:
            create_stream(drv, name, broker, topic, transforms / "raises.py")
            run(drv, f"START STREAM {name}")
            wait_until(lambda: show(drv, name)["status"] == "error")
        proxy.stop(signal.SIGKILL)
        proxy.stop()
        proxy = start_proxy(data, transforms)
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("dave", "x")) as drv:
            row = show(drv, name)
            assert row["status"] == "error"  # not resumed: it would only fail again
            assert "cannot digest boom" in row["last_error"]
    finally:
        proxy.stop()


def test_two_proxies_share_a_streams_partitions(
    broker: Broker, transforms: Path, tmp_path: Path
) -> None:
    """A stream of the same name on two proxies is one consumer group: the partitions are
    split between them, and together they apply every message."""
    name = stream_name("shared")
    topic = broker.create_topic(f"shared_{name}", partitions=2)
    first = start_proxy(tmp_path / "one", transforms)
    second = start_proxy(tmp_path / "two", transforms)
    drivers = [neo4j.GraphDatabase.driver(p.bolt_uri, auth=("erin", "x")) for p in (first, second)]
    try:
        for drv in drivers:
            create_stream(drv, name, broker, topic, transforms / "create.py")
        run(drivers[0], f"START STREAM {name}")
        broker.produce(topic, [f"{name}:warm"], partition=0)
        wait_until(lambda: bodies(drivers[0]) == [f"{name}:warm"], message="the first member")
        run(drivers[1], f"START STREAM {name}")
        # Until the rebalance gives the second member a partition, the first reads both.
        expected = {f"{name}:warm"}
        for round_ in range(100):
            batch = [f"{name}:{round_}:{p}" for p in range(2)]
            for p, body in enumerate(batch):
                broker.produce(topic, [body], partition=p)
            expected.update(batch)
            if bodies(drivers[1]):
                break
            time.sleep(0.2)
        assert bodies(drivers[1]), "the second proxy never got a partition"
        more = {f"{name}:after:{i}" for i in range(40)}
        broker.produce(topic, sorted(more))  # spread over both partitions
        expected |= more
        wait_until(
            lambda: set(bodies(drivers[0])) | set(bodies(drivers[1])) >= expected,
            timeout=30,
            message="every message on one proxy or the other",
        )
        counts = [show(drv, name)["messages_processed"] for drv in drivers]
        assert all(c > 0 for c in counts), counts
    finally:
        for drv in drivers:
            drv.close()
        first.stop()
        second.stop()

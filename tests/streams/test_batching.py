"""Batches close at BATCH_SIZE or BATCH_INTERVAL, whichever comes first; LIMIT n BATCHES;
TEST STREAM ... LIMIT; offsets committed per batch; lag.

``create.py`` writes ``(:Rec {body, n})`` per message, ``n`` being the size of the batch the
message was transformed in, so the graph shows how messages were batched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.streams.conftest import Broker, create_stream, run, show, stream_name, wait_until

pytestmark = pytest.mark.timeout(60)


def batch_sizes(driver: Any, prefix: str) -> dict[str, int]:
    rows = run(
        driver,
        "MATCH (r:Rec) WHERE r.body STARTS WITH $p RETURN r.body AS body, r.n AS n",
        p=prefix,
    )
    return {row["body"]: row["n"] for row in rows}


def test_batch_size_closes_batches_first(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    broker.produce(topic, [f"{name}:{i}" for i in range(9)])
    create_stream(
        driver, name, broker, topic, transforms / "create.py", "BATCH_INTERVAL 30000 BATCH_SIZE 3"
    )
    run(driver, f"START STREAM {name}")
    wait_until(lambda: len(batch_sizes(driver, name)) == 9, message="9 messages")
    # Three full batches: the size closed them (the 30 s interval would have made one of 9).
    assert set(batch_sizes(driver, name).values()) == {3}
    wait_until(lambda: broker.committed(name, topic) == {0: 9}, timeout=5)
    run(driver, f"DROP STREAM {name}")


def test_batch_interval_closes_batches_first(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    create_stream(
        driver, name, broker, topic, transforms / "create.py", "BATCH_INTERVAL 400 BATCH_SIZE 1000"
    )
    run(driver, f"START STREAM {name}")
    broker.produce(topic, [f"{name}:a{i}" for i in range(5)])
    wait_until(lambda: len(batch_sizes(driver, name)) == 5, message="5 messages")
    # One batch of 5: closed by the interval, far below the size.
    assert set(batch_sizes(driver, name).values()) == {5}
    broker.produce(topic, [f"{name}:b0"])
    wait_until(lambda: len(batch_sizes(driver, name)) == 6, message="6 messages")
    assert batch_sizes(driver, name)[f"{name}:b0"] == 1
    row = wait_until(lambda: (r := show(driver, name))["messages_processed"] == 6 and r)
    assert row["lag"] == 0
    run(driver, f"DROP STREAM {name}")


def test_limit_batches_then_stops_by_itself(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    broker.produce(topic, [f"{name}:{i}" for i in range(10)])
    create_stream(driver, name, broker, topic, transforms / "create.py", "BATCH_SIZE 2")
    run(driver, f"START STREAM {name} LIMIT 2 BATCHES")
    # The status and the count are saved by the stream's task as it ends: wait for both.
    row = wait_until(
        lambda: (
            (r := show(driver, name))["status"] == "stopped" and r["messages_processed"] == 4 and r
        ),
        message="the stream to stop by itself after 4 messages",
    )
    assert row["messages_processed"] == 4
    assert len(batch_sizes(driver, name)) == 4
    assert broker.committed(name, topic) == {0: 4}  # stopped: the last commit is done
    # Nothing more is consumed while it is stopped; START continues where it stopped.
    time.sleep(0.5)
    assert len(batch_sizes(driver, name)) == 4
    run(driver, f"START STREAM {name}")
    wait_until(lambda: len(batch_sizes(driver, name)) == 10, message="the rest")
    assert broker.committed(name, topic) == {0: 10} or wait_until(
        lambda: broker.committed(name, topic) == {0: 10}
    )
    run(driver, f"DROP STREAM {name}")


def test_test_stream_limit_batches(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    broker.produce(topic, [f"m{i}" for i in range(7)])
    create_stream(driver, name, broker, topic, transforms / "create.py", "BATCH_SIZE 2")
    rows = run(driver, f"TEST STREAM {name}")
    assert [(r["query"], r["params"]) for r in rows] == [
        ("CREATE (:Rec {body: $body, n: $n})", {"body": "m0", "n": 2}),
        ("CREATE (:Rec {body: $body, n: $n})", {"body": "m1", "n": 2}),
    ]
    rows = run(driver, f"TEST STREAM {name} LIMIT 3 BATCHES")
    assert [r["params"]["body"] for r in rows] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    # More batches than there are messages: what there is, once nothing more arrives.
    rows = run(driver, f"TEST STREAM {name} LIMIT 100 BATCHES")
    assert [r["params"]["n"] for r in rows] == [2, 2, 2, 2, 2, 2, 1]
    assert len(batch_sizes(driver, "m")) == 0  # TEST writes nothing
    assert broker.committed(name, topic) == {0: -1001}  # and commits nothing
    run(driver, f"DROP STREAM {name}")


def test_test_stream_reads_from_the_committed_offsets(
    driver: Any, broker: Broker, topic: str, transforms: Path
) -> None:
    name = stream_name()
    broker.produce(topic, [f"{name}:{i}" for i in range(3)])
    create_stream(driver, name, broker, topic, transforms / "create.py")
    run(driver, f"START STREAM {name}")
    wait_until(lambda: broker.committed(name, topic) == {0: 3})
    run(driver, f"STOP STREAM {name}")
    broker.produce(topic, [f"{name}:late"])
    rows = run(driver, f"TEST STREAM {name}")
    assert [r["params"]["body"] for r in rows] == [f"{name}:late"]
    run(driver, f"DROP STREAM {name}")


def test_partitions_are_all_read_and_kept_in_order(
    driver: Any, broker: Broker, transforms: Path
) -> None:
    name = stream_name()
    topic = broker.create_topic(f"parts_{name}", partitions=3)
    for p in range(3):
        broker.produce(topic, [f"{name}:{p}:{i}" for i in range(20)], partition=p)
    create_stream(driver, name, broker, topic, transforms / "create.py", "BATCH_SIZE 7")
    run(driver, f"START STREAM {name}")
    wait_until(lambda: len(batch_sizes(driver, name)) == 60, message="60 messages")
    assert broker.committed(name, topic, 3) == {0: 20, 1: 20, 2: 20} or wait_until(
        lambda: broker.committed(name, topic, 3) == {0: 20, 1: 20, 2: 20}
    )
    # Per partition, the nodes were created in offset order (FalkorDB ids grow).
    rows = run(
        driver,
        "MATCH (r:Rec) WHERE r.body STARTS WITH $p RETURN r.body AS b ORDER BY id(r)",
        p=name,
    )
    for p in range(3):
        seen = [int(row["b"].split(":")[2]) for row in rows if row["b"].split(":")[1] == str(p)]
        assert seen == list(range(20))
    run(driver, f"DROP STREAM {name}")


def test_lag(driver: Any, broker: Broker, topic: str, transforms: Path) -> None:
    """Lag = high watermark - committed offset. Tansu reports the high watermark of a
    partition as the base offset of its last record batch + 1, so messages are produced one
    record batch each here."""
    name = stream_name()
    broker.produce(topic, [f"{name}:{i}" for i in range(5)], one_by_one=True)
    create_stream(driver, name, broker, topic, transforms / "create.py")
    assert show(driver, name)["lag"] == 5
    run(driver, f"START STREAM {name} LIMIT 1 BATCHES")
    wait_until(lambda: show(driver, name)["status"] == "stopped")
    assert show(driver, name)["lag"] == 0
    broker.produce(topic, [f"{name}:more"], one_by_one=True)
    assert show(driver, name)["lag"] == 1
    run(driver, f"DROP STREAM {name}")

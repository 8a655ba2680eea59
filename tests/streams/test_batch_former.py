"""The batch rule (batching.BatchFormer) with a fake clock: a batch closes at BATCH_SIZE
messages or BATCH_INTERVAL after its first message, whichever comes first, however the
messages arrive; and the outage bookkeeping of retry.py."""

from __future__ import annotations

import logging

import pytest

from proxy.streams.batching import BatchFormer
from proxy.streams.retry import Backoff, Health, Outage


def test_size_closes_batches_however_the_messages_arrive() -> None:
    former = BatchFormer(3, 1.0)
    assert former.add(list(range(8)), arrived=0.0) == [[0, 1, 2], [3, 4, 5]]
    assert former.pending == 2 and former.deadline == 1.0
    assert former.add([8], arrived=0.5) == [[6, 7, 8]]
    assert former.deadline is None and former.due(10.0) is None


def test_the_interval_runs_from_the_first_message_of_the_batch() -> None:
    former = BatchFormer(10, 0.1)
    assert former.add(["a"], arrived=5.0) == []
    assert former.add(["b"], arrived=5.09) == []  # does not move the deadline
    assert former.due(5.099) is None
    assert former.due(5.1) == ["a", "b"]
    assert former.due(6.0) is None  # an interval without messages makes no batch
    assert former.add(["c"], arrived=7.0) == []
    assert former.deadline == pytest.approx(7.1)


def test_behind_or_caught_up_the_batches_are_the_same() -> None:
    """The same messages in one chunk, or one by one within the interval: same batches."""
    messages = list(range(25))
    at_once = BatchFormer(7, 1.0).add(messages, arrived=0.0)
    former = BatchFormer(7, 1.0)
    one_by_one = []
    for number, message in enumerate(messages):
        one_by_one += former.add([message], arrived=number * 0.001)
    assert at_once == one_by_one == [messages[0:7], messages[7:14], messages[14:21]]


def test_flush_and_clear() -> None:
    former = BatchFormer(5, 60.0)
    former.add([1, 2], arrived=0.0)
    assert former.flush() == [1, 2] and former.flush() is None
    former.add([3], arrived=0.0)
    assert former.clear() == 1 and former.pending == 0 and former.deadline is None


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        BatchFormer(0, 1.0)
    with pytest.raises(ValueError):
        BatchFormer(1, 0)


def test_an_outage_is_logged_when_it_starts_every_minute_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="boltstream.streams")
    now = [0.0]
    health = Health()
    outage = Outage("s", "reading from Kafka", health, Backoff(0.2, 10.0), clock=lambda: now[0])
    delays = []
    for _ in range(40):  # 40 attempts over two and a half minutes
        delays.append(outage.failed("broker down"))
        now[0] += 4.0
    assert delays[:4] == [0.2, 0.4, 0.8, 1.6] and max(delays) == 10.0
    assert health.last_error == (
        "reading from Kafka: broker down (transient; retrying, attempt 40)"
    )
    outage.recovered()
    assert health.last_error == (
        "reading from Kafka: broker down (transient; recovered after 40 retries)"
    )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # down, still down twice (each minute), back
    assert "failed, retrying" in lines[0] and "still failing after" in lines[1]
    assert "recovered after 40 retries in 160.0 s" in lines[3]
    outage.recovered()  # nothing going on: nothing logged
    assert len(caplog.records) == 4

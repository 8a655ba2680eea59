"""A consumer never commits offsets of partitions a rebalance took from it (their new holder
commits them; an offset of the old holder could move the group's position backwards)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from proxy.streams.kafka import StreamConsumer
from proxy.streams.retry import Backoff, Health


class FakeKafka:
    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


def consumer(answered: list[Any]) -> tuple[StreamConsumer, FakeKafka]:
    source = StreamConsumer(
        "s",
        {},
        "t",
        size=10,
        interval=0.1,
        health=Health(),
        backoff=Backoff(),
        on_committed=answered.extend,
    )
    kafka = FakeKafka()
    source._consumer = kafka
    return source, kafka


def test_offsets_of_revoked_partitions_are_not_committed() -> None:
    answered: list[Any] = []
    source, kafka = consumer(answered)
    source._assigned = [SimpleNamespace(topic="t", partition=0)]
    source.commit({("t", 0): 5, ("t", 1): 7}, "first")
    source._serve_commits()
    assert kafka.commits == [{("t", 0): 5}]
    # Only a revoked partition: nothing reaches the broker, the token is answered at once.
    source._inflight, source._inflight_offsets = None, {}
    source.commit({("t", 1): 9}, "second")
    source._serve_commits()
    assert kafka.commits == [{("t", 0): 5}]
    assert answered == ["second"]

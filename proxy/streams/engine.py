"""The stream engine: runs Kafka streams and answers the stream clauses.

Each running stream is one ``_Runner``: an asyncio task that loops

    collect a batch -> transform it (worker process) -> write it (GraphWriter)
        -> commit its offsets (synchronously, per partition: the next offset to read)

A batch closes when it holds BATCH_SIZE messages or when BATCH_INTERVAL has passed since its
first message, whichever comes first; empty intervals are not batches. Offsets are committed
only after the writer returned, so a crash anywhere before that replays the batch
(at-least-once), and the messages of a partition reach the writer in their order. While a
batch is written, the next one is collected and transformed (writes and commits themselves
stay strictly one after the other).

Kafka calls block, so every call on a stream's consumer runs on that stream's own thread
(one ``ThreadPoolExecutor`` worker): the event loop never waits on librdkafka, and the
consumer is only ever touched from one thread. Consuming is done in slices of at most
``_SLICE`` seconds, so a STOP is noticed quickly.

Failures:

* transient (the backend is unavailable, a transient database error; a broker error while
  consuming or committing): retried with exponential backoff, the stream stays ``running``
  and ``last_error`` says what is being retried;
* permanent (the transform raised, hung, returned bad values or cannot be loaded; the backend
  rejected a query): with the STOP policy (the default) the stream stops with status ``error``
  and the reason in ``last_error``; the failed batch is not committed, so the next START (or a
  restart) reads it again. Other policies: below.

Error policy (``ON ERROR`` of CREATE STREAM), for a message that fails: its transform rejected
it (a dead-letter item, ``outcomes.py``) or raised on it, or the backend rejected its queries.
``STOP`` (the default, except for the built-ins below) stops the stream; ``SKIP`` logs and
counts it; ``DEAD LETTER 'topic'`` produces it to that topic (original key and value, headers
saying where it came from and why). With SKIP or DEAD LETTER the rest of the batch is still
applied: a batch that fails is taken apart (``executors.py``; a user transform is then run
on one message at a time) to find the failing messages. Dead letters are acknowledged by the
broker before the batch's offsets are committed. Transient failures are never a message's
fault: they are retried, never dead-lettered or skipped.

Modes: a stream writes batches (user transforms, ``builtin:depc``), replicates commands one by
one (``builtin:command``: on a failure with STOP, the commands before it are committed, so a
restart begins at the failing one), or answers read requests on Kafka (``builtin:request``:
responses are acknowledged before the offsets are committed). See ``builtin/__init__.py``.

State: the catalog (SQLite in the data dir) holds definitions and statuses. ``start()``
resumes every stream whose status is ``running`` (so also after ``kill -9``); ``stop()``
stops the runners without changing their recorded status, so they resume at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from proxy.backends.base import QueryResult
from proxy.streams import builtin
from proxy.streams.catalog import (
    Catalog,
    CatalogError,
    PolicyKind,
    StreamExists,
    StreamRecord,
)
from proxy.streams.executors import Applier, StopAt, dead_letter
from proxy.streams.names import (
    UnsafeValue,
    check_client_config,
    check_stream_name,
    check_topic,
    shown,
)
from proxy.streams.outcomes import (
    Outcome,
    OutcomeError,
    Query,
    Rejected,
    Split,
    per_message,
    shorten,
    single,
    split,
)
from proxy.streams.producer import DELIVERY_TIMEOUT_MS, Failed, Record, StreamProducer
from proxy.streams.transform import (
    FailureKind,
    TransformError,
    TransformFailed,
    TransformPolicy,
    TransformRunner,
    TransformSource,
    check_transform,
    fetch_transform,
)
from proxy.streams.writers import GraphWriter, PermanentWriteError, TransientWriteError

log = logging.getLogger("boltstream.streams")
T = TypeVar("T")

DEFAULT_BATCH_INTERVAL_MS = 100
DEFAULT_BATCH_SIZE = 10
_SLICE = 0.2  # longest blocking consume call (seconds): how soon a STOP is seen
_AHEAD_WAIT = 0.02  # how long the collect ahead (during a write) waits for a first message

# Settings the engine always sets on a stream's consumer: not overridable.
_FORCED = ("bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store")
# Consumer defaults (overridable with kafka_config): read a new group's topic from the start;
# session.timeout.ms 6000 is Kafka's smallest accepted value and makes a group form in ~3 s.
_CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "max.poll.interval.ms": 300000,
    "enable.partition.eof": False,
}
# Consumer-only settings: not given to the admin client (librdkafka would warn about each).
_CONSUMER_ONLY = (
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.",
    "auto.offset.reset",
    "enable.auto.",
    "auto.commit.",
    "partition.assignment.",
    "fetch.",
    "queued.",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "consume.callback.max.messages",
)

ErrorKind = Literal["not_found", "exists", "invalid", "state", "external", "transform", "internal"]
OnError = Literal["stop", "skip", "dead letter"]  # as the clause says it (grammar.OnError)
_POLICY_OF: dict[str, PolicyKind] = {"stop": "stop", "skip": "skip", "dead letter": "dead_letter"}
_SHOWN_POLICY = {"stop": "stop", "skip": "skip", "dead_letter": "dead letter"}


class StreamError(Exception):
    """A stream clause that cannot be done; ``kind`` says which sort of failure."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class StreamStatus:
    """One row of SHOW STREAMS."""

    name: str
    uri: str
    topic: str
    transform: str
    status: str
    batch_interval: int
    batch_size: int
    consumer_group: str
    owner: str | None
    messages_processed: int
    lag: int | None
    last_error: str | None
    on_error: str = "stop"  # stop, skip or dead letter
    dead_letter_topic: str | None = None
    dead_lettered: int = 0
    skipped: int = 0


class _KafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines, at debug level: what matters reaches SHOW STREAMS."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args)


_kafka_log = _KafkaLog(logging.getLogger("boltstream.kafka"), {})


class _Permanent(Exception):
    """Stops the stream with status ``error``."""


class _Interrupted(Exception):
    """A STOP came while a batch waited to retry: nothing of it is committed."""


@dataclass(frozen=True)
class _Batch:
    """A collected, transformed batch: a user transform's batch result (``split``), or the
    outcome of each message (built-ins; user transforms taken apart after a failure)."""

    messages: list[Any]
    split: Split | None = None
    outcomes: list[Outcome] | None = None


def _position(message: Any) -> str:
    return f"topic {message.topic()!r} partition {message.partition()} offset {message.offset()}"


def _offsets_of(messages: list[Any]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset to read, after ``messages``."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic(), message.partition())
        offset = message.offset() + 1
        if offset > offsets.get(key, -1):
            offsets[key] = offset
    return offsets


class _Consumer:
    """A confluent-kafka consumer used from one private thread only."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"stream-{name}"[:15])
        self.consumer: Any = None
        self.stop_flag = threading.Event()
        self.broker_error: str | None = None  # last error librdkafka reported (any thread)
        self.fatal: str | None = None

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn)

    def _on_error(self, error: Any) -> None:
        self.broker_error = error.str()
        if error.fatal():
            self.fatal = error.str()

    def open(self, *, subscribe: str | None = None) -> None:
        from confluent_kafka import Consumer

        check_client_config(self.config)  # raises rather than letting librdkafka abort
        if subscribe is not None:
            check_topic(subscribe)
        config = dict(self.config)
        config["error_cb"] = self._on_error
        config["logger"] = _kafka_log
        self.consumer = Consumer(config)
        if subscribe is not None:
            self.consumer.subscribe([subscribe])

    def collect(
        self, size: int, interval: float, *, wait_first: float = _SLICE
    ) -> tuple[list[Any], str | None]:
        """Up to ``size`` messages: wait at most ``wait_first`` for the first one, then until
        ``interval`` after it. Returns the messages and a consume error, if any."""
        messages: list[Any] = []
        error: str | None = None
        started = time.monotonic()
        deadline: float | None = None
        while not self.stop_flag.is_set() and len(messages) < size:
            now = time.monotonic()
            if deadline is None:
                timeout = min(_SLICE, started + wait_first - now)
            else:
                timeout = min(_SLICE, deadline - now)
            if timeout <= 0:
                break
            for message in self.consumer.consume(
                num_messages=size - len(messages), timeout=timeout
            ):
                problem = message.error()
                if problem is None:
                    messages.append(message)
                elif problem.fatal():
                    self.fatal = problem.str()
                elif problem.code() != -147:  # _MAX_POLL_EXCEEDED: librdkafka rejoins itself
                    error = problem.str()
            if messages and deadline is None:
                deadline = time.monotonic() + interval
        return messages, error

    def reachable(self) -> bool:
        """Whether the broker answers a metadata request (for all topics: creates none)."""
        try:
            self.consumer.list_topics(timeout=0.5)
        except Exception:
            return False
        return self.broker_error is None

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit synchronously. (On the consumer's thread, like every call: a synchronous
        commit from another thread waits for a consume call in progress anyway.)"""
        from confluent_kafka import TopicPartition

        parts = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ]
        self.consumer.commit(offsets=parts, asynchronous=False)

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()  # leaves the group; commits nothing (auto commit is off)

    async def shutdown(self) -> None:
        self.stop_flag.set()
        try:
            await self.call(self.close)
        finally:
            self.thread.shutdown(wait=False)


class _Runner:
    """One running stream."""

    def __init__(self, engine: StreamEngine, record: StreamRecord, limit: int | None) -> None:
        self.engine = engine
        self.record = record
        self.name = record.name
        self.limit = limit
        self.phase = "starting"
        self.stopping = False
        self.last_error: str | None = None
        self.retrying: tuple[str, int] | None = None  # (what, attempt) while retrying
        self.pending_messages = 0  # processed, not yet added to the catalog's counters
        self.pending_batches = 0
        self.pending_dead = 0
        self.pending_skipped = 0
        self.messages_total = record.messages_processed  # what SHOW STREAMS says
        self.dead_total = record.messages_dead_lettered
        self.skipped_total = record.messages_skipped
        self.consumer: _Consumer | None = None
        self.transform: TransformRunner | None = None
        self.producer: StreamProducer | None = None
        self.builtin = builtin.lookup(record.transform_uri)
        self.mode: builtin.Mode = self.builtin.mode if self.builtin else "write"
        self.policy: PolicyKind = record.error_policy
        self._interval = record.batch_interval_ms / 1000.0
        self._broker_attempt = 0
        self.task: asyncio.Task[str] = asyncio.get_running_loop().create_task(
            self._main(), name=f"stream {record.name}"
        )

    # -- state for SHOW STREAMS -------------------------------------------------------------

    def _note_retry(self, what: str, reason: str, attempt: int) -> None:
        if attempt == 1 or attempt % 10 == 0:
            log.warning(
                "stream %s: %s failed, retrying (attempt %d): %s", self.name, what, attempt, reason
            )
        self.retrying = (what, attempt)
        self.last_error = f"{what}: {reason} (transient; retrying, attempt {attempt})"

    def _note_recovered(self) -> None:
        if self.retrying is not None:
            what, attempt = self.retrying
            log.info("stream %s: %s succeeded after %d retries", self.name, what, attempt)
            if self.last_error is not None:
                self.last_error = self.last_error.replace(
                    f"(transient; retrying, attempt {attempt})",
                    f"(transient; recovered after {attempt} retries)",
                )
            self.retrying = None

    # -- the loop ---------------------------------------------------------------------------

    async def _main(self) -> str:
        """Run until stopped (``stopped``), LIMIT reached (``finished``), or a permanent
        failure (``error: reason``)."""
        try:
            return await self._loop()
        except _Permanent as exc:
            log.error("stream %s stopped on an error: %s", self.name, exc)
            return f"error: {exc}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so, keep the proxy and other streams alive
            log.exception("stream %s failed", self.name)
            return f"error: internal error: {type(exc).__name__}: {exc}"
        finally:
            await self._release()

    async def _release(self) -> None:
        consumer, self.consumer = self.consumer, None
        transform, self.transform = self.transform, None
        producer, self.producer = self.producer, None
        if consumer is not None:
            await asyncio.shield(consumer.shutdown())
        if transform is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(transform.stop())
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(producer.close())

    async def _loop(self) -> str:
        record = self.record
        engine = self.engine
        if builtin.is_builtin(record.transform_uri) and self.builtin is None:
            raise _Permanent(
                f"{record.transform_uri} is not a built-in transform of this "
                f"boltstream (it has {builtin.names()})"
            )
        self.transform = TransformRunner(
            TransformSource(record.transform_uri, record.transform_code, record.transform_sha256),
            name=record.name,
            batch_timeout=engine.transform_timeout,
            memory_limit_mb=engine.transform_memory_mb,
        )
        try:
            await self.transform.start()
        except TransformError as exc:
            raise _Permanent(f"the transform could not be loaded: {exc}") from None
        self.consumer = _Consumer(record.name, engine.consumer_config(record))
        try:
            await self.consumer.call(lambda: self._open())
        except Exception as exc:
            raise _Permanent(f"cannot create the Kafka consumer: {exc}") from None
        self._interval = record.batch_interval_ms / 1000.0
        # The next batch is collected and transformed while the current one is written:
        # the consumer thread, the transform's worker process and the backend work at once.
        # Writes and commits stay strictly in order. The commit runs on the consumer thread
        # after that collect, so the collect ahead waits only _AHEAD_WAIT for a first message.
        ahead: asyncio.Task[_Batch | None] | None = None
        try:
            while not self.stopping:
                if ahead is None:
                    ahead = asyncio.get_running_loop().create_task(self._next_batch())
                self.phase = "collect"
                batch = await ahead
                ahead = None
                if batch is None:
                    continue
                if not self.stopping and (self.limit is None or self.limit > 1):
                    ahead = asyncio.get_running_loop().create_task(self._next_batch(_AHEAD_WAIT))
                if not await self._apply(batch):
                    break
                if self.limit is not None:
                    self.limit -= 1
                    await engine.catalog.update(self.name, limit_batches=self.limit)
                    if self.limit <= 0:
                        return "finished"
            return "stopped"
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead

    def _open(self) -> None:
        assert self.consumer is not None
        self.consumer.open(subscribe=self.record.topic)

    async def _next_batch(self, wait_first: float = _SLICE) -> _Batch | None:
        """Collect one batch and transform it; None when no message came in ``wait_first``
        seconds."""
        consumer, transform = self.consumer, self.transform
        assert consumer is not None and transform is not None
        messages, error = await consumer.call(
            functools.partial(
                consumer.collect, self.record.batch_size, self._interval, wait_first=wait_first
            )
        )
        if consumer.fatal:
            raise _Permanent(f"Kafka consumer failed: {consumer.fatal}")
        # Errors librdkafka reported while nothing came in: the broker is unreachable (it
        # reconnects by itself). Messages coming in again mean it is back.
        problem = error or consumer.broker_error
        consumer.broker_error = None
        if not messages:
            if problem:
                self._broker_attempt += 1
                self._note_retry("reading from Kafka", problem, self._broker_attempt)
            elif self._broker_attempt and await consumer.call(consumer.reachable):
                # Quiet, and the broker answers again: recovered (no message to prove it).
                self._broker_attempt = 0
                self._note_recovered()
            return None
        if self._broker_attempt:
            self._broker_attempt = 0
            self._note_recovered()
        return await self._transform(messages)

    async def _transform(self, messages: list[Any]) -> _Batch:
        transform = self.transform
        assert transform is not None
        values = [m.value() or b"" for m in messages]
        stop = self.policy == "stop"
        try:
            pairs = await transform.run(values)
        except TransformFailed as exc:
            if exc.kind is FailureKind.STOPPED or (stop and self.builtin is None):
                raise _Permanent(f"the transform failed: {exc}") from None
            # Which message made it fail? (A built-in fails on a message only by crashing or
            # timing out on it.) Each message alone tells.
            return _Batch(messages, outcomes=await self._isolate(values))
        except TransformError as exc:  # a restarted worker did not load
            raise _Permanent(f"the transform failed: {exc}") from None
        if self.builtin is not None:
            try:
                return _Batch(messages, outcomes=per_message(pairs, len(values)))
            except OutcomeError as exc:
                raise _Permanent(f"the transform broke the built-in contract: {exc}") from None
        try:
            return _Batch(messages, split=split(pairs, len(values)))
        except OutcomeError as exc:
            if stop:
                raise _Permanent(f"the transform failed: {exc}") from None
            return _Batch(messages, outcomes=await self._isolate(values))

    async def _isolate(self, values: list[bytes]) -> list[Outcome]:
        """The outcome of each message, from the transform run on that message alone."""
        transform = self.transform
        assert transform is not None
        outcomes: list[Outcome] = []
        for value in values:
            try:
                pairs = await transform.run([value])
            except TransformFailed as exc:
                if exc.kind is FailureKind.STOPPED:
                    raise _Permanent(f"the transform failed: {exc}") from None
                outcomes.append(Rejected(shorten(f"the transform failed: {exc}")))
                continue
            except TransformError as exc:
                raise _Permanent(f"the transform failed: {exc}") from None
            try:
                outcomes.append(per_message(pairs, 1)[0] if self.builtin else single(pairs))
            except OutcomeError as exc:
                outcomes.append(Rejected(shorten(f"the transform failed: {exc}")))
        return outcomes

    # -- applying a batch -------------------------------------------------------------------

    async def _apply(self, batch: _Batch) -> bool:
        """Apply one batch (by the stream's mode and error policy), produce its dead letters
        and responses, commit its offsets. False when a STOP interrupted a retry (nothing
        committed)."""
        self.phase = "write"
        messages = batch.messages
        applier = Applier(
            self,
            stop_on_failure=self.policy == "stop",
            stream=self.name,
            max_response_bytes=self.engine.max_message_bytes,
        )
        stopped: StopAt | None = None
        try:
            try:
                await self._run_batch(batch, applier)
            except StopAt as exc:
                stopped = exc
            done = stopped.index if stopped else len(messages)
            # Responses of the requests before the end, then the dead letters: acknowledged
            # by the broker before any offset is committed.
            responses = [(i, r) for i, r in applier.responses if i < done]
            for index, refusal in await self._deliver([r for _, r in responses], "responses"):
                response_index = responses[index][0]
                try:
                    applier.fail(
                        response_index,
                        f"the response could not be produced to "
                        f"topic {responses[index][1].topic!r}: {refusal.reason}",
                    )
                except StopAt as exc:
                    if stopped is None or exc.index < stopped.index:
                        stopped = exc
            done = stopped.index if stopped else len(messages)
            failures = [f for f in applier.failures if f.index < done]
            dead = 0
            if self.policy == "dead_letter" and failures:
                topic = self.record.dead_letter_topic or ""
                records = [
                    dead_letter(self.name, topic, messages[f.index], f.reason) for f in failures
                ]
                refused = await self._deliver(records, "dead letters")
                if refused:
                    index, refusal = refused[0]
                    raise _Permanent(
                        f"the dead-letter topic {topic!r} refused the record of "
                        f"{_position(messages[failures[index].index])}: "
                        f"{refusal.reason}"
                    )
                dead = len(records)
            for failure in failures:
                message = messages[failure.index]
                if self.policy == "dead_letter":
                    log.info(
                        "stream %s: %s dead-lettered: %s",
                        self.name,
                        _position(message),
                        failure.reason,
                    )
                else:
                    log.warning(
                        "stream %s: %s skipped: %s", self.name, _position(message), failure.reason
                    )
        except _Interrupted:
            return False
        self.phase = "commit"
        if done:
            await self._commit(_offsets_of(messages[:done]))
        self.phase = "collect"
        skipped = len(failures) - dead
        self.pending_messages += done
        self.pending_batches += 1
        self.pending_dead += dead
        self.pending_skipped += skipped
        self.messages_total += done
        self.dead_total += dead
        self.skipped_total += skipped
        if stopped is not None:
            raise _Permanent(f"{_position(messages[stopped.index])}: {stopped.reason}")
        return True

    async def _run_batch(self, batch: _Batch, applier: Applier) -> None:
        if batch.outcomes is None:
            assert batch.split is not None
            rejected = batch.split.rejected
            if rejected and self.policy == "stop":
                index = min(rejected)
                raise _Permanent(
                    f"{_position(batch.messages[index])}: rejected by the "
                    f"transform: {rejected[index]}"
                )
            try:
                await self.write(batch.split.queries, True)
            except PermanentWriteError as exc:
                if self.policy == "stop":
                    raise _Permanent(str(exc)) from None
                # Which message? Run the transform on each alone, write each alone.
                values = [m.value() or b"" for m in batch.messages]
                outcomes = await self._isolate(values)
                await applier.write_outcomes(outcomes, group=True)
                return
            for index in sorted(rejected):
                applier.fail(index, rejected[index])
        elif self.mode == "request":
            await applier.serve(batch.outcomes, batch.messages)
        else:
            await applier.write_outcomes(batch.outcomes, group=self.mode == "write")

    async def _retry(self, what: str, attempt: int, reason: str) -> None:
        """Note a transient failure and wait before the next attempt (``_Interrupted`` if a
        STOP came meanwhile)."""
        self._note_retry(what, reason, attempt)
        self.phase = "backoff"
        await asyncio.sleep(self.engine.backoff(attempt))
        self.phase = "write"
        if self.stopping:
            raise _Interrupted

    async def write(self, queries: list[Query], group: bool) -> None:
        """Write to the graph; transient failures retried (the executors' ``Host``)."""
        attempt = 0
        while True:
            try:
                await self.engine.writer.write_batch(queries, self.record.owner, group=group)
                break
            except TransientWriteError as exc:
                attempt += 1
                await self._retry("writing to the graph", attempt, str(exc))
        if attempt:
            self._note_recovered()

    async def read(self, query: str, params: dict[str, Any]) -> QueryResult:
        """Run a read-only query; transient failures retried (the executors' ``Host``)."""
        attempt = 0
        while True:
            try:
                result = await self.engine.writer.read(query, params, self.record.owner)
                break
            except TransientWriteError as exc:
                attempt += 1
                await self._retry("reading from the graph", attempt, str(exc))
        if attempt:
            self._note_recovered()
        return result

    async def _deliver(self, records: list[Record], what: str) -> list[tuple[int, Failed]]:
        """Produce ``records``; transient failures retried. The permanent failures, as
        (position in ``records``, failure)."""
        if not records:
            return []
        if self.producer is None:
            self.producer = StreamProducer(self.name, self.engine.producer_config(self.record))
        pending = list(range(len(records)))
        refused: list[tuple[int, Failed]] = []
        attempt = 0
        while pending:
            results = await self.producer.deliver([records[i] for i in pending])
            retry = []
            for index, result in zip(pending, results, strict=True):
                if result is None:
                    continue
                if result.permanent:
                    refused.append((index, result))
                else:
                    retry.append((index, result))
            pending = [index for index, _ in retry]
            if pending:
                attempt += 1
                await self._retry(f"producing {what} to Kafka", attempt, retry[0][1].reason)
        if attempt:
            self._note_recovered()
        return sorted(refused, key=lambda item: item[0])

    async def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException

        consumer = self.consumer
        assert consumer is not None
        for attempt in range(1, self.engine.commit_attempts + 1):
            try:
                await consumer.call(functools.partial(consumer.commit, offsets))
                if attempt > 1:
                    self._note_recovered()
                return
            except KafkaException as exc:
                error: Any = exc.args[0] if exc.args else None
                reason = _kafka_reason(exc)
                retriable = bool(getattr(error, "retriable", lambda: False)())
                if not retriable or attempt == self.engine.commit_attempts or self.stopping:
                    # The batch is written; its offsets will be committed with the next
                    # batch, or it is applied again after a rebalance/restart.
                    log.warning("stream %s: committing offsets failed: %s", self.name, reason)
                    self.last_error = (
                        f"committing offsets failed: {reason} (the batch was "
                        "written and may be applied again)"
                    )
                    self.retrying = None
                    return
                self._note_retry("committing offsets", reason, attempt)
                await asyncio.sleep(self.engine.backoff(attempt))

    async def stop(self) -> None:
        """Stop after the current write and commit, if one is under way; else at once."""
        self.stopping = True
        if self.consumer is not None:
            self.consumer.stop_flag.set()
        if self.phase not in ("write", "commit"):
            self.task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), self.engine.stop_grace)
        except TimeoutError:
            self.task.cancel()
        except (asyncio.CancelledError, Exception):
            pass
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    def take_progress(self) -> tuple[int, int, int, int]:
        """(messages, batches, dead-lettered, skipped) since the last call."""
        done = (
            self.pending_messages,
            self.pending_batches,
            self.pending_dead,
            self.pending_skipped,
        )
        self.pending_messages = self.pending_batches = 0
        self.pending_dead = self.pending_skipped = 0
        return done


class StreamEngine:
    """All streams of one proxy. ``await start()`` before use, ``await stop()`` at the end.

    ``writer`` applies batches (the engine closes it in ``stop``); ``policy`` says which
    transform URIs may be loaded; ``kafka_config`` adds librdkafka settings to every client
    (security settings, ``session.timeout.ms``, ...), except the ones the engine owns;
    ``group_prefix`` is put in front of stream names to make consumer group ids.
    """

    def __init__(
        self,
        data_dir: Path,
        writer: GraphWriter,
        policy: TransformPolicy,
        *,
        kafka_config: Mapping[str, Any] | None = None,
        group_prefix: str = "",
        broker_timeout: float = 3.0,
        test_timeout: float = 10.0,
        lag_timeout: float = 1.0,
        transform_timeout: float = 30.0,
        transform_memory_mb: int = 512,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        commit_attempts: int = 5,
        stop_grace: float = 15.0,
        flush_interval: float = 1.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.catalog = Catalog(self.data_dir)
        self.writer = writer
        self.policy = policy
        self.kafka_config = {k: v for k, v in (kafka_config or {}).items() if k not in _FORCED}
        # The largest record a stream produces (a request's response); librdkafka's default.
        self.max_message_bytes = int(self.kafka_config.get("message.max.bytes", 1000000))
        self.group_prefix = group_prefix
        self.broker_timeout = broker_timeout
        self.test_timeout = test_timeout
        self.lag_timeout = lag_timeout
        self.transform_timeout = transform_timeout
        self.transform_memory_mb = transform_memory_mb
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.commit_attempts = commit_attempts
        self.stop_grace = stop_grace
        self.flush_interval = flush_interval
        self._runners: dict[str, _Runner] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._admins: dict[str, Any] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the catalog and resume the streams recorded as running."""
        if self._started:
            return
        await self.catalog.open()
        self._started = True
        resumed = []
        for record in await self.catalog.all():
            if record.status == "running":
                async with self._locks[record.name]:
                    self._launch(record, record.limit_batches)
                resumed.append(record.name)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if resumed:
            log.info("resumed streams: %s", ", ".join(resumed))

    async def stop(self) -> None:
        """Stop every runner (their recorded status stays, so they resume at the next start),
        save counters, close the catalog and the writer. Idempotent."""
        if self._stopped or not self._started:
            self._stopped = True
            with contextlib.suppress(Exception):
                await self.writer.close()
            return
        self._stopped = True
        runners = list(self._runners.values())
        self._runners.clear()
        await asyncio.gather(*(runner.stop() for runner in runners), return_exceptions=True)
        for task in list(self._supervisors):
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        progress = {r.name: r.take_progress() for r in runners}
        with contextlib.suppress(CatalogError):
            await self.catalog.add_progress({k: v for k, v in progress.items() if v[0]})
        await self.catalog.close()
        with contextlib.suppress(Exception):
            await self.writer.close()
        self._admins.clear()

    def _check_open(self) -> None:
        if not self._started or self._stopped:
            raise StreamError("internal", "the stream engine is not running")

    # -- settings ---------------------------------------------------------------------------

    def group_of(self, name: str) -> str:
        return self.group_prefix + name

    def consumer_config(self, record: StreamRecord) -> dict[str, Any]:
        config: dict[str, Any] = {**_CONSUMER_DEFAULTS, "client.id": f"boltstream-{record.name}"}
        config.update(self.kafka_config)
        config.update(
            {
                "bootstrap.servers": record.uri,
                "group.id": record.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        return config

    def producer_config(self, record: StreamRecord) -> dict[str, Any]:
        """A stream's producer (dead letters, responses): every record acknowledged by all
        in-sync replicas before the batch's offsets are committed."""
        config = self._client_config(record.uri)
        config.update(
            {
                "client.id": f"boltstream-{record.name}",
                "acks": "all",
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "linger.ms": 5,
            }
        )
        return config

    def _client_config(self, uri: str) -> dict[str, Any]:
        config = {k: v for k, v in self.kafka_config.items() if not k.startswith(_CONSUMER_ONLY)}
        config.update(
            {
                "bootstrap.servers": uri,
                "logger": _kafka_log,
                "error_cb": lambda error: None,
                "client.id": "boltstream-admin",
            }
        )
        return config

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))

    def _admin(self, uri: str) -> Any:
        admin = self._admins.get(uri)
        if admin is None:
            from confluent_kafka.admin import AdminClient

            admin = self._admins[uri] = AdminClient(self._client_config(uri))
        return admin

    async def _topics(self, uri: str, timeout: float) -> dict[str, int]:
        """Topic name -> partition count, from a metadata request for ALL topics (asking for
        one topic by name would create it on brokers that auto-create)."""
        admin = self._admin(uri)

        def fetch() -> dict[str, int]:
            metadata = admin.list_topics(timeout=timeout)
            return {
                name: len(topic.partitions)
                for name, topic in metadata.topics.items()
                if topic.error is None
            }

        return await asyncio.get_running_loop().run_in_executor(None, fetch)

    # -- runners ----------------------------------------------------------------------------

    def _launch(self, record: StreamRecord, limit: int | None) -> None:
        runner = _Runner(self, record, limit)
        self._runners[record.name] = runner
        task = asyncio.get_running_loop().create_task(self._supervise(runner))
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _supervise(self, runner: _Runner) -> None:
        """Record how a runner ended by itself (LIMIT reached, error)."""
        try:
            outcome = await asyncio.shield(runner.task)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            outcome = f"error: internal error: {exc}"
        async with self._locks[runner.name]:
            if self._runners.get(runner.name) is not runner:
                return  # STOP, DROP or shutdown took it over
            del self._runners[runner.name]
            progress = runner.take_progress()
            with contextlib.suppress(CatalogError):
                await self.catalog.add_progress({runner.name: progress})
                if outcome.startswith("error: "):
                    await self.catalog.update(
                        runner.name,
                        status="error",
                        last_error=outcome[len("error: ") :],
                        limit_batches=None,
                    )
                else:
                    log.info("stream %s processed its batch limit and stopped", runner.name)
                    await self.catalog.update(
                        runner.name,
                        status="stopped",
                        last_error=runner.last_error,
                        limit_batches=None,
                    )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            progress = {name: runner.take_progress() for name, runner in self._runners.items()}
            progress = {k: v for k, v in progress.items() if v[0] or v[1]}
            try:
                await self.catalog.add_progress(progress)
            except CatalogError as exc:
                log.error("cannot save stream counters: %s", exc)

    def _check_startable(self, record: StreamRecord, what: str) -> None:
        """A catalog written before names were checked may hold anything: refuse to hand it
        to the Kafka client."""
        try:
            check_client_config(self.consumer_config(record))
            check_topic(record.topic)
        except UnsafeValue as exc:
            raise StreamError(
                "invalid", f"Kafka stream {shown(record.name)} cannot be {what}: {exc}"
            ) from None

    async def _get(self, name: str) -> StreamRecord:
        record = await self.catalog.get(name)
        if record is None:
            raise StreamError("not_found", f"Kafka stream {name} doesn't exist.")
        return record

    # -- clauses ----------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        uri: str,
        topic: str,
        transform: str,
        *,
        batch_interval_ms: int | None = None,
        batch_size: int | None = None,
        owner: str | None = None,
        on_error: OnError | None = None,
        dead_letter_topic: str | None = None,
    ) -> None:
        """CREATE STREAM: check everything, then record the stream (stopped) atomically."""
        self._check_open()
        try:
            check_stream_name(name)
            check_topic(topic)
            check_client_config({"bootstrap.servers": uri, "group.id": self.group_of(name)})
        except UnsafeValue as exc:
            raise StreamError(
                "invalid", f"Failed to initialize Kafka stream {shown(name)} : {exc}"
            ) from None
        shipped = builtin.lookup(transform)
        if builtin.is_builtin(transform) and shipped is None:
            raise StreamError(
                "external",
                f"Couldn't get the transform script from {transform}: "
                f"there is no such built-in transform ({builtin.names()})",
            )
        policy = self._policy(name, shipped, on_error, dead_letter_topic, topic)
        interval = DEFAULT_BATCH_INTERVAL_MS if batch_interval_ms is None else batch_interval_ms
        size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if interval < 1:
            raise StreamError(
                "invalid",
                f"Failed to initialize Kafka stream {name} : Batch interval has to be positive!",
            )
        if size < 1:
            raise StreamError(
                "invalid",
                f"Failed to initialize Kafka stream {name} : Batch size has to be positive!",
            )
        if not uri.strip():
            raise StreamError(
                "invalid", f"Failed to initialize Kafka stream {name} : the Kafka URI is empty"
            )
        async with self._locks[name]:
            if await self.catalog.get(name) is not None:
                raise StreamError("exists", f"Kafka stream {name} already exists.")
            try:
                topics = await self._topics(uri, self.broker_timeout)
            except Exception as exc:
                raise StreamError(
                    "external",
                    f"Failed to initialize Kafka stream {name} : "
                    f"the Kafka broker at '{uri}' did not answer within "
                    f"{self.broker_timeout:g} s ({_kafka_reason(exc)})",
                ) from None
            if topic not in topics:
                raise StreamError("external", f"Kafka stream {name}, topic not found")
            if policy == "dead_letter" and dead_letter_topic not in topics:
                raise StreamError(
                    "external",
                    f"Kafka stream {name}, dead-letter topic '{dead_letter_topic}' not found",
                )
            try:
                source = (
                    shipped.source()
                    if shipped is not None
                    else await fetch_transform(transform, self.policy)
                )
                await check_transform(source)
            except TransformError as exc:
                raise StreamError("external", str(exc)) from None
            record = StreamRecord(
                name=name,
                uri=uri,
                topic=topic,
                transform_uri=source.uri,
                transform_code=source.code,
                transform_sha256=source.sha256,
                batch_interval_ms=interval,
                batch_size=size,
                consumer_group=self.group_of(name),
                owner=owner or None,
                status="stopped",
                error_policy=policy,
                dead_letter_topic=dead_letter_topic if policy == "dead_letter" else None,
            )
            try:
                await self.catalog.insert(record)
            except StreamExists:
                raise StreamError("exists", f"Kafka stream {name} already exists.") from None
            except CatalogError as exc:
                raise StreamError(
                    "internal", f"Couldn't persist stream metadata for stream {name}: {exc}"
                ) from None
        log.info(
            "created stream %s (topic %s at %s, transform %s, sha256 %s, on error %s%s)",
            name,
            topic,
            uri,
            source.uri,
            source.sha256[:12],
            _SHOWN_POLICY[policy],
            f" {dead_letter_topic}" if policy == "dead_letter" else "",
        )

    def _policy(
        self,
        name: str,
        shipped: builtin.Builtin | None,
        on_error: OnError | None,
        dead_letter_topic: str | None,
        topic: str,
    ) -> PolicyKind:
        """The stream's error policy: as the clause says, else the transform's default."""
        fail = f"Failed to initialize Kafka stream {name} : "
        if on_error is not None and on_error not in _POLICY_OF:
            raise StreamError("invalid", f"{fail}unknown ON ERROR action {on_error!r}")
        policy: PolicyKind | None = (
            _POLICY_OF[on_error]
            if on_error is not None
            else (shipped.default_policy if shipped is not None else "stop")
        )
        if shipped is not None and (policy is None or policy not in shipped.policies):
            allowed = " or ".join(
                f"ON ERROR {_SHOWN_POLICY[p].upper()}" + (" 'topic'" if p == "dead_letter" else "")
                for p in shipped.policies
            )
            raise StreamError(
                "invalid",
                f"{fail}{shipped.uri} needs {allowed}: an invalid "
                "message goes there with the reason; it is never dropped and "
                "never stops the stream",
            )
        assert policy is not None
        if policy == "dead_letter":
            try:
                check_topic(dead_letter_topic or "", "dead-letter topic")
            except UnsafeValue as exc:
                raise StreamError("invalid", str(exc)) from None
            if dead_letter_topic == topic:
                raise StreamError(
                    "invalid", f"{fail}the dead-letter topic cannot be the stream's own topic"
                )
        elif dead_letter_topic is not None:
            raise StreamError("invalid", f"{fail}a dead-letter topic needs ON ERROR DEAD LETTER")
        return policy

    async def drop(self, name: str) -> None:
        self._check_open()
        async with self._locks[name]:
            await self._get(name)
            runner = self._runners.pop(name, None)
            if runner is not None:
                await runner.stop()
            await self.catalog.delete(name)
        log.info("dropped stream %s", name)

    async def start_stream(self, name: str, limit_batches: int | None = None) -> None:
        """START STREAM: a running stream is left alone; a stopped or failed one starts."""
        self._check_open()
        if limit_batches is not None and limit_batches < 1:
            raise StreamError(
                "invalid",
                f"Starting Kafka stream {name} failed: Batch limit "
                "has to be greater than or equal to 1",
            )
        async with self._locks[name]:
            record = await self._get(name)
            if name in self._runners:
                return
            self._check_startable(record, "started")
            await self.catalog.update(
                name, status="running", last_error=None, limit_batches=limit_batches
            )
            record = await self._get(name)
            self._launch(record, limit_batches)
        log.info(
            "started stream %s%s", name, f" for {limit_batches} batches" if limit_batches else ""
        )

    async def stop_stream(self, name: str) -> None:
        """STOP STREAM: a stopped stream is left alone; a failed one becomes stopped."""
        self._check_open()
        async with self._locks[name]:
            record = await self._get(name)
            runner = self._runners.pop(name, None)
            if runner is None and record.status == "stopped":
                return
            if runner is not None:
                await runner.stop()
                await self.catalog.add_progress({name: runner.take_progress()})
                await self.catalog.update(
                    name, status="stopped", limit_batches=None, last_error=runner.last_error
                )
            else:
                await self.catalog.update(name, status="stopped", limit_batches=None)
        log.info("stopped stream %s", name)

    async def start_all(self) -> None:
        self._check_open()
        for record in await self.catalog.all():
            with contextlib.suppress(StreamError):  # dropped meanwhile
                await self.start_stream(record.name)

    async def stop_all(self) -> None:
        self._check_open()
        records = await self.catalog.all()
        results = await asyncio.gather(
            *(self.stop_stream(r.name) for r in records), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, StreamError):
                raise result

    async def show(self) -> list[StreamStatus]:
        self._check_open()
        records = await self.catalog.all()
        # One metadata request per broker, then the offsets of every stream at once; all
        # bounded by lag_timeout (a broker that does not answer costs that once).
        uris = sorted({record.uri for record in records})
        listed = await asyncio.gather(*(self._lag_topics(uri) for uri in uris))
        topics = dict(zip(uris, listed, strict=True))
        lags = await asyncio.gather(*(self._lag(record, topics[record.uri]) for record in records))
        rows = []
        for record, lag in zip(records, lags, strict=True):
            runner = self._runners.get(record.name)
            messages = record.messages_processed
            dead, skipped = record.messages_dead_lettered, record.messages_skipped
            last_error = record.last_error
            status = record.status
            if runner is not None:
                messages = runner.messages_total
                dead, skipped = runner.dead_total, runner.skipped_total
                last_error = runner.last_error
                status = "running"
            elif status == "running":
                status = "stopped"  # recorded as running, but not run by this process yet
            rows.append(
                StreamStatus(
                    name=record.name,
                    uri=record.uri,
                    topic=record.topic,
                    transform=record.transform_uri,
                    status=status,
                    batch_interval=record.batch_interval_ms,
                    batch_size=record.batch_size,
                    consumer_group=record.consumer_group,
                    owner=record.owner,
                    messages_processed=messages,
                    lag=lag,
                    last_error=last_error,
                    on_error=_SHOWN_POLICY[record.error_policy],
                    dead_letter_topic=record.dead_letter_topic,
                    dead_lettered=dead,
                    skipped=skipped,
                )
            )
        return rows

    async def _lag_topics(self, uri: str) -> dict[str, int] | None:
        try:
            return await asyncio.wait_for(
                self._topics(uri, self.lag_timeout), self.lag_timeout + 0.5
            )
        except Exception:
            return None

    async def _lag(self, record: StreamRecord, topics: dict[str, int] | None) -> int | None:
        """Messages in the topic after the group's committed offsets (None if unknown)."""
        if topics is None or record.topic not in topics:
            return None
        try:
            return await asyncio.wait_for(
                self._compute_lag(record, topics[record.topic]), self.lag_timeout
            )
        except Exception:
            return None

    async def _compute_lag(self, record: StreamRecord, count: int) -> int | None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        if count is None:
            return None
        admin = self._admin(record.uri)
        parts = [TopicPartition(record.topic, p) for p in range(count)]
        request = [ConsumerGroupTopicPartitions(record.consumer_group, parts)]
        committed_future = admin.list_consumer_group_offsets(
            request, request_timeout=self.lag_timeout
        )[record.consumer_group]
        latest_spec: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        earliest_spec: Any = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = admin.list_offsets(
            {tp: latest_spec for tp in parts}, request_timeout=self.lag_timeout
        )
        earliest = admin.list_offsets(
            {tp: earliest_spec for tp in parts}, request_timeout=self.lag_timeout
        )
        committed = await asyncio.wrap_future(committed_future)
        done: dict[int, int] = {tp.partition: tp.offset for tp in committed.topic_partitions}
        reset_latest = str(self.kafka_config.get("auto.offset.reset", "earliest")).lower() in (
            "latest",
            "largest",
            "end",
        )
        total = 0
        for tp in parts:
            high = (await asyncio.wrap_future(latest[tp])).offset
            position = done.get(tp.partition, -1)
            if position < 0:
                position = (
                    high if reset_latest else (await asyncio.wrap_future(earliest[tp])).offset
                )
            total += max(0, high - position)
        return total

    async def test(
        self, name: str, limit_batches: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """TEST STREAM: consume ``limit_batches`` batches (default 1) from where the stream
        would start, transform them, return the queries. Writes nothing, commits nothing,
        does not join the stream's consumer group."""
        self._check_open()
        limit = 1 if limit_batches is None else limit_batches
        if limit < 1:
            raise StreamError(
                "invalid",
                f"Testing Kafka stream {name} failed: Batch limit "
                "has to be greater than or equal to 1",
            )
        async with self._locks[name]:
            record = await self._get(name)
            if name in self._runners:
                raise StreamError(
                    "state", f"Kafka stream {name} is running; stop it before testing it"
                )
            return await self._test(record, limit)

    async def _test(self, record: StreamRecord, limit: int) -> list[tuple[str, dict[str, Any]]]:
        name = record.name
        self._check_startable(record, "tested")
        transform = TransformRunner(
            TransformSource(record.transform_uri, record.transform_code, record.transform_sha256),
            name=f"{name} (test)",
            batch_timeout=self.transform_timeout,
            memory_limit_mb=self.transform_memory_mb,
        )
        consumer = _Consumer(f"test-{name}", self.consumer_config(record))
        reset = str(self.consumer_config(record).get("auto.offset.reset", "earliest")).lower()
        try:
            try:
                await transform.start()
            except TransformError as exc:
                raise StreamError(
                    "transform", f"Kafka stream {name}: the transform could not be loaded: {exc}"
                ) from None
            try:
                empty = await consumer.call(
                    lambda: _assign_like_group(consumer, record.topic, reset, self.broker_timeout)
                )
            except _TopicMissing:
                raise StreamError("external", f"Kafka stream {name}, topic not found") from None
            except Exception as exc:
                raise StreamError(
                    "external",
                    f"Kafka stream {name}: the Kafka broker at "
                    f"'{record.uri}' did not answer ({_kafka_reason(exc)})",
                ) from None
            rows: list[tuple[str, dict[str, Any]]] = []
            interval = record.batch_interval_ms / 1000.0
            idle = max(1.0, 2 * interval)
            # Nothing to read by the watermarks: wait briefly, not the whole test timeout
            # (briefly, not at all: some brokers under-report high watermarks).
            deadline = time.monotonic() + (idle if empty else self.test_timeout)
            batches = 0
            while batches < limit:
                wait = deadline - time.monotonic() if batches == 0 else idle
                if wait <= 0:
                    break
                messages, _error = await consumer.call(
                    functools.partial(
                        consumer.collect, record.batch_size, interval, wait_first=wait
                    )
                )
                if consumer.fatal:
                    raise StreamError("external", f"Kafka stream {name}: {consumer.fatal}")
                if not messages:
                    if batches:
                        break  # caught up: nothing more arrived
                    continue
                batches += 1
                try:
                    rows += await transform.run([m.value() or b"" for m in messages])
                except TransformError as exc:
                    raise StreamError(
                        "transform", f"Kafka stream {name}: the transform failed: {exc}"
                    ) from None
            return rows
        finally:
            await consumer.shutdown()
            with contextlib.suppress(Exception):
                await transform.stop()


class _TopicMissing(Exception):
    pass


def _assign_like_group(consumer: _Consumer, topic: str, reset: str, timeout: float) -> bool:
    """Open ``consumer`` assigned to every partition of ``topic`` at the group's committed
    offsets (where there are none: where a new member of the group would start). True when
    the watermarks say there is nothing to read from there."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    consumer.open()
    metadata = consumer.consumer.list_topics(timeout=timeout)  # all topics: creates none
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise _TopicMissing(topic)
    parts = [TopicPartition(topic, p) for p in sorted(found.partitions)]
    committed = consumer.consumer.committed(parts, timeout=timeout)
    latest = reset in ("latest", "largest", "end")
    start = OFFSET_END if latest else OFFSET_BEGINNING
    consumer.consumer.assign(
        [
            TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else start)
            for tp in committed
        ]
    )
    empty = True
    for tp in committed:
        low, high = consumer.consumer.get_watermark_offsets(tp, timeout=timeout)
        position = tp.offset if tp.offset >= 0 else (high if latest else low)
        empty = empty and position >= high
    return empty


def _kafka_reason(exc: BaseException) -> str:
    error: Any = exc.args[0] if exc.args else None
    if hasattr(error, "str"):
        return str(error.str())
    return str(exc) or type(exc).__name__

"""Kafka for the streams: client settings, and a consumer confined to a thread of its own.

**Settings.** ``consumer_config``, ``producer_config`` and ``admin_config`` build the
librdkafka configuration of each client from the proxy's ``--kafka-client-config`` and the
stream's definition; the engine owns a few keys (``FORCED``). Every configuration goes through
``names.check_client_config`` right before a client is built from it: a value librdkafka
cannot take can abort the whole process inside the C code.

**StreamConsumer.** librdkafka calls block, so each stream's consumer lives on a thread of its
own, and only that thread ever touches it (thread-confined). The thread consumes, forms
batches by the documented rule (``batching.BatchFormer``), and hands them to the event loop; it
also commits the offsets the runner gives it, asynchronously and in order (one commit in
flight at a time; later requests merge into the next), and runs the rebalance callbacks.
Between the thread and the event loop:

* formed batches wait in a queue whose size is bounded by messages and bytes (``max_messages``,
  ``max_bytes``, counting every batch not yet released by the runner): when it is full the
  thread takes no more messages (librdkafka's own prefetch queue is bounded too,
  ``queued.max.messages.kbytes``) but keeps polling now and then, so it stays in its group
  and callbacks run; memory stays bounded however far behind the stream is;
* every batch carries the consumer's *epoch*, bumped by every seek and rebalance: the runner
  drops batches of an older epoch;
* a rebalance first asks the runner to quiesce (drop what is not written, finish a write in
  progress), commits what is written (at-least-once), and, for exactly-once streams, asks the
  runner for the positions stored in the graph and starts the new partitions there.

Broker outages are watched here: librdkafka reconnects by itself (with its own backoff); each
connection failure it reports is an attempt of the ``reading from Kafka`` outage
(``retry.Outage``), and while the outage lasts the thread probes the broker with a metadata
request, backed off exponentially, to see it come back. A broker that keeps its connections
open and answers nothing (stopped, hung) makes librdkafka report nothing for a minute
(``socket.timeout.ms``), so a consumer that has heard nothing from the broker for ``_QUIET``
seconds (no message, no commit answered) asks it for its offsets of a partition it holds:
no answer within ``_QUIET_PROBE_TIMEOUT`` starts the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from proxy.streams.batching import Batch, BatchFormer
from proxy.streams.definition import StreamDefinition
from proxy.streams.names import check_client_config, check_topic, stream_settings
from proxy.streams.positions import TopicPartition
from proxy.streams.producer import DELIVERY_TIMEOUT_MS
from proxy.streams.retry import Backoff, Health, Outage

log = logging.getLogger("boltstream.streams")
T = TypeVar("T")

# Settings the engine always sets on a stream's consumer: not overridable.
FORCED = ("bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store")
# Consumer defaults (overridable with kafka_config): read a new group's topic from the start;
# session.timeout.ms 6000 is Kafka's smallest accepted value and makes a group form in ~3 s;
# a prefetch queue of 16 MB per consumer at most; fetch requests that wait at most 50 ms for
# data (some brokers, Tansu 0.6 among them, answer a fetch only when its wait is over, not when
# data arrives: with librdkafka's 500 ms a message waited 130 ms on average before the stream
# saw it; an idle stream then sends 20 small requests a second).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "max.poll.interval.ms": 300000,
    "enable.partition.eof": False,
    "queued.max.messages.kbytes": 16384,
    "fetch.wait.max.ms": 50,
}
# Consumer-only settings: not given to the admin client (librdkafka would warn about each).
CONSUMER_ONLY = (
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

_SLICE = 0.1  # longest blocking consume call (seconds): how soon commands and STOP are seen
_QUIET = 5.0  # seconds without a word from the broker before asking it whether it is there
_QUIET_PROBE_TIMEOUT = 2.0  # seconds that question may take before it counts as an outage
_REJOINING = "rejoining the consumer group"  # status_detail after the group expired us
_CHUNK = 5000  # most messages taken from librdkafka's queue at once
_FULL_PAUSE = 0.01  # seconds between polls while the queue of formed batches is full
_MAX_POLL_EXCEEDED = -147
_BROKER_DOWN = {-195, -187, -193}  # _TRANSPORT, _ALL_BROKERS_DOWN, _RESOLVE
_OFFSET_INVALID = -1001


def consumer_config(definition: StreamDefinition, base: Mapping[str, Any]) -> dict[str, Any]:
    """The proxy's settings, then the stream's own (CONFIGS, CREDENTIALS), then the engine's."""
    config: dict[str, Any] = {**CONSUMER_DEFAULTS, "client.id": f"boltstream-{definition.name}"}
    config.update({k: v for k, v in base.items() if k not in FORCED})
    own = stream_settings(definition.settings)
    config.update({k: v for k, v in own.items() if k not in FORCED})
    config.update(
        {
            "bootstrap.servers": definition.uri,
            "group.id": definition.consumer_group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    return config


def admin_config(
    uri: str, base: Mapping[str, Any], own: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An admin client (or the base of a producer): no consumer-only settings. ``own``: a
    stream's own settings (its CONFIGS and CREDENTIALS: security settings reach every client)."""
    merged = {**base, **stream_settings(own or {})}
    config = {
        k: v for k, v in merged.items() if k not in FORCED and not k.startswith(CONSUMER_ONLY)
    }
    config.update(
        {
            "bootstrap.servers": uri,
            "logger": kafka_log,
            "error_cb": lambda error: None,
            "client.id": "boltstream-admin",
        }
    )
    return config


def producer_config(definition: StreamDefinition, base: Mapping[str, Any]) -> dict[str, Any]:
    """A stream's producer (dead letters, responses): every record acknowledged by all
    in-sync replicas before the batch's offsets are committed."""
    config = admin_config(definition.uri, base, definition.settings)
    config.update(
        {
            "client.id": f"boltstream-{definition.name}",
            "acks": "all",
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "linger.ms": 5,
        }
    )
    return config


class _KafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines, at debug level: what matters reaches SHOW STREAMS."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args)


kafka_log = _KafkaLog(logging.getLogger("boltstream.kafka"), {})


def reason_of(exc: BaseException) -> str:
    """The text of a KafkaException (or any exception)."""
    error: Any = exc.args[0] if exc.args else None
    if hasattr(error, "str"):
        return str(error.str())
    return str(exc) or type(exc).__name__


class TopicMissing(Exception):
    """The topic does not exist (found by listing all topics: nothing was created)."""


class Hooks(Protocol):
    """What the consumer thread asks its runner at a rebalance (run on the event loop)."""

    async def quiesce(self) -> None:
        """Drop every batch not written yet; return once no write is in progress."""

    async def positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Exactly-once: where to start each partition (the position stored in the graph;
        None: none stored). Raises only when the stream stops."""
        ...


class _Closing(Exception):
    """The consumer is being closed: a callback gives up."""


class StreamConsumer:
    """One stream's Kafka consumer, on its own thread (see the module docstring).

    The runner: ``start()``, ``await opened()``, then ``await batches()`` repeatedly,
    ``release(batch)`` when done with each, ``commit(offsets, token)`` after writing; finally
    ``await close()``. ``on_committed(tokens)`` is called (on the consumer's thread) with the
    tokens of every commit the broker answered, in order. ``assign``: start at these
    (topic, partition, offset) instead of joining the group (TEST STREAM: no commits).
    ``topics``: one topic, or several (a stream reads all of them in one group).
    """

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        topics: str | tuple[str, ...],
        *,
        size: int,
        interval: float,
        health: Health,
        backoff: Backoff,
        max_messages: int = 20000,
        max_bytes: int = 16 * 1024 * 1024,
        hooks: Hooks | None = None,
        exactly_once: bool = False,
        on_committed: Callable[[list[Any]], None] | None = None,
        assign: list[tuple[str, int, int]] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.topics = (topics,) if isinstance(topics, str) else tuple(topics)
        self.former = BatchFormer(size, interval)
        self.health = health
        self.backoff = backoff
        self.max_messages = max(max_messages, size)
        self.max_bytes = max_bytes
        self.hooks = hooks
        self.exactly_once = exactly_once
        self.on_committed = on_committed
        self.fixed_assignment = assign
        self.epoch = 0
        self.member_id: str | None = None  # in the group, once assigned (SHOW STREAM OFFSETS)
        self.fatal: str | None = None  # a fatal librdkafka error: the stream must stop
        self.broker = Outage(name, "reading from Kafka", health, backoff)
        self.committing = Outage(name, "committing offsets", health, backoff)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._ready: deque[Batch] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._closing = threading.Event()
        self._held_messages = 0  # formed, not yet released by the runner
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        self._assigned: list[Any] = []
        self._commands: deque[Callable[[], None]] = deque()
        self._commit_requests: deque[tuple[dict[TopicPartition, int], Any]] = deque()
        self._pending: dict[TopicPartition, int] = {}
        self._pending_tokens: list[Any] = []
        self._inflight: list[Any] | None = None  # tokens of the commit the broker has now
        self._inflight_offsets: dict[TopicPartition, int] = {}
        self._commit_retry_at = 0.0
        self._probe_at = 0.0
        self._heard = time.monotonic()  # the broker's last answer (messages, commits, probes)
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._grace = 5.0

    # -- the event loop's side ------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; it opens the consumer (``await opened()`` for the outcome)."""
        self._loop = asyncio.get_running_loop()
        self._opened = self._loop.create_future()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._main, name=f"stream-{self.name}"[:15], daemon=True
        )
        self._thread.start()

    async def opened(self) -> None:
        """Wait until the consumer exists; raises what creating it raised."""
        assert self._opened is not None
        await asyncio.shield(self._opened)

    async def batches(self, max_messages: int) -> list[Batch]:
        """Wait for at least one formed batch; take the formed batches, up to
        ``max_messages`` messages (at least one batch). Empty when the consumer stopped."""
        while not self._ready:
            if self._closing.is_set() or self.fatal or (self._done and self._done.done()):
                return []
            assert self._loop is not None
            self._waiter = self._loop.create_future()
            if self._ready:
                self._waiter = None
                break
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.ready(max_messages)

    def ready(self, max_messages: int) -> list[Batch]:
        """The formed batches waiting, up to ``max_messages`` messages (at least one batch,
        if any waits); never waits."""
        if not self._ready:
            return []
        taken = [self._ready.popleft()]
        count = len(taken[0])
        while self._ready and count + len(self._ready[0]) <= max_messages:
            batch = self._ready.popleft()
            count += len(batch)
            taken.append(batch)
        return taken

    def release(self, batch: Batch) -> None:
        """The runner is done with ``batch`` (written or dropped): room for more."""
        with self._held_lock:
            self._held_messages -= len(batch.messages)
            self._held_bytes -= batch.nbytes

    def commit(self, offsets: dict[TopicPartition, int], token: Any) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) after what is queued;
        ``token`` comes back through ``on_committed`` once the broker answered."""
        self._commit_requests.append((offsets, token))

    def flush(self) -> None:
        """Close the open batch now, whatever its size (TEST STREAM's time limit)."""
        self._commands.append(self._flush_now)

    async def reseek(self, positions: Mapping[TopicPartition, int | None], epoch: int) -> None:
        """Drop what was consumed and formed, and start each partition of ``positions`` there
        (None: at the group's committed offset). Ignored when the epoch moved past ``epoch``
        meanwhile (a rebalance set the positions again)."""
        done: Future[None] = Future()

        def run() -> None:
            try:
                if self.epoch == epoch:
                    self._seek(positions)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        self._commands.append(run)
        await asyncio.wrap_future(done)

    def outstanding_commits(self) -> bool:
        return bool(self._commit_requests or self._pending or self._inflight is not None)

    async def drain_commits(self, timeout: float) -> bool:
        """Wait until every requested commit was answered (True) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while self.outstanding_commits():
            if time.monotonic() > deadline or (self._done and self._done.done()):
                return not self.outstanding_commits()
            await asyncio.sleep(0.01)
        return True

    async def close(self, grace: float = 5.0) -> None:
        """Stop the thread: commit what was requested (within ``grace`` seconds), leave the
        group, close the consumer. Idempotent."""
        self._grace = grace
        self._closing.set()
        self._wake()
        if self._done is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._done)

    def assignment(self) -> list[TopicPartition]:
        return [(tp.topic, tp.partition) for tp in self._assigned]

    # -- the thread -----------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            try:
                self._open()
            except BaseException as exc:
                self._resolve(self._opened, exc)
                return
            self._resolve(self._opened, None)
            while not self._closing.is_set() and self.fatal is None:
                self._step()
            self._finish()
        except BaseException as exc:  # a bug: say so, the runner stops the stream
            log.exception("stream %s: the Kafka consumer thread failed", self.name)
            self.fatal = f"internal error in the Kafka consumer: {type(exc).__name__}: {exc}"
        finally:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()  # leaves the group; commits nothing (auto commit off)
            self._resolve(self._done, None)
            self._wake()

    def _resolve(self, future: asyncio.Future[None] | None, exc: BaseException | None) -> None:
        loop = self._loop
        if future is None or loop is None:
            return

        def set_it() -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)

        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(set_it)

    def _wake(self) -> None:
        waiter, loop = self._waiter, self._loop
        if waiter is not None and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_result, waiter)

    def _open(self) -> None:
        from confluent_kafka import Consumer

        check_client_config(self.config)  # raises rather than letting librdkafka abort
        for topic in self.topics:
            check_topic(topic)
        config = dict(self.config)
        config["error_cb"] = self._on_error
        config["logger"] = kafka_log
        config["on_commit"] = self._on_commit
        self._consumer = Consumer(config)
        if self.fixed_assignment is None:
            self._consumer.subscribe(
                list(self.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        else:
            from confluent_kafka import TopicPartition as KafkaTopicPartition

            parts = [KafkaTopicPartition(t, p, o) for t, p, o in self.fixed_assignment]
            self._consumer.assign(parts)
            self._assigned = parts

    def _step(self) -> None:
        consumer = self._consumer
        while self._commands:
            self._commands.popleft()()
        self._serve_commits()
        now = time.monotonic()
        closed = self.former.due(now)
        if closed is not None:
            self._emit([closed])
        self._probe(now)
        if self._held_messages >= self.max_messages or self._held_bytes >= self.max_bytes:
            # Full: take no more (librdkafka's own queue, bounded by queued.max.messages.kbytes,
            # holds what is fetched), but keep polling now and then: callbacks (commits,
            # rebalances) run inside consume, and the group must see this member alive. The
            # message such a poll returns, if any, is kept: the bound is exceeded by a few.
            time.sleep(_FULL_PAUSE)
            self._take(consumer.consume(num_messages=1, timeout=0))
            return
        deadline = self.former.deadline
        if deadline is not None:
            wait = min(_SLICE, max(0.0, deadline - now))
            # At most _CHUNK at once: librdkafka refuses more than 1M (a stream recorded before
            # BATCH_SIZE had its bound may ask for more).
            wanted = min(_CHUNK, self.former.size - self.former.pending)
            self._take(consumer.consume(num_messages=wanted, timeout=wait))
            return
        room = max(1, min(_CHUNK, self.max_messages - self._held_messages))
        if not self._take(consumer.consume(num_messages=room, timeout=0)):
            self._take(consumer.consume(num_messages=1, timeout=_SLICE))

    def _take(self, messages: list[Any]) -> bool:
        """Feed what ``consume`` returned to the former; True if there was a message."""
        if not messages:
            return False
        good = messages
        for message in messages:
            if message.error() is not None:
                good = [m for m in messages if m.error() is None]
                for bad in messages:
                    if bad.error() is not None:
                        self._message_error(bad.error())
                break
        if not good:
            return False
        self._heard = time.monotonic()
        if self.broker.ongoing:
            self.broker.recovered()
        closed = self.former.add(good, self._heard)
        if closed:
            self._emit(closed)
        return True

    def _emit(self, closed: list[list[Any]]) -> None:
        batches = []
        for messages in closed:
            nbytes = 0
            for message in messages:
                value = message.value()
                if value is not None:
                    nbytes += len(value)
            batches.append(Batch(messages, self.epoch, nbytes))
            with self._held_lock:
                self._held_messages += len(messages)
                self._held_bytes += nbytes
        self._ready.extend(batches)
        self._wake()

    def _flush_now(self) -> None:
        batch = self.former.flush()
        if batch is not None:
            self._emit([batch])

    def _drop_formed(self) -> None:
        """A seek or a rebalance: what was consumed but not handed over is void."""
        self.epoch += 1
        self.former.clear()
        while self._ready:
            self.release(self._ready.popleft())

    def _seek(self, positions: Mapping[TopicPartition, int | None]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        self._drop_formed()
        committed: dict[TopicPartition, int] = {}
        missing = [KafkaTopicPartition(t, p) for (t, p), o in positions.items() if o is None]
        if missing:
            for tp in self._consumer.committed(missing, timeout=10):
                committed[(tp.topic, tp.partition)] = tp.offset
        parts = []
        for (topic, partition), offset in positions.items():
            start = offset if offset is not None else committed.get((topic, partition), -1)
            if start is None or start < 0:
                reset = str(self.config.get("auto.offset.reset", "earliest")).lower()
                start = OFFSET_END if reset in ("latest", "largest", "end") else OFFSET_BEGINNING
            parts.append(KafkaTopicPartition(topic, partition, start))
        try:
            for part in parts:
                self._consumer.seek(part)
        except Exception:  # not fetching yet: setting the assignment again starts it there
            if self._cooperative:
                self._consumer.incremental_unassign(parts)
                self._consumer.incremental_assign(parts)
            else:
                self._consumer.assign(parts)
                self._assigned = parts

    # -- errors and outages ---------------------------------------------------------------------

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self.fatal = error.str()
            return
        if error.code() in _BROKER_DOWN:
            self.broker.failed(error.str())
            self._probe_at = time.monotonic() + self.broker.backoff.delay(self.broker.attempts)

    def _message_error(self, error: Any) -> None:
        if error.fatal():
            self.fatal = error.str()
        elif error.code() != _MAX_POLL_EXCEEDED:  # librdkafka rejoins by itself
            self.broker.failed(error.str())
            self._probe_at = time.monotonic() + self.broker.backoff.delay(self.broker.attempts)

    def _probe(self, now: float) -> None:
        """While the broker is out: ask it for metadata now and then (backed off); an answer
        ends the outage. Otherwise, after ``_QUIET`` seconds without a word from it, ask it
        for a partition's offsets: a broker that holds its connections open and answers
        nothing starts an outage here (librdkafka would say nothing for a minute)."""
        if not self.broker.ongoing:
            if now - self._heard >= _QUIET and now >= self._probe_at:
                self._probe_quiet(now)
            return
        if now < self._probe_at:
            return
        try:
            self._consumer.list_topics(timeout=1.0)  # all topics: creates none
        except Exception as exc:
            self.broker.failed(reason_of(exc))
            self._probe_at = time.monotonic() + self.broker.backoff.delay(self.broker.attempts)
            return
        self._heard = time.monotonic()
        self.broker.recovered()

    def _probe_quiet(self, now: float) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        held = self._assigned
        try:
            if held:  # one partition's offsets: a small request
                part = KafkaTopicPartition(held[0].topic, held[0].partition)
                self._consumer.get_watermark_offsets(
                    part, timeout=_QUIET_PROBE_TIMEOUT, cached=False
                )
            else:  # none held (the group expired us, or has nothing for us): all topics
                self._consumer.list_topics(timeout=_QUIET_PROBE_TIMEOUT)  # creates none
        except Exception as exc:
            reason = reason_of(exc)
            if "timed out" in reason.lower():
                reason = (
                    f"the broker did not answer in {_QUIET_PROBE_TIMEOUT:g} s (nothing heard "
                    f"from it for {time.monotonic() - self._heard:.0f} s)"
                )
            self.broker.failed(reason)
            self._probe_at = time.monotonic() + self.broker.backoff.delay(self.broker.attempts)
            return
        self._heard = time.monotonic()

    # -- commits --------------------------------------------------------------------------------

    def _serve_commits(self) -> None:
        while self._commit_requests:
            offsets, token = self._commit_requests.popleft()
            for key, offset in offsets.items():
                if offset > self._pending.get(key, -1):
                    self._pending[key] = offset
            self._pending_tokens.append(token)
        if (
            self._inflight is not None
            or not self._pending_tokens
            or time.monotonic() < self._commit_retry_at
        ):
            return
        if not self._pending:  # nothing to commit (tokens only): answered at once
            self._answer(self._pending_tokens)
            self._pending_tokens = []
            return
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        offsets, self._pending = self._held(self._pending), {}
        tokens, self._pending_tokens = self._pending_tokens, []
        if not offsets:  # only partitions revoked meanwhile: not ours to commit any more
            self._answer(tokens)
            return
        self._inflight, self._inflight_offsets = tokens, offsets
        try:
            self._consumer.commit(
                offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True,
            )
        except Exception as exc:
            self._commit_failed(reason_of(exc), retriable=True)

    def _held(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """``offsets`` of the partitions this consumer holds now. A partition revoked by a
        rebalance had its written offsets committed in the callback (``_commit_now``); after
        that its new holder commits it, and an offset of ours could move it backwards."""
        held = {(tp.topic, tp.partition) for tp in self._assigned}
        return {key: offset for key, offset in offsets.items() if key in held}

    def _on_commit(self, error: Any, partitions: list[Any]) -> None:
        answered = {(tp.topic, tp.partition): tp.offset for tp in partitions or []}
        if self._inflight is None or answered != self._inflight_offsets:
            return  # a synchronous commit of ours (rebalance, close): already handled
        if error is None:
            failed = [tp for tp in partitions if tp.error is not None]
            if failed:
                error = failed[0].error
        if error is None:
            self._heard = time.monotonic()
            tokens, self._inflight, self._inflight_offsets = self._inflight, None, {}
            self.committing.recovered()
            self._answer(tokens)
            return
        retriable = bool(getattr(error, "retriable", lambda: False)())
        self._commit_failed(error.str(), retriable=retriable)

    def _commit_failed(self, reason: str, *, retriable: bool) -> None:
        tokens, offsets = self._inflight or [], self._inflight_offsets
        self._inflight, self._inflight_offsets = None, {}
        if retriable and not self._closing.is_set():
            for key, offset in offsets.items():
                if offset > self._pending.get(key, -1):
                    self._pending[key] = offset
            self._pending_tokens = tokens + self._pending_tokens
            self._commit_retry_at = time.monotonic() + self.committing.failed(reason)
            return
        # The batches are written; their offsets will be committed with later ones, or they
        # are applied again after a rebalance or a restart.
        log.warning("stream %s: committing offsets failed: %s", self.name, reason)
        self.health.last_error = (
            f"committing offsets failed: {reason} (the batch was written and may be applied again)"
        )
        self._answer(tokens)

    def _answer(self, tokens: list[Any]) -> None:
        if tokens and self.on_committed is not None:
            self.on_committed(tokens)

    def _commit_now(self) -> None:
        """Commit every requested offset synchronously (a rebalance takes the partitions)."""
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        while self._commit_requests:
            offsets, token = self._commit_requests.popleft()
            for key, offset in offsets.items():
                if offset > self._pending.get(key, -1):
                    self._pending[key] = offset
            self._pending_tokens.append(token)
        offsets = {**self._inflight_offsets}
        for key, offset in self._pending.items():
            if offset > offsets.get(key, -1):
                offsets[key] = offset
        tokens = (self._inflight or []) + self._pending_tokens
        self._inflight, self._inflight_offsets = None, {}
        self._pending, self._pending_tokens = {}, []
        if offsets:
            try:
                self._consumer.commit(
                    offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
            except Exception as exc:
                log.warning("stream %s: committing offsets failed: %s", self.name, reason_of(exc))
                self.health.last_error = (
                    f"committing offsets failed: {reason_of(exc)} (the "
                    "batch was written and may be applied again)"
                )
        self._answer(tokens)

    def _finish(self) -> None:
        """Closing: wait (within the grace) for the commits requested so far."""
        deadline = time.monotonic() + getattr(self, "_grace", 5.0)
        while self.outstanding_commits() and time.monotonic() < deadline:
            self._serve_commits()
            # Serves the commit callback; whatever it consumes is never committed.
            self._consumer.consume(num_messages=1, timeout=0.05)
        if self.outstanding_commits():
            log.warning(
                "stream %s: offsets left uncommitted at stop (the batches are written "
                "and will be applied again)",
                self.name,
            )
            tokens = (
                (self._inflight or [])
                + self._pending_tokens
                + [token for _offsets, token in self._commit_requests]
            )
            self._inflight, self._pending_tokens = None, []
            self._pending.clear()
            self._commit_requests.clear()
            self._answer(tokens)

    # -- rebalances -----------------------------------------------------------------------------

    def _hook(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine of the runner on the event loop and wait for it here. If it fails
        the stream cannot go on (``fatal``) and the callback gives up (``_Closing``)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        while True:
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                if self._closing.is_set():
                    future.cancel()
                    raise _Closing from None
            except BaseException as exc:
                if not self._closing.is_set():
                    self.fatal = f"at a rebalance: {exc or type(exc).__name__}"
                raise _Closing from None

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with contextlib.suppress(Exception):
            self.member_id = consumer.memberid()
        try:
            self._drop_formed()
            if self.hooks is not None:
                self._hook(self.hooks.quiesce)
            if self.exactly_once and self.hooks is not None and partitions:
                wanted = [(tp.topic, tp.partition) for tp in partitions]
                hooks = self.hooks
                found = self._hook(functools.partial(hooks.positions, wanted))
                for tp in partitions:
                    offset = found.get((tp.topic, tp.partition))
                    tp.offset = offset if offset is not None else _OFFSET_INVALID
        except _Closing:
            return
        if self._cooperative:
            consumer.incremental_assign(partitions)
            self._assigned = [*self._assigned, *partitions]
        else:
            consumer.assign(partitions)
            self._assigned = list(partitions)
        self.health.troubles.pop(_REJOINING, None)
        log.info(
            "stream %s: assigned %s",
            self.name,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing",
        )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoke(consumer, partitions, lost=True)

    def _revoke(self, consumer: Any, partitions: list[Any], *, lost: bool) -> None:
        log.info(
            "stream %s: %s %s",
            self.name,
            "lost" if lost else "revoked",
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing",
        )
        if lost and partitions:
            # The group expired this member (a broker that stopped answering, a member that
            # did not poll): nothing flows until the group gives it partitions again.
            self.health.troubles[_REJOINING] = ("waiting", time.monotonic())
        try:
            self._drop_formed()
            if self.hooks is not None:
                self._hook(self.hooks.quiesce)
            if not lost:
                self._commit_now()
        except _Closing:
            pass
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if self._cooperative:
            consumer.incremental_unassign(partitions)
            self._assigned = [tp for tp in self._assigned if (tp.topic, tp.partition) not in gone]
        else:
            consumer.unassign()
            self._assigned = []


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# -- TEST STREAM's start, and the admin client ------------------------------------------------


def new_probe(config: Mapping[str, Any]) -> Any:
    """A consumer of ``config``'s group that is never subscribed (``config`` checked first):
    the caller closes it."""
    from confluent_kafka import Consumer

    check_client_config(dict(config))
    return Consumer({**config, "logger": kafka_log, "error_cb": lambda error: None})


@contextlib.contextmanager
def probe_consumer(config: Mapping[str, Any]) -> Iterator[Any]:
    """A consumer of ``config``'s group that never subscribes, so it never joins the group:
    committed offsets, watermarks and commits are all it is for. ``config`` is checked
    first (``check_client_config``); the consumer is closed after. Blocks."""
    probe = new_probe(config)
    try:
        yield probe
    finally:
        with contextlib.suppress(Exception):
            probe.close()


def topic_partitions(probe: Any, topics: tuple[str, ...], timeout: float) -> list[Any]:
    """Every partition of ``topics`` (Kafka ``TopicPartition`` objects, in order), from a
    metadata request for ALL topics (asking for one by name would create it on brokers that
    auto-create). Raises ``TopicMissing``. Blocks."""
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    for topic in topics:
        check_topic(topic)
    metadata = probe.list_topics(timeout=timeout)
    parts = []
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise TopicMissing(topic)
        parts += [KafkaTopicPartition(topic, p) for p in sorted(found.partitions)]
    return parts


def start_like_group(
    config: dict[str, Any],
    topics: str | tuple[str, ...],
    timeout: float,
    positions: Mapping[TopicPartition, int | None] | None = None,
) -> tuple[list[tuple[str, int, int]], bool]:
    """Where a stream's next member would start reading ``topics``: per partition the stored
    position (exactly-once), else the group's committed offset, else the reset policy's end.
    Returns (topic, partition, offset) triples and whether the watermarks say there is
    nothing to read from there. Raises ``TopicMissing``. Blocks: run it off the event loop.
    """
    names = (topics,) if isinstance(topics, str) else tuple(topics)
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

    with probe_consumer(config) as probe:
        parts = topic_partitions(probe, names, timeout)
        committed = probe.committed(parts, timeout=timeout)
        reset = str(config.get("auto.offset.reset", "earliest")).lower()
        latest = reset in ("latest", "largest", "end")
        starts: list[tuple[str, int, int]] = []
        empty = True
        for tp in committed:
            stored = (positions or {}).get((tp.topic, tp.partition))
            offset = stored if stored is not None else tp.offset
            low, high = probe.get_watermark_offsets(tp, timeout=timeout)
            position = offset if offset >= 0 else (high if latest else low)
            empty = empty and position >= high
            starts.append(
                (
                    tp.topic,
                    tp.partition,
                    offset if offset >= 0 else (OFFSET_END if latest else OFFSET_BEGINNING),
                )
            )
        return starts, empty


OFFSET_BEGINNING_ARG, OFFSET_END_ARG = -1, -2  # mg.kafka_set_stream_offset's special values


def set_group_offsets(
    config: dict[str, Any], topics: tuple[str, ...], offset: int, timeout: float
) -> int:
    """``mg.kafka_set_stream_offset``: commit, for the group of ``config``, ``offset`` on every
    partition of ``topics`` (-1: each partition's first offset, -2: its end). The group must
    have no member (the stream is stopped). Returns how many partitions were set. Raises
    ``TopicMissing``, or what librdkafka raises. Blocks: run it off the event loop."""
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    with probe_consumer(config) as probe:
        parts = []
        for tp in topic_partitions(probe, topics, timeout):
            target = offset
            if offset in (OFFSET_BEGINNING_ARG, OFFSET_END_ARG):
                low, high = probe.get_watermark_offsets(tp, timeout=timeout)
                target = low if offset == OFFSET_BEGINNING_ARG else high
            parts.append(KafkaTopicPartition(tp.topic, tp.partition, target))
        committed = probe.commit(offsets=parts, asynchronous=False) or []
        for tp in committed:
            if tp.error is not None:
                raise RuntimeError(f"{tp.topic}[{tp.partition}]: {tp.error.str()}")
        return len(parts)


class TopicAdmin:
    """Admin clients, one per bootstrap address: topic lists (blocking calls on the default
    executor); and probe consumers, one per stream: consumer lag (on ``LAG_THREADS`` threads
    of their own).

    Each client holds threads and pipes, and any address a clause names gets one: each cache
    is bounded (the least recently used goes past ``MAX_ADMINS`` / ``MAX_PROBES``), a client
    idle for ``ADMIN_IDLE`` seconds goes, and so does an admin client whose request failed
    (an address that does not answer keeps nothing; a probe belongs to an existing stream
    and stays). A dropped client is destroyed on an executor thread: destroying one waits
    for its threads.

    Lag is read with a consumer of the stream's group (its committed offsets and the
    watermarks), never with the admin API's group requests: librdkafka 2.x aborts the whole
    process when a coordinator admin request (ListConsumerGroupOffsets, DescribeGroups) times
    out and its answer or retry comes late (``rd_kafka_enq_once_del_source_return: Assertion
    eonce->refcnt > 0``, librdkafka #4605), which ``SHOW STREAMS`` under load did (found by
    ``bench/soak.py``: the proxy died with SIGABRT a minute into the soak)."""

    MAX_ADMINS = 4
    MAX_PROBES = 16
    ADMIN_IDLE = 300.0

    LAG_THREADS = 4

    def __init__(self, base_config: Mapping[str, Any]) -> None:
        self.base_config = dict(base_config)
        self._admins: OrderedDict[AdminKey, tuple[Any, float]] = OrderedDict()
        self._probes: OrderedDict[ProbeKey, tuple[Any, float]] = OrderedDict()
        # A probe's calls block (up to the timeout per request when the broker is slow): on
        # threads of their own, so that they never hold up the default executor, and one
        # lookup per stream at a time, which every SHOW STREAMS meanwhile shares.
        self._lag_pool: ThreadPoolExecutor | None = None
        self._lag_inflight: dict[ProbeKey, asyncio.Future[int]] = {}

    def client(self, uri: str, own: Mapping[str, Any] | None = None) -> Any:
        """The admin client for ``uri`` (with a stream's own settings ``own``), from the cache."""
        return self._admin(uri, own)

    def _admin(self, uri: str, own: Mapping[str, Any] | None = None) -> Any:
        """The client for ``uri`` with a stream's own settings ``own`` (its CONFIGS and
        CREDENTIALS: security settings reach every client), kept as one cache entry."""

        def make() -> Any:
            from confluent_kafka.admin import AdminClient

            config = admin_config(uri, self.base_config, own)
            check_client_config({k: v for k, v in config.items() if isinstance(v, str)})
            return AdminClient(config)

        return self._cached(self._admins, _admin_key(uri, own), make, self.MAX_ADMINS)

    def _probe(self, definition: StreamDefinition) -> tuple[ProbeKey, Any]:
        """A consumer of the stream's group that never subscribes: committed offsets and
        watermarks (with the stream's own settings, like its consumer)."""
        key: ProbeKey = (definition.name, _admin_key(definition.uri, definition.settings))

        def make() -> Any:
            return new_probe(consumer_config(definition, self.base_config))

        return key, self._cached(self._probes, key, make, self.MAX_PROBES)

    def _cached(
        self,
        store: OrderedDict[Any, tuple[Any, float]],
        key: Any,
        make: Callable[[], Any],
        limit: int,
    ) -> Any:
        now = time.monotonic()
        for old, (_, used) in list(store.items()):
            if now - used > self.ADMIN_IDLE:
                self._drop(store, old)
        entry = store.pop(key, None)
        client = make() if entry is None else entry[0]
        store[key] = (client, now)
        while len(store) > limit:
            self._drop(store, next(iter(store)))
        return client

    @staticmethod
    def _drop(store: OrderedDict[Any, tuple[Any, float]], key: Any) -> None:
        entry = store.pop(key, None)
        if entry is not None:
            asyncio.get_running_loop().run_in_executor(None, _destroy, entry)

    def forget(self, which: str | AdminKey) -> None:
        """Drop the client of a key, or every client for an address (destroyed off the event
        loop)."""
        keys = [k for k in self._admins if k[0] == which] if isinstance(which, str) else [which]
        for key in keys:
            self._drop(self._admins, key)

    def forget_stream(self, name: str) -> None:
        """Drop the lag probes of stream ``name`` (DROP, or an ALTER that changes its address
        or settings): a probe holds a consumer's threads, pipes and broker sockets."""
        for key in [k for k in self._probes if k[0] == name]:
            self._drop(self._probes, key)

    def held(self) -> int:
        return len(self._admins)

    def probes(self) -> int:
        return len(self._probes)

    async def topics(
        self, uri: str, timeout: float, own: Mapping[str, Any] | None = None
    ) -> dict[str, int]:
        """Topic name -> partition count, from a metadata request for ALL topics (asking for
        one topic by name would create it on brokers that auto-create). ``own``: a stream's
        own settings (security), if it has any."""
        fetch = functools.partial(_list_topics, self._admin(uri, own), timeout)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fetch)
        except BaseException:
            del fetch  # the executor's reference is then the last but the cache's
            self.forget(_admin_key(uri, own))
            raise

    async def lag(
        self,
        definition: StreamDefinition,
        partitions: Mapping[str, int],
        timeout: float,
        reset_latest: bool,
    ) -> int:
        """Messages in the stream's topics (``partitions``: topic -> partition count) after the
        group's committed offsets (where there is none, after the reset policy's end)."""
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        parts = [
            KafkaTopicPartition(topic, p)
            for topic, count in partitions.items()
            for p in range(count)
        ]
        key, probe = self._probe(definition)
        inflight = self._lag_inflight.get(key)
        if inflight is None:
            if self._lag_pool is None:
                self._lag_pool = ThreadPoolExecutor(self.LAG_THREADS, "boltstream-lag")
            fetch = functools.partial(_probe_lag, probe, parts, timeout, reset_latest)
            inflight = asyncio.get_running_loop().run_in_executor(self._lag_pool, fetch)
            self._lag_inflight[key] = inflight
            inflight.add_done_callback(lambda done: self._lag_done(key, done))
        # A failed lookup keeps its probe (the cache is bounded per stream, and a new consumer
        # per attempt would only add load to a broker or machine that is already slow).
        return await asyncio.shield(inflight)

    def _lag_done(self, key: ProbeKey, done: asyncio.Future[int]) -> None:
        self._lag_inflight.pop(key, None)
        # Read the outcome: when every caller gave up waiting (their own timeout), a failure
        # would otherwise be logged by asyncio as an ERROR with a traceback.
        if not done.cancelled():
            done.exception()

    def close(self) -> None:
        self._admins.clear()
        self._probes.clear()
        if self._lag_pool is not None:
            self._lag_pool.shutdown(wait=False, cancel_futures=True)
            self._lag_pool = None


def _probe_lag(probe: Any, parts: list[Any], timeout: float, reset_latest: bool) -> int:
    """Blocks: committed offsets, then each partition's watermarks."""
    total = 0
    for tp in probe.committed(parts, timeout=timeout):
        low, high = probe.get_watermark_offsets(tp, timeout=timeout)
        position = tp.offset if tp.offset >= 0 else (high if reset_latest else low)
        total += max(0, high - position)
    return total


AdminKey = tuple[str, tuple[tuple[str, Any], ...]]
ProbeKey = tuple[str, AdminKey]  # (stream name, its address and own settings)


def _admin_key(uri: str, own: Mapping[str, Any] | None) -> AdminKey:
    return (uri, tuple(sorted((own or {}).items())))


def _list_topics(admin: Any, timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.error is None
    }


def _destroy(entry: tuple[Any, float]) -> None:
    """Runs on an executor thread holding the last reference to an admin client: returning
    drops it there, so librdkafka joins its threads off the event loop."""
    del entry

"""One running stream: a pipeline of stages working at the same time.

::

    consume + form batches  ->  transform  ->  write  ->  commit
    (Kafka thread, kafka.py)   (worker)       (graph)     (Kafka thread, asynchronous)

* **Consume** (``Source``, the stream's consumer thread): forms batches by the documented rule
  (``batching.py``) and holds them in a queue bounded by messages and bytes.
* **Transform** (a task): takes the formed batches waiting, up to ``max_round_trip``
  messages, and sends them to the transform's worker in one round trip (``run_many``: one
  ``stream(batch)`` call per batch, one result per batch). A failed batch is handled by the
  error policy (stop there, or run each of its messages alone to find the failing ones). A
  stream with a mapping instead of a transform (a Cypher template, patterns, CUD:
  ``mapping/``) maps each batch here, in the proxy, one outcome per message; its queries are
  joined into UNWIND queries (``Mapper.prepare``) wherever they are written.
* **Write** (a task, the only writer of the stream): takes the transformed batches waiting and
  writes consecutive ones that need no per-message care *together*: one backend round trip
  (Bolt: one transaction; FalkorDB: one composed query), planned as fewer UNWIND queries over
  their concatenation (``grouping.py``: the same graph as one batch after the other). If that
  combined write is refused, it writes them one batch at a time, and a batch that fails is
  taken apart message by message (``executors.Applier``), so error policies apply exactly as
  for a single batch. Batches with rejected messages, the built-ins' command and request
  modes, go one at a time.
* **Commit** (the consumer thread): after each write the runner hands the written offsets to
  the consumer, which commits them asynchronously and in order; the write stage goes on at
  once. Counters (``Progress``) count a batch when the broker has its offsets.

Order: the transform stage and the write stage each take batches in the order they were
formed, so each partition's messages reach the graph in offset order. Backpressure: the write
stage takes what is there, the transform stage waits when two rounds are waiting to be
written, and the consumer pauses when its queue is full.

**Delivery.** At least once: offsets are committed only after the write returned, so a crash
replays what was not committed. Exactly once (``positions.py``): every write also moves the
stream's positions stored in the graph, in the same atomic unit, fenced by the positions the
runner expects there; the consumer starts each partition at its stored position. A lost fence
(another member wrote those partitions) makes the runner drop what it has not written, read
the positions again and seek there.

**Failures.** Transient ones (backend or broker away) are retried through ``retry.Outage``;
permanent ones go to the error policy; ``STOP`` ends the run with ``Outcome.FAILED``. A STOP
of the stream ends the run after the write in progress, if any (its commit included).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from proxy.backends.base import QueryResult
from proxy.streams import builtin
from proxy.streams.batching import Batch
from proxy.streams.definition import StreamDefinition
from proxy.streams.executors import Applier, StopAt, dead_letter
from proxy.streams.mapping.mapper import BadMapping, Mapper
from proxy.streams.outcomes import (
    DEAD_LETTER_QUERY,
    Accepted,
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
from proxy.streams.positions import Fence, FenceLost, TopicPartition, next_offsets
from proxy.streams.producer import Failed, Record
from proxy.streams.retry import Backoff, Health, Interrupted, Outage, retrying
from proxy.streams.transform import (
    AMBIGUOUS,
    FailureKind,
    Round,
    TransformError,
    TransformFailed,
)
from proxy.streams.writers import (
    GraphWriter,
    NotAtomic,
    PermanentWriteError,
    TransientWriteError,
    mapping_dialect,
)

_T = TypeVar("_T")
log = logging.getLogger("boltstream.streams")


class RunEnd(enum.Enum):
    """How a run ended."""

    STOPPED = "stopped"  # STOP, DROP or shutdown
    FINISHED = "finished"  # START ... LIMIT n BATCHES wrote its n batches
    FAILED = "failed"  # a permanent failure; ``Ended.error`` says which


Position = tuple[str, int, int]  # (topic, partition, offset) of one message


@dataclass(frozen=True)
class Ended:
    """How a run ended; ``at``: the message it failed on (``ALTER STREAM ... SKIP FAILED
    MESSAGE`` steps past it)."""

    how: RunEnd
    error: str | None = None
    at: Position | None = None


@dataclass(frozen=True)
class Counts:
    """What one write added: messages (dead-lettered and skipped ones included), batches,
    dead-lettered messages, skipped messages."""

    messages: int = 0
    batches: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    requested: float = 0.0  # time.monotonic() when its commit was asked for


class Progress:
    """A stream's counters: the totals SHOW STREAMS shows, and what the catalog has not been
    told yet. Updated from the consumer thread (as commits are answered): locked."""

    def __init__(
        self, messages: int = 0, batches: int = 0, dead_lettered: int = 0, skipped: int = 0
    ) -> None:
        self._lock = threading.Lock()
        self._total = [messages, batches, dead_lettered, skipped]
        self._pending = [0, 0, 0, 0]

    def add(self, counts: Counts) -> None:
        delta = (counts.messages, counts.batches, counts.dead_lettered, counts.skipped)
        with self._lock:
            for i, value in enumerate(delta):
                self._total[i] += value
                self._pending[i] += value

    @property
    def totals(self) -> Counts:
        with self._lock:
            return Counts(*self._total)

    def take(self) -> tuple[int, int, int, int]:
        """(messages, batches, dead-lettered, skipped) added since the last call."""
        with self._lock:
            pending, self._pending = self._pending, [0, 0, 0, 0]
        return pending[0], pending[1], pending[2], pending[3]


@dataclass(frozen=True)
class RunnerSettings:
    stop_grace: float = 15.0  # how long a STOP waits for the write in progress and commits
    backoff: Backoff = field(default_factory=Backoff)
    max_round_trip: int = 10000  # messages per transform round trip and per combined write
    max_response_bytes: int = 1000000  # builtin:request responses (Kafka's message.max.bytes)
    slow_after: float = 5.0  # a graph write or read with no answer this long shows in last_error


class Source(Protocol):
    """The consuming side of a stream (``kafka.StreamConsumer``; tests use fakes)."""

    epoch: int
    fatal: str | None

    def start(self) -> None: ...
    async def opened(self) -> None: ...
    async def batches(self, max_messages: int) -> list[Batch]: ...
    def ready(self, max_messages: int) -> list[Batch]: ...
    def release(self, batch: Batch) -> None: ...
    def commit(self, offsets: dict[TopicPartition, int], token: Any) -> None: ...
    async def reseek(self, positions: dict[TopicPartition, int | None], epoch: int) -> None: ...
    def assignment(self) -> list[TopicPartition]: ...
    async def drain_commits(self, timeout: float) -> bool: ...
    async def close(self, grace: float = 5.0) -> None: ...


class Transformer(Protocol):
    """The stream's transform (``transform.TransformRunner``).

    ``metadata``: whether the loaded transform reads messages with their metadata (a Memgraph
    module, or a script with ``stream_messages``): then ``run`` and ``submit`` take the Kafka
    messages themselves, else their values. It may change when a worker (re)loads."""

    metadata: bool

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def run(self, batch: list[Any]) -> list[Query]: ...
    async def submit(self, batches: list[list[Any]]) -> Round: ...
    async def collect(self, batch_round: Round) -> list[list[Query] | TransformFailed] | None: ...


class Producer(Protocol):
    """Dead letters and responses (``producer.StreamProducer``)."""

    async def deliver(self, records: list[Record]) -> list[Failed | None]: ...
    async def close(self) -> None: ...


class RunObserver:
    """What a run reports as it goes (the proxy's metrics, ``proxy.metrics``); this base
    ignores it all."""

    def batch_size(self, messages: int) -> None:
        """A batch of ``messages`` messages was formed and transformed."""

    def stage(self, stage: str, seconds: float) -> None:
        """One ``transform``, ``write`` or ``commit`` took ``seconds``."""

    def failure(self, kind: str) -> None:
        """A message or batch failed: ``transform``, ``write``, ``kafka``, ``internal``."""


# (runner as the consumer's hooks, the consumer's on_committed callback) -> the source
SourceFactory = Callable[["StreamRunner", Callable[[list[Any]], None]], Source]


class _Permanent(Exception):
    """Ends the run with ``RunEnd.FAILED``; ``at``: the message it failed on, if one."""

    def __init__(self, message: str, at: Position | None = None) -> None:
        super().__init__(message)
        self.at = at


@dataclass
class _Item:
    """A transformed batch, ready to be written: a user transform's batch result (``split``),
    the outcome of each message (built-ins; user transforms taken apart after a failure), or
    the failure that stops the stream at this batch (``failure``: nothing of it is written)."""

    batch: Batch
    split: Split | None = None
    outcomes: list[Outcome] | None = None
    failure: str | None = None
    _plain: bool | None = field(default=None, repr=False, compare=False)

    def combinable(self, mode: str) -> bool:
        """Written with its neighbours in one round trip: nothing in it needs per-message
        care (no rejected message, not a command or request)."""
        if mode != "write" or self.failure is not None:
            return False
        if self.split is not None:
            return not self.split.rejected
        plain = self._plain
        if plain is None:  # asked several times per write: looked at once
            plain = self._plain = self.outcomes is not None and all(
                type(o) is Accepted or isinstance(o, Accepted) for o in self.outcomes
            )
        return plain

    def queries(self) -> list[Query]:
        if self.split is not None:
            return self.split.queries
        return [
            query
            for outcome in self.outcomes or ()
            if isinstance(outcome, Accepted)
            for query in outcome.queries
        ]


def _after(run: list[_Item]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last message of the batches of ``run``."""
    after: dict[TopicPartition, int] = {}
    for item in run:
        after.update(item.batch.after())
    return after


def _same(one: list[_Item], other: list[_Item]) -> bool:
    return len(one) == len(other) and all(a is b for a, b in zip(one, other, strict=True))


@dataclass(frozen=True, eq=False)
class _Ahead:
    """The next write, prepared while the graph ran the one before (``_look_ahead``)."""

    run: list[_Item]
    queries: list[Query]
    fence: Fence | None
    prepared: Any


class StreamRunner:
    """Runs one stream until stopped, finished (LIMIT) or failed: ``task`` ends with an
    ``Ended``. ``stop()`` ends it (after the write in progress). ``progress`` and
    ``health.last_error`` are what SHOW STREAMS shows while it runs."""

    def __init__(
        self,
        definition: StreamDefinition,
        *,
        writer: GraphWriter,
        transform: Transformer | None,
        make_source: SourceFactory,
        make_producer: Callable[[], Producer],
        settings: RunnerSettings,
        progress: Progress,
        health: Health | None = None,
        limit: int | None = None,
        on_limit: Callable[[int], Awaitable[None]] | None = None,
        applied: dict[TopicPartition, tuple[int, float]] | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self.writer = writer
        self.transform = transform
        self.make_source = make_source
        self.make_producer = make_producer
        self.settings = settings
        self.progress = progress
        self.health = health or Health()
        self.limit = limit  # batches left to write (START ... LIMIT)
        self.on_limit = on_limit
        # Per partition, the offset of the last message applied and when (SHOW STREAM OFFSETS).
        self.applied = applied if applied is not None else {}
        self.observer = observer or RunObserver()
        uri = definition.transform.uri if definition.transform is not None else None
        self.builtin = builtin.lookup(uri) if uri is not None else None
        self.mode: builtin.Mode = self.builtin.mode if self.builtin else "write"
        # A mapping runs here, in the transform stage, instead of a transform (``transform``
        # is then None): built in ``_run``, where a failure can end the run.
        self.mapper: Mapper | None = None
        self.policy = definition.error_policy
        self.exactly_once = definition.exactly_once
        self.known: dict[TopicPartition, int | None] = {}  # positions in the graph
        self.stopping = asyncio.Event()
        backoff = settings.backoff
        self.graph_outage = Outage(self.name, "writing to the graph", self.health, backoff)
        self.read_outage = Outage(self.name, "reading from the graph", self.health, backoff)
        self.produce_outages: dict[str, Outage] = {}
        self.source: Source | None = None
        self.producer: Producer | None = None
        self._idle = asyncio.Event()  # no write in progress
        self._idle.set()
        self._queue: asyncio.Queue[list[_Item]] = asyncio.Queue()
        self._leftover: list[_Item] = []
        # The next write, prepared while the graph ran the current one (``_look_ahead``).
        self._ahead: _Ahead | None = None
        # FalkorDB's writer prepares writes (``FalkorDBWriter.prepare``); Bolt's sends params.
        self._prepare: Callable[..., Any] | None = getattr(writer, "prepare", None)
        self._current: list[Batch] = []  # the batch being applied (Host.write's fence)
        self._lost: FenceLost | None = None  # a write found the fence lost: seek again
        self._in_flight = 0  # batches taken by the transform stage, not yet written
        self._room = asyncio.Event()
        self.task: asyncio.Task[Ended] = asyncio.get_running_loop().create_task(
            self._main(), name=f"stream {self.name}"
        )

    # -- the run --------------------------------------------------------------------------------

    async def _main(self) -> Ended:
        try:
            return await self._run()
        except _Permanent as exc:
            # What stops a stream is its input (a message, its transform, its settings, a
            # query the backend refuses): a warning, as for any bad input; SHOW STREAMS says
            # the rest. ERROR is for the proxy's own faults.
            level = logging.ERROR if str(exc).startswith("internal error") else logging.WARNING
            log.log(level, "stream %s stopped on an error: %s", self.name, exc)
            self.observer.failure("message" if exc.at is not None else "stream")
            return Ended(RunEnd.FAILED, str(exc), exc.at)
        except Interrupted:
            return Ended(RunEnd.STOPPED)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.stopping.is_set() and task is not None and task.uncancel() == 0:
                return Ended(RunEnd.STOPPED)  # stop() cancelled what it did not wait for
            raise
        except Exception as exc:  # a bug: say so, keep the proxy and other streams alive
            log.exception("stream %s failed", self.name)
            return Ended(RunEnd.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            await asyncio.shield(self._release())

    async def _release(self) -> None:
        source, self.source = self.source, None
        producer, self.producer = self.producer, None
        if source is not None:
            with contextlib.suppress(Exception):
                await source.close(self.settings.stop_grace)
        if self.transform is not None:
            with contextlib.suppress(Exception):
                await self.transform.stop()
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.close()

    async def _run(self) -> Ended:
        definition = self.definition
        if definition.mapping is not None:
            try:
                self.mapper = Mapper(definition.mapping, mapping_dialect(self.writer))
            except BadMapping as exc:
                raise _Permanent(f"the mapping cannot be used: {exc}") from None
        elif definition.transform is not None:
            uri = definition.transform.uri
            if builtin.is_builtin(uri) and self.builtin is None:
                raise _Permanent(
                    f"{uri} is not a built-in transform of this boltstream "
                    f"(it has {builtin.names()})"
                )
            if self.transform is None:
                raise _Permanent("internal error: a transform stream without its transform")
            try:
                await self.transform.start()
            except TransformError as exc:
                raise _Permanent(f"the transform could not be loaded: {exc}") from None
        source = self.source = self.make_source(self, self._committed)
        source.start()
        try:
            await source.opened()
        except Exception as exc:
            raise _Permanent(f"cannot create the Kafka consumer: {exc}") from None
        transforming = asyncio.get_running_loop().create_task(
            self._transform_stage(source), name=f"stream {self.name} transform"
        )
        try:
            return await self._write_stage(source, transforming)
        finally:
            transforming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await transforming

    def _committed(self, tokens: list[Any]) -> None:
        """The broker has the offsets of these writes (called on the consumer's thread)."""
        now = time.monotonic()
        for token in tokens:
            if isinstance(token, Counts):
                self.progress.add(token)
                if token.requested:
                    self.observer.stage("commit", now - token.requested)

    async def stop(self) -> None:
        """End the run: after the write in progress and its commit, if one is under way;
        else at once. Waits at most ``stop_grace`` for the write."""
        self.stopping.set()
        if self._idle.is_set():
            self.task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), self.settings.stop_grace)
        except TimeoutError:
            self.task.cancel()
        except (asyncio.CancelledError, Exception):
            pass
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    # -- the consumer's hooks (rebalances) --------------------------------------------------------

    async def quiesce(self) -> None:
        """A rebalance: the batches not written are void (the consumer bumped its epoch);
        wait for the write in progress, if any."""
        await self._idle.wait()

    async def positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        found = await self._read_positions()
        for tp in partitions:
            self.known[tp] = found.get(tp)
        return {tp: found.get(tp) for tp in partitions}

    async def _read_positions(self) -> dict[TopicPartition, int]:
        def read() -> Awaitable[dict[TopicPartition, int]]:
            return self.writer.read_positions(self.name, self.definition.owner)

        try:
            return await self._on_graph(read, self.read_outage)
        except PermanentWriteError as exc:
            raise _Permanent(str(exc)) from None

    # -- the transform stage --------------------------------------------------------------------

    @property
    def _transformer(self) -> Transformer:
        assert self.transform is not None  # only transform streams run transform rounds
        return self.transform

    async def _transform_stage(self, source: Source) -> None:
        try:
            if self.mapper is not None:
                await self._map_rounds(source, self.mapper)
            else:
                await self._transform_rounds(source)
        except _Permanent as exc:
            self._queue.put_nowait([_Item(Batch([], source.epoch, 0), failure=str(exc))])
        except Exception as exc:  # a bug: the write stage stops the stream with it
            log.exception("stream %s: the transform stage failed", self.name)
            self._queue.put_nowait(
                [
                    _Item(
                        Batch([], source.epoch, 0),
                        failure=f"internal error: {type(exc).__name__}: {exc}",
                    )
                ]
            )

    async def _transform_rounds(self, source: Source) -> None:
        """Two rounds in flight: the worker transforms one while this reads the other's
        results. Items go to the write stage's queue, which never blocks: what is in flight
        anywhere is bounded by the consumer (batches count until the write stage releases
        them)."""
        pending: deque[tuple[list[Batch], Round]] = deque()
        redo: list[Batch] = []  # to transform again (their worker was replaced), first
        while True:
            while len(pending) < 2:
                batches = await self._take(source, redo, wait=not pending)
                if not batches:
                    break
                if redo and batches[0] is redo[0]:
                    redo = redo[len(batches) :]
                round_ = await self._transformer.submit([self._inputs(b) for b in batches])
                pending.append((batches, round_))
            batches, round_ = pending.popleft()
            began = time.monotonic()
            results = await self._transformer.collect(round_)
            self.observer.stage("transform", time.monotonic() - began)
            if results is None:  # an earlier failure replaced its worker: again, in order
                redo = batches + await self._void(pending) + redo
                continue
            items: list[_Item] = []
            for index, (batch, result) in enumerate(zip(batches, results, strict=False)):
                if not isinstance(result, TransformFailed):
                    items.append(await self._interpret(batch, result))
                    continue
                # The worker is being replaced: what was sent after this batch did not run.
                redo = batches[index + 1 :] + await self._void(pending) + redo
                if result.unanswered > 1 and result.kind in AMBIGUOUS:
                    # Several batches had no reply yet: which one failed? This, alone, tells.
                    items.append(await self._transform_alone(batch))
                else:
                    items.append(await self._after_failure(batch, result))
                break
            self._queue.put_nowait(items)
            if items and items[-1].failure is not None:
                return

    async def _map_rounds(self, source: Source, mapper: Mapper) -> None:
        """A mapping instead of a transform: each batch's messages mapped here, one outcome
        per message (a message that cannot be read or mapped is rejected alone)."""
        while True:
            batches = await self._take(source, [], wait=True)
            self._queue.put_nowait(
                [_Item(batch, outcomes=mapper.outcomes(batch.messages)) for batch in batches]
            )
            await asyncio.sleep(0)  # let the write stage start on them

    async def _take(self, source: Source, redo: list[Batch], *, wait: bool) -> list[Batch]:
        """The next batches to transform: those to do again first, else the formed ones (up
        to ``max_round_trip`` messages; when ``wait``, at least one batch)."""
        if redo:
            taken: list[Batch] = []
            count = 0
            for batch in redo:
                if taken and count + len(batch) > self.settings.max_round_trip:
                    break
                taken.append(batch)
                count += len(batch)
            return taken
        while True:
            if self.limit is not None and self._in_flight >= self.limit:
                # LIMIT n BATCHES: no more in flight than the batches left to write.
                if not wait:
                    return []
                self._room.clear()
                await self._room.wait()
                continue
            if wait:
                batches = await source.batches(self.settings.max_round_trip)
                if not batches:
                    if self.stopping.is_set():
                        raise Interrupted
                    reason = source.fatal or "the Kafka consumer stopped"
                    raise _Permanent(f"Kafka consumer failed: {reason}")
            else:
                batches = source.ready(self.settings.max_round_trip)
                if not batches:
                    return []
            fresh = []
            for batch in batches:
                if batch.epoch != source.epoch or (
                    self.limit is not None and self._in_flight >= self.limit
                ):
                    source.release(batch)
                else:
                    fresh.append(batch)
                    self._in_flight += 1
            if fresh or not wait:
                return fresh

    async def _void(self, pending: deque[tuple[list[Batch], Round]]) -> list[Batch]:
        """Rounds sent to a worker that is being replaced: collected (nothing to read), their
        batches returned, to be transformed again."""
        batches: list[Batch] = []
        while pending:
            more, round_ = pending.popleft()
            if await self._transformer.collect(round_) is not None:
                raise RuntimeError("a round sent after a failed one was answered")
            batches += more
        return batches

    async def _transform_alone(self, batch: Batch) -> _Item:
        try:
            pairs = await self._transformer.run(self._inputs(batch))
        except TransformFailed as failure:
            return await self._after_failure(batch, failure)
        except TransformError as exc:  # a restarted worker did not load
            raise _Permanent(f"the transform failed: {exc}") from None
        return await self._interpret(batch, pairs)

    def _written(self, batches: int) -> None:
        """The write stage is done with ``batches`` batches (written or dropped)."""
        self._in_flight -= batches
        self._room.set()

    async def _interpret(self, batch: Batch, pairs: list[Query]) -> _Item:
        if self.builtin is None:
            for item in pairs:
                if item[0] == DEAD_LETTER_QUERY:
                    break
            else:  # the common case: a batch result that rejects nothing
                return _Item(batch, split=Split(pairs))
        size = len(batch.messages)
        if self.builtin is not None:
            try:
                return _Item(batch, outcomes=per_message(pairs, size))
            except OutcomeError as exc:
                return _Item(batch, failure=f"the transform broke the built-in contract: {exc}")
        try:
            return _Item(batch, split=split(pairs, size))
        except OutcomeError:
            return _Item(batch, outcomes=await self._isolate(self._inputs(batch)))

    async def _after_failure(self, batch: Batch, failure: TransformFailed) -> _Item:
        if failure.kind is FailureKind.STOPPED:
            return _Item(batch, failure=f"the transform failed: {failure}")
        # Which message made it fail? (A built-in fails on a message only by crashing or
        # timing out on it.) Each message alone tells: with STOP too, so that the error names
        # the message (and ALTER STREAM ... SKIP FAILED MESSAGE can step past it); the
        # messages before it are written, as a batch the writer refuses would be.
        return _Item(batch, outcomes=await self._isolate(self._inputs(batch)))

    def _inputs(self, batch: Batch) -> list[Any]:
        """What the transform is given: the messages themselves when it reads their metadata
        (``Transformer.metadata``), else their values."""
        return batch.messages if self._transformer.metadata else batch.values()

    async def _isolate(self, values: list[Any]) -> list[Outcome]:
        """The outcome of each message, from the transform run on that message alone."""
        outcomes: list[Outcome] = []
        for value in values:
            try:
                pairs = await self._transformer.run([value])
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

    # -- the write stage ------------------------------------------------------------------------

    async def _write_stage(self, source: Source, transforming: asyncio.Task[None]) -> Ended:
        while not self.stopping.is_set():
            items = await self._next_items(transforming)
            self._idle.clear()
            try:
                end = await self._write_items(source, items)
            finally:
                self._idle.set()
            if end is not None:
                return end
            lost, self._lost = self._lost, None
            if lost is not None:
                # Not while busy: seeking needs the consumer's thread, which may be waiting
                # in a rebalance for this stage to be idle.
                await self._resync(source, lost)
        return Ended(RunEnd.STOPPED)

    async def _next_items(self, transforming: asyncio.Task[None]) -> list[_Item]:
        """The transformed batches waiting (at least one), up to ``max_round_trip``
        messages (at least one batch)."""
        items, self._leftover = self._leftover, []
        if not items:
            items = await self._queue.get()
        # Not beyond the items a prepared write is for (``_look_ahead`` took them as here).
        return self._gather(items, more=self._ahead is None)

    def _gather(self, items: list[_Item], *, more: bool) -> list[_Item]:
        """``items`` and (``more``) the transformed batches waiting after them, up to
        ``max_round_trip`` messages (at least one batch); the rest goes to ``_leftover``."""
        count = sum(len(item.batch) for item in items)
        while more and count < self.settings.max_round_trip and not self._queue.empty():
            extra = self._queue.get_nowait()
            items += extra
            count += sum(len(item.batch) for item in extra)
        keep: list[_Item] = []
        total = 0
        for index, item in enumerate(items):
            total += len(item.batch)
            if keep and total > self.settings.max_round_trip:
                self._leftover = items[index:] + self._leftover
                break
            keep.append(item)
        return keep

    async def _write_items(self, source: Source, items: list[_Item]) -> Ended | None:
        index = 0
        while index < len(items):
            item = items[index]
            if item.batch.epoch != source.epoch and item.failure is None:
                source.release(item.batch)  # a seek or rebalance voided it
                self._written(1)
                index += 1
                continue
            if item.failure is not None:
                if self.stopping.is_set():
                    return Ended(RunEnd.STOPPED)
                self.observer.failure("batch")
                first = item.batch.messages[0] if item.batch.messages else None
                if first is None:
                    return Ended(RunEnd.FAILED, item.failure)
                return Ended(
                    RunEnd.FAILED,
                    f"{_position(first)} (the first message of the batch): {item.failure}",
                    _at(first),
                )
            end = index + 1
            if item.combinable(self.mode):
                while (
                    end < len(items)
                    and items[end].combinable(self.mode)
                    and items[end].batch.epoch == source.epoch
                    and (self.limit is None or end - index < self.limit)
                ):
                    end += 1
            run = items[index:end]
            for one in run:
                self.observer.batch_size(len(one.batch))
            try:
                if len(run) > 1 or (self._prepare is not None and item.combinable(self.mode)):
                    await self._write_combined(source, run)
                else:
                    self._ahead = None
                    await self._write_one(source, item)
            except FenceLost as lost:
                for rest in items[end:]:
                    source.release(rest.batch)
                self._written(len(items) - end)
                self._lost = lost
                return None
            finally:
                for done in run:
                    source.release(done.batch)
                self._written(len(run))
            index = end
            if self.limit is not None:
                self.limit -= len(run)
                if self.on_limit is not None:
                    await self.on_limit(max(self.limit, 0))
                if self.limit <= 0:
                    await source.drain_commits(self.settings.stop_grace)
                    return Ended(RunEnd.FINISHED)
            if self.stopping.is_set():
                for rest in items[index:]:
                    source.release(rest.batch)
                return Ended(RunEnd.STOPPED)
        return None

    async def _write_combined(self, source: Source, run: list[_Item]) -> None:
        """Several batches in one round trip (or one batch, where the writer prepares its
        writes); one at a time if that is refused. While the graph runs it, the next write is
        prepared (``_look_ahead``)."""
        ahead, self._ahead = self._ahead, None
        after = _after(run)
        fence = self._fence_to(after) if self.exactly_once else None
        if ahead is not None and _same(ahead.run, run) and ahead.fence == fence:
            queries, prepared = ahead.queries, ahead.prepared
        else:
            queries, prepared = self._queries_of(run), None

        def write() -> Awaitable[None]:
            if prepared is not None:
                return self.writer.write_prepared(prepared)  # type: ignore[attr-defined, no-any-return]
            return self.writer.write_batch(
                queries, self.definition.owner, group=True, atomic=True, fence=fence
            )

        began = time.monotonic()
        try:
            if self._prepare is None:
                await self._on_graph(write, self.graph_outage)
            else:
                await self._write_and_look_ahead(source, write, fence)
            self.observer.stage("write", time.monotonic() - began)
        except (NotAtomic, PermanentWriteError) as exc:
            self._ahead = None
            log.debug("stream %s: %d batches written one by one (%s)", self.name, len(run), exc)
            for item in run:
                await self._write_one(source, item)
            return
        except BaseException:
            self._ahead = None
            raise
        if fence is not None:
            self.known.update(fence.next)
        self._commit(source, dict(after), Counts(sum(len(item.batch) for item in run), len(run)))

    async def _write_and_look_ahead(
        self, source: Source, write: Callable[[], Awaitable[None]], fence: Fence | None
    ) -> None:
        assert self._prepare is not None
        writing = asyncio.ensure_future(self._on_graph(write, self.graph_outage))
        getting: asyncio.Future[list[_Item]] | None = None
        try:
            await asyncio.sleep(0)  # the write goes out first
            while not writing.done():
                if self._leftover or not self._queue.empty():
                    try:
                        self._look_ahead(source, self._prepare, fence)
                    except Exception as exc:  # then the next write does it all itself
                        log.debug("stream %s: next write not prepared: %r", self.name, exc)
                        self._ahead = None
                    break
                # Nothing transformed yet: wait for the write, or for the next round.
                getting = asyncio.ensure_future(self._queue.get())
                await asyncio.wait((writing, getting), return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    self._leftover = getting.result()
                getting.cancel()  # a get cancelled before it returned takes nothing
                getting = None
            await writing
        finally:
            writing.cancel()  # when this stage was cancelled meanwhile
            if getting is not None:
                getting.cancel()

    def _queries_of(self, run: list[_Item]) -> list[Query]:
        queries = [query for item in run for query in item.queries()]
        return self.mapper.prepare(queries) if self.mapper is not None else queries

    def _look_ahead(self, source: Source, prepare: Callable[..., Any], fence: Fence | None) -> None:
        """Prepare the write that will follow the current one (``fence``: its fence)
        from the transformed batches already waiting, assuming the current one succeeds: CPU
        work (planning, composing, rendering) done while the graph runs the current one. The next
        write uses it only if it is for the same batches and the same fence."""
        if self.limit is not None or self.stopping.is_set():
            return
        items, self._leftover = self._leftover, []
        if not items:
            if self._queue.empty():
                return
            items = self._queue.get_nowait()
        keep = self._gather(items, more=True)
        self._leftover = keep + self._leftover  # what _next_items takes next, as cut here
        run: list[_Item] = []
        for item in keep:
            if not item.combinable(self.mode) or item.batch.epoch != source.epoch:
                break
            run.append(item)
        if not run:
            return
        after = _after(run)
        next_fence = None
        if self.exactly_once:  # where the current write leaves the positions
            next_fence = self._fence_to(after, {**self.known, **(fence.next if fence else {})})
        queries = self._queries_of(run)
        prepared = prepare(queries, fence=next_fence)
        if prepared is not None:
            self._ahead = _Ahead(run, queries, next_fence, prepared)

    def _commit(self, source: Source, offsets: dict[TopicPartition, int], counts: Counts) -> None:
        """Hand the written offsets to the consumer (committed in order, asynchronously)."""
        now = time.time()
        for tp, offset in offsets.items():
            self.applied[tp] = (offset - 1, now)
        source.commit(offsets, replace(counts, requested=time.monotonic()))

    async def _write_one(self, source: Source, item: _Item) -> None:
        """Apply one batch (by the stream's mode and error policy), produce its dead letters
        and responses, commit its offsets."""
        messages = item.batch.messages
        applier = Applier(
            self,
            stop_on_failure=self.policy == "stop",
            stream=self.name,
            max_response_bytes=self.settings.max_response_bytes,
        )
        stopped: StopAt | None = None
        self._current = [item.batch]
        try:
            try:
                await self._apply(item, applier)
            except StopAt as exc:
                stopped = exc
        finally:
            self._current = []
        done = stopped.index if stopped else len(messages)
        # Responses of the requests before the end, then the dead letters: acknowledged by
        # the broker before any offset is committed.
        responses = [(i, r) for i, r in applier.responses if i < done]
        for index, refusal in await self._deliver([r for _, r in responses], "responses"):
            response_index = responses[index][0]
            try:
                applier.fail(
                    response_index,
                    f"the response could not be produced to topic "
                    f"{responses[index][1].topic!r}: {refusal.reason}",
                )
            except StopAt as exc:
                if stopped is None or exc.index < stopped.index:
                    stopped = exc
        done = stopped.index if stopped else len(messages)
        failures = [f for f in applier.failures if f.index < done]
        dead = 0
        if self.policy == "dead_letter" and failures:
            topic = self.definition.dead_letter_topic or ""
            records = [dead_letter(self.name, topic, messages[f.index], f.reason) for f in failures]
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
                    "stream %s: %s dead-lettered: %s", self.name, _position(message), failure.reason
                )
            else:
                log.warning(
                    "stream %s: %s skipped: %s", self.name, _position(message), failure.reason
                )
        if done and self.exactly_once:
            await self._advance(messages[:done])
        if done:
            self._commit(
                source, next_offsets(messages[:done]), Counts(done, 1, dead, len(failures) - dead)
            )
        for _failure in failures:
            self.observer.failure("message")
        if stopped is not None:
            culprit = messages[stopped.index]
            raise _Permanent(f"{_position(culprit)}: {stopped.reason}", _at(culprit))

    async def _apply(self, item: _Item, applier: Applier) -> None:
        messages = item.batch.messages
        if item.outcomes is None:
            assert item.split is not None
            rejected = item.split.rejected
            if rejected and self.policy == "stop":
                index = min(rejected)
                raise _Permanent(
                    f"{_position(messages[index])}: rejected by the transform: {rejected[index]}",
                    _at(messages[index]),
                )
            try:
                await self.write(item.split.queries, True, through=len(messages))
            except PermanentWriteError as exc:
                if self.policy == "stop" and _not_about_a_message(exc):
                    raise _Permanent(str(exc)) from None
                # Which message? Run the transform on each alone, write each alone (with
                # STOP too: the error names the message, which SKIP FAILED MESSAGE can skip).
                outcomes = await self._isolate(self._inputs(item.batch))
                await applier.write_outcomes(outcomes, group=True)
                return
            for index in sorted(rejected):
                applier.fail(index, rejected[index])
        elif self.mode == "request":
            await applier.serve(item.outcomes, messages)
        else:
            await applier.write_outcomes(item.outcomes, group=self.mode == "write")

    # -- exactly once -----------------------------------------------------------------------------

    def _fence(self, messages: list[Any]) -> Fence:
        return self._fence_to(next_offsets(messages))

    def _fence_to(
        self,
        after: dict[TopicPartition, int],
        known: Mapping[TopicPartition, int | None] | None = None,
    ) -> Fence:
        """Moving the stored positions to ``after``, from ``known`` (default: where they are)."""
        expected = self.known if known is None else known
        return Fence(self.name, {tp: expected.get(tp) for tp in after}, after)

    async def _advance(self, messages: list[Any]) -> None:
        """Move the stored positions past ``messages`` if the batch's writes did not (its last
        messages were skipped or dead-lettered, or wrote nothing)."""
        after = next_offsets(messages)
        if all(self.known.get(tp) == offset for tp, offset in after.items()):
            return
        fence = Fence(self.name, {tp: self.known.get(tp) for tp in after}, after)

        def write() -> Awaitable[None]:
            return self.writer.write_batch([], self.definition.owner, fence=fence)

        try:
            await self._on_graph(write, self.graph_outage)
        except PermanentWriteError as exc:
            raise _Permanent(f"moving the stream's position failed: {exc}") from None
        self.known.update(after)

    async def _resync(self, source: Source, lost: FenceLost) -> None:
        """Someone else moved our positions: go on from where the graph says."""
        epoch = source.epoch
        log.warning(
            "stream %s: its positions in the graph are not where it left them (a "
            "rebalance, or another proxy running it); going on from the graph's",
            self.name,
        )
        found = await self._read_positions()
        assigned = source.assignment() or list(lost.found)
        wanted = {tp: found.get(tp) for tp in assigned}
        self.known.update(wanted)
        await source.reseek(wanted, epoch)

    # -- executors.Host: writes and reads with retries --------------------------------------

    async def _on_graph(self, operation: Callable[[], Awaitable[_T]], outage: Outage) -> _T:
        """Run a graph operation through transient failures (retried with backoff) and
        through silence: a backend that answers nothing (stopped, hung) shows in
        ``last_error`` after ``slow_after`` seconds, whichever path writes or reads."""
        return await retrying(
            operation,
            outage,
            TransientWriteError,
            stopping=self.stopping,
            slow_after=self.settings.slow_after,
        )

    async def write(self, queries: list[Query], group: bool, *, through: int | None = None) -> None:
        """Write to the graph; transient failures retried. Exactly-once: also moves the
        positions past the current batch's first ``through`` messages."""
        fence = None
        if self.exactly_once and self._current:
            messages = self._current[0].messages
            fence = self._fence(messages[: len(messages) if through is None else through])

        sent = queries if self.mapper is None else self.mapper.prepare(queries)

        def attempt() -> Awaitable[None]:
            return self.writer.write_batch(sent, self.definition.owner, group=group, fence=fence)

        began = time.monotonic()
        try:
            await self._on_graph(attempt, self.graph_outage)
        except PermanentWriteError as exc:
            if sent is not queries and exc.index is not None:
                exc.index = None  # an index into the joined queries, not into ``queries``
            raise
        self.observer.stage("write", time.monotonic() - began)
        if fence is not None:
            self.known.update(fence.next)

    async def read(self, query: str, params: dict[str, Any]) -> QueryResult:
        """Run a read-only query; transient failures retried."""

        def attempt() -> Awaitable[QueryResult]:
            return self.writer.read(query, params, self.definition.owner)

        return await self._on_graph(attempt, self.read_outage)

    async def _deliver(self, records: list[Record], what: str) -> list[tuple[int, Failed]]:
        """Produce ``records``; transient failures retried. The permanent failures, as
        (position in ``records``, failure)."""
        if not records:
            return []
        if self.producer is None:
            self.producer = self.make_producer()
        producer = self.producer
        pending = list(range(len(records)))
        refused: list[tuple[int, Failed]] = []
        outage = self.produce_outages.get(what)
        if outage is None:
            outage = self.produce_outages[what] = Outage(
                self.name, f"producing {what} to Kafka", self.health, self.settings.backoff
            )

        async def attempt() -> None:
            nonlocal pending
            results = await producer.deliver([records[i] for i in pending])
            retry: list[tuple[int, Failed]] = []
            for index, result in zip(pending, results, strict=True):
                if result is None:
                    continue
                (refused if result.permanent else retry).append((index, result))
            pending = [index for index, _ in retry]
            if retry:
                raise _Undelivered(retry[0][1].reason)

        await retrying(attempt, outage, _Undelivered, stopping=self.stopping)
        return sorted(refused, key=lambda entry: entry[0])


class _Undelivered(Exception):
    """Some records were not acknowledged for a reason that may pass."""


def _position(message: Any) -> str:
    return f"topic {message.topic()!r} partition {message.partition()} offset {message.offset()}"


def _not_about_a_message(exc: PermanentWriteError) -> bool:
    """A refusal that no message causes (the stream's credentials): STOP names no message
    for it, so that SKIP FAILED MESSAGE cannot skip a good one."""
    return (exc.code or "").startswith("Neo.ClientError.Security.")


def _at(message: Any) -> Position:
    return (str(message.topic()), int(message.partition()), int(message.offset()))

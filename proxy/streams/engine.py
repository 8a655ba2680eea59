"""The stream engine: the registry of a proxy's streams and their lifecycle.

The engine answers the stream clauses (the handler calls ``create``, ``drop``,
``start_stream``, ``stop_stream``, ``start_all``, ``stop_all``, ``show`` and ``test``), keeps the
catalog (``catalog.py``) in step, and runs one ``runner.StreamRunner`` per running stream. What
each clause checks and computes is in ``clauses.py``; how a stream runs (the pipeline, delivery
guarantees, failures and error policies) is in ``runner.py``; Kafka clients in ``kafka.py``.

Clauses on one stream are serialised (a lock per stream name); STOP and DROP pre-empt a TEST in
progress on that stream (it ends with an error saying so). ``start()`` resumes every stream
whose status is ``running`` (so also after ``kill -9``); ``stop()`` stops the runners without
changing their recorded status, so they resume at the next start. A runner that ends by itself
is recorded: ``stopped`` after its ``LIMIT``, ``error`` with the reason after a permanent
failure. Counters reach the catalog every ``flush_interval`` seconds.

**Clusters.** The catalog is either this proxy's own (``catalog.Catalog``, SQLite) or a
cluster's (``cluster.ClusterCatalog``, shared through Kafka by several proxies). With a shared
catalog, a change made on another member reaches ``_follow``: the engine makes what runs here
match the catalog (a running stream runs here too, in its consumer group; a stopped, failed,
dropped or altered one stops or restarts here), without writing the catalog itself. Each
flush also tells the catalog which partitions this member holds (``heartbeat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections import defaultdict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from proxy.streams import indexes
from proxy.streams import offsets as kafka_offsets
from proxy.streams.access import StreamAccess
from proxy.streams.catalog import (
    CATALOG_FILE,
    Catalog,
    CatalogError,
    MemberStatus,
    StreamCatalog,
    StreamExists,
    StreamRecord,
    StreamState,
)
from proxy.streams.clauses import (
    DEFAULT_BATCH_INTERVAL_MS,
    DEFAULT_BATCH_SIZE,
    Checks,
    Live,
    StreamError,
    StreamStatus,
    define,
    redact,
    redefine,
    show_rows,
    shown_name,
    test_stream,
)
from proxy.streams.definition import SHOWN_POLICY, StreamDefinition
from proxy.streams.kafka import (
    FORCED,
    StreamConsumer,
    TopicAdmin,
    TopicMissing,
    admin_config,
    consumer_config,
    producer_config,
    reason_of,
    set_group_offsets,
)
from proxy.streams.names import UnsafeValue, check_client_config, check_topic
from proxy.streams.offsets import OffsetError, PartitionOffsets, Target
from proxy.streams.positions import Fence, FenceLost, TopicPartition
from proxy.streams.producer import StreamProducer
from proxy.streams.retry import Backoff, Health
from proxy.streams.runner import (
    Ended,
    Progress,
    RunEnd,
    RunnerSettings,
    RunObserver,
    Source,
    StreamRunner,
)
from proxy.streams.spec import StreamOptions, StreamSpec
from proxy.streams.transform import TransformPolicy, TransformRunner, TransformSource
from proxy.streams.writers import GraphWriter, WriteError

_TRIM_EVERY = 30.0  # seconds between returns of free heap memory to the system
MAX_OFFSET = 2**63 - 1  # Kafka offsets are 64-bit signed integers


def _trim_heap() -> None:
    """Give the system back the free memory of the C heap (glibc's ``malloc_trim``): a stream
    that caught up with a backlog leaves large free areas that the allocator would otherwise
    keep for good. Nothing happens where that call does not exist."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _reason(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else reason_of(exc)


_M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


def _limit_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas for the threads started from now on. Each stream
    has a consumer thread of its own, and glibc gives new threads new arenas (up to eight per
    core), each keeping what it once held: measured, the proxy's idle memory grew by 5 MB per
    stream run without the limit, and stayed flat with it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


__all__ = [
    "DEFAULT_BATCH_INTERVAL_MS",
    "DEFAULT_BATCH_SIZE",
    "EngineSettings",
    "OffsetRow",
    "StreamEngine",
    "StreamError",
    "StreamStatus",
]

log = logging.getLogger("boltstream.streams")


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs streams (the proxy's configuration; defaults suit tests too).

    ``kafka_config``: librdkafka settings for every Kafka client (security, timeouts...),
    except the ones the engine owns (``kafka.FORCED``). ``group_prefix`` goes in front of a
    stream's name to make its consumer group id. ``exactly_once_refusal``: why the backend
    cannot give exactly-once delivery (None: it can).
    """

    kafka_config: Mapping[str, Any] = field(default_factory=dict)
    group_prefix: str = ""
    broker_timeout: float = 3.0  # CREATE's and TEST's metadata requests
    test_timeout: float = 10.0  # the longest TEST STREAM takes
    lag_timeout: float = 1.0  # SHOW STREAMS' lag requests
    transform_timeout: float = 30.0  # the longest one batch's transform may take
    transform_memory_mb: int = 512
    backoff: Backoff = field(default_factory=Backoff)
    stop_grace: float = 15.0
    flush_interval: float = 1.0  # counters to the catalog
    # Consumed, not yet written, per stream (at least one batch): two rounds of max_round_trip.
    # 50,000 gave the same rates and 20 MB more RSS that stayed after the streams (pymalloc).
    max_pending_messages: int = 20000
    max_pending_bytes: int = 16 * 1024 * 1024
    max_round_trip: int = 10000  # messages per transform round trip and per combined write
    exactly_once_refusal: str | None = None
    # Memgraph 2.x: the brokers of a CREATE KAFKA STREAM without BOOTSTRAP_SERVERS, and where
    # TRANSFORM module.procedure finds module.py (None: DATA_DIR/transformations).
    bootstrap_servers: str = ""
    transformations_dir: Path | None = None

    @property
    def client_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.kafka_config.items() if k not in FORCED}


@dataclass(frozen=True)
class OffsetRow:
    """One row of SHOW STREAM name OFFSETS (one partition of the stream's topic).

    ``committed``: the consumer group's committed offset (the next message to read);
    ``graph_position``: an exactly-once stream's position stored in the graph (what it
    resumes from); ``lag``: messages after the position the stream resumes from; ``holder``:
    who consumes the partition now ("this proxy", another member of the group, or None);
    ``last_applied_offset`` / ``last_applied_at``: the last message this proxy wrote to the
    graph from that partition and when (seconds since the epoch; since this proxy started)."""

    topic: str
    partition: int
    committed: int | None
    graph_position: int | None
    low_watermark: int
    high_watermark: int
    lag: int
    holder: str | None
    last_applied_offset: int | None
    last_applied_at: float | None


class StreamEngine:
    """All streams of one proxy. ``await start()`` before use, ``await stop()`` at the end.

    ``writer`` applies batches (the engine closes it in ``stop``); a stream with a database of
    its own writes through ``writer.for_database(name)``. ``policy`` says which transform URIs
    may be loaded; ``catalog``: a cluster's shared catalog (default: this proxy's own, in
    ``data_dir``); ``member``: this proxy's name in SHOW STREAMS' holders; ``access`` who may
    touch which stream; ``observe(name)`` the metrics of a stream's runs.
    """

    def __init__(
        self,
        data_dir: Path,
        writer: GraphWriter,
        policy: TransformPolicy,
        settings: EngineSettings | None = None,
        *,
        catalog: StreamCatalog | None = None,
        member: str = "this proxy",
        access: StreamAccess | None = None,
        default_database: str | None = None,
        observe: Any = None,
    ) -> None:
        self.access = access or StreamAccess.open()
        self.default_database = default_database
        self.observe = observe
        self._writers: dict[str, GraphWriter] = {}
        # Per stream and partition: the last offset applied and when (SHOW STREAM OFFSETS).
        self._applied: defaultdict[str, dict[TopicPartition, tuple[int, float]]] = defaultdict(dict)
        self.data_dir = Path(data_dir)
        self.settings = settings or EngineSettings()
        self.catalog: StreamCatalog = catalog if catalog is not None else Catalog(self.data_dir)
        self.member = member
        self.writer = writer
        self.policy = policy
        self.kafka_config = self.settings.client_config
        self.admin = TopicAdmin(self.kafka_config)
        # The largest record a stream produces (a request's response); librdkafka's default.
        self.max_message_bytes = int(self.kafka_config.get("message.max.bytes", 1000000))
        self._runners: dict[str, StreamRunner] = {}
        self._background: set[asyncio.Task[None]] = set()  # index advice (``indexes``)
        self._supervisors: set[asyncio.Task[None]] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tests: dict[str, asyncio.Task[list[tuple[str, dict[str, Any]]]]] = {}
        self._preempted: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._trim_due = False
        self._started = False
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the catalog and resume the streams recorded as running."""
        if self._started:
            return
        _limit_arenas()
        await self.catalog.open()
        self._started = True
        if self.catalog.shared:
            await self._adopt_local_streams()
        self.catalog.subscribe(self._changed)
        resumed = []
        for record in await self.catalog.all():
            if record.state.status == "running":
                async with self._locks[record.name]:
                    if await self._resume(record):
                        resumed.append(record.name)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if resumed:
            log.info("resumed streams: %s", ", ".join(resumed))

    async def _adopt_local_streams(self) -> None:
        """A proxy that stood alone joins a cluster: the streams of its own catalog join the
        cluster's (with their status; a name the cluster has already stays the cluster's),
        and the SQLite file is renamed, so they are adopted once (a DROP in the cluster is not
        undone at the next start). Counters start again from zero."""
        path = self.data_dir / CATALOG_FILE
        if not path.exists():
            return
        local = Catalog(self.data_dir)
        await local.open()
        try:
            records = await local.all()
        finally:
            await local.close()
        adopted, refused = [], []
        for record in records:
            if record.definition is None or await self.catalog.get(record.name) is not None:
                refused.append(record.name)
                continue
            state = StreamState(
                status=record.state.status,
                limit_batches=record.state.limit_batches,
                last_error=record.state.last_error,
            )
            try:
                await self.catalog.insert(record.definition, state)
                adopted.append(record.name)
            except StreamExists:
                refused.append(record.name)
        moved = path.with_name(f"{CATALOG_FILE}.adopted-by-cluster")
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(moved.with_name(moved.name + suffix))
        if adopted:
            log.info(
                "streams of this proxy's own catalog joined the cluster: %s", ", ".join(adopted)
            )
        if refused:
            log.warning(
                "streams of this proxy's own catalog left out of the cluster (a stream of "
                "that name exists there, or the definition is unreadable): %s; they stay in %s",
                ", ".join(refused),
                moved,
            )

    async def _resume(self, record: StreamRecord) -> bool:
        try:
            definition = self._startable(record, "resumed")
        except StreamError as exc:
            # A catalog written before names were checked, or by a newer version: not handed
            # to the Kafka client; the stream waits, marked error, for a DROP.
            log.error("%s", exc.message)
            await self.catalog.update(record.name, status="error", last_error=exc.message)
            return False
        self._launch(definition, record, record.state.limit_batches)
        return True

    async def stop(self) -> None:
        """Stop every runner (their recorded status stays, so they resume at the next start),
        save counters, close the catalog and the writer. Idempotent."""
        if self._stopped or not self._started:
            self._stopped = True
            with contextlib.suppress(Exception):
                await self.writer.close()
            return
        self._stopped = True
        for test in list(self._tests.values()):
            test.cancel()
        runners = list(self._runners.values())
        self._runners.clear()
        await asyncio.gather(*(runner.stop() for runner in runners), return_exceptions=True)
        for task in [*self._supervisors, *self._background]:
            task.cancel()
        await asyncio.gather(*self._supervisors, *self._background, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        progress = {r.name: r.progress.take() for r in runners}
        with contextlib.suppress(CatalogError):
            await self.catalog.add_progress({k: v for k, v in progress.items() if any(v)})
            await self.catalog.heartbeat({})  # holds nothing any more
        await self.catalog.close()
        with contextlib.suppress(Exception):
            await self.writer.close()
        self.admin.close()

    def _changed(self, name: str) -> None:
        """The catalog changed stream ``name`` (a shared catalog: maybe on another member)."""
        if self._stopped:
            return
        task = asyncio.get_running_loop().create_task(self._follow(name))
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _follow(self, name: str) -> None:
        """Make what runs here match the catalog's record of ``name``."""
        async with self._locks[name]:
            if self._stopped:
                return
            try:
                record = await self.catalog.get(name)
            except CatalogError as exc:
                log.error("stream %s: cannot read the catalog: %s", name, exc)
                return
            runner = self._runners.get(name)
            wanted = record is not None and record.state.status == "running"
            if runner is not None and (
                not wanted or record is None or record.definition != runner.definition
            ):
                del self._runners[name]
                await runner.stop()
                self._trim_due = True
                with contextlib.suppress(CatalogError):
                    await self.catalog.add_progress({name: runner.progress.take()})
                log.info("stream %s: stopped here, as the cluster's catalog says", name)
                runner = None
            if wanted and runner is None and record is not None:
                try:
                    definition = self._startable(record, "started on this member")
                except StreamError as exc:
                    log.error("%s", exc.message)
                    return
                self._launch(definition, record, record.state.limit_batches)
                log.info("stream %s: started here, as the cluster's catalog says", name)

    def holders(self, name: str) -> dict[str, list[tuple[str, int]]]:
        """Which member holds which partitions of stream ``name`` (this proxy alone: itself,
        if it runs the stream). For ``SHOW STREAMS`` and ``SHOW STREAM name OFFSETS``."""
        found = {member: status.partitions for member, status in self.catalog.members(name).items()}
        runner = self._runners.get(name)
        if runner is not None and runner.source is not None:
            found[self.member] = sorted(runner.source.assignment())
        elif runner is None:
            found.pop(self.member, None)
        return found

    def _running_here(self) -> dict[str, MemberStatus]:
        return {
            name: MemberStatus(
                sorted(runner.source.assignment()) if runner.source is not None else [],
                runner.health.last_error,
            )
            for name, runner in self._runners.items()
        }

    def _check_open(self) -> None:
        if not self._started or self._stopped:
            raise StreamError("internal", "the stream engine is not running")

    def group_of(self, name: str) -> str:
        return self.settings.group_prefix + name

    @property
    def transformations_dir(self) -> Path:
        return self.settings.transformations_dir or self.data_dir / "transformations"

    def _in_background(self, work: Coroutine[Any, Any, Any], timeout: float = 30.0) -> None:
        """Run ``work`` without holding the caller up; its failure is logged at DEBUG."""

        async def run() -> None:
            try:
                await asyncio.wait_for(work, timeout)
            except Exception as exc:
                log.debug("background work failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def writer_for(self, definition: StreamDefinition) -> GraphWriter:
        """The writer of the stream's database (the default one when it names none)."""
        database = definition.database
        if database is None or database == self.default_database:
            return self.writer
        writer = self._writers.get(database)
        if writer is None:
            writer = self._writers[database] = self.writer.for_database(database)
        return writer

    def running(self) -> dict[str, StreamRunner]:
        """The runners of the streams running here now (metrics, health)."""
        return dict(self._runners)

    # -- runners ----------------------------------------------------------------------------

    def _launch(
        self, definition: StreamDefinition, record: StreamRecord, limit: int | None
    ) -> None:
        settings = self.settings
        state = record.state
        health = Health(state.last_error if state.status == "running" else None)
        progress = Progress(
            state.messages_processed,
            state.batches_processed,
            state.messages_dead_lettered,
            state.messages_skipped,
        )
        transform = None
        if definition.transform is not None:  # else a mapping, run by the runner itself
            transform = TransformRunner(
                TransformSource(
                    definition.transform.uri,
                    definition.transform.code,
                    definition.transform.sha256,
                ),
                name=definition.name,
                batch_timeout=settings.transform_timeout,
                memory_limit_mb=settings.transform_memory_mb,
                transformation=definition.transformation,
            )
        config = consumer_config(definition, self.kafka_config)

        def make_source(runner: StreamRunner, on_committed: Any) -> Source:
            return StreamConsumer(
                definition.name,
                config,
                definition.topics,
                size=definition.batch_size,
                interval=definition.batch_interval_ms / 1000.0,
                health=health,
                backoff=settings.backoff,
                max_messages=settings.max_pending_messages,
                max_bytes=settings.max_pending_bytes,
                hooks=runner,
                exactly_once=definition.exactly_once,
                on_committed=on_committed,
            )

        def make_producer() -> StreamProducer:
            return StreamProducer(definition.name, producer_config(definition, self.kafka_config))

        async def on_limit(left: int) -> None:
            with contextlib.suppress(CatalogError):
                await self.catalog.update(definition.name, limit_batches=left or None)

        runner = StreamRunner(
            definition,
            writer=self.writer_for(definition),
            transform=transform,
            make_source=make_source,
            make_producer=make_producer,
            settings=RunnerSettings(
                stop_grace=settings.stop_grace,
                backoff=settings.backoff,
                max_round_trip=settings.max_round_trip,
                max_response_bytes=self.max_message_bytes,
            ),
            progress=progress,
            health=health,
            limit=limit,
            on_limit=on_limit,
            applied=self._applied[definition.name],
            observer=self.observe(definition.name) if self.observe is not None else RunObserver(),
        )
        self._runners[definition.name] = runner
        task = asyncio.get_running_loop().create_task(self._supervise(runner))
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _supervise(self, runner: StreamRunner) -> None:
        """Record how a runner ended by itself (LIMIT reached, error)."""
        try:
            ended = await asyncio.shield(runner.task)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            ended = Ended(RunEnd.FAILED, f"internal error: {exc}")
        async with self._locks[runner.name]:
            if self._runners.get(runner.name) is not runner:
                return  # STOP, DROP or shutdown took it over
            del self._runners[runner.name]
            self._trim_due = True
            with contextlib.suppress(CatalogError):
                await self.catalog.add_progress({runner.name: runner.progress.take()})
                if ended.how is RunEnd.FAILED:
                    await self.catalog.update(
                        runner.name,
                        status="error",
                        last_error=ended.error,
                        limit_batches=None,
                        failed_at=ended.at,
                    )
                else:
                    log.info("stream %s processed its batch limit and stopped", runner.name)
                    await self.catalog.update(
                        runner.name,
                        status="stopped",
                        last_error=runner.health.last_error,
                        limit_batches=None,
                    )

    async def _flush_loop(self) -> None:
        trimmed = 0.0
        failing = False  # the catalog refused the last save: logged once, not at every flush
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            now = asyncio.get_running_loop().time()
            if self._trim_due:
                # A stream ended: what it held is garbage now (some of it in cycles).
                self._trim_due = False
                trimmed = now
                gc.collect()
                _trim_heap()
            elif now - trimmed >= _TRIM_EVERY:
                trimmed = now
                _trim_heap()
            progress = {name: r.progress.take() for name, r in self._runners.items()}
            progress = {k: v for k, v in progress.items() if any(v)}
            try:
                await self.catalog.add_progress(progress)
                await self.catalog.heartbeat(self._running_here())
            except CatalogError as exc:
                # Not the proxy's fault (a full disk, most likely): one warning until it works.
                if not failing:
                    log.warning("cannot save stream counters, will retry: %s", exc)
                failing = True
                continue
            if failing:
                log.info("stream counters saved again")
                failing = False

    def _startable(self, record: StreamRecord, what: str) -> StreamDefinition:
        """The definition, if it may be handed to the Kafka client (a catalog written before
        names were checked may hold anything)."""
        if record.definition is None:
            raise StreamError(
                "invalid",
                f"Kafka stream {shown_name(record.name)} cannot be {what}: {record.unreadable}",
            )
        definition = record.definition
        try:
            check_client_config(consumer_config(definition, self.kafka_config))
            for topic in definition.topics:
                check_topic(topic)
        except UnsafeValue as exc:
            raise StreamError(
                "invalid", f"Kafka stream {shown_name(record.name)} cannot be {what}: {exc}"
            ) from None
        if definition.exactly_once and self.settings.exactly_once_refusal is not None:
            raise StreamError(
                "invalid",
                f"Kafka stream {shown_name(record.name)} cannot be "
                f"{what}: DELIVERY EXACTLY ONCE is not available here: "
                f"{self.settings.exactly_once_refusal}",
            )
        return definition

    async def _get(self, name: str) -> StreamRecord:
        # A shared catalog: first whatever other members changed up to now (one request for
        # the catalog topic's end), so that a clause sees what was done elsewhere just before.
        await self.catalog.sync()
        record = await self.catalog.get(name)
        if record is None:
            raise StreamError("not_found", f"Kafka stream {name} doesn't exist.")
        return record

    def _preempt_test(self, name: str) -> None:
        task = self._tests.get(name)
        if task is not None and not task.done():
            self._preempted.add(name)
            task.cancel()

    # -- clauses ----------------------------------------------------------------------------

    @property
    def checks(self) -> Checks:
        """What CREATE's and ALTER's checks need of this engine."""
        return Checks(
            admin=self.admin,
            policy=self.policy,
            broker_timeout=self.settings.broker_timeout,
            kafka_config=self.kafka_config,
            transformations_dir=self.transformations_dir,
            exactly_once_refusal=self.settings.exactly_once_refusal,
            writer=self.writer,
        )

    async def create(self, spec: StreamSpec) -> None:
        """CREATE STREAM: check everything, then record the stream (stopped) atomically.
        ``spec.uri`` None: the proxy's ``bootstrap_servers`` (Memgraph 2.x without
        BOOTSTRAP_SERVERS); ``spec.consumer_group`` None: the prefix and the stream's name."""
        self._check_open()
        name = spec.name
        if spec.uri is None:
            uri = self.settings.bootstrap_servers
            if not uri.strip():
                raise StreamError(
                    "invalid",
                    f"Failed to initialize Kafka stream {shown_name(name)} : no "
                    "BOOTSTRAP_SERVERS given, and the proxy has no --kafka-bootstrap-servers",
                )
            spec = replace(spec, uri=uri)
        if spec.consumer_group is None:
            spec = replace(spec, consumer_group=self.group_of(name))
        async with self._locks[name]:
            await self.catalog.sync()  # a CREATE of that name on another member just now
            if await self.catalog.get(name) is not None:
                raise StreamError("exists", f"Kafka stream {name} already exists.")
            definition = await define(spec, self.checks)
            try:
                await self.catalog.insert(definition)
            except StreamExists:
                raise StreamError("exists", f"Kafka stream {name} already exists.") from None
            except CatalogError as exc:
                raise StreamError(
                    "internal", f"Couldn't persist stream metadata for stream {name}: {exc}"
                ) from None
        log.info(
            "created stream %s (topic %s at %s, transform %s, sha256 %s, on error %s%s, "
            "delivery %s)",
            name,
            definition.shown_topics,
            definition.uri,
            definition.source_shown[:200],
            definition.transform.sha256[:12] if definition.transform else "-",
            SHOWN_POLICY[definition.error_policy],
            f" {definition.dead_letter_topic}" if definition.dead_letter_topic else "",
            definition.delivery.shown,
        )

    async def _authorize(self, record: StreamRecord, user: str | None, action: str) -> None:
        """Raise ``StreamError("forbidden")`` unless ``user`` may ``action`` the stream
        (``user`` None: the proxy itself)."""
        if user is None:
            return
        owner = record.definition.owner if record.definition is not None else None
        await self.access.check(user, owner, action, record.name)

    async def drop(self, name: str, user: str | None = None) -> None:
        self._check_open()
        await self._authorize(await self._get(name), user, "drop")
        self._preempt_test(name)
        async with self._locks[name]:
            await self._get(name)
            runner = self._runners.pop(name, None)
            if runner is not None:
                await runner.stop()
                self._trim_due = True
            await self.catalog.delete(name)
            self.admin.forget_stream(name)
        log.info("dropped stream %s", name)

    async def start_stream(
        self,
        name: str,
        limit_batches: int | None = None,
        wait: float | None = None,
        user: str | None = None,
    ) -> None:
        """START STREAM: a running stream is left alone; a stopped or failed one starts.

        ``wait`` (Memgraph 2.x's ``START STREAM name BATCH_LIMIT n [TIMEOUT ms]``): return once
        the ``limit_batches`` batches are written, raise the stream's error if it fails, and
        after ``wait`` seconds stop the stream and raise ``Timeout reached``."""
        self._check_open()
        await self._authorize(await self._get(name), user, "start")
        if limit_batches is not None and limit_batches < 1:
            raise StreamError(
                "invalid",
                f"Starting Kafka stream {name} failed: Batch limit "
                "has to be greater than or equal to 1",
            )
        async with self._locks[name]:
            record = await self._get(name)
            if name in self._runners:
                if wait is not None:
                    raise StreamError("state", f"Kafka stream {name} is already running")
                return
            definition = self._startable(record, "started")
            if wait is None:
                await self.catalog.update(
                    name,
                    status="running",
                    last_error=None,
                    limit_batches=limit_batches,
                    failed_at=None,
                )
            else:
                # As Memgraph's: not recorded as running, so a restart does not resume it.
                await self.catalog.update(name, last_error=None, failed_at=None)
            record = await self._get(name)
            self._launch(definition, record, limit_batches)
            runner = self._runners[name]
        log.info(
            "started stream %s%s", name, f" for {limit_batches} batches" if limit_batches else ""
        )
        self._in_background(indexes.advise(definition, self.writer_for(definition)))
        if wait is None:
            return
        try:
            ended = await asyncio.wait_for(asyncio.shield(runner.task), wait)
        except TimeoutError:
            if self._runners.get(name) is runner:
                with contextlib.suppress(StreamError):
                    await self.stop_stream(name)
            raise StreamError(
                "external", f"Starting Kafka stream {name} failed: Timeout reached"
            ) from None
        # The supervisor records how it ended (status, counters); answer after it did.
        for _ in range(500):
            if self._runners.get(name) is not runner:
                break
            await asyncio.sleep(0.01)
        async with self._locks[name]:
            pass  # the supervisor holds the lock while it records the end
        if ended.how is RunEnd.FAILED:
            raise StreamError("external", f"Kafka stream {name} failed: {ended.error}")
        if ended.how is RunEnd.STOPPED:
            raise StreamError("state", f"Kafka stream {name} was stopped before its batch limit")

    async def stop_stream(self, name: str, user: str | None = None) -> None:
        """STOP STREAM: a stopped stream is left alone; a failed one becomes stopped (it
        keeps where it failed, for SKIP FAILED MESSAGE)."""
        self._check_open()
        await self._authorize(await self._get(name), user, "stop")
        self._preempt_test(name)
        async with self._locks[name]:
            record = await self._get(name)
            runner = self._runners.pop(name, None)
            if runner is None and record.state.status == "stopped":
                return
            if runner is not None:
                await runner.stop()
                self._trim_due = True
                await self.catalog.add_progress({name: runner.progress.take()})
                await self.catalog.update(
                    name, status="stopped", limit_batches=None, last_error=runner.health.last_error
                )
            else:
                await self.catalog.update(name, status="stopped", limit_batches=None)
        log.info("stopped stream %s", name)

    async def start_all(self, user: str | None = None) -> None:
        """START ALL STREAMS: those ``user`` may start (the others are left alone)."""
        self._check_open()
        await self.catalog.sync()
        for record in await self.catalog.all():
            # Dropped meanwhile, not startable, or not the user's.
            with contextlib.suppress(StreamError):
                await self.start_stream(record.name, user=user)

    async def stop_all(self, user: str | None = None) -> None:
        """STOP ALL STREAMS: those ``user`` may stop (the others are left alone)."""
        self._check_open()
        await self.catalog.sync()
        records = []
        for record in await self.catalog.all():
            with contextlib.suppress(StreamError):
                await self._authorize(record, user, "stop")
                records.append(record)
        results = await asyncio.gather(
            *(self.stop_stream(r.name) for r in records), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, StreamError):
                raise result

    async def set_offset(self, name: str, offset: int, user: str | None = None) -> int:
        """``CALL mg.kafka_set_stream_offset(name, offset)``: where the stopped stream starts
        next, on every partition of its topics (-1: the beginning, -2: the end, N: offset N),
        committed for its consumer group. Returns how many partitions were set. Only the
        stream's owner or an admin may (as for ALTER STREAM ... SET OFFSET)."""
        self._check_open()
        await self._authorize(await self._get(name), user, "move the position of")
        if not -2 <= offset <= MAX_OFFSET:
            raise StreamError(
                "invalid",
                f"Could not set offset of consumer: {name}. Error: the offset is -1 (the "
                f"beginning), -2 (the end) or a position from 0 to {MAX_OFFSET}, not {offset}",
            )
        self._preempt_test(name)
        async with self._locks[name]:
            record = await self._get(name)
            if name in self._runners:
                raise StreamError(
                    "state", f"Kafka stream {name} is running; stop it before setting its offset"
                )
            definition = self._startable(record, "repositioned")
            if definition.exactly_once:
                raise StreamError(
                    "invalid",
                    f"Could not set offset of consumer: {name}. Error: a DELIVERY EXACTLY ONCE "
                    "stream keeps its positions in the graph, not in its consumer group",
                )
            config = consumer_config(definition, self.kafka_config)
            try:
                count = await asyncio.to_thread(
                    set_group_offsets,
                    config,
                    definition.topics,
                    offset,
                    self.settings.broker_timeout,
                )
            except TopicMissing as exc:
                raise StreamError(
                    "external", f"Kafka stream {name}, topic not found: {exc}"
                ) from None
            except Exception as exc:
                reason = redact(reason_of(exc), definition.secrets)
                raise StreamError(
                    "external", f"Could not set offset of consumer: {name}. Error: {reason}"
                ) from None
        log.info("stream %s: offset set to %d on %d partition(s)", name, offset, count)
        return count

    async def info(self, name: str) -> dict[str, Any]:
        """``CALL mg.kafka_stream_info(name)``: its consumer group, topics, bootstrap servers,
        configs and credentials (values redacted)."""
        self._check_open()
        record = await self._get(name)
        definition = record.definition
        if definition is None:
            raise StreamError(
                "invalid", f"Kafka stream {shown_name(name)} cannot be read: {record.unreadable}"
            )
        return {
            "consumer_group": definition.consumer_group,
            "topics": list(definition.topics),
            "bootstrap_servers": definition.uri,
            "configs": definition.shown_configs(),
            "credentials": definition.shown_credentials(),
        }

    async def show(self) -> list[StreamStatus]:
        self._check_open()
        shared = self.catalog.shared
        if shared:  # this member's counters first: the catalog sums every member's
            await self.catalog.sync(self.settings.lag_timeout)  # changes made elsewhere
            progress = {name: r.progress.take() for name, r in self._runners.items()}
            await self.catalog.add_progress({k: v for k, v in progress.items() if any(v)})
        records = await self.catalog.all()
        live = {}
        for record in records:
            runner = self._runners.get(record.name)
            if shared:
                # Cluster-wide: the catalog's status and the sum of every member's counters;
                # the last error of this member, else of the first member that has one.
                errors = [s.last_error for s in self.catalog.members(record.name).values()]
                if runner is not None:
                    errors.insert(0, runner.health.last_error)
                state = record.state
                if state.status == "running":
                    live[record.name] = Live(
                        state.messages_processed,
                        state.messages_dead_lettered,
                        state.messages_skipped,
                        next((e for e in errors if e), state.last_error),
                        runner.health.detail() if runner is not None else None,
                    )
            elif runner is not None:
                totals = runner.progress.totals
                live[record.name] = Live(
                    totals.messages,
                    totals.dead_lettered,
                    totals.skipped,
                    runner.health.last_error,
                    runner.health.detail(),
                )
        holders = {record.name: self.holders(record.name) for record in records}
        return await show_rows(
            records,
            live,
            self.admin,
            self.kafka_config,
            self.settings.lag_timeout,
            holders,
            self.default_database,
        )

    async def test(
        self,
        name: str,
        limit_batches: int | None = None,
        timeout: float | None = None,
        user: str | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """TEST STREAM: consume ``limit_batches`` batches (default 1) from where the stream
        would start, transform them, return the queries. Writes nothing, commits nothing,
        does not join the stream's consumer group. A STOP or DROP of the stream meanwhile
        ends it with an error. ``timeout`` (seconds): the longest it takes (CHECK STREAM's
        TIMEOUT), else the engine's ``test_timeout``."""
        self._check_open()
        await self._authorize(await self._get(name), user, "test")
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
            definition = self._startable(record, "tested")
            settings = self.settings
            task = asyncio.get_running_loop().create_task(
                test_stream(
                    definition,
                    limit,
                    writer=self.writer_for(definition),
                    kafka_config=self.kafka_config,
                    broker_timeout=settings.broker_timeout,
                    test_timeout=settings.test_timeout if timeout is None else timeout,
                    transform_timeout=settings.transform_timeout,
                    transform_memory_mb=settings.transform_memory_mb,
                )
            )
            self._tests[name] = task
            try:
                return await task
            except asyncio.CancelledError:
                if task.cancelled() and name in self._preempted:
                    raise StreamError(
                        "state",
                        f"TEST STREAM {name} was interrupted: the "
                        "stream was stopped or dropped meanwhile",
                    ) from None
                raise
            finally:
                self._preempted.discard(name)
                if self._tests.get(name) is task:
                    del self._tests[name]

    # -- operating streams: offsets and ALTER ---------------------------------------------------

    def _require_stopped(self, name: str, what: str) -> None:
        if name in self._runners:
            raise StreamError(
                "state",
                f"Kafka stream {name} is running; stop it before {what} (STOP STREAM {name})",
            )

    async def _read_offsets(self, definition: StreamDefinition) -> list[PartitionOffsets]:
        config = consumer_config(definition, self.kafka_config)
        timeout = self.settings.broker_timeout
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(kafka_offsets.read_offsets, config, definition.topic, timeout),
                4 * timeout + 1,
            )
        except TopicMissing:
            raise StreamError(
                "external", f"Kafka stream {definition.name}, topic not found"
            ) from None
        except UnsafeValue as exc:
            raise StreamError(
                "invalid", f"Kafka stream {shown_name(definition.name)}: {exc}"
            ) from None
        except Exception as exc:
            raise StreamError(
                "external",
                f"Kafka stream {definition.name}: the Kafka broker at '{definition.uri}' did "
                f"not answer ({_reason(exc)})",
            ) from None

    async def _graph_positions(self, definition: StreamDefinition) -> dict[TopicPartition, int]:
        try:
            stored = await asyncio.wait_for(
                self.writer_for(definition).read_positions(definition.name, definition.owner),
                self.settings.broker_timeout,
            )
        except (TimeoutError, WriteError) as exc:
            raise StreamError(
                "external",
                f"Kafka stream {definition.name}: its positions could not be read from the "
                f"graph ({exc or 'timed out'})",
            ) from None
        return {tp: offset for tp, offset in stored.items() if tp[0] == definition.topic}

    async def _group(self, definition: StreamDefinition) -> kafka_offsets.Group | None:
        config = admin_config(definition.uri, self.kafka_config, definition.settings or None)
        return await kafka_offsets.describe_isolated(
            config, definition.consumer_group, self.settings.broker_timeout
        )

    async def offsets(self, name: str, holders: bool = True) -> list[OffsetRow]:
        """SHOW STREAM name OFFSETS: one row per partition of the stream's topic. ``holders``
        False (metrics scrapes): no DescribeGroups request, so other members are not named;
        librdkafka can abort the process when such a coordinator request times out under
        load (see ``kafka.TopicAdmin``), which a periodic scrape should not risk."""
        self._check_open()
        record = await self._get(name)
        definition = self._startable(record, "shown")
        parts = await self._read_offsets(definition)
        stored = await self._graph_positions(definition) if definition.exactly_once else {}
        group = await self._group(definition) if holders else None
        runner = self._runners.get(name)
        source = runner.source if runner is not None else None
        ours = getattr(source, "member_id", None)
        mine = set(source.assignment()) if source is not None else set()
        reset = str(self.kafka_config.get("auto.offset.reset", "earliest")).lower()
        latest = reset in ("latest", "largest", "end")
        applied = self._applied.get(name, {})
        rows = []
        for p in parts:
            tp = (p.topic, p.partition)
            graph = stored.get(tp)
            resume = graph if definition.exactly_once else p.committed
            if resume is None:
                resume = p.high if latest else p.low
            holder: str | None = None
            if group is not None:
                for member in group.members:
                    if tp in member.partitions:
                        same = ours is not None and member.member_id == ours
                        holder = "this proxy" if same else f"{member.client_id} at {member.host}"
            if holder is None and tp in mine:
                holder = "this proxy"
            elif holder is None and group is not None and group.active and not group.members:
                # The broker says the group has members but not which (Tansu 0.6): a
                # partition this proxy does not hold is another member's.
                holder = "another member of the group"
            last = applied.get(tp)
            rows.append(
                OffsetRow(
                    topic=p.topic,
                    partition=p.partition,
                    committed=p.committed,
                    graph_position=graph,
                    low_watermark=p.low,
                    high_watermark=p.high,
                    lag=max(0, p.high - max(resume, p.low)),
                    holder=holder,
                    last_applied_offset=last[0] if last else None,
                    last_applied_at=last[1] if last else None,
                )
            )
        return rows

    async def move_offsets(
        self,
        name: str,
        target: Target,
        value: int | None = None,
        partition: int | None = None,
        user: str | None = None,
    ) -> None:
        """ALTER STREAM name SET OFFSET TO ...: a stopped stream's position, for every
        partition or one; an exactly-once stream's position in the graph too."""
        self._check_open()
        record = await self._get(name)
        await self._authorize(record, user, "move the position of")
        self._preempt_test(name)
        async with self._locks[name]:
            record = await self._get(name)
            self._require_stopped(name, "moving its position")
            definition = self._startable(record, "moved")
            parts = await self._read_offsets(definition)
            if partition is not None:
                parts = [p for p in parts if p.partition == partition]
                if not parts:
                    raise StreamError(
                        "invalid",
                        f"Kafka stream {name}: topic '{definition.topic}' has no partition "
                        f"{partition}",
                    )
            config = consumer_config(definition, self.kafka_config)
            timeout = self.settings.broker_timeout
            try:
                targets = await asyncio.to_thread(
                    kafka_offsets.resolve, config, parts, target, value, timeout
                )
            except OffsetError as exc:
                raise StreamError("invalid", f"Kafka stream {name}: {exc}") from None
            await self._set_position(definition, targets)
            await self.catalog.update(name, failed_at=None)
        log.info(
            "stream %s: position moved to %s",
            name,
            ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(targets.items())),
        )

    async def skip_failed(self, name: str, user: str | None = None) -> None:
        """ALTER STREAM name SKIP FAILED MESSAGE: the position of the partition the stopped
        stream failed on goes one past the message it failed on."""
        self._check_open()
        record = await self._get(name)
        await self._authorize(record, user, "move the position of")
        async with self._locks[name]:
            record = await self._get(name)
            self._require_stopped(name, "skipping a message")
            definition = self._startable(record, "moved")
            at = record.state.failed_at
            if at is None:
                raise StreamError(
                    "state",
                    f"Kafka stream {name} has no failed message to skip (it did not stop on "
                    "one, or its position moved since)",
                )
            topic, partition, offset = at
            parts = [p for p in await self._read_offsets(definition) if p.partition == partition]
            if definition.exactly_once:
                stored = (await self._graph_positions(definition)).get((topic, partition))
            else:
                stored = parts[0].committed if parts else None
            if stored is not None and stored != offset:
                raise StreamError(
                    "state",
                    f"Kafka stream {name}: the position of topic '{topic}' partition "
                    f"{partition} is {stored}, no longer at the failed message (offset "
                    f"{offset}); move it with ALTER STREAM {name} SET OFFSET TO ...",
                )
            await self._set_position(definition, {(topic, partition): offset + 1})
            last_error = record.state.last_error or ""
            await self.catalog.update(
                name,
                failed_at=None,
                last_error=f"skipped by ALTER STREAM ... SKIP FAILED MESSAGE: {last_error}",
            )
        log.info(
            "stream %s: skipped the message at topic %s partition %d offset %d",
            name,
            topic,
            partition,
            offset,
        )

    async def _set_position(
        self, definition: StreamDefinition, targets: dict[TopicPartition, int]
    ) -> None:
        name = definition.name
        group = await self._group(definition)
        if group is not None and group.active:
            who = (
                f"{len(group.members)} active member(s) ("
                + ", ".join(f"{m.client_id} at {m.host}" for m in group.members)
                + ")"
                if group.members
                else f"active members (state {group.state.lower()})"
            )
            raise StreamError(
                "state",
                f"Kafka stream {name}: its consumer group '{definition.consumer_group}' has "
                f"{who}; stop the stream wherever it runs before moving its position",
            )
        config = consumer_config(definition, self.kafka_config)
        timeout = self.settings.broker_timeout
        try:
            await asyncio.wait_for(
                asyncio.to_thread(kafka_offsets.commit, config, targets, timeout),
                4 * timeout + 1,
            )
        except kafka_offsets.GroupActive as exc:
            raise StreamError(
                "state",
                f"Kafka stream {name}: its consumer group '{definition.consumer_group}' has "
                f"active members (the broker refused the new position: {exc}); stop the "
                "stream wherever it runs before moving its position",
            ) from None
        except OffsetError as exc:
            raise StreamError("external", f"Kafka stream {name}: {exc}") from None
        except Exception as exc:
            raise StreamError(
                "external",
                f"Kafka stream {name}: committing the new position failed ({_reason(exc)})",
            ) from None
        if definition.exactly_once:
            stored = await self._graph_positions(definition)
            fence = Fence(name, {tp: stored.get(tp) for tp in targets}, dict(targets))
            try:
                await self.writer_for(definition).write_batch([], definition.owner, fence=fence)
            except FenceLost:
                raise StreamError(
                    "state",
                    f"Kafka stream {name}: its position in the graph moved meanwhile (is it "
                    "running elsewhere?); the group's offsets were moved, the graph's not",
                ) from None
            except WriteError as exc:
                raise StreamError(
                    "external",
                    f"Kafka stream {name}: moving its position in the graph failed ({exc}); "
                    "the group's offsets were moved, the graph's not",
                ) from None

    async def alter(self, name: str, options: StreamOptions, *, user: str | None = None) -> None:
        """ALTER STREAM name SET ...: change what ``options`` give of a stopped stream (what it
        runs, a transform fetched, checked and pinned again; batching; the error policy; its
        own Kafka settings), checked as CREATE checks them; everything else stays (consumer
        group, position, owner, database, delivery). One catalog transaction."""
        self._check_open()
        record = await self._get(name)
        await self._authorize(record, user, "alter")
        async with self._locks[name]:
            record = await self._get(name)
            self._require_stopped(name, "altering it")
            new = await redefine(self._startable(record, "altered"), options, self.checks)
            if not await self.catalog.replace(new):
                raise StreamError(
                    "state", f"Kafka stream {name} was changed or dropped meanwhile; try again"
                )
            self.admin.forget_stream(name)  # its lag probe has the old settings
        log.info(
            "altered stream %s (batch interval %d ms, batch size %d, transform %s sha256 %s, "
            "on error %s)",
            name,
            new.batch_interval_ms,
            new.batch_size,
            new.source_shown,
            new.transform.sha256[:12] if new.transform is not None else "-",
            SHOWN_POLICY[new.error_policy],
        )

    # -- metrics and health -------------------------------------------------------------------

    async def batch_totals(self) -> dict[str, int]:
        """Batches processed per stream (the catalog's, or the running stream's own)."""
        totals = {r.name: r.state.batches_processed for r in await self.catalog.all()}
        for name, runner in self._runners.items():
            totals[name] = runner.progress.totals.batches
        return totals

    async def problems(self) -> list[dict[str, Any]]:
        """What keeps streams that should run from running (``/health/ready``): streams in
        ``error``, and running ones that cannot reach their broker or their graph now."""
        found: list[dict[str, Any]] = []
        for record in await self.catalog.all():
            if record.state.status == "error" and record.name not in self._runners:
                found.append(
                    {
                        "stream": record.name,
                        "problem": "the stream stopped on an error",
                        "last_error": record.state.last_error or record.unreadable,
                    }
                )
        for name, runner in sorted(self._runners.items()):
            broker = getattr(runner.source, "broker", None)
            outages = [
                ("cannot reach its Kafka broker", broker),
                ("cannot write to the graph", runner.graph_outage),
            ]
            for problem, outage in outages:
                if outage is not None and outage.ongoing:
                    found.append(
                        {"stream": name, "problem": problem, "last_error": runner.health.last_error}
                    )
        return found

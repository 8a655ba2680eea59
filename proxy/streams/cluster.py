"""The cluster catalog: several proxies, one set of streams (``--cluster NAME``).

Kafka Connect's distributed mode is the model. The members of a cluster keep the stream
catalog in a Kafka topic, ``__boltstream_<cluster>_catalog`` (one partition, ``cleanup.policy
= compact``), on the broker given by ``--cluster-bootstrap``; each member reads it from the
beginning into memory at start and follows it. Every change to a stream (CREATE, DROP, START,
STOP, ALTER, an error that stops it) is one record, written by the member where it happened,
and applied by every member, in log order, the writer included: a clause returns once its own
member has applied its record, and the others apply it within their next fetch (tens of
milliseconds; ``fetch.wait.max.ms``). A running stream runs on every member, in the stream's
consumer group: Kafka spreads the partitions and moves them when members join or leave.

**Records.** Key: ``[name, incarnation]`` (JSON); value: ``{"format": 1, "stream", "incarnation",
"definition": {...}, "state": {...}, "at", "by"}``, the stream's whole definition and state (a
full snapshot, so compaction keeping the last record of a key keeps the stream). DROP is a
tombstone (null value) of the key. The incarnation is a fresh random id per CREATE.

**Concurrent CREATEs of one name.** The first CREATE record in the log wins: a record for a
name that already has another incarnation is ignored by every member (they all read the same
order). The member whose CREATE lost tells its client that the stream exists and writes a
tombstone for its own key, so that compaction cannot bring the loser back once the winner's
records are gone.

**Versions.** ``format`` says how a record is laid out (``CATALOG_FORMAT``), and the definition
inside it carries its own document version (``definition.py``). A record of a newer format, or
a definition of a newer version, becomes an *unreadable* stream on an older member: shown with
the reason, droppable, never run there.

**Status.** ``__boltstream_<cluster>_status`` (compacted too) holds, per (member, stream), what
the member does with the stream: the partitions it holds, its last error, its counters, and
when it said so. Members publish every ``heartbeat`` seconds; a member silent for
``member_timeout`` seconds holds nothing any more (a ``kill -9``). SHOW STREAMS sums the
counters of every member, and names each live holder's partitions.

Offsets are not here (they live in each stream's consumer group, and in the graph for
``DELIVERY EXACTLY ONCE``), nor is anything secret beyond what the sqlite catalog keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.streams.catalog import (
    STATUSES,
    CatalogError,
    MemberStatus,
    StreamExists,
    StreamRecord,
    StreamState,
)
from proxy.streams.definition import DefinitionError, StreamDefinition
from proxy.streams.kafka import FORCED, admin_config, kafka_log, reason_of
from proxy.streams.names import check_client_config
from proxy.streams.positions import TopicPartition

__all__ = ["CATALOG_FORMAT", "ClusterCatalog", "ClusterSettings", "topic_names"]

log = logging.getLogger("boltstream.cluster")

CATALOG_FORMAT = 1
_SETTABLE = frozenset(("status", "limit_batches", "last_error"))
_COUNTERS = 4  # messages, batches, dead-lettered, skipped


def topic_names(cluster: str) -> tuple[str, str]:
    """The catalog and status topics of cluster ``cluster``."""
    return f"__boltstream_{cluster}_catalog", f"__boltstream_{cluster}_status"


@dataclass(frozen=True)
class ClusterSettings:
    """``name``: the cluster; ``bootstrap``: the broker holding its topics; ``member``: this
    proxy's name in it (unique per member, stable across restarts); ``kafka_config``: the
    proxy's librdkafka settings (security...); ``replication``: of the topics it creates (-1:
    the broker's default)."""

    name: str
    bootstrap: str
    member: str
    kafka_config: Mapping[str, Any] = field(default_factory=dict)
    replication: int = -1
    heartbeat: float = 1.0
    member_timeout: float = 6.0
    write_timeout: float = 10.0
    open_timeout: float = 30.0


@dataclass
class _Entry:
    """One stream as the log says now."""

    name: str
    incarnation: str
    definition: StreamDefinition | None
    status: str
    limit_batches: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    unreadable: str | None = None


@dataclass
class _Report:
    """What one member last said about one stream."""

    incarnation: str
    partitions: list[TopicPartition]
    counters: tuple[int, ...]
    last_error: str | None
    at: float


class ClusterCatalog:
    """The catalog of a cluster, same interface as ``catalog.Catalog`` (``shared`` is True).

    ``open()`` reads both topics up to their end before it returns; ``subscribe(callback)``:
    ``callback(name)`` runs on the event loop after every change of stream ``name`` is applied
    (from any member, this one included)."""

    shared = True

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.member = settings.member
        self.catalog_topic, self.status_topic = topic_names(settings.name)
        self._streams: dict[str, _Entry] = {}
        self._reports: dict[tuple[str, str], _Report] = {}  # (member, stream) -> report
        self._own: dict[str, list[int]] = {}  # stream -> this member's counters (cumulative)
        self._applied = -1  # the last catalog offset applied
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._listeners: list[Callable[[str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._caught_up: asyncio.Future[None] | None = None
        self._producer: Any = None
        self._probe: Any = None  # a consumer asking for the catalog's end (the writes' thread)
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="cluster-catalog")
        self._opened = False

    # -- configuration ---------------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.kafka_config.items() if k not in FORCED}

    def _producer_config(self) -> dict[str, Any]:
        config = admin_config(self.settings.bootstrap, self._base())
        config.update(
            {"client.id": f"boltstream-cluster-{self.member}", "acks": "all", "linger.ms": 0}
        )
        return config

    def _consumer_config(self) -> dict[str, Any]:
        config = {
            **self._base(),
            "bootstrap.servers": self.settings.bootstrap,
            # Never joins or commits: the member reads both topics by assignment.
            "group.id": f"__boltstream_{self.settings.name}_reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
            "client.id": f"boltstream-cluster-{self.member}",
            "logger": kafka_log,
            "error_cb": lambda error: None,
        }
        return config

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the topics if they are missing, read them to their end, follow them."""
        from confluent_kafka import Producer

        self._loop = asyncio.get_running_loop()
        try:
            for config in (self._producer_config(), self._consumer_config()):
                check_client_config({k: v for k, v in config.items() if isinstance(v, str)})
            await self._loop.run_in_executor(self._writes, self._ensure_topics)
            self._producer = Producer(self._producer_config())
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(
                f"cluster {self.settings.name}: cannot use the broker "
                f"{self.settings.bootstrap}: {reason_of(exc)}"
            ) from None
        self._caught_up = self._loop.create_future()
        self._thread = threading.Thread(target=self._follow, name="cluster-follow", daemon=True)
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._caught_up), self.settings.open_timeout)
        except TimeoutError:
            await self.close()
            raise CatalogError(
                f"cluster {self.settings.name}: the catalog topic {self.catalog_topic} "
                f"could not be read within {self.settings.open_timeout:g} s"
            ) from None
        except CatalogError:
            await self.close()
            raise
        self._opened = True
        log.info(
            "cluster %s: member %s, %d stream(s) in the catalog (topic %s at %s)",
            self.settings.name,
            self.member,
            len(self._streams),
            self.catalog_topic,
            self.settings.bootstrap,
        )

    def _ensure_topics(self) -> None:
        """Both topics, one partition each, compacted. A topic of several partitions has no
        single order: refused (Kafka Connect refuses its config topic likewise)."""
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        admin = AdminClient(admin_config(self.settings.bootstrap, self._base()))
        listed = admin.list_topics(timeout=self.settings.write_timeout).topics  # creates none
        missing = [t for t in (self.catalog_topic, self.status_topic) if t not in listed]
        if missing:
            futures = admin.create_topics(
                [
                    NewTopic(
                        topic,
                        1,
                        self.settings.replication,
                        config={"cleanup.policy": "compact"},
                    )
                    for topic in missing
                ],
                request_timeout=self.settings.write_timeout,
            )
            for topic, future in futures.items():
                try:
                    future.result(self.settings.write_timeout)
                except Exception as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                        raise CatalogError(
                            f"cluster {self.settings.name}: cannot create {topic}: {reason_of(exc)}"
                        ) from None
            listed = admin.list_topics(timeout=self.settings.write_timeout).topics
        for topic in (self.catalog_topic, self.status_topic):
            found = listed.get(topic)
            if found is None:
                raise CatalogError(f"cluster {self.settings.name}: topic {topic} is missing")
            if len(found.partitions) != 1:
                raise CatalogError(
                    f"cluster {self.settings.name}: topic {topic} has "
                    f"{len(found.partitions)} partitions; a cluster catalog needs exactly one"
                )

    async def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10.0)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await asyncio.get_running_loop().run_in_executor(self._writes, producer.flush, 5.0)
        if self._probe is not None:
            probe, self._probe = self._probe, None
            await asyncio.get_running_loop().run_in_executor(self._writes, probe.close)
        self._writes.shutdown(wait=False)
        for _offset, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(CatalogError("the cluster catalog is closed"))
        self._waiters.clear()

    def subscribe(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    # -- the follower thread ---------------------------------------------------------------------

    def _follow(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        assert self._loop is not None
        loop = self._loop
        try:
            consumer = Consumer(self._consumer_config())
        except Exception as exc:
            loop.call_soon_threadsafe(self._caught_up_with, CatalogError(reason_of(exc)))
            return
        try:
            parts = [
                TopicPartition(self.catalog_topic, 0, OFFSET_BEGINNING),
                TopicPartition(self.status_topic, 0, OFFSET_BEGINNING),
            ]
            highs: dict[str, int] = {}
            for tp in parts:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, 0), timeout=self.settings.write_timeout
                )
                highs[tp.topic] = high
            consumer.assign(parts)
            caught_up = False
            while not self._closing.is_set():
                messages = consumer.consume(1000, timeout=0.1)
                records: list[tuple[str, int, bytes | None, bytes | None]] = [
                    (str(m.topic()), int(m.offset() or 0), m.key(), m.value())
                    for m in messages
                    if m.error() is None
                ]
                if records:
                    loop.call_soon_threadsafe(self._apply, records)
                if not caught_up:
                    positions = consumer.position(
                        [TopicPartition(t, 0) for t in (self.catalog_topic, self.status_topic)]
                    )
                    if all(
                        tp.offset >= highs[tp.topic] or highs[tp.topic] == 0 for tp in positions
                    ):
                        caught_up = True
                        loop.call_soon_threadsafe(self._caught_up_with, None)
        except Exception as exc:
            log.error("cluster %s: reading the catalog failed: %s", self.settings.name, exc)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._caught_up_with, CatalogError(reason_of(exc)))
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _caught_up_with(self, error: BaseException | None) -> None:
        if self._caught_up is None or self._caught_up.done():
            return
        if error is None:
            self._caught_up.set_result(None)
        else:
            self._caught_up.set_exception(
                CatalogError(f"cluster {self.settings.name}: cannot read the catalog: {error}")
            )

    # -- applying records (on the event loop) ----------------------------------------------------

    def _apply(self, records: list[tuple[str, int, bytes | None, bytes | None]]) -> None:
        changed: list[str] = []
        for topic, offset, key, value in records:
            try:
                if topic == self.catalog_topic:
                    name = self._apply_catalog(key, value)
                    self._applied = max(self._applied, offset)
                    if name is not None:
                        changed.append(name)
                else:
                    self._apply_status(key, value)
            except Exception as exc:  # a record of another program, or damaged: skipped
                log.warning(
                    "cluster %s: skipped record %s@%d: %s", self.settings.name, topic, offset, exc
                )
                if topic == self.catalog_topic:
                    self._applied = max(self._applied, offset)
        still = []
        for offset, waiter in self._waiters:
            if offset <= self._applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((offset, waiter))
        self._waiters = still
        for name in dict.fromkeys(changed):
            for listener in self._listeners:
                listener(name)

    def _apply_catalog(self, key: bytes | None, value: bytes | None) -> str | None:
        name, incarnation = _key(key)
        current = self._streams.get(name)
        if value is None:  # DROP
            if current is not None and current.incarnation == incarnation:
                del self._streams[name]
                self._forget_status(name)
                return name
            return None
        if current is not None and current.incarnation != incarnation:
            return None  # a CREATE that came second: the first one in the log wins
        self._streams[name] = _entry(name, incarnation, json.loads(value))
        return name

    def _forget_status(self, name: str) -> None:
        """A dropped stream: what members said of it is void; this member's report goes."""
        reported = (self.member, name) in self._reports
        for member, stream in list(self._reports):
            if stream == name:
                del self._reports[(member, stream)]
        self._own.pop(name, None)
        if reported and self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.produce(self.status_topic, None, key=_pair_key(self.member, name))

    def _apply_status(self, key: bytes | None, value: bytes | None) -> None:
        member, stream = _key(key)
        if value is None:
            self._reports.pop((member, stream), None)
            return
        document = json.loads(value)
        if not isinstance(document, dict) or document.get("format", 0) > CATALOG_FORMAT:
            return
        counters = tuple(int(c) for c in document.get("counters", ()))[:_COUNTERS]
        report = _Report(
            incarnation=str(document["incarnation"]),
            partitions=[(str(t), int(p)) for t, p in document.get("partitions", [])],
            counters=(*counters, *(0,) * (_COUNTERS - len(counters))),
            last_error=document.get("last_error"),
            at=float(document["at"]),
        )
        self._reports[(member, stream)] = report

    def _own_counts(self, name: str) -> list[int]:
        """This member's counters for stream ``name``: after a restart they go on from what
        it last published."""
        own = self._own.get(name)
        if own is None:
            entry = self._streams.get(name)
            report = self._reports.get((self.member, name))
            if report is not None and entry is not None and report.incarnation == entry.incarnation:
                own = list(report.counters)
            else:
                own = [0] * _COUNTERS
            self._own[name] = own
        return own

    # -- reads -----------------------------------------------------------------------------------

    async def all(self) -> list[StreamRecord]:
        return [self._record(self._streams[name]) for name in sorted(self._streams)]

    async def get(self, name: str) -> StreamRecord | None:
        entry = self._streams.get(name)
        return None if entry is None else self._record(entry)

    def _record(self, entry: _Entry) -> StreamRecord:
        totals = [0] * _COUNTERS
        for (member, stream), report in self._reports.items():
            if (
                stream == entry.name
                and member != self.member
                and report.incarnation == entry.incarnation
            ):
                totals = [a + b for a, b in zip(totals, report.counters, strict=True)]
        totals = [a + b for a, b in zip(totals, self._own_counts(entry.name), strict=True)]
        state = StreamState(
            status=entry.status,  # type: ignore[arg-type]
            limit_batches=entry.limit_batches,
            last_error=entry.last_error,
            messages_processed=totals[0],
            batches_processed=totals[1],
            messages_dead_lettered=totals[2],
            messages_skipped=totals[3],
            created_at=entry.created_at,
            updated_at=entry.updated_at,
        )
        return StreamRecord(entry.name, entry.definition, state, unreadable=entry.unreadable)

    def members(self, name: str) -> dict[str, MemberStatus]:
        """The live members running stream ``name``: member -> what it holds (partitions),
        its last error; a member silent for ``member_timeout`` seconds is left out, and
        nobody holds a stream that is not running."""
        entry = self._streams.get(name)
        if entry is None or entry.status != "running":
            return {}  # stopped: its members' last words are about a run that is over
        now = time.time()
        found = {}
        for (member, stream), report in sorted(self._reports.items()):
            if (
                stream == name
                and report.incarnation == entry.incarnation
                and now - report.at <= self.settings.member_timeout
            ):
                found[member] = MemberStatus(sorted(report.partitions), report.last_error)
        return found

    async def sync(self, timeout: float = 1.0) -> bool:
        """Wait until this member applied every catalog record written so far, by any member
        (the topic's end, asked of the broker); False if that took longer than ``timeout``.
        A clause on this member then sees a change just made on another."""
        if self._loop is None or self._producer is None:
            return False

        def end() -> int:
            from confluent_kafka import Consumer, TopicPartition

            if self._probe is None:
                self._probe = Consumer(self._consumer_config())
            _low, high = self._probe.get_watermark_offsets(
                TopicPartition(self.catalog_topic, 0), timeout=timeout
            )
            return int(high)

        try:
            high = await asyncio.wait_for(self._loop.run_in_executor(self._writes, end), timeout)
        except Exception:  # the broker is slow or away: what this member has is all there is
            return False
        # Every catalog record is a record batch of its own (each write is flushed alone), so
        # the end is exact also on brokers that report the last batch's base offset + 1.
        if high - 1 <= self._applied:
            return True
        waiter = self._loop.create_future()
        self._waiters.append((high - 1, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except (TimeoutError, CatalogError):
            return False
        return True

    # -- writes ----------------------------------------------------------------------------------

    async def insert(
        self, definition: StreamDefinition, state: StreamState | None = None
    ) -> StreamRecord:
        """Record a new stream; ``StreamExists`` when the name is taken, also when another
        member's CREATE of that name reached the log first."""
        name = definition.name
        if name in self._streams:
            raise StreamExists(name)
        given = state or StreamState()
        now = time.time()
        entry = _Entry(
            name=name,
            incarnation=uuid.uuid4().hex,
            definition=definition,
            status=given.status,
            limit_batches=given.limit_batches,
            last_error=given.last_error,
            created_at=now,
            updated_at=now,
        )
        await self._write(entry)
        current = self._streams.get(name)
        if current is None or current.incarnation != entry.incarnation:
            # Another member's CREATE came first: ours is void; its tombstone keeps
            # compaction from bringing it back later.
            with contextlib.suppress(CatalogError):
                await self._write_tombstone(name, entry.incarnation)
            raise StreamExists(name)
        return self._record(current)

    async def delete(self, name: str) -> bool:
        entry = self._streams.get(name)
        if entry is None:
            return False
        await self._write_tombstone(name, entry.incarnation)
        return True

    async def update(self, name: str, /, **changes: Any) -> bool:
        """Change the state of one stream (``status``, ``limit_batches``, ``last_error``): one
        record with the stream's whole new state. False if it does not exist."""
        # Where a stream failed (SKIP FAILED MESSAGE) is not shared in a cluster yet (README
        # "Operating streams"): dropped here.
        changes.pop("failed_at", None)
        unknown = set(changes) - _SETTABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"bad status {changes['status']!r}")
        entry = self._streams.get(name)
        if entry is None:
            return False
        await self._write(replace(entry, updated_at=time.time(), **changes))
        return True

    async def replace(self, definition: StreamDefinition) -> bool:
        """A new definition for an existing stream (ALTER): its state and incarnation stay.
        False if it does not exist. Every member running it restarts it with the new one."""
        entry = self._streams.get(definition.name)
        if entry is None:
            return False
        await self._write(
            replace(entry, definition=definition, unreadable=None, updated_at=time.time())
        )
        return True

    async def add_progress(self, progress: Mapping[str, tuple[int, ...]]) -> None:
        """This member's counters (they reach the others with the next heartbeat)."""
        for name, counts in progress.items():
            if name not in self._streams:
                continue
            own = self._own_counts(name)
            for i, value in enumerate((*counts, 0, 0)[:_COUNTERS]):
                own[i] += value

    async def heartbeat(self, running: Mapping[str, MemberStatus]) -> None:
        """Publish what this member does with each stream it runs (and that it runs nothing
        any more of the streams it reported before)."""
        if self._producer is None:
            return
        now = time.time()
        reported = {s for (m, s) in self._reports if m == self.member}
        for name in sorted(set(running) | reported):
            entry = self._streams.get(name)
            if entry is None:
                continue
            status = running.get(name)
            previous = self._reports.get((self.member, name))
            if (
                status is None
                and previous is not None
                and not previous.partitions
                and now - previous.at < 30.0
            ):
                continue  # already said: holds nothing
            document = {
                "format": CATALOG_FORMAT,
                "member": self.member,
                "stream": name,
                "incarnation": entry.incarnation,
                "partitions": [list(tp) for tp in (status.partitions if status else [])],
                "counters": self._own_counts(name),
                "last_error": status.last_error if status else None,
                "at": now,
            }
            try:
                self._producer.produce(
                    self.status_topic,
                    json.dumps(document, separators=(",", ":")).encode(),
                    key=_pair_key(self.member, name),
                )
            except Exception as exc:  # a full queue: the next heartbeat says it again
                log.debug("cluster %s: heartbeat not sent: %s", self.settings.name, exc)
        self._producer.poll(0)

    async def _write(self, entry: _Entry) -> None:
        assert entry.definition is not None
        document = {
            "format": CATALOG_FORMAT,
            "stream": entry.name,
            "incarnation": entry.incarnation,
            "definition": json.loads(entry.definition.to_json()),
            "state": {
                "status": entry.status,
                "limit_batches": entry.limit_batches,
                "last_error": entry.last_error,
            },
            "created_at": entry.created_at,
            "at": entry.updated_at,
            "by": self.member,
        }
        value = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        await self._produce(_pair_key(entry.name, entry.incarnation), value)

    async def _write_tombstone(self, name: str, incarnation: str) -> None:
        await self._produce(_pair_key(name, incarnation), None)

    async def _produce(self, key: bytes, value: bytes | None) -> None:
        """Write one catalog record and wait until this member applied it."""
        if self._producer is None or self._loop is None:
            raise CatalogError("the cluster catalog is not open")
        producer = self._producer
        timeout = self.settings.write_timeout

        def send() -> int:
            result: list[Any] = []
            producer.produce(
                self.catalog_topic,
                value,
                key=key,
                on_delivery=lambda error, message: result.append((error, message)),
            )
            producer.flush(timeout)
            if not result:
                raise CatalogError(f"the broker did not acknowledge within {timeout:g} s")
            error, message = result[0]
            if error is not None:
                raise CatalogError(error.str())
            offset: int = message.offset()
            return offset

        try:
            offset = await self._loop.run_in_executor(self._writes, send)
        except CatalogError as exc:
            raise CatalogError(
                f"cluster {self.settings.name}: writing the catalog: {exc}"
            ) from None
        except Exception as exc:
            raise CatalogError(
                f"cluster {self.settings.name}: writing the catalog: {reason_of(exc)}"
            ) from None
        if offset > self._applied:
            waiter = self._loop.create_future()
            self._waiters.append((offset, waiter))
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                raise CatalogError(
                    f"cluster {self.settings.name}: the catalog record was written but not "
                    f"read back within {timeout:g} s"
                ) from None


def _pair_key(first: str, second: str) -> bytes:
    return json.dumps([first, second], ensure_ascii=False, separators=(",", ":")).encode()


def _key(key: bytes | None) -> tuple[str, str]:
    if key is None:
        raise ValueError("a record without a key")
    parsed = json.loads(key)
    if not (
        isinstance(parsed, list) and len(parsed) == 2 and all(isinstance(p, str) for p in parsed)
    ):
        raise ValueError("a key that is not [name, id]")
    return parsed[0], parsed[1]


def _entry(name: str, incarnation: str, document: Any) -> _Entry:
    """A catalog record's value -> the stream it describes (unreadable if written by a newer
    version, or damaged: shown and droppable, never run)."""
    if not isinstance(document, dict):
        raise ValueError("a record that is not a JSON object")
    state = document.get("state") if isinstance(document.get("state"), dict) else {}
    assert isinstance(state, dict)
    status = state.get("status") if state.get("status") in STATUSES else "error"
    created = document.get("created_at")
    at = document.get("at")
    entry = _Entry(
        name=name,
        incarnation=incarnation,
        definition=None,
        status=str(status),
        limit_batches=state.get("limit_batches")
        if type(state.get("limit_batches")) is int
        else None,
        last_error=state.get("last_error") if isinstance(state.get("last_error"), str) else None,
        created_at=float(created) if isinstance(created, int | float) else 0.0,
        updated_at=float(at) if isinstance(at, int | float) else 0.0,
    )
    version = document.get("format")
    if type(version) is not int or version < 1:
        entry.unreadable = "the cluster catalog record has no valid format"
        return entry
    if version > CATALOG_FORMAT:
        entry.unreadable = (
            f"the cluster catalog record is of format {version}, written by a newer "
            f"boltstream (this one reads {CATALOG_FORMAT})"
        )
        return entry
    try:
        entry.definition = StreamDefinition.from_json(json.dumps(document.get("definition")))
    except DefinitionError as exc:
        entry.unreadable = str(exc)
    return entry

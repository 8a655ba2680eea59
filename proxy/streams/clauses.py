"""What CREATE STREAM, SHOW STREAMS and TEST STREAM do, apart from the engine's bookkeeping.

* ``define``: every check CREATE makes before it records anything (names, bounds, the error
  policy, the delivery guarantee, the broker and the topics, the transform), and the
  definition to record;
* ``show_rows``: the rows of SHOW STREAMS, lag included (bounded by ``lag_timeout``);
* ``test_stream``: TEST STREAM's batches, read from where the stream would start, transformed,
  never written or committed.

The engine (``engine.py``) calls these under the stream's lock; they never change the
registry of running streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bolt.status import SEMANTIC_ERROR, SYNTAX_ERROR
from proxy.streams import builtin
from proxy.streams.catalog import StreamRecord
from proxy.streams.definition import (
    SHOWN_POLICY,
    Delivery,
    MappingSpec,
    PolicyKind,
    StreamDefinition,
    TransformRef,
)
from proxy.streams.kafka import (
    StreamConsumer,
    TopicAdmin,
    TopicMissing,
    consumer_config,
    reason_of,
    start_like_group,
)
from proxy.streams.mapping.cypher import EVENTS
from proxy.streams.mapping.mapper import BadMapping, Mapper, MappingOptions, build_spec
from proxy.streams.names import UnsafeValue, check_client_config, check_stream_name, check_topic
from proxy.streams.outcomes import shorten
from proxy.streams.retry import Backoff, Health
from proxy.streams.transform import (
    TransformError,
    TransformPolicy,
    TransformRunner,
    TransformSource,
    check_transform,
    fetch_transform,
)
from proxy.streams.writers import (
    GraphWriter,
    PermanentWriteError,
    WriteError,
    mapping_dialect,
)

ErrorKind = Literal[
    "not_found", "exists", "invalid", "state", "external", "transform", "internal", "forbidden"
]
OnError = Literal["stop", "skip", "dead letter"]  # as the clause says it (grammar.OnError)
DeliveryText = Literal["at least once", "exactly once"]  # grammar.Delivery

DEFAULT_BATCH_INTERVAL_MS = 100
DEFAULT_BATCH_SIZE = 10
# Bounds checked at CREATE: a batch is held in memory whole, and librdkafka takes at most a
# million messages per call; an interval beyond an hour is a stream that never writes.
MAX_BATCH_SIZE = 1_000_000
MAX_BATCH_INTERVAL_MS = 3_600_000
# What users of the Neo4j Connector for Kafka try first (its strategies' names).
_MAPPING_BUILTINS = {"builtin:cypher", "builtin:pattern", "builtin:cud"}
_POLICY_OF: dict[str, PolicyKind] = {"stop": "stop", "skip": "skip", "dead letter": "dead_letter"}


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
    delivery: str = Delivery.AT_LEAST_ONCE.shown
    status_detail: str | None = None  # running: healthy, or the transient outages going on
    # member -> the partitions of the stream's topic it holds (members running the stream)
    holders: dict[str, list[int]] = field(default_factory=dict)
    database: str | None = None


# -- CREATE STREAM --------------------------------------------------------------------------------


async def define(
    name: str,
    uri: str,
    topic: str,
    transform: str | None,
    *,
    consumer_group: str,
    admin: TopicAdmin,
    policy: TransformPolicy,
    broker_timeout: float,
    batch_interval_ms: int | None = None,
    batch_size: int | None = None,
    owner: str | None = None,
    on_error: OnError | None = None,
    dead_letter_topic: str | None = None,
    delivery: DeliveryText | None = None,
    exactly_once_refusal: str | None = None,
    mapping: MappingOptions | None = None,
    writer: GraphWriter | None = None,
    database: str | None = None,
    keep: TransformRef | None = None,
    altering: bool = False,
) -> StreamDefinition:
    """Check everything CREATE STREAM checks (raising ``StreamError``) and return the
    definition to record. ``exactly_once_refusal``: why the backend cannot offer exactly-once
    (None: it can). A stream runs ``transform`` or, when that is None, the ``mapping``; a
    template is also EXPLAINed by the backend ``writer`` writes to (when given). ``keep``:
    keep this pinned transform (ALTER STREAM without TRANSFORM): it is not fetched again.
    ``altering``: the messages say ALTER rather than CREATE."""
    fail = (
        f"Failed to alter Kafka stream {name} : "
        if altering
        else f"Failed to initialize Kafka stream {name} : "
    )
    try:
        check_stream_name(name)
        check_topic(topic)
        check_client_config({"bootstrap.servers": uri, "group.id": consumer_group})
    except UnsafeValue as exc:
        raise StreamError(
            "invalid", f"Failed to initialize Kafka stream {shown_name(name)} : {exc}"
        ) from None
    try:
        spec = build_spec(transform, mapping or MappingOptions())
    except BadMapping as exc:
        raise StreamError("invalid", f"{fail}{exc}") from None
    shipped = builtin.lookup(transform) if transform is not None else None
    if transform is not None and builtin.is_builtin(transform) and shipped is None:
        raise StreamError(
            "external",
            f"Couldn't get the transform script from {transform}: "
            f"there is no such built-in transform ({builtin.names()})"
            + (
                "; Cypher templates, patterns and CUD messages need no transform: "
                "WITH CYPHER 'template', WITH PATTERN 'pattern' or WITH FORMAT CUD"
                if transform.lower() in _MAPPING_BUILTINS
                else ""
            ),
        )
    error_policy = _policy(name, shipped, on_error, dead_letter_topic, topic)
    interval = DEFAULT_BATCH_INTERVAL_MS if batch_interval_ms is None else batch_interval_ms
    size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if not 1 <= interval <= MAX_BATCH_INTERVAL_MS:
        raise StreamError(
            "invalid",
            f"{fail}BATCH_INTERVAL must be between 1 and "
            f"{MAX_BATCH_INTERVAL_MS} milliseconds (one hour), not {interval}",
        )
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise StreamError(
            "invalid",
            f"{fail}BATCH_SIZE must be between 1 and {MAX_BATCH_SIZE} messages, not {size}",
        )
    if not uri.strip():
        raise StreamError("invalid", f"{fail}the Kafka URI is empty")
    chosen = Delivery.EXACTLY_ONCE if delivery == "exactly once" else Delivery.AT_LEAST_ONCE
    if chosen is Delivery.EXACTLY_ONCE:
        if shipped is not None and shipped.mode == "request":
            raise StreamError(
                "invalid",
                f"{fail}{shipped.uri} writes nothing to the graph "
                "(its responses go to Kafka, at least once): DELIVERY EXACTLY "
                "ONCE does not apply",
            )
        if exactly_once_refusal is not None:
            raise StreamError(
                "invalid",
                f"{fail}DELIVERY EXACTLY ONCE is not available here: {exactly_once_refusal}",
            )
    try:
        topics = await admin.topics(uri, broker_timeout)
    except Exception as exc:
        raise StreamError(
            "external",
            f"{fail}the Kafka broker at '{uri}' did not answer "
            f"within {broker_timeout:g} s ({reason_of(exc)})",
        ) from None
    if topic not in topics:
        raise StreamError("external", f"Kafka stream {name}, topic not found")
    if error_policy == "dead_letter" and dead_letter_topic not in topics:
        raise StreamError(
            "external", f"Kafka stream {name}, dead-letter topic '{dead_letter_topic}' not found"
        )
    if spec is not None and writer is not None:
        await _explain_template(fail, spec, writer, owner, broker_timeout)
    pinned = keep
    if transform is not None and keep is None:
        try:
            source = (
                shipped.source()
                if shipped is not None
                else await fetch_transform(transform, policy)
            )
            await check_transform(source)
        except TransformError as exc:
            raise StreamError("external", str(exc)) from None
        pinned = TransformRef(source.uri, source.code, source.sha256)
    return StreamDefinition(
        name=name,
        uri=uri,
        topic=topic,
        transform=pinned,
        mapping=spec,
        batch_interval_ms=interval,
        batch_size=size,
        consumer_group=consumer_group,
        owner=owner or None,
        error_policy=error_policy,
        dead_letter_topic=dead_letter_topic if error_policy == "dead_letter" else None,
        delivery=chosen,
        database=database,
    )


async def _explain_template(
    fail: str, spec: MappingSpec, writer: GraphWriter, owner: str | None, timeout: float
) -> None:
    """Ask the backend to EXPLAIN a template's batch query (over no rows), and refuse the
    template if the backend finds it wrong (a syntax or semantic error) while it explains a
    plain query: a backend without EXPLAIN, away, or slow to answer refuses nothing."""
    query = Mapper(spec).template_query
    if query is None:
        return

    async def explain(text: str) -> None:
        await asyncio.wait_for(writer.read(f"EXPLAIN {text}", {EVENTS: []}, owner), timeout)

    try:
        await explain(query)
    except PermanentWriteError as exc:
        if exc.code not in (SYNTAX_ERROR, SEMANTIC_ERROR):
            return
        try:
            await explain(f"UNWIND ${EVENTS} AS x RETURN x")
        except Exception:
            return  # no EXPLAIN here: the template's error says nothing
        raise StreamError(
            "invalid", f"{fail}the backend refuses the Cypher template: {shorten(exc.detail)}"
        ) from None
    except (TimeoutError, WriteError):
        return


def _policy(
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
            f"ON ERROR {SHOWN_POLICY[p].upper()}" + (" 'topic'" if p == "dead_letter" else "")
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


def shown_name(name: str) -> str:
    from proxy.streams.names import shown

    return shown(name)


# -- SHOW STREAMS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What a running stream says about itself (its runner's counters and health)."""

    messages: int
    dead_lettered: int
    skipped: int
    last_error: str | None
    detail: str | None = None


async def show_rows(
    records: list[StreamRecord],
    live: Mapping[str, Live],
    admin: TopicAdmin,
    kafka_config: Mapping[str, Any],
    lag_timeout: float,
    holders: Mapping[str, Mapping[str, list[tuple[str, int]]]] | None = None,
    default_database: str | None = None,
) -> list[StreamStatus]:
    """SHOW STREAMS: one metadata request per broker, then the offsets of every stream at
    once; all bounded by ``lag_timeout`` (a broker that does not answer costs that once).
    ``holders``: per stream, member -> the (topic, partition) pairs it holds."""
    readable = [r for r in records if r.definition is not None]
    uris = sorted({r.definition.uri for r in readable if r.definition is not None})
    listed = await asyncio.gather(*(_lag_topics(admin, uri, lag_timeout) for uri in uris))
    topics = dict(zip(uris, listed, strict=True))
    reset = str(kafka_config.get("auto.offset.reset", "earliest")).lower()
    reset_latest = reset in ("latest", "largest", "end")
    lags = await asyncio.gather(
        *(
            _lag(admin, r.definition, topics[r.definition.uri], lag_timeout, reset_latest)
            for r in readable
            if r.definition is not None
        )
    )
    lag_of = {r.name: lag for r, lag in zip(readable, lags, strict=True)}
    rows = []
    for record in records:
        state, definition = record.state, record.definition
        messages, dead, skipped = (
            state.messages_processed,
            state.messages_dead_lettered,
            state.messages_skipped,
        )
        last_error, status = state.last_error, state.status
        detail: str | None = None
        running = live.get(record.name)
        if running is not None:
            messages, dead, skipped = running.messages, running.dead_lettered, running.skipped
            last_error, status, detail = running.last_error, "running", running.detail
        elif status == "running":
            status = "stopped"  # recorded as running, but not run by this process (yet)
        if definition is None:
            rows.append(
                StreamStatus(
                    name=record.name,
                    uri="",
                    topic="",
                    transform="",
                    status="error",
                    batch_interval=0,
                    batch_size=0,
                    consumer_group="",
                    owner=None,
                    messages_processed=messages,
                    lag=None,
                    last_error=record.unreadable,
                )
            )
            continue
        rows.append(
            StreamStatus(
                name=record.name,
                uri=definition.uri,
                topic=definition.topic,
                transform=definition.source_shown,
                status=status,
                batch_interval=definition.batch_interval_ms,
                batch_size=definition.batch_size,
                consumer_group=definition.consumer_group,
                owner=definition.owner,
                messages_processed=messages,
                lag=lag_of.get(record.name),
                last_error=last_error,
                on_error=SHOWN_POLICY[definition.error_policy],
                dead_letter_topic=definition.dead_letter_topic,
                dead_lettered=dead,
                skipped=skipped,
                delivery=definition.delivery.shown,
                status_detail=detail,
                holders={
                    member: [p for t, p in held if t == definition.topic]
                    for member, held in (holders or {}).get(record.name, {}).items()
                },
                database=definition.database or default_database,
            )
        )
    return rows


async def _lag_topics(admin: TopicAdmin, uri: str, timeout: float) -> dict[str, int] | None:
    try:
        return await asyncio.wait_for(admin.topics(uri, timeout), timeout + 0.5)
    except Exception:
        return None


async def _lag(
    admin: TopicAdmin,
    definition: StreamDefinition,
    topics: dict[str, int] | None,
    timeout: float,
    reset_latest: bool,
) -> int | None:
    """Messages in the topic after the group's committed offsets (None if unknown)."""
    if topics is None or definition.topic not in topics:
        return None
    try:
        return await asyncio.wait_for(
            admin.lag(definition, topics[definition.topic], timeout, reset_latest), timeout
        )
    except Exception:
        return None


# -- TEST STREAM ------------------------------------------------------------------------------


async def test_stream(
    definition: StreamDefinition,
    limit: int,
    *,
    writer: GraphWriter,
    kafka_config: Mapping[str, Any],
    broker_timeout: float,
    test_timeout: float,
    transform_timeout: float,
    transform_memory_mb: int,
) -> list[tuple[str, dict[str, Any]]]:
    """TEST STREAM: ``limit`` batches, formed as a run forms them, from where the stream
    would start (the group's committed offsets; an exactly-once stream's positions in the
    graph), transformed. Writes nothing, commits nothing, joins no group.

    Takes at most ``test_timeout`` in all (1 s when the watermarks say there is nothing to
    read), and stops early when no batch came within max(1 s, two intervals) of the last one;
    when the time is up, the open batch, if any, is the last batch, whatever its interval."""
    name = definition.name
    transform: TransformRunner | None = None
    mapper: Mapper | None = None
    if definition.transform is not None:
        transform = TransformRunner(
            TransformSource(
                definition.transform.uri, definition.transform.code, definition.transform.sha256
            ),
            name=f"{name} (test)",
            batch_timeout=transform_timeout,
            memory_limit_mb=transform_memory_mb,
        )
    config = consumer_config(definition, kafka_config)
    consumer: StreamConsumer | None = None
    started = time.monotonic()
    try:
        if definition.mapping is not None:
            try:
                mapper = Mapper(definition.mapping, mapping_dialect(writer))
            except BadMapping as exc:
                raise StreamError("invalid", f"Kafka stream {name}: {exc}") from None
        try:
            if transform is not None:
                await transform.start()
        except TransformError as exc:
            raise StreamError(
                "transform", f"Kafka stream {name}: the transform could not be loaded: {exc}"
            ) from None
        positions = None
        if definition.exactly_once:
            try:
                stored = await asyncio.wait_for(
                    writer.read_positions(name, definition.owner), broker_timeout
                )
            except (TimeoutError, WriteError) as exc:
                raise StreamError(
                    "external",
                    f"Kafka stream {name}: its positions could not "
                    f"be read from the graph ({exc or 'timed out'})",
                ) from None
            positions = {tp: offset for tp, offset in stored.items() if tp[0] == definition.topic}
        try:
            starts, empty = await asyncio.to_thread(
                start_like_group, config, definition.topic, broker_timeout, positions
            )
        except TopicMissing:
            raise StreamError("external", f"Kafka stream {name}, topic not found") from None
        except UnsafeValue as exc:
            raise StreamError(
                "invalid", f"Kafka stream {shown_name(name)} cannot be tested: {exc}"
            ) from None
        except Exception as exc:
            raise StreamError(
                "external",
                f"Kafka stream {name}: the Kafka broker at "
                f"'{definition.uri}' did not answer ({reason_of(exc)})",
            ) from None
        interval = definition.batch_interval_ms / 1000.0
        consumer = StreamConsumer(
            f"test-{name}",
            config,
            definition.topic,
            size=definition.batch_size,
            interval=interval,
            health=Health(),
            backoff=Backoff(),
            assign=starts,
        )
        consumer.start()
        await consumer.opened()
        idle = max(1.0, 2 * interval)
        # Nothing to read by the watermarks: wait briefly, not the whole test timeout
        # (briefly, not at all: some brokers under-report high watermarks).
        deadline = started + (min(idle, test_timeout) if empty else test_timeout)
        rows: list[tuple[str, dict[str, Any]]] = []
        batches = 0
        while batches < limit:
            now = time.monotonic()
            wait = deadline - now if batches == 0 else min(idle, started + test_timeout - now)
            formed = None
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    formed = await asyncio.wait_for(consumer.batches(definition.batch_size), wait)
            if consumer.fatal:
                raise StreamError("external", f"Kafka stream {name}: {consumer.fatal}")
            last = not formed
            if last:  # time is up: what the open batch holds is the last batch
                consumer.flush()
                with contextlib.suppress(TimeoutError):
                    formed = await asyncio.wait_for(consumer.batches(definition.batch_size), 0.5)
            for batch in (formed or [])[: limit - batches]:
                batches += 1
                if mapper is not None:
                    rows += mapper.test_rows(batch.messages)
                    continue
                assert transform is not None
                try:
                    rows += await transform.run(batch.values())
                except TransformError as exc:
                    raise StreamError(
                        "transform", f"Kafka stream {name}: the transform failed: {exc}"
                    ) from None
            if last:
                break
        return rows
    finally:
        if consumer is not None:
            await consumer.close(grace=0)
        if transform is not None:
            with contextlib.suppress(Exception):
                await transform.stop()

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
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from bolt.status import SEMANTIC_ERROR, SYNTAX_ERROR
from proxy.streams import builtin
from proxy.streams.catalog import StreamRecord
from proxy.streams.definition import (
    REDACTED,
    SHOWN_POLICY,
    Delivery,
    MappingSpec,
    PolicyKind,
    StreamDefinition,
    TransformRef,
)
from proxy.streams.kafka import (
    FORCED,
    StreamConsumer,
    TopicAdmin,
    TopicMissing,
    consumer_config,
    reason_of,
    start_like_group,
)
from proxy.streams.mapping.cypher import EVENTS
from proxy.streams.mapping.mapper import (
    MAPPING_OPTIONS,
    BadMapping,
    Mapper,
    MappingOptions,
    build_spec,
)
from proxy.streams.names import (
    UnsafeValue,
    check_client_config,
    check_stream_name,
    check_stream_setting,
    check_topic,
)
from proxy.streams.outcomes import shorten
from proxy.streams.retry import Backoff, Health
from proxy.streams.spec import OnError, StreamOptions, StreamSpec
from proxy.streams.transform import (
    TransformError,
    TransformPolicy,
    TransformRunner,
    TransformSource,
    check_transform,
    fetch_module,
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


# The metadata key of a StreamStatus field whose SHOW STREAMS column is not the field's name.
_COLUMN = "column"


@dataclass(frozen=True, kw_only=True)
class StreamStatus:
    """One row of SHOW STREAMS. The fields are the columns, in order (``columns``, ``row``):
    the first twelve are the legacy columns, in the manual's order; the error-policy ones
    follow, then the delivery guarantee, then which member (proxy) holds which partitions of
    the topic, then what a running stream's outages are (``retry.Health``), then Memgraph
    2.x's columns that the ones before do not already say (its batch_interval, batch_size and
    owner are there; its topics, consumer group and bootstrap servers too)."""

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
    # member -> the partitions of the stream's topic it holds (members running the stream)
    holders: dict[str, list[int]] = field(default_factory=dict)
    status_detail: str | None = None  # running: healthy, or the transient outages going on
    type: str = "kafka"
    transformation_name: str = ""
    is_running: bool = field(init=False, metadata={_COLUMN: "is running"})  # status running
    configs: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)  # keys only: values REDACTED
    database: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_running", self.status == "running")

    @classmethod
    def columns(cls) -> list[str]:
        """SHOW STREAMS' column names, in order."""
        return [f.metadata.get(_COLUMN, f.name) for f in fields(cls)]

    def row(self) -> list[Any]:
        """This stream's values, in the order of ``columns``."""
        return [getattr(self, f.name) for f in fields(self)]


Settings = tuple[tuple[str, str], ...]
# Keys CONFIGS and CREDENTIALS may not set, with what to use instead.
_ENGINE_KEYS = {
    "bootstrap.servers": "use BOOTSTRAP_SERVERS, or the legacy clause's URI",
    "group.id": "use CONSUMER_GROUP",
    "enable.auto.commit": "offsets are committed after each write",
    "enable.auto.offset.store": "offsets are committed after each write",
    "enable.partition.eof": "the consumer relies on it being off",
}


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every credential value in it replaced by ``<REDACTED>``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def check_settings(
    name: str, configs: Settings, credentials: Settings, *, action: str = "initialize"
) -> None:
    """Raise ``StreamError`` for a CONFIGS / CREDENTIALS key the engine owns, a key given
    twice, or a value the native client must not see (``names.check_client_config``). A
    credential's value never appears in a message. ``action``: what failed (ALTER: alter)."""
    fail = f"Failed to {action} Kafka stream {shown_name(name)} : "
    seen: set[str] = set()
    for what, pairs in (("CONFIGS", configs), ("CREDENTIALS", credentials)):
        for key, value in pairs:
            if key in FORCED or key in _ENGINE_KEYS:
                raise StreamError(
                    "invalid",
                    f"{fail}{what} may not set {key!r}: boltstream sets it "
                    f"({_ENGINE_KEYS.get(key, 'it belongs to the engine')})",
                )
            if key in seen:
                raise StreamError("invalid", f"{fail}{key!r} is given more than once")
            seen.add(key)
            try:
                check_stream_setting(key)
                check_client_config({key: value})
            except UnsafeValue as exc:
                raise StreamError("invalid", f"{fail}{what}: {exc}") from None


def validate_client(config: dict[str, Any], secrets: tuple[str, ...]) -> None:
    """Build (and close) a consumer from ``config``: librdkafka refuses unknown settings and
    bad values here, as Memgraph's CREATE does. Raises ``ValueError`` with librdkafka's reason,
    credentials redacted. Blocks: run it off the event loop."""
    from confluent_kafka import Consumer

    from proxy.streams.kafka import kafka_log

    try:
        consumer = Consumer({**config, "logger": kafka_log, "error_cb": lambda error: None})
    except Exception as exc:
        raise ValueError(redact(reason_of(exc), secrets)) from None
    consumer.close()


# -- CREATE STREAM and ALTER STREAM ... SET ------------------------------------------------------


@dataclass(frozen=True)
class Checks:
    """What the checks of CREATE and ALTER need of the engine. ``exactly_once_refusal``: why
    the backend cannot offer exactly-once (None: it can); ``writer``: the backend that EXPLAINs
    a template (None: none is explained); ``kafka_config``: the proxy's Kafka settings, to
    check a stream's own over them; ``transformations_dir``: where ``module.procedure`` is."""

    admin: TopicAdmin
    policy: TransformPolicy
    broker_timeout: float
    kafka_config: Mapping[str, Any] = field(default_factory=dict)
    transformations_dir: Any = None
    exactly_once_refusal: str | None = None
    writer: GraphWriter | None = None


async def define(spec: StreamSpec, checks: Checks) -> StreamDefinition:
    """CREATE STREAM: check everything (raising ``StreamError``) and return the definition to
    record, its transform fetched, checked and pinned. ``spec.uri`` and ``spec.consumer_group``
    must be given (the engine fills in its defaults). A stream runs its transform (or module)
    or, when it has neither, its mapping; a template is EXPLAINed by ``checks.writer``."""
    name, options = spec.name, spec.options
    fail = f"Failed to initialize Kafka stream {name} : "
    if spec.uri is None or spec.consumer_group is None or not spec.topics:
        raise StreamError("internal", f"{fail}no broker, topic or consumer group")
    configs, credentials = options.configs or (), options.credentials or ()
    _check_names(fail, name, spec.topics, spec.uri, spec.consumer_group)
    check_settings(name, configs, credentials)
    runs = options.transformation or options.transform
    mapping = _mapping(fail, runs, options.mapping)
    shipped = _shipped(None if options.transformation is not None else options.transform)
    policy = _policy(fail, shipped, _policy_of(fail, options.on_error, shipped))
    _check_dead_letter(fail, policy, options.dead_letter_topic, spec.topics)
    draft = StreamDefinition(
        name=name,
        uri=spec.uri,
        topic=spec.topics[0],
        transform=None if runs is None else _unpinned(runs),
        mapping=mapping,
        batch_interval_ms=_given(options.batch_interval_ms, DEFAULT_BATCH_INTERVAL_MS),
        batch_size=_given(options.batch_size, DEFAULT_BATCH_SIZE),
        consumer_group=spec.consumer_group,
        owner=spec.owner or None,
        error_policy=policy,
        dead_letter_topic=options.dead_letter_topic if policy == "dead_letter" else None,
        delivery=Delivery.EXACTLY_ONCE
        if spec.delivery == "exactly once"
        else Delivery.AT_LEAST_ONCE,
        database=spec.database,
        more_topics=tuple(spec.topics[1:]),
        configs=tuple(configs),
        credentials=tuple(credentials),
        transformation=options.transformation,
    )
    return await _settle(fail, draft, shipped, checks, pin=runs is not None)


async def redefine(
    old: StreamDefinition, options: StreamOptions, checks: Checks
) -> StreamDefinition:
    """ALTER STREAM ... SET: ``old`` with what ``options`` give, checked as CREATE checks a
    stream (raising ``StreamError``). Built with ``dataclasses.replace``: every field the
    options do not set stays as it is. A new transform or module is fetched, checked and
    pinned; a new mapping replaces the old one, and mapping options that choose none (WITH
    FORMAT JSON/TEXT/BYTES, MERGE ... PROPERTIES) apply to the stream's mapping. Without
    either, the pinned transform or the mapping stays."""
    fail = f"Failed to alter Kafka stream {old.name} : "
    changes: dict[str, Any] = {}
    if options.batch_interval_ms is not None:
        changes["batch_interval_ms"] = options.batch_interval_ms
    if options.batch_size is not None:
        changes["batch_size"] = options.batch_size
    if options.configs is not None:
        changes["configs"] = tuple(options.configs)
    if options.credentials is not None:
        changes["credentials"] = tuple(options.credentials)
    runs = options.transformation or options.transform
    if options.runs:
        mapping = _mapping(fail, runs, _mapping_change(fail, old, runs, options.mapping))
        changes["mapping"] = mapping
        changes["transform"] = None if runs is None else _unpinned(runs)
        changes["transformation"] = options.transformation
    new = replace(old, **changes)
    _check_names(fail, new.name, new.topics, new.uri, new.consumer_group)
    check_settings(new.name, new.configs, new.credentials, action="alter")
    script = new.transform.uri if new.transform and new.transformation is None else None
    shipped = _shipped(script)
    if options.on_error is not None:
        policy = _policy(fail, shipped, _policy_of(fail, options.on_error, shipped))
        dead = options.dead_letter_topic
    else:
        policy, dead = _policy(fail, shipped, new.error_policy), new.dead_letter_topic
    _check_dead_letter(fail, policy, dead, new.topics)
    new = replace(
        new, error_policy=policy, dead_letter_topic=dead if policy == "dead_letter" else None
    )
    return await _settle(fail, new, shipped, checks, pin=runs is not None)


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def _unpinned(uri: str) -> TransformRef:
    """A transform to fetch, check and pin (``_settle``) once every other check passed."""
    return TransformRef(uri, "", "")


def _check_names(
    fail: str, name: str, topics: tuple[str, ...], uri: str, consumer_group: str
) -> None:
    """The stream's name, topics, broker and group: safe to use, each topic once."""
    try:
        check_stream_name(name)
        for each in topics:
            check_topic(each)
        check_client_config({"bootstrap.servers": uri, "group.id": consumer_group})
    except UnsafeValue as exc:
        raise StreamError(
            "invalid", f"Failed to initialize Kafka stream {shown_name(name)} : {exc}"
        ) from None
    if len(set(topics)) != len(topics):
        raise StreamError("invalid", f"{fail}a topic is named more than once")


def _mapping(fail: str, runs: str | None, options: MappingOptions) -> MappingSpec | None:
    """The stream's mapping, checked: None when it runs ``runs`` (a transform or module)."""
    try:
        return build_spec(runs, options)
    except BadMapping as exc:
        raise StreamError("invalid", f"{fail}{exc}") from None


def _mapping_change(
    fail: str, old: StreamDefinition, runs: str | None, given: MappingOptions
) -> MappingOptions:
    """ALTER's mapping options: a new mapping as given (or a transform: nothing), else the
    options that choose none applied to the stream's mapping."""
    if runs is not None or given.chosen or not given.given:
        return given
    if old.mapping is None:
        raise StreamError(
            "invalid",
            f"{fail}WITH FORMAT and MERGE ... PROPERTIES apply to a mapping, and the stream runs "
            f"a transform ({old.source_shown}): give {MAPPING_OPTIONS} to replace it",
        )
    if old.mapping.kind == "cud" and given.value_format is not None:
        raise StreamError(
            "invalid",
            f"{fail}the stream reads CUD documents (WITH FORMAT CUD): WITH FORMAT "
            f"{given.value_format.upper()} would leave it no mapping; give WITH CYPHER or "
            "WITH PATTERN with it",
        )
    kept = MappingOptions.of_spec(old.mapping)
    return replace(
        kept,
        value_format=given.value_format or kept.value_format,
        merge_node_properties=kept.merge_node_properties or given.merge_node_properties,
        merge_relationship_properties=kept.merge_relationship_properties
        or given.merge_relationship_properties,
    )


def _shipped(script: str | None) -> builtin.Builtin | None:
    """The built-in transform a script URI names (None: not a built-in), or ``StreamError``
    for a ``builtin:`` URI that names none."""
    if script is None:
        return None
    shipped = builtin.lookup(script)
    if builtin.is_builtin(script) and shipped is None:
        raise StreamError(
            "external",
            f"Couldn't get the transform script from {script}: "
            f"there is no such built-in transform ({builtin.names()})"
            + (
                "; Cypher templates, patterns and CUD messages need no transform: "
                "WITH CYPHER 'template', WITH PATTERN 'pattern' or WITH FORMAT CUD"
                if script.lower() in _MAPPING_BUILTINS
                else ""
            ),
        )
    return shipped


async def _settle(
    fail: str,
    draft: StreamDefinition,
    shipped: builtin.Builtin | None,
    checks: Checks,
    *,
    pin: bool,
) -> StreamDefinition:
    """The checks CREATE and ALTER share once the definition is drafted: bounds, delivery, the
    stream's own Kafka settings (librdkafka takes them), the broker (topics and dead-letter
    topic exist), the template (EXPLAIN); then, with ``pin``, the transform is fetched,
    checked and pinned."""
    interval, size = draft.batch_interval_ms, draft.batch_size
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
    if not draft.uri.strip():
        raise StreamError("invalid", f"{fail}the Kafka URI is empty")
    if draft.exactly_once:
        if shipped is not None and shipped.mode == "request":
            raise StreamError(
                "invalid",
                f"{fail}{shipped.uri} writes nothing to the graph "
                "(its responses go to Kafka, at least once): DELIVERY EXACTLY "
                "ONCE does not apply",
            )
        if checks.exactly_once_refusal is not None:
            raise StreamError(
                "invalid",
                f"{fail}DELIVERY EXACTLY ONCE is not available here: {checks.exactly_once_refusal}",
            )
    own, secrets = draft.settings, draft.secrets
    if own:
        try:
            await asyncio.to_thread(
                validate_client, consumer_config(draft, checks.kafka_config), secrets
            )
        except ValueError as exc:
            raise StreamError("invalid", f"{fail}{exc}") from None
    try:
        listed = await checks.admin.topics(draft.uri, checks.broker_timeout, own or None)
    except Exception as exc:
        raise StreamError(
            "external",
            f"{fail}the Kafka broker at '{draft.uri}' did not answer "
            f"within {checks.broker_timeout:g} s ({redact(reason_of(exc), secrets)})",
        ) from None
    topics = draft.topics
    for each in topics:
        if each not in listed:
            raise StreamError(
                "external",
                f"Kafka stream {draft.name}, topic not found"
                + (f": {each}" if len(topics) > 1 else ""),
            )
    dead = draft.dead_letter_topic
    if draft.error_policy == "dead_letter" and dead not in listed:
        raise StreamError(
            "external", f"Kafka stream {draft.name}, dead-letter topic '{dead}' not found"
        )
    if draft.mapping is not None and checks.writer is not None:
        await _explain_template(
            fail, draft.mapping, checks.writer, draft.owner, checks.broker_timeout
        )
    if not pin or draft.transform is None:
        return draft
    try:
        if draft.transformation is not None:
            source = await fetch_module(checks.transformations_dir, draft.transformation)
        elif shipped is not None:
            source = shipped.source()
        else:
            source = await fetch_transform(draft.transform.uri, checks.policy)
        await check_transform(source, transformation=draft.transformation)
    except TransformError as exc:
        raise StreamError("external", str(exc)) from None
    return replace(draft, transform=TransformRef(source.uri, source.code, source.sha256))


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


def _policy_of(
    fail: str, on_error: OnError | None, shipped: builtin.Builtin | None
) -> PolicyKind | None:
    """The error policy ON ERROR names, else the transform's default (None: it has none)."""
    if on_error is None:
        return shipped.default_policy if shipped is not None else "stop"
    if on_error not in _POLICY_OF:
        raise StreamError("invalid", f"{fail}unknown ON ERROR action {on_error!r}")
    return _POLICY_OF[on_error]


def _policy(fail: str, shipped: builtin.Builtin | None, policy: PolicyKind | None) -> PolicyKind:
    """``policy``, if the transform allows it (a built-in allows some only)."""
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
    return policy


def _check_dead_letter(
    fail: str, policy: PolicyKind, dead_letter_topic: str | None, topics: tuple[str, ...]
) -> None:
    """A dead-letter topic exactly with ON ERROR DEAD LETTER, valid, not the stream's own."""
    if policy == "dead_letter":
        try:
            check_topic(dead_letter_topic or "", "dead-letter topic")
        except UnsafeValue as exc:
            raise StreamError("invalid", str(exc)) from None
        if dead_letter_topic in topics:
            raise StreamError(
                "invalid", f"{fail}the dead-letter topic cannot be the stream's own topic"
            )
    elif dead_letter_topic is not None:
        raise StreamError("invalid", f"{fail}a dead-letter topic needs ON ERROR DEAD LETTER")


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
    readable = [r.definition for r in records if r.definition is not None]
    # One metadata request per broker and set of settings (a stream's own CONFIGS /
    # CREDENTIALS may be what lets it in).
    keys = sorted({_broker_key(d) for d in readable})
    listed = await asyncio.gather(
        *(_lag_topics(admin, uri, lag_timeout, dict(own)) for uri, own in keys)
    )
    topics = dict(zip(keys, listed, strict=True))
    lags = await asyncio.gather(
        *(
            _lag(
                admin,
                d,
                topics[_broker_key(d)],
                lag_timeout,
                _reset_latest(consumer_config(d, kafka_config)),
            )
            for d in readable
        )
    )
    lag_of = {d.name: lag for d, lag in zip(readable, lags, strict=True)}
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
                topic=definition.shown_topics,
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
                transformation_name=definition.transformation or definition.source_shown,
                configs=definition.shown_configs(),
                credentials=definition.shown_credentials(),
                holders={
                    member: [p for t, p in held if t == definition.topic]
                    for member, held in (holders or {}).get(record.name, {}).items()
                },
                database=definition.database or default_database,
            )
        )
    return rows


def _broker_key(definition: StreamDefinition) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (definition.uri, tuple(sorted(definition.settings.items())))


def _reset_latest(config: Mapping[str, Any]) -> bool:
    return str(config.get("auto.offset.reset", "earliest")).lower() in ("latest", "largest", "end")


async def _lag_topics(
    admin: TopicAdmin, uri: str, timeout: float, own: dict[str, str]
) -> dict[str, int] | None:
    try:
        return await asyncio.wait_for(admin.topics(uri, timeout, own or None), timeout + 0.5)
    except Exception:
        return None


async def _lag(
    admin: TopicAdmin,
    definition: StreamDefinition,
    topics: dict[str, int] | None,
    timeout: float,
    reset_latest: bool,
) -> int | None:
    """Messages in the topics after the group's committed offsets (None if unknown)."""
    if topics is None or any(t not in topics for t in definition.topics):
        return None
    try:
        counts = {t: topics[t] for t in definition.topics}
        return await asyncio.wait_for(admin.lag(definition, counts, timeout, reset_latest), timeout)
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
            transformation=definition.transformation,
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
            positions = {tp: offset for tp, offset in stored.items() if tp[0] in definition.topics}
        try:
            starts, empty = await asyncio.to_thread(
                start_like_group, config, definition.topics, broker_timeout, positions
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
                f"'{definition.uri}' did not answer ({redact(reason_of(exc), definition.secrets)})",
            ) from None
        interval = definition.batch_interval_ms / 1000.0
        consumer = StreamConsumer(
            f"test-{name}",
            config,
            definition.topics,
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
                    rows += await transform.run(
                        batch.messages if transform.metadata else batch.values()
                    )
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

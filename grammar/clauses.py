"""The parsed stream clauses: one frozen dataclass per clause.

Optional values the query left out stay ``None``; the defaults belong to the stream engine, not to
the grammar. For reference (memgraph_streams.md §1.2, §4): BATCH_INTERVAL 100 ms; BATCH_SIZE 1000
in the legacy code (the manual says 10); TEST STREAM without LIMIT runs one batch; START STREAM
without LIMIT runs until stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

OnError: TypeAlias = Literal["stop", "skip", "dead letter"]
Delivery: TypeAlias = Literal["at least once", "exactly once"]
ValueFormat: TypeAlias = Literal["cud", "json", "text", "bytes"]
# CONFIGS / CREDENTIALS {'key': 'value', ...}, in the clause's order.
Settings: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MappingClauseOptions:
    """The mapping options a clause may give (``WITH CYPHER 'template'``, ``WITH PATTERN
    'pattern'``..., ``WITH FORMAT CUD|JSON|TEXT|BYTES``, ``MERGE NODE PROPERTIES``, ``MERGE
    RELATIONSHIP PROPERTIES``), the same in CREATE STREAM (both syntaxes) and ALTER STREAM ...
    SET. Keyword-only, after each clause's own fields. ``value_format`` is None when left out
    (JSON)."""

    cypher: str | None = None  # WITH CYPHER: the template
    patterns: tuple[str, ...] = ()  # WITH PATTERN, in order
    value_format: ValueFormat | None = None  # WITH FORMAT
    merge_node_properties: bool = False
    merge_relationship_properties: bool = False

    @property
    def has_mapping(self) -> bool:
        """Whether the clause gives a mapping (a template, patterns or CUD)."""
        return self.cypher is not None or bool(self.patterns) or self.value_format == "cud"

    @property
    def mapping_given(self) -> bool:
        """Whether the clause gives any mapping option (a mapping, or how to read values)."""
        return (
            self.has_mapping
            or self.value_format is not None
            or self.merge_node_properties
            or self.merge_relationship_properties
        )


@dataclass(frozen=True, slots=True)
class CreateStream(MappingClauseOptions):
    """``CREATE STREAM name AS LOAD DATA KAFKA 'uri' WITH TOPIC 'topic' [WITH TRANSFORM 'uri']
    [BATCH_INTERVAL ms] [BATCH_SIZE count]
    [ON ERROR STOP | ON ERROR SKIP | ON ERROR DEAD LETTER 'topic']
    [DELIVERY AT LEAST ONCE | DELIVERY EXACTLY ONCE]
    [WITH CYPHER 'template'] [WITH PATTERN 'pattern']... [WITH FORMAT CUD|JSON|TEXT|BYTES]
    [MERGE NODE PROPERTIES] [MERGE RELATIONSHIP PROPERTIES]
    [CONSUMER_GROUP group] [CONFIGS {...}] [CREDENTIALS {...}] [DATABASE name]`` (options in
    any order, each once but WITH PATTERN, whose patterns apply in the order given). ``WITH
    TOPIC`` may be repeated, and a topic string may name several topics separated by commas:
    ``topic`` is the first, ``more_topics`` the others.

    The grammar takes any combination; whether it makes a stream (a transform, or a mapping:
    a template, patterns or CUD; not both) is the engine's to say. ``on_error`` is None when
    the clause leaves it out (the engine picks the default for the transform);
    ``dead_letter_topic`` is set exactly when ``on_error`` is ``"dead letter"``. ``delivery``
    is None when left out (the engine's default: at least once).
    """

    name: str
    uri: str  # Kafka bootstrap servers, e.g. 'localhost:9092'
    topic: str
    transform: str | None = None  # URI of the transform script, or builtin:NAME
    batch_interval_ms: int | None = None  # >= 1 when given
    batch_size: int | None = None  # >= 1 when given
    on_error: OnError | None = None
    dead_letter_topic: str | None = None
    delivery: Delivery | None = None
    database: str | None = None  # DATABASE name; None: the creating session's database
    more_topics: tuple[str, ...] = ()
    consumer_group: str | None = None
    configs: Settings = ()
    credentials: Settings = ()


@dataclass(frozen=True, slots=True)
class CreateKafkaStream(MappingClauseOptions):
    """Memgraph 2.x: ``CREATE KAFKA STREAM name TOPICS t1[, t2...] TRANSFORM module.procedure
    [CONSUMER_GROUP g] [BATCH_INTERVAL ms] [BATCH_SIZE n] [BOOTSTRAP_SERVERS 'h:p,...']
    [CONFIGS {k: v}] [CREDENTIALS {k: v}]`` (2.0: ``CREATE STREAM name TOPICS ...``), every
    part in any order, each once; boltstream's ON ERROR, DELIVERY, DATABASE and mapping
    options too (a mapping instead of the TRANSFORM, as in the legacy clause).

    ``transform`` is ``module.procedure`` when ``module`` is True, else a transform URI
    (``TRANSFORM 'file.py'``, ``TRANSFORM 'builtin:...'``); None when the clause gives a
    mapping instead. ``bootstrap_servers`` None: the proxy's ``--kafka-bootstrap-servers``.
    """

    name: str
    topics: tuple[str, ...]
    transform: str | None
    module: bool = True
    consumer_group: str | None = None
    batch_interval_ms: int | None = None
    batch_size: int | None = None
    bootstrap_servers: str | None = None
    configs: Settings = ()
    credentials: Settings = ()
    on_error: OnError | None = None
    dead_letter_topic: str | None = None
    delivery: Delivery | None = None
    database: str | None = None


@dataclass(frozen=True, slots=True)
class CheckStream:
    """Memgraph 2.x's dry run: ``CHECK STREAM name [BATCH_LIMIT n] [TIMEOUT ms]`` (the rows of
    ``TEST STREAM``)."""

    name: str
    limit_batches: int | None = None  # >= 1 when given
    timeout_ms: int | None = None  # >= 1 when given


@dataclass(frozen=True, slots=True)
class UnsupportedStreamClause:
    """A clause that looks like a stream clause but that boltstream does not do
    (``CREATE PULSAR STREAM``): answered with a FAILURE saying so, never forwarded."""

    clause: str
    reason: str


@dataclass(frozen=True, slots=True)
class DropStream:
    """``DROP STREAM name``."""

    name: str


@dataclass(frozen=True, slots=True)
class ShowStreams:
    """``SHOW STREAMS``."""


@dataclass(frozen=True, slots=True)
class StartStream:
    """``START STREAM name [LIMIT count BATCHES]`` (runs in the background, the limit is
    recorded), or Memgraph 2.x's ``START STREAM name BATCH_LIMIT n [TIMEOUT ms]`` (``wait``:
    the clause answers once the ``n`` batches are written, or fails after ``timeout_ms``)."""

    name: str
    limit_batches: int | None = None  # >= 1 when given
    wait: bool = False
    timeout_ms: int | None = None  # >= 1 when given; only with wait


@dataclass(frozen=True, slots=True)
class StopStream:
    """``STOP STREAM name``."""

    name: str


@dataclass(frozen=True, slots=True)
class StartAllStreams:
    """``START ALL STREAMS``."""


@dataclass(frozen=True, slots=True)
class StopAllStreams:
    """``STOP ALL STREAMS``."""


@dataclass(frozen=True, slots=True)
class TestStream:
    """``TEST STREAM name [LIMIT count BATCHES]``."""

    __test__ = False  # not a pytest test class, despite the name

    name: str
    limit_batches: int | None = None  # >= 1 when given


OffsetTarget: TypeAlias = Literal["beginning", "end", "offset", "timestamp"]


@dataclass(frozen=True, slots=True)
class ShowStreamOffsets:
    """``SHOW STREAM name OFFSETS``."""

    name: str


@dataclass(frozen=True, slots=True)
class AlterStreamOffset:
    """``ALTER STREAM name SET OFFSET TO {BEGINNING | END | offset | TIMESTAMP ms}
    [FOR PARTITION p]``. ``value`` is the offset or the timestamp (ms since the epoch), None
    for BEGINNING and END; ``partition`` None means every partition."""

    name: str
    target: OffsetTarget
    value: int | None = None
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class AlterStreamSkip:
    """``ALTER STREAM name SKIP FAILED MESSAGE``."""

    name: str


@dataclass(frozen=True, slots=True)
class AlterStream(MappingClauseOptions):
    """``ALTER STREAM name SET [BATCH_INTERVAL ms] [BATCH_SIZE count] [ON ERROR ...]
    [TRANSFORM 'uri' | TRANSFORM module.procedure] [mapping options] [CONFIGS {...}]
    [CREDENTIALS {...}]`` (at least one, in any order, each once but WITH PATTERN). None (and
    no mapping option): unchanged. ``module``: ``transform`` is ``module.procedure``.
    ``configs`` / ``credentials`` given replace the stream's (``CONFIGS {}`` clears them)."""

    name: str
    batch_interval_ms: int | None = None
    batch_size: int | None = None
    on_error: OnError | None = None
    dead_letter_topic: str | None = None
    transform: str | None = None
    module: bool = False
    configs: Settings | None = None
    credentials: Settings | None = None


StreamClause: TypeAlias = (
    CreateStream
    | DropStream
    | ShowStreams
    | StartStream
    | StopStream
    | StartAllStreams
    | StopAllStreams
    | TestStream
    | CreateKafkaStream
    | CheckStream
    | UnsupportedStreamClause
    | ShowStreamOffsets
    | AlterStreamOffset
    | AlterStreamSkip
    | AlterStream
)

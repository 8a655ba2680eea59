"""What a CREATE STREAM or an ALTER STREAM ... SET clause asks of the engine: one value each.

* ``StreamOptions``: what CREATE sets and ALTER may change (what the stream runs, batching,
  the error policy, its own Kafka settings), as the clause gives it, unchecked. None (or a
  ``MappingOptions`` with nothing given) where the clause is silent: CREATE then takes the
  default, ALTER keeps what the stream has.
* ``StreamSpec``: a CREATE STREAM (either syntax): the options, plus what only CREATE sets
  (name, broker, topics, consumer group, delivery, database, owner).

``spec_of`` and ``options_of`` build them from the parsed clauses; ``clauses.define`` turns a
spec into a checked definition, and ``clauses.redefine`` applies options to a stored
definition with ``dataclasses.replace``, so that every field of ``StreamDefinition`` that ALTER
does not set is kept whatever it is (a field added later included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from grammar.clauses import AlterStream, CreateKafkaStream, CreateStream, MappingClauseOptions
from proxy.streams.mapping.mapper import MappingOptions

OnError: TypeAlias = Literal["stop", "skip", "dead letter"]  # as the clause says it
DeliveryText: TypeAlias = Literal["at least once", "exactly once"]
Settings: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StreamOptions:
    """A stream's changeable options as a clause gives them (None: not given).

    ``transform``: a transform URI or ``builtin:NAME``; ``transformation``: ``module.procedure``,
    a Memgraph transformation module (at most one of the two; neither with a ``mapping``).
    ``dead_letter_topic`` is set exactly when ``on_error`` is ``"dead letter"``. ``configs`` and
    ``credentials`` given replace the stream's whole (``()`` clears them)."""

    transform: str | None = None
    transformation: str | None = None
    mapping: MappingOptions = field(default_factory=MappingOptions)
    batch_interval_ms: int | None = None
    batch_size: int | None = None
    on_error: OnError | None = None
    dead_letter_topic: str | None = None
    configs: Settings | None = None
    credentials: Settings | None = field(default=None, repr=False)

    @property
    def runs(self) -> bool:
        """Whether the options say what the stream runs (a transform, a module or a mapping)."""
        return self.transform is not None or self.transformation is not None or self.mapping.given


@dataclass(frozen=True)
class StreamSpec:
    """CREATE STREAM, in either syntax, as the clause gives it.

    ``uri`` None: the proxy's bootstrap servers (Memgraph 2.x without BOOTSTRAP_SERVERS);
    ``consumer_group`` None: the engine's prefix and the stream's name; ``delivery`` None: at
    least once; ``database`` None: the proxy's default database; ``owner`` None: nobody (no
    users configured)."""

    name: str
    uri: str | None
    topics: tuple[str, ...]
    options: StreamOptions = field(default_factory=StreamOptions)
    consumer_group: str | None = None
    delivery: DeliveryText | None = None
    database: str | None = None
    owner: str | None = None


def spec_of(
    clause: CreateStream | CreateKafkaStream, *, owner: str | None, database: str | None
) -> StreamSpec:
    """The spec of a parsed CREATE clause. ``owner``: who creates it; ``database``: where it
    writes (the handler resolves the clause's DATABASE against the session's)."""
    if isinstance(clause, CreateStream):
        uri: str | None = clause.uri
        topics = (clause.topic, *clause.more_topics)
    else:
        uri, topics = clause.bootstrap_servers, clause.topics
    return StreamSpec(
        name=clause.name,
        uri=uri,
        topics=topics,
        options=options_of(clause),
        consumer_group=clause.consumer_group,
        delivery=clause.delivery,
        database=database,
        owner=owner or None,
    )


def options_of(clause: CreateStream | CreateKafkaStream | AlterStream) -> StreamOptions:
    """What a clause sets of the options ALTER may change (for ALTER: what it changes)."""
    module = not isinstance(clause, CreateStream) and clause.module
    return StreamOptions(
        transform=None if module else clause.transform,
        transformation=clause.transform if module else None,
        mapping=mapping_of(clause),
        batch_interval_ms=clause.batch_interval_ms,
        batch_size=clause.batch_size,
        on_error=clause.on_error,
        dead_letter_topic=clause.dead_letter_topic,
        configs=clause.configs,
        credentials=clause.credentials,
    )


def mapping_of(clause: MappingClauseOptions) -> MappingOptions:
    """A clause's mapping options, as the mapper takes them."""
    return MappingOptions(
        template=clause.cypher,
        patterns=clause.patterns,
        value_format=clause.value_format,
        merge_node_properties=clause.merge_node_properties,
        merge_relationship_properties=clause.merge_relationship_properties,
    )

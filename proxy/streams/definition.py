"""What ``CREATE STREAM`` said: a stream's definition, one typed, frozen, JSON-serialisable value.

The definition is everything the clause decided (and what the engine fixed at CREATE: the
transform's pinned code, the consumer group, the owner, the database it writes to). Only
``ALTER STREAM ... SET`` changes it (batching, transform, error policy; atomically, in the
catalog); what changes as it runs (status, last error, counters, a ``LIMIT``) is the stream's
*state*, kept apart in the catalog (``catalog.StreamState``).

Stored as a JSON document with a version (``to_json`` / ``from_json``): the catalog keeps the
document whole, plus the few columns it queries, so an option added later is a field here and a
new document version, not a new catalog column. ``from_json`` reads every version this code
knows and refuses newer ones.

Definitions hold secrets (``credentials``, per-stream Kafka settings such as
``sasl.password``): ``repr`` shows the name only, a definition never goes into a log line, and
what is shown of it goes through ``shown_credentials`` (keys, values redacted).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# 1: the first; 2: a mapping instead of a transform (``transform`` null, ``mapping`` set),
# several topics, per-stream settings, transformation modules, or a database. A stream that
# uses none of these is still written as version 1, which older boltstreams read.
DOCUMENT_VERSION = 2
REDACTED = "<REDACTED>"
# librdkafka settings that hold secrets (passwords, private keys, OAuth client secrets): shown
# redacted even when given in CONFIGS rather than CREDENTIALS.
_SECRET_KEY = re.compile(r"password|secret|ssl\.key\.pem|ssl_key|sasl\.oauthbearer\.config")
Settings = tuple[tuple[str, str], ...]

PolicyKind = Literal["stop", "skip", "dead_letter"]
POLICIES: tuple[PolicyKind, ...] = ("stop", "skip", "dead_letter")
SHOWN_POLICY: dict[PolicyKind, str] = {"stop": "stop", "skip": "skip", "dead_letter": "dead letter"}


class Delivery(enum.Enum):
    """``DELIVERY AT LEAST ONCE`` (the default) or ``DELIVERY EXACTLY ONCE``."""

    AT_LEAST_ONCE = "at least once"
    EXACTLY_ONCE = "exactly once"

    @property
    def shown(self) -> str:
        """As SHOW STREAMS and the clause spell it."""
        return self.value


class DefinitionError(ValueError):
    """A stored definition document that this code cannot read."""


@dataclass(frozen=True)
class TransformRef:
    """The transform as pinned at CREATE: where it came from, its code, its SHA-256."""

    uri: str
    code: str = field(repr=False)
    sha256: str


MappingKind = Literal["cypher", "pattern", "cud"]
ValueFormat = Literal["json", "text", "bytes"]
MAPPING_KINDS: tuple[MappingKind, ...] = ("cypher", "pattern", "cud")
VALUE_FORMATS: tuple[ValueFormat, ...] = ("json", "text", "bytes")


@dataclass(frozen=True)
class MappingSpec:
    """A stream without Python (``proxy.streams.mapping``): a Cypher template (``cypher``),
    patterns applied in order (``pattern``), or CUD documents (``cud``), with how message
    values are read and the patterns' merge options."""

    kind: MappingKind
    template: str | None = None  # kind cypher
    patterns: tuple[str, ...] = ()  # kind pattern
    value_format: ValueFormat = "json"
    merge_node_properties: bool = False
    merge_relationship_properties: bool = False

    @property
    def shown(self) -> str:
        """As SHOW STREAMS shows it (in the transform column): the clause's own words."""
        if self.kind == "cypher":
            text = f"CYPHER {_quoted(self.template or '')}"
        elif self.kind == "pattern":
            text = " ".join(f"PATTERN {_quoted(p)}" for p in self.patterns)
        else:
            text = "FORMAT CUD"
        if self.kind != "cud" and self.value_format != "json":
            text += f" FORMAT {self.value_format.upper()}"
        if self.merge_node_properties:
            text += " MERGE NODE PROPERTIES"
        if self.merge_relationship_properties:
            text += " MERGE RELATIONSHIP PROPERTIES"
        return text

    def document(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "template": self.template,
            "patterns": list(self.patterns),
            "value_format": self.value_format,
            "merge_node_properties": self.merge_node_properties,
            "merge_relationship_properties": self.merge_relationship_properties,
        }

    @classmethod
    def of_document(cls, document: Any) -> MappingSpec:
        if not isinstance(document, dict):
            raise TypeError("a mapping object")
        kind, fmt = document["kind"], document.get("value_format", "json")
        if kind not in MAPPING_KINDS:
            raise DefinitionError(f"unknown mapping kind {str(kind)[:40]!r}")
        if fmt not in VALUE_FORMATS:
            raise DefinitionError(f"unknown value format {str(fmt)[:40]!r}")
        patterns = document.get("patterns", [])
        if not isinstance(patterns, list):
            raise TypeError("a list of patterns")
        return cls(
            kind=kind,
            template=_optional_text(document.get("template")),
            patterns=tuple(_text(p) for p in patterns),
            value_format=fmt,
            merge_node_properties=_flag(document.get("merge_node_properties", False)),
            merge_relationship_properties=_flag(
                document.get("merge_relationship_properties", False)
            ),
        )


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class StreamDefinition:
    """One stream, as created. ``dead_letter_topic`` is set exactly when ``error_policy`` is
    ``dead_letter``. Exactly one of ``transform`` and ``mapping`` is set.

    ``topic`` is the first topic, ``more_topics`` the others (``topics``: all). ``configs`` and
    ``credentials`` are librdkafka settings of this stream's clients, over the proxy's
    ``--kafka-client-config`` (the engine's own keys excluded, ``kafka.FORCED``).
    ``transformation``: ``module.procedure`` when the transform is a Memgraph transformation
    module (``transform.code`` is the module's file), None for a ``stream(batch)`` script.
    """

    name: str
    uri: str  # Kafka bootstrap servers
    topic: str
    transform: TransformRef | None
    batch_interval_ms: int
    batch_size: int
    consumer_group: str
    owner: str | None = None
    error_policy: PolicyKind = "stop"
    dead_letter_topic: str | None = None
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    database: str | None = None  # None: the proxy's default graph (documents of version 1)
    mapping: MappingSpec | None = None
    more_topics: tuple[str, ...] = ()
    configs: Settings = ()
    credentials: Settings = field(default=(), repr=False)
    transformation: str | None = None

    def __post_init__(self) -> None:
        if (self.transform is None) == (self.mapping is None):
            raise ValueError("a stream has a transform or a mapping")

    @property
    def source_shown(self) -> str:
        """What the stream runs, for SHOW STREAMS' transform column and logs."""
        if self.transform is not None:
            return self.transform.uri
        assert self.mapping is not None
        return self.mapping.shown

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic, *self.more_topics)

    @property
    def shown_topics(self) -> str:
        """The topics as SHOW STREAMS' ``topic`` column shows them: comma-separated."""
        return ",".join(self.topics)

    @property
    def settings(self) -> dict[str, str]:
        """The stream's own librdkafka settings: configs, then credentials (which win)."""
        return {**dict(self.configs), **dict(self.credentials)}

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values (and secret-looking CONFIGS values), for redacting them out of
        any text shown or logged."""
        return secret_values(self.configs, self.credentials)

    def shown_credentials(self) -> dict[str, str]:
        return {key: REDACTED for key, _value in self.credentials}

    def shown_configs(self) -> dict[str, str]:
        """CONFIGS as shown: a value whose key names a secret (``*password*``...) redacted."""
        return {key: REDACTED if is_secret_key(key) else value for key, value in self.configs}

    def __repr__(self) -> str:  # never the code, and later never credentials
        return f"StreamDefinition(name={self.name!r})"

    @property
    def exactly_once(self) -> bool:
        return self.delivery is Delivery.EXACTLY_ONCE

    @property
    def _needs_version_2(self) -> bool:
        return (
            self.mapping is not None
            or bool(self.more_topics or self.configs or self.credentials)
            or self.transformation is not None
            or self.database is not None
        )

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "version": DOCUMENT_VERSION if self._needs_version_2 else 1,
            "name": self.name,
            "uri": self.uri,
            "topic": self.topic,
            "transform": None
            if self.transform is None
            else {
                "uri": self.transform.uri,
                "code": self.transform.code,
                "sha256": self.transform.sha256,
            },
            "mapping": None if self.mapping is None else self.mapping.document(),
            "batch_interval_ms": self.batch_interval_ms,
            "batch_size": self.batch_size,
            "consumer_group": self.consumer_group,
            "owner": self.owner,
            "error_policy": self.error_policy,
            "dead_letter_topic": self.dead_letter_topic,
            "delivery": self.delivery.name.lower(),
            "more_topics": list(self.more_topics),
            "configs": [list(pair) for pair in self.configs],
            "credentials": [list(pair) for pair in self.credentials],
            "transformation": self.transformation,
            "database": self.database,
        }
        return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StreamDefinition:
        """Read a document written by ``to_json`` (any version up to ``DOCUMENT_VERSION``).
        Raises ``DefinitionError`` saying what is wrong (never quoting the document)."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DefinitionError(f"the stream definition is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise DefinitionError("the stream definition is not a JSON object")
        version = document.get("version")
        if type(version) is not int or version < 1:
            raise DefinitionError("the stream definition has no valid version")
        if version > DOCUMENT_VERSION:
            raise DefinitionError(
                f"the stream definition is of version {version}, written by "
                f"a newer boltstream (this one reads {DOCUMENT_VERSION})"
            )
        try:
            transform = document["transform"]
            policy = document["error_policy"]
            if policy not in POLICIES:
                raise DefinitionError(f"unknown error policy {policy!r}")
            delivery = Delivery[str(document.get("delivery", "at_least_once")).upper()]
            mapping = document.get("mapping")
            if (transform is None) == (mapping is None):
                raise DefinitionError("the stream definition needs a transform or a mapping")
            return cls(
                name=_text(document["name"]),
                uri=_text(document["uri"]),
                topic=_text(document["topic"]),
                transform=None
                if transform is None
                else TransformRef(
                    _text(transform["uri"]), _text(transform["code"]), _text(transform["sha256"])
                ),
                mapping=None if mapping is None else MappingSpec.of_document(mapping),
                batch_interval_ms=_count(document["batch_interval_ms"]),
                batch_size=_count(document["batch_size"]),
                consumer_group=_text(document["consumer_group"]),
                owner=_optional_text(document.get("owner")),
                error_policy=policy,
                dead_letter_topic=_optional_text(document.get("dead_letter_topic")),
                delivery=delivery,
                more_topics=tuple(_text(t) for t in document.get("more_topics", [])),
                configs=_settings(document.get("configs", [])),
                credentials=_settings(document.get("credentials", [])),
                transformation=_optional_text(document.get("transformation")),
                database=_optional_text(document.get("database")),
            )
        except (KeyError, TypeError) as exc:
            raise DefinitionError(f"the stream definition lacks or mistypes {exc}") from None


def is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key.lower()) is not None


def secret_values(configs: Settings, credentials: Settings) -> tuple[str, ...]:
    """Every credential value, and every CONFIGS value whose key names a secret."""
    found = [value for _key, value in credentials if value]
    found += [value for key, value in configs if value and is_secret_key(key)]
    return tuple(found)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a text field ({type(value).__name__})")
    return value


def _settings(value: Any) -> Settings:
    if not isinstance(value, list):
        raise TypeError("a settings field")
    pairs = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeError("a settings pair")
        pairs.append((_text(pair[0]), _text(pair[1])))
    return tuple(pairs)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("a boolean field")
    return value


def _count(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise TypeError("a positive integer field")
    return value

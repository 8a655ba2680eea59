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

Definitions will hold secrets later (Kafka credentials): ``repr`` shows the name only, and a
definition never goes into a log line.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal

DOCUMENT_VERSION = 2  # 2: database

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


@dataclass(frozen=True)
class StreamDefinition:
    """One stream, as created. ``dead_letter_topic`` is set exactly when ``error_policy`` is
    ``dead_letter``."""

    name: str
    uri: str  # Kafka bootstrap servers
    topic: str
    transform: TransformRef
    batch_interval_ms: int
    batch_size: int
    consumer_group: str
    owner: str | None = None
    error_policy: PolicyKind = "stop"
    dead_letter_topic: str | None = None
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    database: str | None = None  # None: the proxy's default graph (documents of version 1)

    def __repr__(self) -> str:  # never the code, and later never credentials
        return f"StreamDefinition(name={self.name!r})"

    @property
    def exactly_once(self) -> bool:
        return self.delivery is Delivery.EXACTLY_ONCE

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "version": DOCUMENT_VERSION,
            "name": self.name,
            "uri": self.uri,
            "topic": self.topic,
            "transform": {
                "uri": self.transform.uri,
                "code": self.transform.code,
                "sha256": self.transform.sha256,
            },
            "batch_interval_ms": self.batch_interval_ms,
            "batch_size": self.batch_size,
            "consumer_group": self.consumer_group,
            "owner": self.owner,
            "error_policy": self.error_policy,
            "dead_letter_topic": self.dead_letter_topic,
            "delivery": self.delivery.name.lower(),
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
            return cls(
                name=_text(document["name"]),
                uri=_text(document["uri"]),
                topic=_text(document["topic"]),
                transform=TransformRef(
                    _text(transform["uri"]), _text(transform["code"]), _text(transform["sha256"])
                ),
                batch_interval_ms=_count(document["batch_interval_ms"]),
                batch_size=_count(document["batch_size"]),
                consumer_group=_text(document["consumer_group"]),
                owner=_optional_text(document.get("owner")),
                error_policy=policy,
                dead_letter_topic=_optional_text(document.get("dead_letter_topic")),
                delivery=delivery,
                database=_optional_text(document.get("database")),
            )
        except (KeyError, TypeError) as exc:
            raise DefinitionError(f"the stream definition lacks or mistypes {exc}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a text field ({type(value).__name__})")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _count(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise TypeError("a positive integer field")
    return value

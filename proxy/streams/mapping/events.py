"""A Kafka message as the mapping strategies see it.

``decode(message, fmt)`` reads what confluent-kafka gives (anything with its ``Message``
methods: ``value()``, ``key()``, ``headers()``, ``timestamp()``, ``topic()``, ``partition()``,
``offset()``) into an ``Event``:

* the value, by the stream's ``ValueFormat``: ``json`` (the default; strict: UTF-8, no
  duplicate keys, no NaN, integers within 64 bits), ``text`` (UTF-8) or ``bytes`` (base64
  text: FalkorDB has no byte arrays, and one binding works on every backend). A value that
  does not read is a ``BadMessage``. A null value is a *tombstone* (``tombstone`` true,
  ``value`` None); an empty value is not one;
* the key: JSON when it is JSON, else its text, else base64 (a key is often a plain id);
* the headers as a map of name to text (base64 when not UTF-8; a repeated name keeps the
  last value, as the connector does);
* the timestamp in milliseconds since the epoch (None when the broker gave none).

``row()`` is the map a query sees for the message (``value``, ``key``, ``header``,
``timestamp``, ``topic``, ``partition``, ``offset``).
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.streams.builtin._common import Invalid, load, value_problem

MAX_SHOWN = 80  # characters of a value quoted in a reason


class ValueFormat(enum.Enum):
    JSON = "json"
    TEXT = "text"
    BYTES = "bytes"


class BadMessage(Exception):
    """Why a message cannot be mapped; goes to the stream's error policy with this reason."""


class RawMessage(Protocol):
    """What decode needs of a Kafka message (confluent-kafka's ``Message`` has it)."""

    def value(self) -> bytes | None: ...

    def key(self) -> bytes | None: ...

    def headers(self) -> list[tuple[str, bytes | None]] | None: ...

    def timestamp(self) -> tuple[int, int]: ...

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


@dataclass(frozen=True)
class Event:
    value: Any
    key: Any
    headers: dict[str, str | None]
    timestamp: int | None
    topic: str
    partition: int
    offset: int
    tombstone: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "key": self.key,
            "header": self.headers,
            "timestamp": self.timestamp,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


def decode(message: RawMessage, fmt: ValueFormat = ValueFormat.JSON) -> Event:
    """The ``Event`` of ``message``; ``BadMessage`` when its value does not read as ``fmt``."""
    raw = message.value()
    tombstone = raw is None
    value: Any = None
    if raw is not None:
        value = decode_value(raw, fmt)
    kind, stamp = message.timestamp()
    return Event(
        value=value,
        key=decode_key(message.key()),
        headers=_headers(message.headers()),
        timestamp=stamp if kind != 0 and stamp is not None and stamp >= 0 else None,
        topic=str(message.topic()),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        tombstone=tombstone,
    )


def decode_value(raw: bytes, fmt: ValueFormat) -> Any:
    """A message's (non-null) value read as ``fmt``; ``BadMessage`` when it does not read."""
    if fmt is ValueFormat.BYTES:
        return base64.b64encode(raw).decode("ascii")
    if fmt is ValueFormat.TEXT:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadMessage(f"the value is not UTF-8 text (byte {exc.start})") from None
    try:
        value = load(raw, "value")
    except Invalid as exc:
        raise BadMessage(str(exc)) from None
    problem = value_problem(value, "the value", 0)
    if problem is not None:
        raise BadMessage(problem)
    return value


def decode_key(raw: bytes | None) -> Any:
    """A message's key: JSON when it is JSON, else its text, else base64."""
    if raw is None:
        return None
    try:
        key = load(raw, "key")
    except Invalid:
        pass
    else:
        if value_problem(key, "the key", 0) is None:
            return key
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")


def _headers(raw: list[tuple[str, bytes | None]] | None) -> dict[str, str | None]:
    headers: dict[str, str | None] = {}
    for name, data in raw or ():
        if data is None:
            headers[name] = None
            continue
        try:
            headers[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            headers[name] = base64.b64encode(data).decode("ascii")
    return headers


def shown(value: Any) -> str:
    """A value quoted for a reason: short, one line."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."

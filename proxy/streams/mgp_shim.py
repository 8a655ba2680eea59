"""``mgp`` for transformation modules written for Memgraph 2.x, inside the transform worker.

A Memgraph transformation module is a Python file that imports ``mgp`` and decorates a
function with ``@mgp.transformation``; the function takes ``mgp.Messages`` (and optionally a
``mgp.TransCtx`` first) and returns ``mgp.Record(query=..., parameters=...)`` items, one or a
list (shared/reference/memgraph_streams.md section 2.8). So that such files run here without
a line changed, the worker installs this file as the module ``mgp`` before it loads one.

What is real: ``transformation``, ``Messages`` (``total_messages``, ``message_at``,
``is_valid``), ``Message`` (``payload``, ``topic_name``, ``key``, ``timestamp``, ``offset``,
``source_type``, ``is_valid``; and, which Memgraph lacks, ``partition`` and ``headers``),
``Record``, ``SOURCE_TYPE_KAFKA``/``SOURCE_TYPE_PULSAR``, the exception classes, and the type
names used in signatures (``Map``, ``Nullable[...]``, ``List[...]``, ``Any``, ``Number``, ...).
What is not: the graph. ``TransCtx.graph`` and everything of procedures (``read_proc``,
``write_proc``, ``function``, ``Vertex``, ``ProcCtx``...) exist so that a module that also
defines procedures still loads, but a transformation that reads the graph fails with
``NotSupported``: here transformations only turn messages into queries.

Standard library only; no import of the proxy: the worker sends this file's text.
"""

from __future__ import annotations

from typing import Any

SOURCE_TYPE_KAFKA = "kafka"
SOURCE_TYPE_PULSAR = "pulsar"
_TRANSFORMATION = "__mgp_transformation__"


class InvalidMessageError(Exception):
    """A message used outside the transformation call that received it."""


class InvalidContextError(Exception):
    pass


class UnknownError(Exception):
    pass


class UnableToAllocateError(Exception):
    pass


class InsufficientBufferError(Exception):
    pass


class OutOfRangeError(Exception):
    pass


class LogicErrorError(Exception):
    pass


class DeletedObjectError(Exception):
    pass


class InvalidArgumentError(Exception):
    pass


class KeyAlreadyExistsError(Exception):
    pass


class ImmutableObjectError(Exception):
    pass


class ValueConversionError(Exception):
    pass


class SerializationError(Exception):
    pass


class NotSupported(Exception):
    """What a transformation may do in Memgraph but not here (read the graph)."""


class Message:
    """One Kafka message, valid during the call that received it."""

    __slots__ = ("_data", "_valid")

    def __init__(self, data: dict[str, Any], valid: list[bool]) -> None:
        self._data = data
        self._valid = valid

    def is_valid(self) -> bool:
        return self._valid[0]

    def _get(self, name: str) -> Any:
        if not self._valid[0]:
            raise InvalidMessageError("a message is valid only during the transformation call")
        return self._data[name]

    def source_type(self) -> str:
        self._get("topic")
        return SOURCE_TYPE_KAFKA

    def payload(self) -> bytes:
        value: bytes | None = self._get("value")
        return b"" if value is None else value  # Memgraph gives an empty payload for null

    def topic_name(self) -> str:
        topic: str = self._get("topic")
        return topic

    def key(self) -> bytes:
        key: bytes | None = self._get("key")
        return b"" if key is None else key

    def timestamp(self) -> int:
        stamp: int | None = self._get("timestamp")
        return 0 if stamp is None else stamp

    def offset(self) -> int:
        offset: int = self._get("offset")
        return offset

    def partition(self) -> int:
        """Not in Memgraph's API: the message's partition."""
        partition: int = self._get("partition")
        return partition

    def headers(self) -> list[tuple[str, bytes | None]]:
        """Not in Memgraph's API: the message's headers, in order."""
        headers: list[tuple[str, bytes | None]] = self._get("headers")
        return list(headers)


class Messages:
    """The batch given to a transformation."""

    __slots__ = ("_messages", "_valid")

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._valid = [True]
        self._messages = [Message(m, self._valid) for m in messages]

    def is_valid(self) -> bool:
        return self._valid[0]

    def invalidate(self) -> None:
        self._valid[0] = False

    def total_messages(self) -> int:
        if not self._valid[0]:
            raise InvalidMessageError("messages are valid only during the transformation call")
        return len(self._messages)

    def message_at(self, index: int) -> Message:
        if not self._valid[0]:
            raise InvalidMessageError("messages are valid only during the transformation call")
        if not 0 <= index < len(self._messages):
            raise IndexError(f"message index {index} out of range (batch of {len(self._messages)})")
        return self._messages[index]


class TransCtx:
    """Memgraph gives transformations read access to the graph; here there is none."""

    @property
    def graph(self) -> Any:
        raise NotSupported(
            "transformations run outside the database here: TransCtx.graph "
            "is not available (turn messages into queries instead)"
        )


class Record:
    """``Record(query=..., parameters=...)``: one query of a transformation's result. Also
    used, as in Memgraph, to declare result fields in signatures."""

    __slots__ = ("fields",)

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __repr__(self) -> str:
        return f"Record({', '.join(f'{k}={v!r}' for k, v in self.fields.items())})"


def transformation(func: Any) -> Any:
    """Mark ``func(messages)`` or ``func(context, messages)`` as a transformation."""
    import inspect

    params = list(inspect.signature(func).parameters.values())
    if len(params) not in (1, 2):
        raise NotImplementedError(
            "Valid signatures for transformations are (TransCtx, Messages) or (Messages)"
        )
    setattr(func, _TRANSFORMATION, len(params))
    return func


def _procedure_decorator(func: Any = None, **_options: Any) -> Any:
    """``read_proc`` and friends: accepted so the module loads; never called from here."""
    if func is None:
        return _procedure_decorator
    return func


read_proc = write_proc = function = _procedure_decorator


class _TypeName:
    """A type name of Memgraph's signatures: subscriptable and callable, meaning nothing."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getitem__(self, _item: Any) -> _TypeName:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _TypeName:
        return self

    def __repr__(self) -> str:
        return f"mgp.{self._name}"


Map = _TypeName("Map")
Nullable = _TypeName("Nullable")
List = _TypeName("List")
Number = _TypeName("Number")


def __getattr__(name: str) -> Any:
    """Anything else of Memgraph's ``mgp`` (Vertex, Edge, Path, ProcCtx, Graph, Date ...):
    a name a signature may use, so the module loads."""
    if name.startswith("__"):
        raise AttributeError(name)
    return _TypeName(name)


def run_transformation(func: Any, batch: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Call ``func`` on ``batch`` (dicts with value, key, topic, partition, offset,
    timestamp, headers) and return its records as ``(query, parameters)`` pairs."""
    messages = Messages(batch)
    try:
        result = (
            func(TransCtx(), messages) if getattr(func, _TRANSFORMATION) == 2 else (func(messages))
        )
    finally:
        messages.invalidate()
    records = [result] if isinstance(result, Record) else result
    if not isinstance(records, list | tuple):
        raise TypeError(
            f"a transformation returns a Record or a list of them, not {type(result).__name__}"
        )
    pairs: list[tuple[str, Any]] = []
    for number, record in enumerate(records):
        if not isinstance(record, Record):
            raise TypeError(
                f"item {number} of the transformation's result is a "
                f"{type(record).__name__}, not an mgp.Record"
            )
        fields = record.fields
        if set(fields) != {"query", "parameters"}:
            raise TypeError(
                f"item {number}: a transformation must yield all fields (query, "
                f"parameters), got {sorted(fields)}"
            )
        parameters = fields["parameters"]
        pairs.append((fields["query"], {} if parameters is None else parameters))
    return pairs


def find_transformation(module: Any, name: str) -> Any:
    """The function ``name`` of ``module``, which must be decorated ``@mgp.transformation``."""
    func = getattr(module, name, None)
    if func is None or not callable(func):
        raise LookupError(f"the module has no transformation {name!r}")
    if not hasattr(func, _TRANSFORMATION):
        raise LookupError(f"{name!r} is not decorated with @mgp.transformation")
    return func

"""Memgraph 2.x's stream procedures, which the proxy answers on every backend
(reference/memgraph_streams.md §2.7)::

    CALL mg.kafka_set_stream_offset(name, offset)   -- -1: the beginning, -2: the end, N >= 0
    CALL mg.kafka_stream_info(name) [YIELD ...]     -- consumer_group, topics, bootstrap_servers,
                                                    -- configs, credentials (values redacted)
    CALL mg.pulsar_stream_info(name) [YIELD ...]    -- recognised, and refused (no Pulsar)

Arguments are literals (a string in single or double quotes, an integer) or ``$parameters``
(resolved by the handler). ``YIELD`` may name columns or ``*``; the answer always has all of
them (a client that names fewer gets them all, in the procedure's order).

``match_procedure`` is one anchored regex: an ordinary ``CALL`` fails at ``mg.kafka_`` /
``mg.pulsar_``. A query that starts like one of these calls but does not parse is ours too
(``StreamSyntaxError``): it never reaches the backend, which would not know the procedure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from grammar.clauses import UnsupportedStreamClause
from grammar.errors import StreamSyntaxError
from grammar.lexer import GAP as _GAP
from grammar.lexer import LEAD as _LEAD


@dataclass(frozen=True, slots=True)
class Parameter:
    """``$name`` in an argument: the handler takes its value from the query's parameters."""

    name: str


Argument: TypeAlias = str | int | Parameter


@dataclass(frozen=True, slots=True)
class KafkaSetStreamOffset:
    """``CALL mg.kafka_set_stream_offset(stream, offset)``."""

    stream: Argument
    offset: Argument


@dataclass(frozen=True, slots=True)
class KafkaStreamInfo:
    """``CALL mg.kafka_stream_info(stream)``."""

    stream: Argument


Procedure: TypeAlias = KafkaSetStreamOffset | KafkaStreamInfo | UnsupportedStreamClause

KAFKA_STREAM_INFO_FIELDS = [
    "consumer_group",
    "topics",
    "bootstrap_servers",
    "configs",
    "credentials",
]

_CALL = re.compile(
    rf"{_LEAD}(?ai:CALL){_GAP}(?ai:mg)\s*\.\s*(?P<proc>(?ai:kafka|pulsar)_\w*)\b", re.DOTALL
)
_ARGUMENT = re.compile(
    r"""\s*(?:'(?P<single>(?:[^'\\]|\\.)*)'|"(?P<double>(?:[^"\\]|\\.)*)"
    |(?P<int>[+-]?[0-9]+)|\$(?P<param>\w+))\s*""",
    re.VERBOSE | re.DOTALL,
)
_TAIL = re.compile(
    r"\s*\)\s*(?:(?ai:YIELD)\s+(?:\*|\w+(?:\s*,\s*\w+)*)\s*)?;?\s*\Z",
    re.DOTALL,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_ARITY = {"kafka_set_stream_offset": 2, "kafka_stream_info": 1, "pulsar_stream_info": 1}


def match_procedure(query: str) -> Procedure | None:
    """The procedure call ``query`` is, None if it is no call of these procedures. Raises
    ``StreamSyntaxError`` for a call of one of them that does not parse."""
    found = _CALL.match(query)
    if found is None:
        return None
    proc = found.group("proc").lower()
    if proc not in _ARITY:
        return None  # another procedure of that name space: the backend's business
    position = found.end()
    if proc == "pulsar_stream_info":
        return UnsupportedStreamClause(
            "CALL mg.pulsar_stream_info",
            "Pulsar streams are not supported: boltstream reads Kafka and "
            "Kafka-compatible brokers only",
        )
    opening = re.compile(r"\s*\(").match(query, position)
    if opening is None:
        raise _error(query, position, f"expected '(' after mg.{proc}")
    position = opening.end()
    arguments: list[Argument] = []
    while len(arguments) < _ARITY[proc]:
        if arguments:
            comma = re.compile(r"\s*,").match(query, position)
            if comma is None:
                raise _error(query, position, f"mg.{proc} takes {_ARITY[proc]} arguments")
            position = comma.end()
        argument = _ARGUMENT.match(query, position)
        if argument is None:
            raise _error(query, position, "expected a string, an integer or a $parameter")
        arguments.append(_value(argument))
        position = argument.end()
    if _TAIL.match(query, position) is None:
        raise _error(query, position, f"expected ')' (mg.{proc} takes {_ARITY[proc]} argument(s))")
    if proc == "kafka_set_stream_offset":
        return KafkaSetStreamOffset(arguments[0], arguments[1])
    return KafkaStreamInfo(arguments[0])


def _value(found: re.Match[str]) -> Argument:
    if found.group("param") is not None:
        return Parameter(found.group("param"))
    if found.group("int") is not None:
        return int(found.group("int"))
    text = found.group("single") if found.group("single") is not None else found.group("double")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text, flags=re.DOTALL)


def _error(query: str, position: int, detail: str) -> StreamSyntaxError:
    line = query.count("\n", 0, position) + 1
    column = position - (query.rfind("\n", 0, position) + 1) + 1
    return StreamSyntaxError(
        f"Invalid input at line {line}, column {column}: {detail}", line, column, []
    )

"""builtin:command: replication through a command topic (calebebrim/neo4j-kafka-interface's
``db_sync``, reference neo4j_kafka.md section 4.3), done the way it was meant.

Shipped with boltstream, pinned at CREATE, run in the stream's sandboxed transform worker
like a user's transform (standard library only; the worker has only this file's text).

Each message is a JSON object ``{"command": "<Cypher>", "params": {...}?, "with_key": "..."?}``
and becomes exactly that query with those parameters. ``with_key`` is accepted and not used
(it is the producer's correlation key; the Kafka record key is what Kafka partitions by).
Any other field, a missing or empty command, parameters that are not an object, or a message
that is not UTF-8 JSON makes the message invalid: a dead-letter item ``("// boltstream: dead
letter", {"index": i, "reason": "..."})``, which the stream's error policy handles (by default
the stream stops: a replica must not skip a command that the others apply).

What makes this replication (engine side, README "Streams"): a command stream applies its
queries one by one in offset order, never grouped; several proxies each with their own stream
(own consumer group) over the same topic apply the same commands in the same order; a replica
created later reads the topic from the beginning. The original's faults are not reproduced:
it read from the latest offset (a new replica missed the history), committed offsets whether
or not the command ran, and sent failures to a topic and carried on (replicas diverged).
"""

from __future__ import annotations

import json
from typing import Any

DEAD_LETTER = "// boltstream: dead letter"
KEYS = ("command", "params", "with_key")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 90  # nesting inside a parameter (the worker's output check allows 100)


class Invalid(Exception):
    """Why a message is rejected (the text goes to the dead-letter record)."""


def stream(batch: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: its command, or its dead-letter item."""
    result: list[tuple[str, dict[str, Any]]] = []
    for index, raw in enumerate(batch):
        try:
            result.append(command_of(load(raw)))
        except Invalid as exc:
            result.append((DEAD_LETTER, {"index": index, "reason": str(exc)}))
    return result


def command_of(message: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(message, dict):
        raise Invalid("the message must be a JSON object with a command")
    unknown = [key for key in message if key not in KEYS]
    if unknown:
        raise Invalid(f"unknown field{'s' if len(unknown) > 1 else ''} "
                      f"{', '.join(json.dumps(k) for k in unknown[:5])} "
                      f"(allowed: {', '.join(KEYS)})")
    command = message.get("command")
    if not isinstance(command, str) or not command.strip():
        raise Invalid("command must be a non-empty string (a Cypher query)")
    if _bad_text(command):
        raise Invalid("command is not valid Unicode")
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise Invalid("params must be an object")
    problem = value_problem(params, "params", 0)
    if problem:
        raise Invalid(problem)
    key = message.get("with_key")
    if key is not None and not isinstance(key, str):
        raise Invalid("with_key must be a string")
    return command, params


def value_problem(value: Any, where: str, depth: int) -> str | None:
    """What makes a JSON value unusable as a query parameter, or None."""
    if depth > MAX_DEPTH:
        return f"{where} is nested too deeply"
    if isinstance(value, str):
        return f"{where} is not valid Unicode" if _bad_text(value) else None
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{where} is outside 64-bit integers"
    if isinstance(value, list):
        for position, item in enumerate(value):
            problem = value_problem(item, f"{where}[{position}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for name, item in value.items():
            if _bad_text(name):
                return f"{where} has a key that is not valid Unicode"
            problem = value_problem(item, f"{where}.{name}", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} has an unsupported type"  # pragma: no cover - json gives no other type


def _bad_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise Invalid(f"the message has the key {json.dumps(key)} twice")
        value[key] = item
    return value


def _no_constant(word: str) -> Any:
    raise Invalid(f"the message is not standard JSON ({word})")


def load(raw: bytes) -> Any:
    """The JSON value of a message, or ``Invalid``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the message is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid("the message is nested too deeply") from None
    except ValueError as exc:
        if not text.strip():
            raise Invalid("the message is empty") from None
        raise Invalid(f"the message is not JSON: {exc}") from None

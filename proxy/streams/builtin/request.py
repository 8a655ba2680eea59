"""builtin:request: read queries served over Kafka (calebebrim/neo4j-kafka-interface's
``global_server``, reference neo4j_kafka.md section 4.4), done the way it was meant.

Shipped with boltstream, pinned at CREATE, run in the stream's sandboxed transform worker
like a user's transform (standard library only; the worker has only this file's text). This
part only reads and checks the requests; the engine runs them (read-only) and produces the
responses (``proxy/streams/executors.py``).

A request is ``{"to": "<response topic>", "with_key": "<key>", "command": "<Cypher>",
"params": {...}?}``. Each message becomes one item ``(command, envelope)`` where the envelope
is ``{"to": topic, "key": with_key, "params": {...}}``, or, for a request that can be answered
but not run (unknown field, no command, bad params), ``{"to": topic, "key": with_key, "error":
"..."}`` with an empty command: the engine answers it with that error. A request without a
usable ``to`` or ``with_key`` cannot be answered: it becomes a dead-letter item
``("// boltstream: dead letter", {"index": i, "reason": "..."})`` for the stream's error policy.

The original read a field the README did not document (``execute``), guarded writes with an
inverted test, answered one message per row and none for an empty result, and set no key.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEAD_LETTER = "// boltstream: dead letter"
KEYS = ("to", "with_key", "command", "params")
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 90  # nesting inside a parameter (the worker's output check allows 100)


class Invalid(Exception):
    """Why a request cannot be answered (the text goes to the dead-letter record)."""


def stream(batch: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: the request, or its dead-letter item."""
    result: list[tuple[str, dict[str, Any]]] = []
    for index, raw in enumerate(batch):
        try:
            result.append(request_of(load(raw)))
        except Invalid as exc:
            result.append((DEAD_LETTER, {"index": index, "reason": str(exc)}))
    return result


def request_of(message: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(message, dict):
        raise Invalid("the request must be a JSON object with to, with_key and command")
    to = message.get("to")
    if not isinstance(to, str) or not TOPIC.fullmatch(to) or to in (".", ".."):
        raise Invalid("to must name the response topic (letters, digits, '.', '_', '-')")
    key = message.get("with_key")
    if not isinstance(key, str) or _bad_text(key):
        raise Invalid("with_key must be a string (the key of the response)")
    envelope: dict[str, Any] = {"to": to, "key": key}
    unknown = [name for name in message if name not in KEYS]
    command = message.get("command")
    params = message.get("params", {})
    if unknown:
        envelope["error"] = (f"unknown field{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(json.dumps(k) for k in unknown[:5])} "
                             f"(allowed: {', '.join(KEYS)})")
    elif not isinstance(command, str) or not command.strip() or _bad_text(command):
        envelope["error"] = "command must be a non-empty string (a Cypher query)"
    elif not isinstance(params, dict):
        envelope["error"] = "params must be an object"
    elif problem := value_problem(params, "params", 0):
        envelope["error"] = problem
    else:
        envelope["params"] = params
        return command, envelope
    return "", envelope


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
            raise Invalid(f"the request has the key {json.dumps(key)} twice")
        value[key] = item
    return value


def _no_constant(word: str) -> Any:
    raise Invalid(f"the request is not standard JSON ({word})")


def load(raw: bytes) -> Any:
    """The JSON value of a message, or ``Invalid``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the request is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid("the request is nested too deeply") from None
    except ValueError as exc:
        if not text.strip():
            raise Invalid("the request is empty") from None
        raise Invalid(f"the request is not JSON: {exc}") from None

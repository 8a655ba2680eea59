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

from proxy.streams.builtin._common import Invalid, bad_text, load, per_message, value_problem

KEYS = ("to", "with_key", "command", "params")
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def stream(batch: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: the request, or its dead-letter item."""
    return per_message(batch, lambda raw: request_of(load(raw, "request")))


def request_of(message: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(message, dict):
        raise Invalid("the request must be a JSON object with to, with_key and command")
    to = message.get("to")
    if not isinstance(to, str) or not TOPIC.fullmatch(to) or to in (".", ".."):
        raise Invalid("to must name the response topic (letters, digits, '.', '_', '-')")
    key = message.get("with_key")
    if not isinstance(key, str) or bad_text(key):
        raise Invalid("with_key must be a string (the key of the response)")
    envelope: dict[str, Any] = {"to": to, "key": key}
    unknown = [name for name in message if name not in KEYS]
    command = message.get("command")
    params = message.get("params", {})
    if unknown:
        envelope["error"] = (
            f"unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(json.dumps(k) for k in unknown[:5])} "
            f"(allowed: {', '.join(KEYS)})"
        )
    elif not isinstance(command, str) or not command.strip() or bad_text(command):
        envelope["error"] = "command must be a non-empty string (a Cypher query)"
    elif not isinstance(params, dict):
        envelope["error"] = "params must be an object"
    elif problem := value_problem(params, "params", 0):
        envelope["error"] = problem
    else:
        envelope["params"] = params
        return command, envelope
    return "", envelope

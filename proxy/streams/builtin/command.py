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

from proxy.streams.builtin._common import Invalid, bad_text, load, per_message, value_problem

KEYS = ("command", "params", "with_key")


def stream(batch: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: its command, or its dead-letter item."""
    return per_message(batch, lambda raw: command_of(load(raw)))


def command_of(message: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(message, dict):
        raise Invalid("the message must be a JSON object with a command")
    unknown = [key for key in message if key not in KEYS]
    if unknown:
        raise Invalid(
            f"unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(json.dumps(k) for k in unknown[:5])} "
            f"(allowed: {', '.join(KEYS)})"
        )
    command = message.get("command")
    if not isinstance(command, str) or not command.strip():
        raise Invalid("command must be a non-empty string (a Cypher query)")
    if bad_text(command):
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

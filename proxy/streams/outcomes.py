"""What a transform said about each message: its queries, or why it is rejected.

A transform returns ``(query, parameters)`` pairs. To reject a message, built-in or user
transforms return a *dead-letter item* among them::

    ("// boltstream: dead letter", {"index": i, "reason": "why"})

``i`` is the message's position in the batch (0-based). The query text is a Cypher comment:
it could never be a query a backend runs, so it cannot collide with one. A user transform
needs nothing from boltstream to use it (a two-line helper does it; README "Streams"). The
rejected message goes to the stream's error policy (dead-letter topic, skip, or stop) instead
of being written; a transform should return no queries for a message it rejects (in a batch
result the engine cannot tell which queries belong to which message).

Two readings of a result:

* ``split``: a user transform's batch result: the queries, and the rejected positions;
* ``per_message``: a built-in's result, exactly one item per message, in order, so each
  message's outcome is known (``Accepted`` queries or ``Rejected`` reason). The engine also
  builds per-message outcomes for a user transform by running it on one message at a time,
  when a batch failed and the policy is not STOP (``engine._Runner._isolate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

Query = tuple[str, dict[str, Any]]
DEAD_LETTER_QUERY = "// boltstream: dead letter"
MAX_REASON = 1000  # characters of a reason kept (headers and SHOW STREAMS stay readable)


class OutcomeError(ValueError):
    """A result that breaks the dead-letter or built-in contract (says which item)."""


@dataclass(frozen=True)
class Accepted:
    queries: list[Query]


@dataclass(frozen=True)
class Rejected:
    reason: str


Outcome: TypeAlias = Accepted | Rejected


@dataclass(frozen=True)
class Split:
    """A batch result: the queries to write, and the rejected positions with their reasons."""

    queries: list[Query]
    rejected: dict[int, str] = field(default_factory=dict)


def shorten(text: str, limit: int = MAX_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dead_letter_of(item: Query, size: int, where: str) -> tuple[int, str] | None:
    """(position, reason) if ``item`` is a dead-letter item, else None."""
    query, params = item
    if query != DEAD_LETTER_QUERY:
        return None
    index, reason = params.get("index"), params.get("reason")
    if set(params) != {"index", "reason"} or type(index) is not int or not isinstance(reason, str):
        raise OutcomeError(
            f"{where} is a dead-letter item, which needs exactly the "
            "parameters index (an int) and reason (a str)"
        )
    if not 0 <= index < size:
        raise OutcomeError(
            f"{where} is a dead-letter item for message {index}, but the batch "
            f"has {size} message{'s' if size != 1 else ''}"
        )
    return index, shorten(reason.strip() or "rejected by the transform")


def split(pairs: list[Query], size: int) -> Split:
    for item in pairs:
        if item[0] == DEAD_LETTER_QUERY:
            break
    else:
        return Split(pairs)  # nothing rejected (the common case, without a copy)
    queries: list[Query] = []
    rejected: dict[int, str] = {}
    for number, item in enumerate(pairs):
        found = dead_letter_of(item, size, f"transform result item {number}")
        if found is None:
            queries.append(item)
        else:
            rejected.setdefault(*found)
    return Split(queries, rejected)


def per_message(pairs: list[Query], size: int) -> list[Outcome]:
    """A built-in's result: one item per message."""
    if len(pairs) != size:
        raise OutcomeError(
            f"the built-in transform returned {len(pairs)} items for {size} messages"
        )
    outcomes: list[Outcome] = []
    for number, item in enumerate(pairs):
        found = dead_letter_of(item, size, f"transform result item {number}")
        if found is None:
            outcomes.append(Accepted([item]))
        elif found[0] != number:
            raise OutcomeError(f"transform result item {number} rejects message {found[0]}")
        else:
            outcomes.append(Rejected(found[1]))
    return outcomes


def single(pairs: list[Query]) -> Outcome:
    """The outcome of a one-message batch (any transform)."""
    result = split(pairs, 1)
    if result.rejected:
        return Rejected(result.rejected[0])
    return Accepted(result.queries)

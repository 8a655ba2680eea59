"""The Cypher the mapping strategies write: quoted names, storable values, batched queries.

Names that cannot be parameters (labels, relationship types, property keys) come from
patterns and CUD messages, so from users and from message data. They reach the query text
only through ``quote``, which refuses what could break out of a backquoted name: a backtick
(FalkorDB has no escape for it; Neo4j doubles it), control characters, an empty or very long
name. Everything else, spaces and dots included, is fine inside backticks on every backend.

Values always travel as parameters. ``storable`` says whether a value can be a property
value: a graph stores null, booleans, numbers, strings and lists of those, not maps (flatten
them, as patterns do) or lists of maps.

Batching: a strategy gives each message queries of the form ``(text, {EVENTS: [row],
IDENTITY: entities})``, where ``text`` starts with ``UNWIND $__boltstream_events AS ...``
and ``entities`` names what the row merges and sets (``identity``). ``combine`` joins the
rows of consecutive queries with the same text into one query, so a run of messages of one
shape is one round trip. That equals running them one after another because the texts are
ours: each row is handled on its own (no aggregation across rows) and rows keep their order,
as the connector's ``UNWIND $events`` does; except on FalkorDB, whose MERGE does not keep row
order for rows that hit the same entity (4.16: ``UNWIND ['a', 'b'] AS n MERGE (p:P {id: 1})
SET p.name = n`` leaves ``'a'``, and ``ON MATCH SET p.c = p.c + n`` loses updates). So a run
is cut wherever a row names an entity that an earlier row of the same query already names:
every query then touches each entity once, and the queries run in order. The
``__boltstream_`` prefix is reserved: a transform that used these parameter names would be
batched the same way.

A message of several queries (several patterns on one topic) is a ``compound``: its queries
cannot share one text (FalkorDB 4.16 loses rows of ``UNWIND ... CALL { MERGE ... } CALL {
MERGE ... }`` when the labels are new to the graph: measured, the second of two new users was
never created). ``combine`` gathers consecutive compounds into a block as long as no two of
its messages touch the same entity (merged, set, deleted, or matched as a relationship's
node), and writes the block as one query per text: all the rows of the first pattern, then
of the second, and so on. Messages that touch disjoint entities commute, so this equals
applying the messages one after another, each pattern in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

Query = tuple[str, dict[str, Any]]

EVENTS = "__boltstream_events"  # the parameter holding a batch's rows
IDENTITY = "__boltstream_identity"  # what a message's row merges (never sent to the backend)
COMPOUND = "// boltstream: several queries of one message"  # see ``compound``; never sent
PARTS = "__boltstream_parts"
MAX_NAME = 200  # characters of a label, type or property key
_FORBIDDEN = re.compile(r"[`\x00-\x1f\x7f]")


class BadName(ValueError):
    """A label, type or key that cannot be used; the message says which and why."""


def quote(name: object, what: str = "name") -> str:
    """``name`` in backticks, checked (``BadName`` otherwise)."""
    if not isinstance(name, str):
        raise BadName(f"the {what} must be a string, not {type(name).__name__}")
    if not name.strip():
        raise BadName(f"the {what} cannot be empty")
    if len(name) > MAX_NAME:
        raise BadName(f"the {what} {name[:40]!r}... is longer than {MAX_NAME} characters")
    if _FORBIDDEN.search(name):
        raise BadName(f"the {what} {name[:60]!r} contains a backtick or a control character")
    return f"`{name}`"


def labels(names: Iterable[object], what: str = "label") -> str:
    """``:`A`:`B``` for the given labels (checked), or the empty string."""
    return "".join(":" + quote(name, what) for name in names)


def storable(value: Any) -> bool:
    """Whether ``value`` can be a property value (see the module docstring)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        return all(
            item is not None and isinstance(item, bool | int | float | str) for item in value
        )
    return False


def kind(value: Any) -> str:
    """What a JSON value is, for reasons."""
    names = {
        dict: "a map",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def unwind(body: str, var: str = "ev") -> str:
    """The batch form of a per-row ``body`` that reads its row as ``var``."""
    return f"UNWIND ${EVENTS} AS {var} {body}"


def identity(*parts: Any) -> str:
    """A hashable name for an entity a row merges or sets (labels or type, keys)."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)


def one(text: str, row: dict[str, Any], entities: Iterable[str] = ()) -> Query:
    """A message's query: ``text`` (from ``unwind``) with its single row, and the entities
    it merges or sets (``identity`` of each), which ``combine`` keeps apart."""
    return text, {EVENTS: [row], IDENTITY: frozenset(entities)}


def compound(parts: Sequence[tuple[str, dict[str, Any]]], touched: Iterable[str]) -> Query:
    """One message's several queries (``(text, row)`` each, in the order they must run), and
    every entity any of them touches (merged, set, deleted, or merely matched): a pseudo-query
    that only ``combine`` reads."""
    return COMPOUND, {PARTS: list(parts), IDENTITY: frozenset(touched)}


def combine(queries: Sequence[Query]) -> list[Query]:
    """The queries to send: see the module docstring. Compound queries (``compound``) are
    gathered into blocks of messages that touch disjoint entities, written as one query per
    text, in the order the texts first come; everything else is left to ``_join_runs``."""
    out: list[Query] = []
    plain: list[Query] = []
    block: dict[str, list[Any]] = {}  # text -> rows, in the order the texts came
    touched: set[str] = set()

    def flush_block() -> None:
        out.extend((text, {EVENTS: rows}) for text, rows in block.items())
        block.clear()
        touched.clear()

    for text, params in queries:
        if text != COMPOUND:
            if block:
                flush_block()
            plain.append((text, params))
            continue
        if plain:
            out.extend(_join_runs(plain))
            plain = []
        parts, entities = params[PARTS], params.get(IDENTITY, frozenset())
        if block and (not touched.isdisjoint(entities) or not _in_order(block, parts)):
            flush_block()
        for part_text, row in parts:
            block.setdefault(part_text, []).append(row)
        touched.update(entities)
    if block:
        flush_block()
    out.extend(_join_runs(plain))
    return out


def _in_order(block: dict[str, list[Any]], parts: Sequence[tuple[str, Any]]) -> bool:
    """Whether the block's texts would run ``parts`` in their order."""
    order = {text: index for index, text in enumerate(block)}
    last = -1
    for text, _row in parts:
        index = order.get(text, len(order))
        if index < last:
            return False
        last = index
    return True


_JOINABLE = frozenset({EVENTS, IDENTITY})


def _join_runs(queries: Sequence[Query]) -> list[Query]:
    """Consecutive queries with the same text and only the ``EVENTS`` (and ``IDENTITY``)
    parameters become one query with their rows in order, cut where a row names an entity
    the query already holds; every other query is left as it is, in its place. ``IDENTITY``
    is taken out of every query."""
    out: list[Query] = []
    run_text: str | None = None  # the text of the run being gathered into out[-1]
    run_rows: list[Any] = []
    run_entities: set[str] = set()
    for text, params in queries:
        rows = params.get(EVENTS)
        entities = params.get(IDENTITY, frozenset())
        if not isinstance(rows, list) or not params.keys() <= _JOINABLE:
            out.append((text, {k: v for k, v in params.items() if k != IDENTITY}))
            run_text = None
        elif text == run_text and run_entities.isdisjoint(entities):
            run_rows.extend(rows)
            run_entities.update(entities)
        else:
            run_text, run_rows, run_entities = text, list(rows), set(entities)
            out.append((text, {EVENTS: run_rows}))  # the list grows in place
    return out

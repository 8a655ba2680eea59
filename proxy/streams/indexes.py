"""Which indexes a pattern stream's MERGEs need, and a warning at START when one is missing.

A pattern stream (``WITH PATTERN``) merges every node it writes on the node's key properties
(``MERGE (n:Person {id: ...})``). Without an index on one of the node's labels and one of its
keys, each MERGE scans every node of the label, so a stream's cost per message grows with the
graph; on FalkorDB a write holds the whole graph meanwhile, so once the stream cannot keep
up, every client's query waits behind it. ``bench/soak.py`` found this: at 100 messages/s
with 20,000 ``:Person`` nodes a 50-message batch took about 1 s without the index and 6 ms
with it, and after two minutes no client query was answered. Neo4j's connector leaves
indexes to the user, and so does boltstream (it never changes the user's schema), but START
says which index is missing, once, as a WARNING with the statement that makes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from grammar.pattern import NodePattern, Pattern, PatternError, RelationshipPattern, parse_pattern
from proxy.streams.definition import StreamDefinition
from proxy.streams.writers import FalkorDBWriter, GraphWriter, WriteError

log = logging.getLogger("boltstream.streams")

# How each kind of backend lists its node indexes: (query, label column, properties column,
# entity column and the value it has for nodes).
FALKORDB_INDEXES = "CALL db.indexes() YIELD label, properties, entitytype"
BOLT_INDEXES = "SHOW INDEXES YIELD labelsOrTypes, properties, entityType"

NodeKeys = tuple[tuple[str, ...], tuple[str, ...]]  # (labels, key property names)


def merge_keys(patterns: Sequence[Pattern]) -> list[NodeKeys]:
    """For each node the patterns merge (a node pattern, or a relationship's two ends), its
    labels and the names of its key properties, in order, without repeats."""
    found: list[NodeKeys] = []
    for pattern in patterns:
        nodes = (
            [pattern.start, pattern.end] if isinstance(pattern, RelationshipPattern) else [pattern]
        )
        for node in nodes:
            entry = _node_keys(node)
            if entry[0] and entry[1] and entry not in found:
                found.append(entry)
    return found


def _node_keys(node: NodePattern) -> NodeKeys:
    return node.labels, tuple(key.name for key in node.selection.keys)


def indexed_pairs(rows: Iterable[Sequence[Any]]) -> set[tuple[str, str]]:
    """(label, property) of every node index in the rows of ``FALKORDB_INDEXES`` or
    ``BOLT_INDEXES`` (label or labels, properties, entity type)."""
    pairs: set[tuple[str, str]] = set()
    for labels, properties, entity in rows:
        if str(entity).upper() != "NODE":
            continue
        for label in [labels] if isinstance(labels, str) else list(labels or ()):
            for prop in properties or ():
                pairs.add((str(label), str(prop)))
    return pairs


def missing(keys: Sequence[NodeKeys], indexed: set[tuple[str, str]]) -> list[NodeKeys]:
    """The merged nodes that no index serves: none on any of their labels with any of their
    keys (an index on one label and one key lets the backend find the node)."""
    return [
        (labels, props)
        for labels, props in keys
        if not any((label, prop) in indexed for label in labels for prop in props)
    ]


def create_index_statement(labels: tuple[str, ...], props: tuple[str, ...]) -> str:
    label, prop = _quote(labels[0]), _quote(props[0])
    return f"CREATE INDEX FOR (n:{label}) ON (n.{prop})"


def _quote(name: str) -> str:
    if name.replace("_", "a").isalnum() and not name[0].isdigit():
        return name
    return "`" + name.replace("`", "``") + "`"


async def warn_missing(name: str, keys: Sequence[NodeKeys], rows: Any) -> list[NodeKeys]:
    """Log one WARNING per merged node without an index; ``rows`` awaits the backend's
    index rows (None: it cannot list them, and nothing is said). The nodes warned about."""
    if not keys:
        return []
    try:
        listed = await rows
    except Exception as exc:  # a backend that cannot list indexes: no advice, no failure
        log.debug("stream %s: cannot list the backend's indexes: %s", name, exc)
        return []
    if listed is None:
        return []
    lacking = missing(keys, indexed_pairs(listed))
    if not lacking:
        log.info("stream %s: every node its pattern MERGEs has an index", name)
    for labels, props in lacking:
        log.warning(
            "stream %s: no index on :%s(%s), which its pattern MERGEs on: each message "
            "scans every :%s node, and the stream slows as the graph grows (on FalkorDB "
            "holding every other query meanwhile); create one: %s",
            name,
            labels[0],
            props[0],
            labels[0],
            create_index_statement(labels, props),
        )
    return lacking


async def advise(definition: StreamDefinition, writer: GraphWriter) -> list[NodeKeys]:
    """At START: warn about each node a pattern stream merges that no index serves (see the
    module's docstring). Other streams: nothing. The nodes warned about."""
    spec = definition.mapping
    if spec is None or spec.kind != "pattern":
        return []
    try:
        patterns = [parse_pattern(text) for text in spec.patterns]
    except PatternError:  # checked at CREATE; a stored one that no longer parses fails itself
        return []
    return await warn_missing(
        definition.name, merge_keys(patterns), _index_rows(writer, definition.owner)
    )


async def _index_rows(writer: GraphWriter, owner: str | None) -> Sequence[Sequence[Any]]:
    falkordb = isinstance(writer, FalkorDBWriter)
    try:
        result = await writer.read(FALKORDB_INDEXES if falkordb else BOLT_INDEXES, {}, owner)
    except WriteError as exc:
        if falkordb and "empty key" in str(exc):
            return []  # FalkorDB has no graph by that name yet: no index either
        raise
    return result.rows

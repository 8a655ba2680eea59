"""FalkorDB's statistics lines as Bolt summary counters, and the Neo4j query type."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from grammar import lexer
from proxy.backends.base import QueryType

_STAT_KEYS: dict[bytes, str] = {
    b"Nodes created": "nodes-created",
    b"Nodes deleted": "nodes-deleted",
    b"Relationships created": "relationships-created",
    b"Relationships deleted": "relationships-deleted",
    b"Properties set": "properties-set",
    # Neo4j counts removing a property (REMOVE n.p, SET n.p = null) as setting it.
    b"Properties removed": "properties-set",
    b"Labels added": "labels-added",
    b"Labels removed": "labels-removed",
    b"Indices created": "indexes-added",
    b"Indices deleted": "indexes-removed",
    b"Constraints created": "constraints-added",
    b"Constraints deleted": "constraints-removed",
}
_SCHEMA_STATS = frozenset(
    ("indexes-added", "indexes-removed", "constraints-added", "constraints-removed")
)


def parse_stats(lines: Iterable[Any]) -> dict[str, Any]:
    """FalkorDB's "Key: value" lines as Bolt summary counters (non-zero only)."""
    stats: dict[str, Any] = {}
    for line in lines:
        if not isinstance(line, bytes):
            continue
        key, _, rest = line.partition(b": ")
        name = _STAT_KEYS.get(key)
        if name is None:
            continue  # "Cached execution", "Query internal execution time"
        try:
            count = int(rest.split(b" ", 1)[0])
        except ValueError:
            continue
        if count:
            stats[name] = stats.get(name, 0) + count
    if stats:
        stats["contains-updates"] = True
    return stats


def query_type(stats: dict[str, Any], has_columns: bool) -> QueryType:
    """Neo4j's query type from what the query did: "s" schema, "w"/"rw" writes, "r" reads.

    Neo4j decides from the plan; FalkorDB tells us only what happened, so a writing query
    that happened to change nothing reports "r".
    """
    if not stats:
        return "r"
    if not _SCHEMA_STATS.isdisjoint(stats):
        return "s"
    return "rw" if has_columns else "w"


# -- labels-added as Neo4j counts it -------------------------------------------------------------
#
# Neo4j counts a label once per node that gets it: CREATE (:Person), (:Person) adds 2 labels.
# FalkorDB's "Labels added" counts that way for SET n:Label, but for nodes a query creates it
# counts the labels new to the graph's schema (measured on 4.16: 1 the first time, then 0). So
# for a query that creates nodes, the labels of its creating node patterns are read from the
# text: N nodes created by P creating patterns carrying L labels in all is N * L / P labels
# (exact when every creating pattern runs as often as the others, as in one CREATE clause).

_CLAUSE_WORDS = frozenset((
    "MATCH", "OPTIONAL", "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "RETURN",
    "WITH", "UNWIND", "WHERE", "FOREACH", "CALL", "ON", "LOAD", "UNION", "ORDER", "SKIP",
    "LIMIT", "YIELD", "FINISH", "USE",
))  # fmt: skip
_PATTERN_CLAUSES = frozenset(("MATCH", "CREATE", "MERGE"))


class LabelShape:
    """What a query's text says about the labels it adds."""

    __slots__ = ("created_labels", "creating_patterns", "new_label_names", "sets_labels")

    def __init__(self, creating: list[frozenset[str]], sets_labels: bool) -> None:
        self.creating_patterns = len(creating)
        self.created_labels = sum(len(labels) for labels in creating)
        self.new_label_names = frozenset().union(*creating) if creating else frozenset()
        self.sets_labels = sets_labels


_shapes: dict[str, LabelShape] = {}


def label_shape(query: str) -> LabelShape:
    shape = _shapes.get(query)
    if shape is None:
        try:
            shape = _label_shape(query)
        except IndexError:  # a truncated pattern: FalkorDB would have refused it anyway
            shape = LabelShape([], False)
        if len(_shapes) > 1000:
            _shapes.clear()
        _shapes[query] = shape
    return shape


def _significant(query: str) -> list[tuple[str, str]]:
    return [
        (match.lastgroup or "", match.group(0))
        for match in lexer.tokens(query)
        if match.lastgroup not in ("space", "comment")
    ]


def _identifier(token: tuple[str, str]) -> str | None:
    kind, text = token
    if kind == "word":
        return text
    if kind == "name":
        return text[1:-1]
    return None


def _label_shape(query: str) -> LabelShape:
    tokens = _significant(query)
    bound: set[str] = set()
    creating: list[frozenset[str]] = []
    sets_labels = False
    clause = ""
    depth = 0  # inside () [] {} of the current clause
    previous: tuple[str, str] = ("", "")
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "word":
            word = text.upper()
            is_key = following == ("other", ":")  # a map key, or a variable before a label
            if word in _CLAUSE_WORDS and previous[1] not in (".", ":") and not is_key:
                # ON CREATE SET / ON MATCH SET belong to MERGE: CREATE there creates nothing.
                if previous[1].upper() != "ON" or word not in ("CREATE", "MATCH"):
                    clause, depth = word, 0
            elif word == "AS" and _identifier(following) is not None:
                bound.add(_identifier(following) or "")
            elif (
                clause == "SET"
                and depth == 0
                and following == ("other", ":")
                and previous[1] != "."
            ):
                sets_labels = True
        elif (
            kind == "other"
            and text == "("
            and clause in _PATTERN_CLAUSES
            and (previous[0] != "word" or previous[1].upper() in _CLAUSE_WORDS)
        ):
            end, var, labels = _node_pattern(tokens, i)
            if end is not None:
                if clause != "MATCH" and (var is None or var not in bound):
                    creating.append(labels)
                if var is not None:
                    bound.add(var)
                previous = tokens[end]
                i = end + 1
                continue
            depth += 1
        elif kind == "other" and text in "([{":
            depth += 1
        elif kind == "other" and text in ")]}":
            depth = max(0, depth - 1)
        previous = (kind, text)
        i += 1
    return LabelShape(creating, sets_labels)


def _node_pattern(
    tokens: list[tuple[str, str]], start: int
) -> tuple[int | None, str | None, frozenset[str]]:
    """``(var:Label:... {props})`` at ``start``: the index of its ``)``, the variable and the
    labels; ``(None, ...)`` when the parenthesis holds something else."""
    i = start + 1
    var = _identifier(tokens[i])
    if var is not None:
        i += 1
    labels: set[str] = set()
    while tokens[i] == ("other", ":"):
        label = _identifier(tokens[i + 1])
        if label is None:
            return None, None, frozenset()
        labels.add(label)
        i += 2
    if tokens[i] == ("other", "{"):
        nesting = 0
        while True:
            if tokens[i] == ("other", "{"):
                nesting += 1
            elif tokens[i] == ("other", "}"):
                nesting -= 1
                if nesting == 0:
                    break
            i += 1
        i += 1
    if tokens[i] != ("other", ")"):
        return None, None, frozenset()
    return i, var, frozenset(labels)


def neo4j_labels_added(
    stats: dict[str, Any], query: str, labels_before: Iterable[str]
) -> int | None:
    """``labels-added`` as Neo4j counts it for ``query``, given FalkorDB's ``stats`` and the
    labels the graph had before it ran; None to keep FalkorDB's figure."""
    created: int = stats.get("nodes-created", 0)
    if not created:
        return None  # only SET n:Label added labels: FalkorDB counts those per node already
    shape = label_shape(query)
    if not shape.creating_patterns:
        return None
    from_creation = round(created * shape.created_labels / shape.creating_patterns)
    if not shape.sets_labels:
        return from_creation
    # Both: FalkorDB's figure is the SET labels plus the labels new to the schema.
    new_to_schema = len(shape.new_label_names - set(labels_before))
    reported: int = stats.get("labels-added", 0)
    return from_creation + max(0, reported - new_to_schema)

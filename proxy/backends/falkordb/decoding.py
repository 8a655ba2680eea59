"""FalkorDB's compact results as Bolt values.

Labels, relationship types and property keys come as ids into per-graph lists that
``db.labels()``, ``db.relationshipTypes()`` and ``db.propertyKeys()`` return. The lists only grow
while a graph lives, but a graph can be deleted and rebuilt with other ids, so every query
carries the schema ``version`` it was decoded against (``Schema``); FalkorDB refuses (and does
not run) a query sent with a stale version, and the backend refreshes and resends.

FalkorDB facts this relies on (4.16, measured): doubles are printed with 15 significant digits;
points are stored as float32 (latitude/longitude only); temporal values have whole-second
precision and no time zone; ``localtime`` comes back as seconds since 1900-01-01 (only the time
of day is meaningful); a duration comes back as the epoch offset of 1970-01-01 plus the
duration, so months and days are recovered by calendar arithmetic, exactly as FalkorDB's own
``toString`` does (``P40D`` reads back as ``P1M9D``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bolt.status import UNKNOWN_ERROR
from bolt.values import (
    Date,
    Duration,
    LocalDateTime,
    LocalTime,
    Node,
    Path,
    Point2D,
    Relationship,
    UnboundRelationship,
)
from proxy.backends.base import BackendError
from proxy.backends.falkordb.params import (
    NS_PER_SECOND,
    SECONDS_PER_DAY,
    WGS84_2D,
    civil_from_days,
)

# FalkorDB value type tags in compact results (falkordb client: ResultSetScalarTypes).
_T_NULL = 1
_T_STRING = 2
_T_INTEGER = 3
_T_BOOLEAN = 4
_T_DOUBLE = 5
_T_ARRAY = 6
_T_EDGE = 7
_T_NODE = 8
_T_PATH = 9
_T_MAP = 10
_T_POINT = 11
_T_VECTORF32 = 12
_T_DATETIME = 13
_T_DATE = 14
_T_TIME = 15
_T_DURATION = 16


class UnknownSchemaId(Exception):
    """A label/type/key id beyond the cached lists: refresh the schema and decode again."""


@dataclass
class Schema:
    """Per-graph id -> name lists, the schema version they belong to, and a refresh lock."""

    labels: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    version: int | None = None  # None: not known yet, send queries without a version
    generation: int = 0  # bumped by every refresh
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def reset(self) -> None:
        self.labels, self.types, self.keys = [], [], []
        self.version = None
        self.generation += 1


def to_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def decode_duration(value: int) -> Duration:
    """FalkorDB's duration (seconds from the epoch to epoch + duration) as months/days/secs.

    The calendar split mirrors FalkorDB's own ``toString``; a negative duration is split as
    its absolute value and negated, so ``duration({days: -1})`` reads back as -1 day.
    """
    sign = -1 if value < 0 else 1
    days, seconds = divmod(abs(value), SECONDS_PER_DAY)
    year, month, day = civil_from_days(days)
    months = (year - 1970) * 12 + month - 1
    return Duration(sign * months, sign * (day - 1), sign * seconds, 0)


class Decoder:
    """Turns compact cells into Python and ``bolt.values`` objects using one schema snapshot."""

    __slots__ = ("keys", "labels", "types")

    def __init__(self, schema: Schema) -> None:
        self.labels = schema.labels
        self.types = schema.types
        self.keys = schema.keys

    def rows(self, raw_rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows as tuples: a row of numbers and strings is then untracked by the cyclic
        garbage collector, which a million-row result would otherwise stall (see
        ``proxy.backends.resp.RespParser``)."""
        value = self.value
        return [tuple([value(cell[0], cell[1]) for cell in row]) for row in raw_rows]

    def value(self, kind: int, raw: Any) -> Any:
        # Most frequent types first.
        if kind == _T_INTEGER:
            return raw
        if kind == _T_STRING:
            return raw.decode("utf-8", "replace")
        if kind == _T_NULL:
            return None
        if kind == _T_DOUBLE:
            return float(raw)  # also parses "inf", "-inf", "-nan"
        if kind == _T_BOOLEAN:
            return raw == b"true"
        if kind == _T_NODE:
            return self.node(raw)
        if kind == _T_EDGE:
            return self.relationship(raw)
        if kind == _T_ARRAY:
            value = self.value
            return [value(cell[0], cell[1]) for cell in raw]
        if kind == _T_MAP:
            value = self.value
            return {
                raw[i].decode("utf-8", "replace"): value(raw[i + 1][0], raw[i + 1][1])
                for i in range(0, len(raw), 2)
            }
        if kind == _T_PATH:
            return self.path(raw)
        if kind == _T_POINT:
            return Point2D(WGS84_2D, float(raw[1]), float(raw[0]))  # raw is [lat, lon]
        if kind == _T_VECTORF32:
            return [float(x) for x in raw]  # Bolt (before 6.0) has no vector type
        if kind == _T_DATETIME:
            return LocalDateTime(raw, 0)
        if kind == _T_DATE:
            return Date(raw // SECONDS_PER_DAY)
        if kind == _T_TIME:
            return LocalTime((raw % SECONDS_PER_DAY) * NS_PER_SECOND)
        if kind == _T_DURATION:
            return decode_duration(raw)
        raise BackendError(UNKNOWN_ERROR, f"FalkorDB sent a value of unknown type {kind}")

    def properties(self, raw: Sequence[Any]) -> dict[str, Any]:
        keys = self.keys
        value = self.value
        try:
            return {keys[p[0]]: value(p[1], p[2]) for p in raw}
        except IndexError:
            raise UnknownSchemaId from None

    def node(self, raw: Sequence[Any]) -> Node:
        node_id, label_ids, props = raw
        labels = self.labels
        try:
            names = tuple([labels[i] for i in label_ids])
        except IndexError:
            raise UnknownSchemaId from None
        return Node(node_id, names, self.properties(props), str(node_id))

    def relationship(self, raw: Sequence[Any]) -> Relationship:
        rel_id, type_id, start, end, props = raw
        try:
            rel_type = self.types[type_id]
        except IndexError:
            raise UnknownSchemaId from None
        return Relationship(
            rel_id, start, end, rel_type, self.properties(props), str(rel_id), str(start), str(end)
        )

    def path(self, raw: Sequence[Any]) -> Path:
        # raw is [[ARRAY, node cells], [ARRAY, edge cells]], both in path order. Edge i joins
        # path node i and node i+1; Bolt's index is negative when it points from i+1 to i.
        path_nodes = [self.node(cell[1]) for cell in raw[0][1]]
        path_rels = [self.relationship(cell[1]) for cell in raw[1][1]]
        nodes: list[Node] = []
        node_index: dict[int, int] = {}
        for node in path_nodes:
            if node.id not in node_index:
                node_index[node.id] = len(nodes)
                nodes.append(node)
        rels: list[UnboundRelationship] = []
        rel_index: dict[int, int] = {}
        indices: list[int] = []
        for i, rel in enumerate(path_rels):
            if rel.id not in rel_index:
                rels.append(UnboundRelationship(rel.id, rel.type, rel.properties, rel.element_id))
                rel_index[rel.id] = len(rels)  # 1-based
            forward = rel.start_node_id == path_nodes[i].id
            indices.append(rel_index[rel.id] if forward else -rel_index[rel.id])
            indices.append(node_index[path_nodes[i + 1].id])
        return Path(tuple(nodes), tuple(rels), tuple(indices))

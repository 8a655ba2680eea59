"""Typed Bolt values: the graph, temporal and spatial types PackStream carries as structures.

These are plain frozen dataclasses with no wire knowledge. ``bolt.packstream`` turns them into
structures for a negotiated protocol version (Node has 3 fields up to 4.4 and 4 from 5.0;
DateTime is tag 'F' with local seconds before 5.0 and tag 'I' with UTC seconds from 5.0, or on
4.4 with the ``utc`` patch) and back. Keeping the versioned shapes in one place means a backend
builds one value and every client version gets the shape it expects.

Spec: Bolt "Structure Semantics" (docs-bolt, structure-semantics.adoc).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    labels: tuple[str, ...]
    properties: dict[str, Any] = field(hash=False)
    element_id: str = ""  # empty -> str(id) on the wire (5.0+)


@dataclass(frozen=True, slots=True)
class Relationship:
    id: int
    start_node_id: int
    end_node_id: int
    type: str
    properties: dict[str, Any] = field(hash=False)
    element_id: str = ""
    start_node_element_id: str = ""
    end_node_element_id: str = ""


@dataclass(frozen=True, slots=True)
class UnboundRelationship:
    id: int
    type: str
    properties: dict[str, Any] = field(hash=False)
    element_id: str = ""


@dataclass(frozen=True, slots=True)
class Path:
    """A path as Bolt sends it: distinct nodes, distinct unbound relationships, and indices.

    ``indices`` alternates (relationship index, node index): relationship indices are 1-based
    and negative when the relationship is traversed against its direction; node indices are
    0-based into ``nodes``. The first node (``nodes[0]``) is implicit.
    """

    nodes: tuple[Node, ...]
    relationships: tuple[UnboundRelationship, ...]
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Date:
    days: int  # since 1970-01-01


@dataclass(frozen=True, slots=True)
class Time:
    nanoseconds: int  # since local midnight
    tz_offset_seconds: int


@dataclass(frozen=True, slots=True)
class LocalTime:
    nanoseconds: int  # since midnight


@dataclass(frozen=True, slots=True)
class LocalDateTime:
    seconds: int  # since the epoch, as if the local wall clock were UTC
    nanoseconds: int


@dataclass(frozen=True, slots=True)
class DateTime:
    """An instant with a fixed UTC offset. ``seconds`` are UTC epoch seconds (the 5.x meaning)."""

    seconds: int
    nanoseconds: int
    tz_offset_seconds: int


@dataclass(frozen=True, slots=True)
class DateTimeZoneId:
    """An instant in a named zone. ``seconds`` are UTC epoch seconds (the 5.x meaning)."""

    seconds: int
    nanoseconds: int
    tz_id: str


@dataclass(frozen=True, slots=True)
class Duration:
    months: int
    days: int
    seconds: int
    nanoseconds: int


@dataclass(frozen=True, slots=True)
class Point2D:
    srid: int
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Point3D:
    srid: int
    x: float
    y: float
    z: float


GraphValue = Node | Relationship | UnboundRelationship | Path
TemporalValue = Date | Time | LocalTime | LocalDateTime | DateTime | DateTimeZoneId | Duration
SpatialValue = Point2D | Point3D

"""Query results as JSON, for ``builtin:request`` responses.

Values come from either writer: FalkorDB results hold ``bolt.values`` (``Node``, ``Date``, ...),
Bolt backends give the official driver's types (``neo4j.graph.Node``, ``neo4j.time.DateTime``,
...). Both become the same JSON:

* node: ``{"id", "element_id", "labels": [...], "properties": {...}}``;
* relationship: ``{"id", "element_id", "type", "start", "end", "properties"}`` (``start`` and
  ``end`` are node ids);
* path: ``{"nodes": [...], "relationships": [...]}`` in path order;
* temporal values: ISO 8601 strings (``2024-01-02``, ``2024-01-02T03:04:05.000000007+01:00``,
  with ``[Zone/Name]`` after a named zone's offset; durations ``P1Y2M3DT4H5M6.5S``);
* points: ``{"srid", "x", "y"}`` (and ``"z"``);
* bytes: base64 text; NaN and infinities: the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` (JSON has no such numbers); everything else as JSON has it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import warnings
from typing import Any

from bolt import values as bv


def to_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    converted = _bolt_value(value)
    if converted is not _NOT_MINE:
        return converted
    return _driver_value(value)


_NOT_MINE = object()


def _bolt_value(value: Any) -> Any:
    if isinstance(value, bv.Node):
        return _node(
            value.id, value.element_id or str(value.id), list(value.labels), value.properties
        )
    if isinstance(value, bv.Relationship):
        return _relationship(
            value.id,
            value.element_id or str(value.id),
            value.type,
            value.start_node_id,
            value.end_node_id,
            value.properties,
        )
    if isinstance(value, bv.Path):
        return _bolt_path(value)
    if isinstance(value, bv.UnboundRelationship):
        return {
            "id": value.id,
            "element_id": value.element_id or str(value.id),
            "type": value.type,
            "properties": to_json(value.properties),
        }
    if isinstance(value, bv.Date):
        return (dt.date(1970, 1, 1) + dt.timedelta(days=value.days)).isoformat()
    if isinstance(value, bv.LocalTime):
        return _clock(value.nanoseconds)
    if isinstance(value, bv.Time):
        return _clock(value.nanoseconds) + _offset(value.tz_offset_seconds)
    if isinstance(value, bv.LocalDateTime):
        return _date_time(value.seconds, value.nanoseconds)
    if isinstance(value, bv.DateTime):
        offset = value.tz_offset_seconds
        return _date_time(value.seconds + offset, value.nanoseconds) + _offset(offset)
    if isinstance(value, bv.DateTimeZoneId):
        return _zoned(value.seconds, value.nanoseconds, value.tz_id)
    if isinstance(value, bv.Duration):
        return _duration(value.months, value.days, value.seconds, value.nanoseconds)
    if isinstance(value, bv.Point2D):
        return {"srid": value.srid, "x": value.x, "y": value.y}
    if isinstance(value, bv.Point3D):
        return {"srid": value.srid, "x": value.x, "y": value.y, "z": value.z}
    return _NOT_MINE


def _node(node_id: Any, element_id: str, labels: list[str], properties: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "element_id": element_id,
        "labels": sorted(labels),
        "properties": to_json(dict(properties)),
    }


def _relationship(
    rel_id: Any, element_id: str, kind: str, start: Any, end: Any, properties: Any
) -> dict[str, Any]:
    return {
        "id": rel_id,
        "element_id": element_id,
        "type": kind,
        "start": start,
        "end": end,
        "properties": to_json(dict(properties)),
    }


def _bolt_path(path: bv.Path) -> dict[str, Any]:
    nodes = [path.nodes[0]]
    relationships = []
    previous = path.nodes[0]
    indices = path.indices
    for position in range(0, len(indices) - 1, 2):
        rel_index, node_index = indices[position], indices[position + 1]
        rel = path.relationships[abs(rel_index) - 1]
        node = path.nodes[node_index]
        start, end = (previous, node) if rel_index > 0 else (node, previous)
        relationships.append(
            _relationship(
                rel.id, rel.element_id or str(rel.id), rel.type, start.id, end.id, rel.properties
            )
        )
        nodes.append(node)
        previous = node
    return {"nodes": [to_json(node) for node in nodes], "relationships": relationships}


def _clock(nanoseconds: int) -> str:
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{nanos:09d}" if nanos else "")


def _offset(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}"
    return text + (f":{rest % 60:02d}" if rest % 60 else "")


def _date_time(seconds: int, nanoseconds: int) -> str:
    """Wall-clock seconds since the epoch (as if UTC) as ``YYYY-MM-DDTHH:MM:SS[.n]``."""
    days, rest = divmod(seconds, 86400)
    date = dt.date(1970, 1, 1) + dt.timedelta(days=days)
    return f"{date.isoformat()}T{_clock(rest * 1_000_000_000 + nanoseconds)}"


def _zoned(seconds: int, nanoseconds: int, zone: str) -> str:
    try:
        from zoneinfo import ZoneInfo

        instant = dt.datetime.fromtimestamp(seconds, dt.UTC).astimezone(ZoneInfo(zone))
        offset = int(instant.utcoffset().total_seconds())  # type: ignore[union-attr]
    except Exception:  # unknown zone name, out of range: show the instant in UTC
        offset = 0
    return f"{_date_time(seconds + offset, nanoseconds)}{_offset(offset)}[{zone}]"


def _duration(months: int, days: int, seconds: int, nanoseconds: int) -> str:
    years, months = divmod(months, 12) if months >= 0 else (-((-months) // 12), -((-months) % 12))
    total = seconds * 1_000_000_000 + nanoseconds
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, total = divmod(total, 3600 * 1_000_000_000)
    minutes, total = divmod(total, 60 * 1_000_000_000)
    whole, nanos = divmod(total, 1_000_000_000)
    date = "".join(f"{n}{unit}" for n, unit in ((years, "Y"), (months, "M"), (days, "D")) if n)
    clock = "".join(f"{sign}{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if whole or nanos:
        fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
        clock += f"{sign}{whole}{fraction}S"
    if not date and not clock:
        return "PT0S"
    return "P" + date + ("T" + clock if clock else "")


def _driver_value(value: Any) -> Any:
    """The official driver's types (Bolt backends)."""
    import neo4j.graph as graph
    import neo4j.spatial as spatial
    import neo4j.time as time

    if isinstance(value, graph.Node):
        return _node(_legacy_id(value), value.element_id, list(value.labels), dict(value))
    if isinstance(value, graph.Relationship):
        start, end = value.start_node, value.end_node
        return _relationship(
            _legacy_id(value),
            value.element_id,
            value.type,
            _legacy_id(start) if start is not None else None,
            _legacy_id(end) if end is not None else None,
            dict(value),
        )
    if isinstance(value, graph.Path):
        return {
            "nodes": [to_json(node) for node in value.nodes],
            "relationships": [to_json(rel) for rel in value.relationships],
        }
    if isinstance(value, time.Duration):
        return _duration(value.months, value.days, value.seconds, value.nanoseconds)
    if isinstance(value, time.DateTime):
        zone = getattr(value.tzinfo, "key", None) or getattr(value.tzinfo, "zone", None)
        text = str(value.iso_format())
        return f"{text}[{zone}]" if zone and zone != "UTC" else text
    if isinstance(value, time.Date | time.Time):
        return str(value.iso_format())
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration(0, value.days, value.seconds, value.microseconds * 1000)
    if isinstance(value, spatial.Point):
        coordinates = {"srid": value.srid, "x": value[0], "y": value[1]}
        if len(value) > 2:
            coordinates["z"] = value[2]
        return coordinates
    return str(value)


def _legacy_id(entity: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return entity.id

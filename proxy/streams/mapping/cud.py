"""``WITH FORMAT CUD``: messages that say themselves what to create, update, merge or delete.

The documents are the Neo4j Connector for Kafka's CUD format (its JSON Schema
``cud.schema.v1.json``; neo4j_kafka.md 1.6), checked as strictly as that schema says:
unknown fields are refused everywhere, ``type`` and ``op`` (and a node reference's ``op``)
are case-insensitive, and each variant has its required fields:

=============================  ====================================  ============================
variant                        required                              optional
=============================  ====================================  ============================
node create                    type, op, properties                  labels
node merge / update            type, op, ids, properties             labels
node delete                    type, op, ids                         labels, detach (false)
relationship create            type, op, rel_type, from, to,         (none)
                               properties
relationship merge / update    type, op, rel_type, from, to,         ids
                               properties
relationship delete            type, op, rel_type, from, to          ids
node reference (from, to)      ids                                   labels, op (match | merge)
=============================  ====================================  ============================

and, as the connector's transformer adds, ``ids`` name at least one property (for a
relationship's own ``ids``: any number), ``rel_type`` is not empty, and a relationship delete
finds its nodes with ``match`` only. ``ids`` may instead hold ``_id`` (the database's internal
id) or ``_elementId``. Labels, types and keys are quoted by ``cypher.quote``; every value is a
parameter.

Writes, as the connector's: node create ``CREATE (n:L) SET n += props``; merge ``MERGE (n:L
{ids}) SET n += props``; update ``MATCH`` instead; delete ``MATCH (n:L {ids}) [DETACH] DELETE
n`` (a node that still has relationships then fails, and the message goes to the error
policy); relationships find or merge their two nodes, then ``CREATE``/``MERGE``/``MATCH`` the
relationship and ``SET r += props``, or ``DELETE r``. A tombstone (null value) carries no
operation: it changes nothing and is counted as processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.streams.mapping import cypher
from proxy.streams.mapping.events import BadMessage, Event
from proxy.streams.outcomes import Accepted, Outcome, Rejected

_OPS = ("create", "merge", "update", "delete")
_NODE_FIELDS = {
    "create": ({"type", "op", "properties"}, {"labels"}),
    "merge": ({"type", "op", "ids", "properties"}, {"labels"}),
    "update": ({"type", "op", "ids", "properties"}, {"labels"}),
    "delete": ({"type", "op", "ids"}, {"labels", "detach"}),
}
_REL_FIELDS = {
    "create": ({"type", "op", "rel_type", "from", "to", "properties"}, set()),
    "merge": ({"type", "op", "rel_type", "from", "to", "properties"}, {"ids"}),
    "update": ({"type", "op", "rel_type", "from", "to", "properties"}, {"ids"}),
    "delete": ({"type", "op", "rel_type", "from", "to"}, {"ids"}),
}
_REF_FIELDS = ({"ids"}, {"labels", "op"})
PHYSICAL_ID, ELEMENT_ID = "_id", "_elementId"


@dataclass(frozen=True)
class Dialect:
    """How the backend finds an entity by element id (``{}`` is the variable):
    ``elementId({})`` on Neo4j-like servers; FalkorDB has no such function, and the proxy
    gives its entities ``toString(id(x))`` as element ids."""

    element_id: str = "elementId({})"


BOLT = Dialect()
FALKORDB = Dialect(element_id="toString(id({}))")


class CudMapper:
    """Maps CUD messages; ``outcome(event)`` per message (see the module docstring)."""

    def __init__(self, dialect: Dialect = BOLT) -> None:
        self.dialect = dialect

    def outcome(self, event: Event) -> Outcome:
        if event.tombstone:
            return Accepted([])
        try:
            text, row = self._query(event.value)
        except (BadMessage, cypher.BadName) as exc:
            return Rejected(f"invalid CUD message: {exc}")
        return Accepted([cypher.one(text, row, _entities(event.value))])

    def _query(self, doc: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(doc, dict):
            raise BadMessage(f"the value must be a map, not {cypher.kind(doc)}")
        kind = _word(doc.get("type"), "type", ("node", "relationship"))
        op = _word(doc.get("op"), "op", _OPS)
        if kind == "node":
            _fields(doc, *_NODE_FIELDS[op], "")
            return self._node(op, doc)
        _fields(doc, *_REL_FIELDS[op], "")
        return self._relationship(op, doc)

    # -- nodes ---------------------------------------------------------------------------------

    def _node(self, op: str, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        labels = _labels(doc.get("labels"), "labels")
        row: dict[str, Any] = {}
        if op == "create":
            row["p"] = _properties(doc["properties"], "properties")
            return cypher.unwind(f"CREATE (n{labels}) SET n += ev.p"), row
        match, row["k"] = self._find("n", labels, doc["ids"], "ids", "ev.k")
        if op == "delete":
            detach = doc.get("detach", False)
            if not isinstance(detach, bool):
                raise BadMessage(f"detach must be a boolean, not {cypher.kind(detach)}")
            verb = "DETACH DELETE" if detach else "DELETE"
            return cypher.unwind(f"MATCH {match} {verb} n"), row
        row["p"] = _properties(doc["properties"], "properties")
        if op == "merge":
            if _special(doc["ids"]):
                raise BadMessage(
                    "a node merge needs property ids, not _id or _elementId "
                    "(nothing to create a node from)"
                )
            return cypher.unwind(f"MERGE {match} SET n += ev.p"), row
        return cypher.unwind(f"MATCH {match} SET n += ev.p"), row

    def _find(self, var: str, labels: str, ids: Any, where: str, row: str) -> tuple[str, Any]:
        """(pattern with WHERE if needed, the row's key values) to find a node by ``ids``."""
        keys = _ids(ids, where, required=True)
        if PHYSICAL_ID in keys:
            return f"({var}{labels}) WHERE id({var}) = {row}", _integer(keys[PHYSICAL_ID], where)
        if ELEMENT_ID in keys:
            return (
                f"({var}{labels}) WHERE {self.dialect.element_id.format(var)} = {row}",
                _string(keys[ELEMENT_ID], where),
            )
        names = list(keys)
        props = ", ".join(
            f"{cypher.quote(name, 'id key')}: {row}[{i}]" for i, name in enumerate(names)
        )
        return f"({var}{labels} {{{props}}})", [keys[name] for name in names]

    # -- relationships ------------------------------------------------------------------------

    def _relationship(self, op: str, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rel_type = doc.get("rel_type")
        if not isinstance(rel_type, str) or not rel_type:
            raise BadMessage("'rel_type' must be specified.")
        typed = cypher.quote(rel_type, "relationship type")
        row: dict[str, Any] = {}
        start, row["s"] = self._reference(doc["from"], "from", "s", "ev.s", op)
        end, row["e"] = self._reference(doc["to"], "to", "e", "ev.e", op)
        rel_ids = _ids(doc.get("ids", {}), "ids", required=False)
        rel_pattern, rel_where = f"[r:{typed}]", ""
        if PHYSICAL_ID in rel_ids:
            rel_where, row["k"] = " WHERE id(r) = ev.k", _integer(rel_ids[PHYSICAL_ID], "ids")
        elif ELEMENT_ID in rel_ids:
            rel_where = f" WHERE {self.dialect.element_id.format('r')} = ev.k"
            row["k"] = _string(rel_ids[ELEMENT_ID], "ids")
        elif rel_ids:
            names = list(rel_ids)
            props = ", ".join(
                f"{cypher.quote(n, 'id key')}: ev.k[{i}]" for i, n in enumerate(names)
            )
            rel_pattern, row["k"] = f"[r:{typed} {{{props}}}]", [rel_ids[n] for n in names]
        if op != "delete":
            row["p"] = _properties(doc["properties"], "properties")
        nodes = f"{start} WITH ev, s {end} WITH ev, s, e"
        if op == "create":
            return cypher.unwind(f"{nodes} CREATE (s)-[r:{typed}]->(e) SET r += ev.p"), row
        if op == "merge":
            if rel_where:
                raise BadMessage("a relationship merge needs property ids, not _id or _elementId")
            return cypher.unwind(f"{nodes} MERGE (s)-{rel_pattern}->(e) SET r += ev.p"), row
        tail = "SET r += ev.p" if op == "update" else "DELETE r"
        return cypher.unwind(f"{nodes} MATCH (s)-{rel_pattern}->(e){rel_where} {tail}"), row

    def _reference(self, ref: Any, where: str, var: str, row: str, op: str) -> tuple[str, Any]:
        if not isinstance(ref, dict):
            raise BadMessage(f"{where} must be a map, not {cypher.kind(ref)}")
        _fields(ref, *_REF_FIELDS, where + ".")
        lookup = _word(ref.get("op", "match"), f"{where}.op", ("match", "merge"))
        if op == "delete" and lookup != "match":
            raise BadMessage(
                "'from' and 'to' must have 'op' as 'MATCH' for relationship deletion operations."
            )
        labels = _labels(ref.get("labels"), f"{where}.labels")
        pattern, keys = self._find(var, labels, ref["ids"], f"{where}.ids", row)
        if lookup == "merge":
            if _special(ref["ids"]):
                raise BadMessage(f"{where} with op merge needs property ids, not _id or _elementId")
            return f"MERGE {pattern}", keys
        return f"MATCH {pattern}", keys


def _entities(doc: dict[str, Any]) -> tuple[str, ...]:
    """What a valid document merges, updates or deletes (created ones are new anyway)."""
    op = str(doc["op"]).lower()
    if op == "create":
        return ()
    if str(doc["type"]).lower() == "node":
        return (cypher.identity("node", sorted(doc.get("labels") or ()), doc["ids"]),)
    ends = [(sorted(doc[end].get("labels") or ()), doc[end]["ids"]) for end in ("from", "to")]
    return (cypher.identity("rel", doc["rel_type"], ends, doc.get("ids", {})),)


# -- checks ------------------------------------------------------------------------------------


def _word(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        shown = repr(value) if isinstance(value, str) else cypher.kind(value)
        raise BadMessage(
            f"{where} must be one of {', '.join(allowed)} (any case), not {shown[:40]}"
        )
    return value.lower()


def _fields(doc: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing = sorted(required - doc.keys())
    if missing:
        raise BadMessage(f"the field {where}{missing[0]} is required")
    unknown = sorted(doc.keys() - required - optional)
    if unknown:
        raise BadMessage(f"the field {where}{unknown[0][:40]} is not allowed here")


def _labels(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, list):
        raise BadMessage(f"{where} must be a list of strings, not {cypher.kind(value)}")
    return cypher.labels(value, "label")


def _ids(value: Any, where: str, *, required: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadMessage(f"{where} must be a map, not {cypher.kind(value)}")
    if required and not value:
        raise BadMessage(f"{where}: a node must contain at least one ID property.")
    if _special(value) and len(value) > 1:
        raise BadMessage(f"{where}: _id or _elementId must be alone")
    for name, item in value.items():
        if item is None or not cypher.storable(item):
            raise BadMessage(f"{where}.{name} must be a plain value, not {cypher.kind(item)}")
    return value


def _special(ids: dict[str, Any]) -> bool:
    return PHYSICAL_ID in ids or ELEMENT_ID in ids


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"{where}._id must be an integer")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadMessage(f"{where}._elementId must be a string")
    return value


def _properties(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadMessage(f"{where} must be a map, not {cypher.kind(value)}")
    for name, item in value.items():
        cypher.quote(name, "property key")  # FalkorDB cannot take every key (BadName)
        if not cypher.storable(item):
            raise BadMessage(
                f"{where}.{name} is {cypher.kind(item)}; a graph stores only "
                "plain values and lists of them"
            )
    return value

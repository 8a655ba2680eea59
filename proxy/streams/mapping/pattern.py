"""``WITH PATTERN '...'``: nodes and relationships merged from the message's fields.

The semantics are the Neo4j Connector for Kafka's (neo4j_kafka.md 1.4; its
``PatternEventTransformer``), so patterns written for it give the same graph:

* The message is flattened: ``__value.<path>`` for each field of the value (nested maps
  joined with dots: ``address.city``), ``__key.<path>`` (or ``__key`` for a key that is not a
  map), ``__header.<name>``, ``__timestamp``. A value that is not a map is a bad message.
* Keys (``!id``, ``!id: userId``): a source with an explicit prefix is looked up there (for a
  tombstone ``__value.`` reads ``__key.``); a plain one in the value, then the key. A key that
  is missing or null makes the message bad ("Key 'id' could not be located in the message").
* Properties: a plain included source is read from the value; a source naming a map includes
  its fields under the new name's prefix; ``*`` takes every field of the value not already
  used as a key or property of this pattern (so a relationship's ``*`` leaves out its nodes'
  keys); ``-field`` removes a field and its nested fields.
* Writing: a node pattern is ``MERGE (n:Labels {keys}) SET n = props + keys`` (properties
  replaced), or with ``MERGE NODE PROPERTIES`` ``SET n += props`` (merged). A relationship
  pattern merges both nodes the same way (their explicit properties only; a node that names
  no property beyond its keys is merged on its keys and otherwise left alone, where the
  connector would wipe its other properties), then ``MERGE (start)-[r:TYPE {keys}]->(end)``
  with ``SET r = props + keys`` or, with ``MERGE RELATIONSHIP PROPERTIES``, ``SET r += props``.
* A tombstone (a null value) deletes what the key names: ``MATCH (n:Labels {keys}) DETACH
  DELETE n`` for a node pattern, ``MATCH (start {keys})-[r:TYPE {keys}]->(end {keys})
  DELETE r`` for a relationship pattern.

Beyond the connector: a stream may have several patterns (neo4j-streams#269); each message
is applied to every pattern, in the order given: its queries are one ``cypher.compound``,
which ``cypher.combine`` writes as one query per pattern for a block of messages. A
tombstone applies to the patterns whose keys its key holds, and is a bad message if there is
none. Property values must be storable (no maps left after flattening, no lists of maps);
anything else makes the message bad, with the field named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grammar.pattern import Mapping, NodePattern, Pattern, RelationshipPattern, Selection
from proxy.streams.mapping import cypher
from proxy.streams.mapping.events import BadMessage, Event
from proxy.streams.outcomes import Accepted, Outcome, Rejected

_VALUE, _KEY, _HEADER, _TIMESTAMP = "__value", "__key", "__header", "__timestamp"
_EXPLICIT = (_VALUE + ".", _KEY + ".", _HEADER + ".")


@dataclass(frozen=True)
class PatternOptions:
    merge_node_properties: bool = False  # the connector's merge-node-properties
    merge_relationship_properties: bool = False


class PatternMapper:
    """Maps messages through one or more parsed patterns; ``outcome(event)`` per message."""

    def __init__(self, patterns: Sequence[Pattern], options: PatternOptions | None = None) -> None:
        if not patterns:
            raise ValueError("at least one pattern")
        self.patterns = tuple(patterns)
        self.options = options or PatternOptions()
        self._upserts = [_upsert_body(p, self.options) for p in self.patterns]
        self._deletes = [_delete_body(p) for p in self.patterns]
        self._texts: dict[tuple[int, bool], str] = {}

    def outcome(self, event: Event) -> Outcome:
        try:
            flat = _flatten_message(event)
        except BadMessage as exc:
            return Rejected(str(exc))
        parts: list[tuple[int, dict[str, Any]]] = []  # (body number, row)
        problems: list[str] = []
        entities: set[str] = set()
        for number, pattern in enumerate(self.patterns):
            try:
                row = _row(pattern, flat, event.tombstone, entities)
            except BadMessage as exc:
                problems.append(str(exc))
                continue
            parts.append((number, row))
        if event.tombstone:
            if not parts:
                return Rejected("tombstone: " + problems[0])
        elif problems:
            return Rejected(problems[0])
        if len(parts) == 1:
            number, row = parts[0]
            return Accepted([cypher.one(self._text(number, event.tombstone), row, entities)])
        touched = set(entities)  # and the relationships' nodes, which rows only match
        for number, row in parts:
            pattern = self.patterns[number]
            if isinstance(pattern, RelationshipPattern):
                touched.add(cypher.identity("node", pattern.start.labels, row["sk"]))
                touched.add(cypher.identity("node", pattern.end.labels, row["ek"]))
        texts = [(self._text(number, event.tombstone), row) for number, row in parts]
        return Accepted([cypher.compound(texts, touched)])

    def _text(self, number: int, tombstone: bool) -> str:
        key = (number, tombstone)
        text = self._texts.get(key)
        if text is None:
            bodies = self._deletes if tombstone else self._upserts
            text = self._texts[key] = cypher.unwind(bodies[number].replace(ROW, "ev"))
        return text


# -- reading the message ----------------------------------------------------------------------


def _flatten_message(event: Event) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if event.timestamp is not None:
        flat[_TIMESTAMP] = event.timestamp
    for name, value in event.headers.items():
        flat[f"{_HEADER}.{name}"] = value
    if isinstance(event.key, dict):
        _flatten(event.key, _KEY, flat)
    elif event.key is not None:
        flat[_KEY] = event.key
    if not event.tombstone:
        if not isinstance(event.value, dict):
            raise BadMessage(
                f"the value must be a map for a pattern, not {cypher.kind(event.value)}"
            )
        _flatten(event.value, _VALUE, flat)
    return flat


def _flatten(value: dict[str, Any], prefix: str, into: dict[str, Any]) -> None:
    for name, item in value.items():
        path = f"{prefix}.{name}"
        if isinstance(item, dict):
            _flatten(item, path, into)  # an empty map has no field to give
        else:
            into[path] = item


def _row(
    pattern: Pattern, flat: dict[str, Any], tombstone: bool, entities: set[str]
) -> dict[str, Any]:
    """The row of ``pattern`` for the message; adds what it merges and sets to ``entities``
    (an endpoint only when the row sets properties of it beyond its keys)."""
    used: set[str] = set()
    if isinstance(pattern, NodePattern):
        keys = _keys(pattern.selection, flat, tombstone, used)
        entities.add(cypher.identity("node", pattern.labels, keys))
        if tombstone:
            return {"k": keys}
        props = _properties(pattern.selection, flat, used)
        return {"k": keys, "p": props}
    start_keys = _keys(pattern.start.selection, flat, tombstone, used)
    end_keys = _keys(pattern.end.selection, flat, tombstone, used)
    keys = _keys(pattern.selection, flat, tombstone, used)
    entities.add(
        cypher.identity(
            "rel",
            pattern.type,
            pattern.start.labels,
            start_keys,
            keys,
            pattern.end.labels,
            end_keys,
        )
    )
    for node, node_keys in ((pattern.start, start_keys), (pattern.end, end_keys)):
        if node.selection.include:
            entities.add(cypher.identity("node", node.labels, node_keys))
    if tombstone:
        return {"sk": start_keys, "ek": end_keys, "k": keys}
    return {
        "sk": start_keys,
        "sp": _properties(pattern.start.selection, flat, used),
        "ek": end_keys,
        "ep": _properties(pattern.end.selection, flat, used),
        "k": keys,
        "p": _properties(pattern.selection, flat, used),
    }


def _keys(selection: Selection, flat: dict[str, Any], tombstone: bool, used: set[str]) -> list[Any]:
    values = []
    for mapping in selection.keys:
        found = _lookup_key(mapping, flat, tombstone)
        if found is None:
            where = (
                "the keys"
                if mapping.source.startswith(_KEY)
                else "the values"
                if mapping.source.startswith(_VALUE)
                else "the message"
            )
            bare = mapping.source
            for prefix in _EXPLICIT:
                bare = bare.removeprefix(prefix)
            raise BadMessage(f"Key '{bare}' could not be located in {where}.")
        path, value = found
        used.add(path)
        _check_storable(mapping.name, value)
        values.append(value)
    return values


def _lookup_key(mapping: Mapping, flat: dict[str, Any], tombstone: bool) -> tuple[str, Any] | None:
    source = mapping.source
    if source.startswith(_EXPLICIT) or source in (_TIMESTAMP, _KEY):
        if tombstone and source.startswith(_VALUE + "."):
            source = _KEY + source[len(_VALUE) :]
        candidates = [source]
    else:
        candidates = [f"{_VALUE}.{source}", f"{_KEY}.{source}"]
    for path in candidates:
        value = flat.get(path)
        if value is not None:
            return path, value
    return None


def _properties(selection: Selection, flat: dict[str, Any], used: set[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if selection.everything:
        start = len(_VALUE) + 1
        for path, value in flat.items():
            if path.startswith(_VALUE + ".") and path not in used:
                props[path[start:]] = value
    for mapping in selection.include:
        source = mapping.source
        path = (
            source
            if source.startswith(_EXPLICIT) or source == _TIMESTAMP
            else (f"{_VALUE}.{source}")
        )
        if path in flat:
            used.add(path)
            props[mapping.name] = flat[path]
            continue
        nested = path + "."
        for found, value in flat.items():
            if found.startswith(nested):
                used.add(found)
                props[mapping.name + found[len(path) :]] = value
    for name in selection.exclude:
        props.pop(name, None)
        for found in [k for k in props if k.startswith(name + ".")]:
            del props[found]
    for name, value in props.items():
        _check_storable(name, value)
    return props


def _check_storable(name: str, value: Any) -> None:
    try:
        cypher.quote(name, "property key")  # FalkorDB cannot take every key
    except cypher.BadName as exc:
        raise BadMessage(str(exc)) from None
    if not cypher.storable(value):
        raise BadMessage(
            f"property {name!r} would be {cypher.kind(value)} that holds maps "
            "or nulls; a graph stores only plain values and lists of them"
        )


# -- the queries: bodies over one row, ROW standing for where the row is ---------------------

# A NUL: ``cypher.quote`` refuses it in names, so it cannot occur in a body otherwise.
ROW = "\x00"


def _key_map(keys: Sequence[Mapping], row: str) -> str:
    return (
        "{"
        + ", ".join(
            f"{cypher.quote(m.name, 'property key')}: {row}[{i}]" for i, m in enumerate(keys)
        )
        + "}"
    )


def _node_match(var: str, node: NodePattern, keys: str) -> str:
    return f"({var}{cypher.labels(node.labels)} {_key_map(node.selection.keys, keys)})"


def _upsert_body(pattern: Pattern, options: PatternOptions) -> str:
    if isinstance(pattern, NodePattern):
        return f"MERGE {_node_match('n', pattern, ROW + '.k')} " + _set_props(
            "n", pattern.selection.keys, ROW + ".k", ROW + ".p", options.merge_node_properties
        )
    rel: RelationshipPattern = pattern
    node_merge = options.merge_node_properties
    rel_keys = rel.selection.keys
    return (
        f"MERGE {_node_match('s', rel.start, ROW + '.sk')} "
        + _set_endpoint("s", rel.start, ROW + ".sk", ROW + ".sp", node_merge)
        + f"MERGE {_node_match('e', rel.end, ROW + '.ek')} "
        + _set_endpoint("e", rel.end, ROW + ".ek", ROW + ".ep", node_merge)
        + f"MERGE (s)-[r:{cypher.quote(rel.type, 'relationship type')}"
        + (f" {_key_map(rel_keys, ROW + '.k')}" if rel_keys else "")
        + "]->(e) "
        + _set_props("r", rel_keys, ROW + ".k", ROW + ".p", options.merge_relationship_properties)
    )


def _set_endpoint(var: str, node: NodePattern, key_row: str, prop_row: str, merge: bool) -> str:
    """A relationship's node: its properties set as a node pattern's are, unless the pattern
    names none (keys only: ``(:User{!id})``), when it is only merged on its keys. The
    connector replaces such a node's properties with its keys alone, which wipes what another
    topic or pattern gave the node (with several patterns on one topic, the node pattern's
    properties); a node that names no property is not this pattern's to change."""
    if not node.selection.include:
        return ""
    return _set_props(var, node.selection.keys, key_row, prop_row, merge) + " "


def _set_props(var: str, keys: Sequence[Mapping], key_row: str, prop_row: str, merge: bool) -> str:
    if merge:
        return f"SET {var} += {prop_row}"
    # Replace: the properties, then the keys again (they are left out of the properties).
    key_sets = "".join(
        f", {var}.{cypher.quote(m.name, 'property key')} = {key_row}[{i}]"
        for i, m in enumerate(keys)
    )
    return f"SET {var} = {prop_row}{key_sets}"


def _delete_body(pattern: Pattern) -> str:
    if isinstance(pattern, NodePattern):
        return f"MATCH {_node_match('n', pattern, ROW + '.k')} DETACH DELETE n"
    rel = pattern
    rel_keys = rel.selection.keys
    return (
        f"MATCH {_node_match('s', rel.start, ROW + '.sk')}"
        f"-[r:{cypher.quote(rel.type, 'relationship type')}"
        + (f" {_key_map(rel_keys, ROW + '.k')}" if rel_keys else "")
        + f"]->{_node_match('e', rel.end, ROW + '.ek')} DELETE r"
    )

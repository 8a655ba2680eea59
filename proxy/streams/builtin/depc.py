"""builtin:depc: DepC dependency messages (ovh/depc's Kafka consumer) into the graph.

Shipped with boltstream and pinned into a stream at CREATE like any transform; it runs in the
stream's sandboxed transform worker like a user's transform, so this file uses the standard
library only and imports nothing from boltstream (the worker has only this file's text).

One message, two formats (reference neo4j_kafka.md section 3.2):

* nested: ``{"source": NODE, "target": NODE?, "rel": {"from"?, "to"?}?}`` where NODE is
  ``{"label", "name", "props": {"from"?, "to"?}?}``;
* flat: ``source_label``, ``source_name``, ``source_from``, ``source_to``, ``target_label``,
  ``target_name``, ``target_from``, ``target_to``, ``rel_from``, ``rel_to``;
* either of them wrapped as ``{"metadata": MESSAGE}`` (OVH's EventBus envelope) when
  ``metadata`` is the only key.

Nested when the message has a ``source`` key, flat otherwise (as DepC decided). Every rule is
enforced whole, by this code rather than a schema validator (DepC's pinned fastjsonschema
ignored ``dependencies``, so a flat target without a name crashed its consumer):

* the message is UTF-8 JSON (standard JSON: no NaN/Infinity, no duplicate keys), an object;
* only the source is required; unknown fields are rejected at every level;
* label: a string matching ``^[A-Z]+[a-zA-Z0-9]*$`` (the whole string: a trailing newline is
  not let through, as Python's ``$`` would);
* name: a non-empty string of printable ASCII except space, ``"``, ``'``, ``\\`` and
  `````` (``^[!#-&(-[\\]-_a-~]+$``);
* ``from``: an integer >= 0; ``to``: an integer >= 1 (JSON Schema integers: ``3.0`` counts,
  ``true`` does not), at most 2**63 - 1 (a graph integer);
* a target needs both its label and its name; ``rel`` (and ``target_*`` properties, ``rel_*``)
  need a target. (DepC's schema also made ``rel`` required with a target; its documentation and
  examples send targets without ``rel``, which its validator let through: that is what it meant,
  and what is done here.)

A valid message becomes one query::

    MERGE (s:`Source` {name: $source_name}) SET s += $source_props
    [MERGE (t:`Target` {name: $target_name}) SET t += $target_props
     MERGE (s)-[r:DEPENDS_ON]->(t) SET r += $rel_props]

Labels cannot be parameters in Cypher, so they are written into the query, in backquotes, and
only after the label rule passed: a label is then ASCII letters and digits, nothing that can
end the backquotes. Names and properties are always parameters. Replaying a message merges
the same nodes and relationship and sets the same values: the graph does not change.

An invalid message becomes a dead-letter item, ``("// boltstream: dead letter", {"index": i,
"reason": "..."})``: the engine sends that message to the stream's dead-letter topic with the
reason, and applies the others. (DepC's validity-period state machine on ``DEPENDS_ON`` and its
per-team label prefixes are not reproduced: ``from``/``to`` are plain properties.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from proxy.streams.builtin._common import INT64_MAX, Invalid, load, per_message

RELATIONSHIP = "DEPENDS_ON"
LABEL = re.compile(r"[A-Z]+[a-zA-Z0-9]*")
NAME = re.compile(r"[!#-&(-\[\]-_a-~]+")
NESTED_KEYS = ("source", "target", "rel")
NODE_KEYS = ("label", "name", "props")
PROPS_KEYS = ("from", "to")
FLAT_KEYS = (
    "source_label",
    "source_name",
    "source_from",
    "source_to",
    "target_label",
    "target_name",
    "target_from",
    "target_to",
    "rel_from",
    "rel_to",
)
SHOWN = 60  # characters of a bad value quoted in a reason


def stream(batch: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """One item per message, in order: its query, or its dead-letter item."""
    return per_message(batch, lambda raw: query_of(parse(raw)))


# -- reading ------------------------------------------------------------------------------------


# -- validating ---------------------------------------------------------------------------------


def parse(raw: bytes) -> dict[str, Any]:
    """The message as ``{"source": {...}, "target": {...}?, "rel": {...}?}`` with every rule
    checked; node dicts are ``{"label", "name", "props"}`` with ``props`` always present."""
    message = load(raw, "message", _show)
    if not isinstance(message, dict):
        raise Invalid(f"the message must be a JSON object, not {_kind(message)}")
    if list(message) == ["metadata"] and isinstance(message["metadata"], dict):
        message = message["metadata"]
    if "source" in message:
        return _nested(message)
    return _flat(message)


def _nested(message: dict[str, Any]) -> dict[str, Any]:
    _known(message, NESTED_KEYS, "the message")
    parsed: dict[str, Any] = {"source": _node(message["source"], "source")}
    if "target" in message:
        parsed["target"] = _node(message["target"], "target")
    if "rel" in message:
        if "target" not in message:
            raise Invalid("rel needs a target")
        parsed["rel"] = _props(message["rel"], "rel")
    return parsed


def _node(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object with label and name, not {_kind(value)}")
    _known(value, NODE_KEYS, where)
    for key in ("label", "name"):
        if key not in value:
            raise Invalid(f"{where} needs both label and name ({where}.{key} is missing)")
    return {
        "label": _label(value["label"], f"{where}.label"),
        "name": _name(value["name"], f"{where}.name"),
        "props": _props(value["props"], f"{where}.props") if "props" in value else {},
    }


def _props(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object with from and/or to, not {_kind(value)}")
    _known(value, PROPS_KEYS, where)
    props: dict[str, int] = {}
    if "from" in value:
        props["from"] = _integer(value["from"], f"{where}.from", 0)
    if "to" in value:
        props["to"] = _integer(value["to"], f"{where}.to", 1)
    return props


def _flat(message: dict[str, Any]) -> dict[str, Any]:
    _known(message, FLAT_KEYS, "the message")
    for key in ("source_label", "source_name"):
        if key not in message:
            raise Invalid(
                f"the message has no source: {key} is missing (a message needs "
                "source_label and source_name, or a source object)"
            )
    parsed: dict[str, Any] = {"source": _flat_node(message, "source")}
    has_label, has_name = "target_label" in message, "target_name" in message
    if has_label != has_name:
        given, missing = (
            ("target_label", "target_name") if has_label else ("target_name", "target_label")
        )
        raise Invalid(f"a target needs both label and name: {given} without {missing}")
    if has_label:
        parsed["target"] = _flat_node(message, "target")
    else:
        for key in ("target_from", "target_to", "rel_from", "rel_to"):
            if key in message:
                raise Invalid(f"{key} needs a target (target_label and target_name)")
    rel: dict[str, int] = {}
    if "rel_from" in message:
        rel["from"] = _integer(message["rel_from"], "rel_from", 0)
    if "rel_to" in message:
        rel["to"] = _integer(message["rel_to"], "rel_to", 1)
    if has_label:
        parsed["rel"] = rel
    return parsed


def _flat_node(message: dict[str, Any], side: str) -> dict[str, Any]:
    props: dict[str, int] = {}
    if f"{side}_from" in message:
        props["from"] = _integer(message[f"{side}_from"], f"{side}_from", 0)
    if f"{side}_to" in message:
        props["to"] = _integer(message[f"{side}_to"], f"{side}_to", 1)
    return {
        "label": _label(message[f"{side}_label"], f"{side}_label"),
        "name": _name(message[f"{side}_name"], f"{side}_name"),
        "props": props,
    }


def _known(value: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [key for key in value if key not in allowed]
    if unknown:
        listed = ", ".join(_show(key) for key in unknown[:5])
        raise Invalid(
            f"{where} has unknown field{'s' if len(unknown) > 1 else ''} {listed} "
            f"(allowed: {', '.join(allowed)})"
        )


def _label(value: Any, where: str) -> str:
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise Invalid(f"{where} must be a string matching ^[A-Z]+[a-zA-Z0-9]*$, not {_show(value)}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise Invalid(
            f"{where} must be a non-empty string of printable ASCII without space, "
            f"quotes, backslash or backtick, not {_show(value)}"
        )
    return value


def _integer(value: Any, where: str, minimum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not minimum <= number <= INT64_MAX:
        raise Invalid(f"{where} must be an integer >= {minimum}, not {_show(value)}")
    return number


def _kind(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if _plain(value) else _kind(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# -- the query ----------------------------------------------------------------------------------


def _quoted(label: str) -> str:
    # Only labels that passed the rule get here; checked again, since this is what keeps
    # message text out of the query.
    if not LABEL.fullmatch(label):
        raise Invalid(f"label {_show(label)} cannot be used")
    return f"`{label}`"


def query_of(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    source = message["source"]
    text = f"MERGE (s:{_quoted(source['label'])} {{name: $source_name}}) SET s += $source_props"
    params: dict[str, Any] = {"source_name": source["name"], "source_props": source["props"]}
    target = message.get("target")
    if target is not None:
        text += (
            f" MERGE (t:{_quoted(target['label'])} {{name: $target_name}})"
            f" SET t += $target_props"
            f" MERGE (s)-[r:{RELATIONSHIP}]->(t) SET r += $rel_props"
        )
        params.update(
            target_name=target["name"],
            target_props=target["props"],
            rel_props=message.get("rel", {}),
        )
    return text, params

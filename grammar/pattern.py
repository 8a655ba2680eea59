"""Patterns of the Neo4j Connector for Kafka: ``(:Person{!id, name})`` and friends.

The connector's grammar (its ANTLR ``PatternParser.g4``; shared/reference/neo4j_kafka.md 1.4
and 2.2), which users write and rely on::

    pattern   := cypher | simple
    cypher    := node ( rel node )?
    node      := '(' (':' NAME)* selection ')'
    rel       := '<'? '-' ( '[' ':' NAME selection? ']' )? '-' '>'?      one direction only
    simple    := NAME (':' NAME)* selection ( NAME selection? NAME (':' NAME)* selection )?
    selection := '{' ( item ( ',' item )* )? '}'
    item      := '*' | '+'? prop | '!' prop | '-' NAME
    prop      := NAME ( ':' NAME )?          "name: path" renames: the graph property is name

A NAME is a letter or ``_`` followed by letters, digits, ``_``, ``.`` and ``$`` (so a nested
field, ``address.city``, is one name), or any text in backticks (a backtick inside doubled).
Whitespace is free. In the simple form the first name of a node is its first label, and the
relationship's type comes between the two nodes.

Rules, as the connector's: ``!key`` marks a key (the node or relationship is merged on its
keys); every node needs one; a node's ``*`` takes every field of the value, and a node or
relationship that names no property to include takes them all (an implicit ``*``);
``-field`` excludes, and only next to ``*`` (explicit or implicit): inclusions and
exclusions do not mix; the two nodes of a relationship pattern may neither use ``*`` nor
exclude; a relationship needs a type and one direction. ``parse_pattern`` raises
``PatternError`` with the column of what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WILDCARD = "*"
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<name>[^\W\d][\w.$]*)
  | (?P<quoted>`(?:[^`]|``)*`)
  | (?P<punct>[(){}\[\]:,!*+<>-])
""",
    re.X,
)


class PatternError(ValueError):
    """The text is not a valid pattern; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """A property taken from the message: ``source`` as written (``address.city``,
    ``__key.id``), stored as ``name``."""

    source: str
    name: str


@dataclass(frozen=True, slots=True)
class Selection:
    keys: tuple[Mapping, ...] = ()
    include: tuple[Mapping, ...] = ()
    exclude: tuple[str, ...] = ()
    everything: bool = False  # '*', written or implied


@dataclass(frozen=True, slots=True)
class NodePattern:
    labels: tuple[str, ...]
    selection: Selection


@dataclass(frozen=True, slots=True)
class RelationshipPattern:
    type: str
    start: NodePattern
    end: NodePattern
    selection: Selection


Pattern = NodePattern | RelationshipPattern


def parse_pattern(text: str) -> Pattern:
    """The pattern ``text`` describes, checked by the rules above."""
    return _Parser(text).pattern()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        position = 0
        while position < len(text):
            found = _TOKEN.match(text, position)
            if found is None:
                raise PatternError(
                    f"Invalid pattern: unexpected {text[position]!r} at column {position + 1}"
                )
            kind = found.lastgroup or ""
            if kind != "space":
                self.tokens.append((kind, found.group(), position + 1))
            position = found.end()
        self.index = 0

    # -- tokens ------------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        index = self.index + offset
        if index >= len(self.tokens):
            return ""
        kind, text, _ = self.tokens[index]
        return "NAME" if kind in ("name", "quoted") else text

    def fail(self, expected: str) -> PatternError:
        if self.index >= len(self.tokens):
            return PatternError(f"Invalid pattern: expected {expected} at the end")
        _, text, column = self.tokens[self.index]
        return PatternError(
            f"Invalid pattern: expected {expected} at column {column}, found {text!r}"
        )

    def take(self, what: str) -> str:
        if self.peek() != what:
            raise self.fail(repr(what) if what != "NAME" else "a name")
        kind, text, _ = self.tokens[self.index]
        self.index += 1
        if kind == "quoted":
            text = text[1:-1].replace("``", "`")
            if not text:
                raise PatternError("Invalid pattern: an empty name in backticks")
        return text

    def accept(self, what: str) -> bool:
        if self.peek() == what:
            self.index += 1
            return True
        return False

    # -- grammar -------------------------------------------------------------------------------

    def pattern(self) -> Pattern:
        if not self.tokens:
            raise PatternError("Invalid pattern: it is empty")
        result = self.cypher() if self.peek() == "(" else self.simple()
        if self.index < len(self.tokens):
            raise self.fail("the end of the pattern")
        return result

    def cypher(self) -> Pattern:
        first = self.cypher_node()
        if self.peek() == "":
            return _node_alone(first)
        left = self.accept("<")
        self.take("-")
        rel_type = ""
        selection = Selection()
        if self.accept("["):
            self.take(":")
            rel_type = self.take("NAME")
            if self.peek() == "{":
                selection = self.selection()
            self.take("]")
        self.take("-")
        right = self.accept(">")
        if left == right:
            raise PatternError(
                "Invalid pattern: the direction of the relationship must be "
                "given, with exactly one of '<-' and '->'"
            )
        if not rel_type:
            raise PatternError("Invalid pattern: the relationship needs a type, as in -[:TYPE]->")
        second = self.cypher_node()
        start, end = (second, first) if left else (first, second)
        return _relationship(rel_type, start, end, selection)

    def cypher_node(self) -> NodePattern:
        self.take("(")
        labels = []
        while self.accept(":"):
            labels.append(self.take("NAME"))
        selection = self.selection()
        self.take(")")
        return NodePattern(tuple(labels), selection)

    def simple(self) -> Pattern:
        first = self.simple_node()
        if self.peek() == "":
            return _node_alone(first)
        rel_type = self.take("NAME")
        selection = self.selection() if self.peek() == "{" else Selection()
        second = self.simple_node()
        return _relationship(rel_type, first, second, selection)

    def simple_node(self) -> NodePattern:
        labels = [self.take("NAME")]
        while self.accept(":"):
            labels.append(self.take("NAME"))
        return NodePattern(tuple(labels), self.selection())

    def selection(self) -> Selection:
        self.take("{")
        keys: list[Mapping] = []
        include: list[Mapping] = []
        exclude: list[str] = []
        everything = False
        if self.peek() != "}":
            while True:
                if self.accept("*"):
                    everything = True
                elif self.accept("-"):
                    exclude.append(self.take("NAME"))
                elif self.accept("!"):
                    keys.append(self.mapping())
                else:
                    self.accept("+")
                    include.append(self.mapping())
                if not self.accept(","):
                    break
        self.take("}")
        if include and exclude and not everything:
            raise PatternError(
                "Invalid pattern: property inclusions and exclusions are "
                "mutually exclusive (exclusions go with '*')"
            )
        names = [m.name for m in (*keys, *include)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise PatternError(f"Invalid pattern: property {repeated[0]!r} is given twice")
        return Selection(tuple(keys), tuple(include), tuple(exclude), everything)

    def mapping(self) -> Mapping:
        name = self.take("NAME")
        if self.accept(":"):
            return Mapping(source=self.take("NAME"), name=name)
        return Mapping(source=name, name=_plain_name(name))


def _plain_name(source: str) -> str:
    """The property a source without a rename is stored as: the path without an explicit
    ``__value.`` / ``__key.`` / ``__header.`` prefix (``__timestamp`` is ``timestamp``)."""
    for prefix in ("__value.", "__key.", "__header."):
        if source.startswith(prefix) and len(source) > len(prefix):
            return source[len(prefix) :]
    return "timestamp" if source == "__timestamp" else source


def _node_alone(node: NodePattern) -> NodePattern:
    if not node.selection.keys:
        raise PatternError(
            "Invalid pattern: at least one key selector (!name) must be given in a node pattern"
        )
    return NodePattern(node.labels, _implicit_wildcard(node.selection))


def _relationship(
    rel_type: str, start: NodePattern, end: NodePattern, selection: Selection
) -> RelationshipPattern:
    for node in (start, end):
        if not node.selection.keys:
            raise PatternError(
                "Invalid pattern: at least one key selector (!name) must be "
                "given in each node of a relationship pattern"
            )
        if node.selection.exclude:
            raise PatternError(
                "Invalid pattern: property exclusions are not allowed on the "
                "start and end nodes of a relationship pattern"
            )
        if node.selection.everything:
            raise PatternError(
                "Invalid pattern: '*' is not allowed on the start and end nodes "
                "of a relationship pattern"
            )
    return RelationshipPattern(rel_type, start, end, _implicit_wildcard(selection))


def _implicit_wildcard(selection: Selection) -> Selection:
    if selection.include or selection.everything:
        return selection
    return Selection(selection.keys, (), selection.exclude, True)

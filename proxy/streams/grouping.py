"""Fewer round trips for a batch: the same writes as ``UNWIND $rows AS row ...`` queries.

A transform typically produces one query per message (the manual's: ``CREATE (:Node {id:
$id})`` or ``MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)``).
Sent one by one, a batch costs a round trip per message, about 200 times slower than the same
writes as UNWIND batches (DESIGN.md). ``plan_queries`` turns a batch into fewer queries with
exactly the same effect on the graph, or leaves it alone. It only touches two shapes of query
text, recognised conservatively (anything it is unsure of is left as it is):

* **C** -- CREATE only: ``CREATE pattern, ... [CREATE ...]``, no reading clause, no subquery,
  no pattern expression. It reads nothing; it creates nodes (and relationships among them).
* **M** -- ``MATCH (a ...), (b ...) [WHERE ...] CREATE (a)-[:T {...}]->(b) ...``: node patterns
  only in MATCH (no relationship), and a CREATE that makes relationships between matched
  nodes only (every node in it a bare bound variable). It reads nodes and their labels and
  properties; it writes relationships, which no M query reads.

Why the result is the same:

1. **Grouping a run.** n consecutive executions of one C or M text equal one
   ``UNWIND $__boltstream_rows AS __boltstream_row <text with $p -> __boltstream_row.p>``:
   a C row reads nothing, so it cannot see the other rows' writes; an M row reads only nodes,
   which no M row writes. Rows run in order, so entities are created in the same order.
   Every row must carry every parameter the text uses (else running it alone would fail
   with a missing parameter, while ``row.p`` would quietly be null): such rows are not grouped.
2. **Moving an M past a C.** Executing an M query and a C query in either order gives the
   same graph unless a node the C creates can be matched by one of the M's node patterns
   (or the C creates relationships too: their ids would come out in another order).
   The planner checks exactly that with the rows' values: a node pattern ``(:L {k: v, ...})``
   can match a created ``(:L2 {k: w, ...})`` only if ``v == w`` for every key of the pattern
   (labels are ignored: more conflicts, never fewer). Unknown values (expressions, floats,
   lists, maps) and patterns without properties or with WHERE count as matching anything.
   C queries keep their order among themselves and M queries among themselves, so node and
   relationship ids are assigned in the original order too.

The plan is a sequence of blocks, alternately C and M, each block then grouped by runs of
equal text (rule 1). A new query of kind K joins the last K block unless a query of the other
kind after that block conflicts with it (rule 2), in which case it opens a new block. Any
other query is a barrier: it stays where it is and nothing moves across it.

What can differ is how a *failing* batch fails: if a query would fail (a type error, a
constraint), the grouped plan can fail at another point, having applied a different part of
the batch. The batch fails either way, its offsets are not committed, and it is applied again
whole; in a backend with transactions (BoltWriter) nothing of it remains at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grammar import lexer

Query = tuple[str, dict[str, Any]]

ROWS_PARAM = "__boltstream_rows"
ROW_VAR = "__boltstream_row"

# Kinds of the lexer's tokens as the analysis sees them: strings and backquoted names are taken
# whole ("skip"), comments and spaces are dropped.
_KIND = {
    "string": "skip",
    "name": "skip",
    "param": "param",
    "number": "number",
    "word": "word",
    "other": "other",
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Words that read the graph or start another clause: not allowed inside a C query's patterns.
_READING_WORDS = {
    "MATCH",
    "CALL",
    "EXISTS",
    "COUNT",
    "COLLECT",
    "RETURN",
    "WITH",
    "UNWIND",
    "OPTIONAL",
    "MERGE",
    "SET",
    "DELETE",
    "DETACH",
    "REMOVE",
    "FOREACH",
    "LOAD",
    "UNION",
}
# Words allowed at depth 0 in an M query's MATCH/WHERE part, besides the variables it binds.
_READ_OPERATORS = {
    "MATCH",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "XOR",
    "IS",
    "NULL",
    "IN",
    "TRUE",
    "FALSE",
    "STARTS",
    "ENDS",
    "CONTAINS",
}

Token = tuple[str, str]  # (kind, text)


class _Unknown:
    """A property value the planner cannot know: it may equal anything."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class NodePattern:
    """``(var:Labels {key: value, ...})``: values are ``("param", name)``, ``("value", v)``
    or ``("unknown", None)``."""

    var: str | None
    props: tuple[tuple[str, tuple[str, Any]], ...]


@dataclass(frozen=True)
class Shape:
    """What the analysis learned about one query text.

    ``kind``: ``"C"``, ``"M"``, or None (not grouped, a barrier). ``params``: the parameter
    names the text uses. ``nodes``: for C the nodes it creates, for M the node patterns it
    matches; ``None`` when they could not be worked out (then the query is grouped with equal
    neighbours but never moved: it conflicts with everything). ``relationships``: a C query
    that also creates relationships never moves across M queries, nor they across it, since
    both take relationship ids.
    """

    kind: Literal["C", "M"] | None
    params: frozenset[str] = frozenset()
    nodes: tuple[NodePattern, ...] | None = None
    relationships: bool = False  # a C query that creates relationships too

    @functools.cached_property
    def compiled(self) -> _Compiled:
        """Per node pattern: (key, parameter name or None, the value when there is no
        parameter), the planner's fast form of ``nodes``."""
        patterns = []
        for pattern in self.nodes or ():
            props: list[tuple[str, str | None, Any]] = []
            for key, (how, what) in pattern.props:
                if how == "param":
                    props.append((key, what, None))
                else:
                    props.append((key, None, _known(what) if how == "value" else UNKNOWN))
            patterns.append(tuple(props))
        return tuple(patterns)


_Compiled = tuple[tuple[tuple[str, str | None, Any], ...], ...]


_NOT_GROUPED = Shape(None)
_cache: dict[str, Shape] = {}


def analyse(query: str) -> Shape:
    shape = _cache.get(query)
    if shape is None:
        try:
            shape = _classify(query)
        except (IndexError, ValueError):
            shape = _NOT_GROUPED
        if len(_cache) > 1000:
            _cache.clear()
        _cache[query] = shape
    return shape


def _tokens(query: str) -> list[Token] | None:
    """Significant tokens (no spaces or comments), or None if a parameter is not a plain
    name."""
    found: list[Token] = []
    for match in lexer.tokens(query):
        kind = _KIND.get(match.lastgroup or "")
        if kind is None:  # a space or a comment
            continue
        text = match.group(0)
        if kind == "param" and not _IDENT.match(text[1:]):
            return None
        found.append((kind, text))
    if found and found[-1] == ("other", ";"):
        found.pop()
    return found


def _classify(query: str) -> Shape:
    tokens = _tokens(query)
    if not tokens or any(t == ("other", ";") for t in tokens) or tokens[0][0] != "word":
        return _NOT_GROUPED
    params = frozenset(text[1:] for kind, text in tokens if kind == "param")
    if _map_parameter(tokens):
        return _NOT_GROUPED
    first = tokens[0][1].upper()
    if first == "CREATE":
        if not _create_only(tokens):
            return _NOT_GROUPED
        relationships = any(t in (("other", "["), ("other", "-")) for t in tokens)
        patterns = _node_patterns(tokens)
        if patterns is None:
            return Shape("C", params, None, relationships)
        seen: set[str] = set()
        created = []
        for pattern in patterns:
            if pattern.var is None or pattern.var not in seen:
                created.append(pattern)
            if pattern.var is not None:
                seen.add(pattern.var)
        return Shape("C", params, tuple(created), relationships)
    if first != "MATCH":
        return _NOT_GROUPED
    creates = [
        i
        for i, (kind, text) in enumerate(tokens)
        if kind == "word" and text.upper() == "CREATE" and _depth_at(tokens, i) == 0
    ]
    if len(creates) != 1:
        return _NOT_GROUPED
    read, write = tokens[: creates[0]], tokens[creates[0] + 1 :]
    bound = _bound_variables(read)
    if not _read_only_nodes(read, bound) or not _create_only_relationships(write, bound):
        return _NOT_GROUPED
    if any(kind == "word" and text.upper() == "WHERE" for kind, text in read):
        return Shape("M", params, None)  # WHERE: not analysed, conflicts with every C
    patterns = _node_patterns(read)
    return Shape("M", params, None if patterns is None else tuple(patterns))


def _map_parameter(tokens: Sequence[Token]) -> bool:
    """True if a parameter is a pattern's whole property map (``(:L $props)``, ``[:T $p]``):
    ``__boltstream_row.props`` is not allowed there, so such a text is never grouped."""
    for i in range(1, len(tokens) - 1):
        if (
            tokens[i][0] == "param"
            and tokens[i - 1][0] in ("word", "skip")
            and tokens[i + 1] in (("other", ")"), ("other", "]"))
        ):
            return True
    return False


def _depth_at(tokens: Sequence[Token], index: int) -> int:
    depth = 0
    for kind, text in tokens[:index]:
        if kind == "other":
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
    return depth


def _create_only(tokens: Sequence[Token]) -> bool:
    """Only CREATE clauses, reading nothing: at depth 0 no word but CREATE (labels and keys
    aside); inside the patterns no reading word and no parenthesis except a function call's
    (which rules out pattern expressions and comprehensions)."""
    depth = 0
    for i, (kind, text) in enumerate(tokens):
        previous = tokens[i - 1] if i else ("", "")
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "other":
            if text == "(" and depth > 0 and previous[0] != "word":
                return False
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
        elif kind == "word" and previous[1] not in (".", ":") and following != ":":
            word = text.upper()
            if depth == 0 and word != "CREATE":
                return False
            if depth > 0 and word in _READING_WORDS:
                return False
    return True


def _read_only_nodes(read: Sequence[Token], bound: set[str]) -> bool:
    """MATCH/WHERE with node patterns only: no relationship or arrow (``-``, ``<``, ``>``,
    ``[``), no ``{`` outside a node pattern (map or subquery), and at depth 0 only
    operators, property keys, labels, function names and the variables bound here."""
    depth = 0
    for i, (kind, text) in enumerate(read):
        if kind == "other":
            if text in ("-", "<", ">", "[", "]"):
                return False
            if text == "{" and depth == 0:
                return False
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
        elif kind == "word" and depth == 0:
            previous = read[i - 1][1] if i else ""
            following = read[i + 1][1] if i + 1 < len(read) else ""
            if previous in (".", ":") or following == "(":
                continue
            if text.upper() not in _READ_OPERATORS and text not in bound:
                return False
    return True


def _bound_variables(read: Sequence[Token]) -> set[str]:
    """Variables named at the start of node patterns: ``(a`` / ``(a:`` / ``(a {``."""
    bound: set[str] = set()
    for i, (kind, text) in enumerate(read):
        if kind == "other" and text == "(" and i + 1 < len(read):
            nkind, ntext = read[i + 1]
            if nkind == "word" or (nkind == "skip" and ntext.startswith("`")):
                bound.add(ntext)
    return bound


def _create_only_relationships(write: Sequence[Token], bound: set[str]) -> bool:
    """Every node in the CREATE part is ``(var)`` with ``var`` bound by MATCH, and there is
    at least one relationship."""
    i = 0
    saw_relationship = False
    while i < len(write):
        kind, text = write[i]
        if kind == "other" and text == "(":
            if (
                i + 2 >= len(write)
                or write[i + 2] != ("other", ")")
                or write[i + 1][1] not in bound
            ):
                return False
            i += 3
            continue
        if kind == "other" and text == "[":
            saw_relationship = True
        if kind == "word" and text.upper() in _READING_WORDS:
            return False
        i += 1
    return saw_relationship


def _node_patterns(tokens: Sequence[Token]) -> list[NodePattern] | None:
    """The node patterns (a ``(`` at depth 0, except a function call's), parsed; None if one
    of them is not ``(var? (:Label)* {key: value, ...}?)``."""
    found: list[NodePattern] = []
    depth = 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        previous = tokens[i - 1] if i else ("", "")
        call = previous[0] == "word" and previous[1].upper() not in ("CREATE", "MATCH")
        if kind == "other" and text == "(" and depth == 0 and not call:
            parsed = _node_pattern(tokens, i + 1)
            if parsed is None:
                return None
            pattern, i = parsed
            found.append(pattern)
            continue
        if kind == "other":
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
        i += 1
    return found


def _node_pattern(tokens: Sequence[Token], i: int) -> tuple[NodePattern, int] | None:
    var = None
    if tokens[i][0] == "word" or (tokens[i][0] == "skip" and tokens[i][1].startswith("`")):
        var = tokens[i][1]
        i += 1
    while tokens[i] == ("other", ":"):
        if tokens[i + 1][0] != "word" and not tokens[i + 1][1].startswith("`"):
            return None
        i += 2
    props: list[tuple[str, tuple[str, Any]]] = []
    if tokens[i] == ("other", "{"):
        i += 1
        while tokens[i] != ("other", "}"):
            key_kind, key = tokens[i]
            if key_kind == "skip" and key.startswith("`"):
                key = key[1:-1]
            elif key_kind != "word":
                return None
            if tokens[i + 1] != ("other", ":"):
                return None
            i += 2
            value, i = _value(tokens, i)
            props.append((key, value))
            if tokens[i] == ("other", ","):
                i += 1
            elif tokens[i] != ("other", "}"):
                return None
        i += 1
    if tokens[i] != ("other", ")"):
        return None
    return NodePattern(var, tuple(props)), i + 1


def _value(tokens: Sequence[Token], i: int) -> tuple[tuple[str, Any], int]:
    """A property value up to the next ``,`` or ``}`` of its map."""
    start = i
    depth = 0
    while True:
        kind, text = tokens[i]
        if kind == "other" and depth == 0 and text in ",}":
            break
        if kind == "other":
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
        i += 1
    value = tokens[start:i]
    if len(value) == 1:
        kind, text = value[0]
        if kind == "param":
            return ("param", text[1:]), i
        if kind == "number" and text.isdigit():
            return ("value", int(text)), i
        if kind == "skip" and text[0] in "'\"" and "\\" not in text:
            return ("value", text[1:-1]), i
        if kind == "word" and text.upper() in ("TRUE", "FALSE"):
            return ("value", text.upper() == "TRUE"), i
    return ("unknown", None), i


# -- the planner ------------------------------------------------------------------------------
#
# This runs for every query of every batch written, so it is written for speed: a query's
# patterns are compiled once per text (``_compiled``), a block keeps its bookkeeping only while
# another query may still be checked against it (the last block), and brings it up to date
# only when one is (``_Block.catch_up``).


def _known(value: Any) -> Any:
    """A value for equality checks: ints, strings and bools as they are (Python's ``==``
    equates at least what Cypher's ``=`` does for them); anything else UNKNOWN."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    return UNKNOWN


def _compiled(shape: Shape) -> _Compiled:
    """``shape.nodes`` as tuples ready for ``_resolved`` (computed once per shape, and shapes
    are cached per text)."""
    return shape.compiled


def _resolved(
    props: tuple[tuple[str, str | None, Any], ...], params: dict[str, Any]
) -> list[tuple[str, Any]]:
    """A compiled pattern's (key, value) pairs with this query's parameters."""
    out = []
    for key, name, value in props:
        if name is not None:
            value = params.get(name, UNKNOWN)
            kind = type(value)
            if not (kind is str or kind is int or kind is bool):
                value = UNKNOWN
        out.append((key, value))
    return out


def _resolve(pattern: NodePattern, params: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, (how, what) in pattern.props:
        if how == "param":
            values[key] = _known(params.get(what, UNKNOWN))
        elif how == "value":
            values[key] = _known(what)
        else:
            values[key] = UNKNOWN
    return values


@dataclass
class _Block:
    kind: Literal["C", "M", "X"]
    queries: list[Query] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    # Bookkeeping of the first ``seen`` queries (brought up to date by ``catch_up``):
    # C blocks: (key, value) of the created nodes' properties; ``wild`` if one is unknown.
    # M blocks: (key, value) -> the required properties of patterns probed by that pair;
    #           ``wild`` if a pattern matches anything as far as the planner knows.
    created: set[tuple[str, Any]] = field(default_factory=set)
    patterns: dict[tuple[str, Any], list[list[tuple[str, Any]]]] = field(default_factory=dict)
    wild: bool = False
    seen: int = 0

    def add(self, query: Query, shape: Shape) -> None:
        self.queries.append(query)
        self.shapes.append(shape)

    def catch_up(self) -> None:
        if self.wild:
            self.seen = len(self.queries)
            return
        queries, shapes = self.queries, self.shapes
        creates = self.kind == "C"
        created, patterns = self.created, self.patterns
        for index in range(self.seen, len(queries)):
            shape = shapes[index]
            if shape.nodes is None or (creates and shape.relationships):
                self.wild = True
                break
            params = queries[index][1]
            for props in _compiled(shape):
                wanted = []
                for key, name, value in props:
                    if name is not None:
                        value = params.get(name, UNKNOWN)
                        kind = type(value)
                        if not (kind is str or kind is int or kind is bool):
                            value = UNKNOWN
                    if value is UNKNOWN:
                        self.wild = True
                        break
                    if creates:
                        created.add((key, value))
                    else:
                        wanted.append((key, value))
                if self.wild:
                    break
                if not creates:
                    if not wanted:
                        self.wild = True
                        break
                    patterns.setdefault(wanted[0], []).append(wanted)
            if self.wild:
                break
        self.seen = len(queries)

    def conflicts(self, query: Query, shape: Shape) -> bool:
        """Whether ``query`` (of the other kind) may not move across this block."""
        self.catch_up()
        if self.wild or shape.nodes is None or shape.relationships:
            return True
        params = query[1]
        if self.kind == "C":  # an M query: could one of its patterns match a created node?
            created = self.created
            for props in _compiled(shape):
                if not props:
                    return True
                matches = True
                for key, name, value in props:
                    if name is not None:
                        value = params.get(name, UNKNOWN)
                        kind = type(value)
                        if not (kind is str or kind is int or kind is bool):
                            return True
                    elif value is UNKNOWN:
                        return True
                    if matches and (key, value) not in created:
                        matches = False
                if matches:
                    return True
            return False
        # A C query: could one of this block's patterns match a node it creates?
        for props in _compiled(shape):
            created_props = dict(_resolved(props, params))
            for value in created_props.values():
                if value is UNKNOWN:
                    return True
            for item in created_props.items():
                for wanted in self.patterns.get(item, ()):
                    if all(created_props.get(k, UNKNOWN) == v for k, v in wanted):
                        return True
        return False


def plan_queries(queries: Sequence[Query]) -> list[Query]:
    """Queries with the same effect as ``queries`` run in order (see the module docstring)."""
    if len(queries) < 2:
        return list(queries)
    fast = _all_creates_then_all_matches(queries)
    if fast is not None:
        return fast
    blocks: list[_Block] = []
    segment = 0  # index of the first block after the last barrier
    cache = _cache
    for query in queries:
        text = query[0]
        shape = cache.get(text) or analyse(text)
        kind = shape.kind
        if kind is not None and not query[1].keys() >= shape.params:
            kind = None
        if kind is None:
            if blocks and blocks[-1].kind == "X" and blocks[-1].queries[-1][0] == text:
                blocks[-1].queries.append(query)
            else:
                blocks.append(_Block("X", [query]))
            segment = len(blocks)
            continue
        last = blocks[-1] if len(blocks) > segment else None
        if last is None or last.kind == kind:
            if last is None:
                last = _Block(kind)
                blocks.append(last)
            last.add(query, shape)
            continue
        if last.conflicts(query, shape):
            block = _Block(kind)
            blocks.append(block)
            block.add(query, shape)
            continue
        if len(blocks) - 1 > segment:  # the block before ``last`` is of this kind
            blocks[-2].add(query, shape)
        else:
            block = _Block(kind)
            blocks.insert(len(blocks) - 1, block)
            block.add(query, shape)
    planned: list[Query] = []
    for block in blocks:
        planned.extend(group_runs(block.queries) if block.kind != "X" else block.queries)
    return planned


def _all_creates_then_all_matches(queries: Sequence[Query]) -> list[Query] | None:
    """The plan of the common case in one pass, or None when the general planner must run:
    every query of kind C or M with all its values known, no C creating relationships, and no
    M query that a C query after it could feed (a node it creates matches one of the M's
    patterns). Then every C query can go first and every M query after them (rule 2 of the
    module docstring, applied to the whole batch at once), each group in its order."""
    creates: list[Query] = []
    matches: list[Query] = []
    kinds: list[bool] = []  # per query: a C query
    cache = _cache
    for query in queries:
        text, params = query
        shape = cache.get(text) or analyse(text)
        kind = shape.kind
        if kind is None or shape.nodes is None or not params.keys() >= shape.params:
            return None
        if kind == "C":
            if shape.relationships:
                return None
            creates.append(query)
            kinds.append(True)
        else:
            matches.append(query)
            kinds.append(False)
    if not creates or not matches:
        return group_runs(creates or matches)
    # From the last query back: the nodes the C queries after each M query create.
    created: dict[str, set[Any]] = {}
    for index in range(len(queries) - 1, -1, -1):
        text, params = queries[index]
        shape = cache[text]
        if kinds[index]:
            for props in _compiled(shape):
                for key, name, value in props:
                    if name is not None:
                        value = params[name]
                        value_type = type(value)
                        if not (value_type is str or value_type is int or value_type is bool):
                            return None
                    elif value is UNKNOWN:
                        return None
                    values = created.get(key)
                    if values is None:
                        created[key] = {value}
                    else:
                        values.add(value)
            continue
        if not created:
            continue
        for props in _compiled(shape):
            if not props:
                return None
            feeds = True
            for key, name, value in props:
                if name is not None:
                    value = params[name]
                    value_type = type(value)
                    if not (value_type is str or value_type is int or value_type is bool):
                        return None
                elif value is UNKNOWN:
                    return None
                values = created.get(key)
                if values is None or value not in values:
                    feeds = False
            if feeds:
                return None
    return group_runs(creates) + group_runs(matches)


def group_runs(queries: Sequence[Query]) -> list[Query]:
    """Each run of at least two consecutive queries with the same C or M text, every one
    carrying all the text's parameters, as one UNWIND query; the rest unchanged."""
    out: list[Query] = []
    i = 0
    n = len(queries)
    while i < n:
        text = queries[i][0]
        j = i + 1
        while j < n and queries[j][0] == text:
            j += 1
        if j - i >= 2:
            shape = analyse(text)
            names = shape.params
            if shape.kind is not None and all(p.keys() >= names for _t, p in queries[i:j]):
                width = len(names)
                # A query's parameters are its row as they are when it has no others.
                rows = [
                    p if len(p) == width else {name: p[name] for name in names}
                    for _t, p in queries[i:j]
                ]
                out.append((_rewrite(text), {ROWS_PARAM: rows}))
                i = j
                continue
        out.extend(queries[i:j])
        i = j
    return out


_rewritten: dict[str, str] = {}


def _rewrite(query: str) -> str:
    """``query`` with each ``$name`` replaced by ``__boltstream_row.name``, under UNWIND."""
    found = _rewritten.get(query)
    if found is None:
        found = _rewritten[query] = _rewrite_text(query)
        if len(_rewritten) > 1000:
            _rewritten.clear()
    return found


def _rewrite_text(query: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.lastgroup == "param":
            return f"{ROW_VAR}.{match.group(0)[1:]}"
        return match.group(0)

    body = lexer.TOKEN.sub(replace, query).rstrip()
    if body.endswith(";"):
        body = body[:-1]
    return f"UNWIND ${ROWS_PARAM} AS {ROW_VAR} {body}"

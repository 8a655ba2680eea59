"""Several queries as one FalkorDB query: the atomic unit of a write on FalkorDB.

FalkorDB has no multi-statement transactions, but one ``GRAPH.QUERY`` is atomic: a run-time
error undoes everything it did, and it is one entry of the append-only file (Redis drops a
truncated last entry when it loads the file, so a crash of the server mid-write leaves all of
it or none). ``compose`` chains the queries of a write into one query::

    <query 1>
    WITH count(*) AS __boltstream_c0
    <query 2>
    WITH count(*) AS __boltstream_c1
    ...
    [fence: check the stream's positions, set them (positions.fence_tail)]

Each ``WITH count(*)`` ends a query: it waits until the query before it is done (an
aggregation consumes every row first), leaves exactly one row whatever that query produced,
and nothing of its variables, so the next query runs as it would alone, seeing what the ones
before it wrote. Each query's parameters are renamed apart (``$x`` of the third query becomes
``$__boltstream_p2_0``). Checked against one-by-one execution on FalkorDB 4.16
(tests/streams/test_compose.py). ``CALL { }`` subqueries were measured first and rejected: a
subquery does not see nodes of a label that a subquery before it created when the graph did
not know that label yet (FalkorDB resolves labels when it plans the query).

FalkorDB plans the composed query whole, before any part runs: a relationship type that the
graph does not know yet is matched by no part, even after an earlier part created it
(measured on 4.16: ``MERGE (a)-[:T]->(b) WITH count(*) AS k MATCH (a)-[r:T]->(b) SET ...``
sets nothing on a graph without ``T``). Labels do not have the problem. So the writer makes
the types a composed query names known to the graph first (``relationship_types``; see
``writers.FalkorDBWriter``).

The fence comes last: if the positions are not the expected ones, it divides by zero, which
undoes the whole query; the writer then reads the positions to tell a lost fence from a
user's query dividing by zero.

What cannot be composed (``NotComposable``): a query that returns rows (``RETURN``, ``UNION``)
or calls a procedure without ``YIELD`` (neither can go on after it), index and constraint
commands (FalkorDB runs them only on their own), several statements in one text, and queries
with a prefix (``EXPLAIN``, ``PROFILE``, ``CYPHER``, ``USE``). Anything else FalkorDB refuses
in the chain fails the composed query with FalkorDB's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grammar import lexer
from proxy.streams.positions import PREFIX, Fence, fence_parameters, fence_tail

Query = tuple[str, dict[str, Any]]

_PREFIXES = {"EXPLAIN", "PROFILE", "CYPHER", "USE"}
_SCHEMA_OBJECTS = {"INDEX", "CONSTRAINT"}


class NotComposable(ValueError):
    """A query that cannot run inside one composed query; the message says why."""


@dataclass(frozen=True)
class _Parsed:
    text: str  # with parameters renamed, a trailing ';' removed
    params: dict[str, Any]


def compose(queries: Sequence[Query], fence: Fence | None = None) -> Query:
    """``queries`` (already planned: ``grouping.plan_queries``) and the fence as one query.
    Raises ``NotComposable``. Without a fence and without queries there is nothing to run:
    ``ValueError``."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    for number, (text, values) in enumerate(queries):
        parsed = _parse(text, values, number, len(queries))
        params.update(parsed.params)
        if parts:
            parts.append(f"WITH count(*) AS {PREFIX}_c{number - 1}\n")
        parts.append(parsed.text + "\n")
    if fence is not None:
        if parts:
            parts.append(f"WITH count(*) AS {PREFIX}_c{len(queries) - 1}\n")
        parts.append(fence_tail(fence))
        params.update(fence_parameters(fence))
    if not parts:
        raise ValueError("nothing to compose")
    return "".join(parts), params


def composable(text: str) -> bool:
    """Whether ``text`` can be one of the queries of a composed query."""
    try:
        _parse(text, {}, 0, 1)
    except NotComposable:
        return False
    return True


def _parse(text: str, values: dict[str, Any], number: int, total: int) -> _Parsed:
    where = f"query {number + 1} of {total}"
    tokens = [(m.lastgroup or "", m.group(0), m.start(), m.end()) for m in lexer.tokens(text)]
    significant = [t for t in tokens if t[0] not in ("space", "comment")]
    while significant and significant[-1][1] == ";":
        significant.pop()
    if not significant:
        raise NotComposable(f"{where} is empty")
    first = significant[0][1].upper()
    if first in _PREFIXES:
        raise NotComposable(f"{where} starts with {first}, which cannot be chained")
    depth = 0
    procedure_call = False
    for index, (kind, token, _start, _end) in enumerate(significant):
        if kind == "other":
            if token == ";":
                raise NotComposable(f"{where} holds several statements")
            if token in "([{":
                depth += 1
            elif token in ")]}":
                depth -= 1
            continue
        if kind != "word" or depth != 0:
            continue
        before = significant[index - 1][1] if index else ""
        after = significant[index + 1] if index + 1 < len(significant) else ("", "", 0, 0)
        if before in (".", ":") or after[1] == ":":
            continue  # a property key or a label
        word = token.upper()
        if word in _SCHEMA_OBJECTS and before.upper() in ("CREATE", "DROP"):
            raise NotComposable(
                f"{where} is an index or constraint command, which FalkorDB runs only on its own"
            )
        if word in ("RETURN", "UNION"):
            raise NotComposable(
                f"{where} returns rows ({word}), so nothing can follow it in the same query"
            )
        if word == "CALL" and after[0] == "word":
            procedure_call = True
        if word == "YIELD":
            procedure_call = False
    if procedure_call:
        raise NotComposable(
            f"{where} calls a procedure without YIELD, so nothing can follow it in the same query"
        )
    end = significant[-1][3]
    renamed: dict[str, str] = {}
    out: list[str] = []
    position = 0
    for kind, token, start, stop in tokens:
        if stop > end:
            break
        if kind != "param":
            continue
        name = token[2:-1] if token.startswith("$`") else token[1:]  # lexer.param_name
        new = renamed.get(name)
        if new is None:
            new = renamed[name] = f"{PREFIX}_p{number}_{len(renamed)}"
        out.append(text[position:start])
        out.append("$" + new)
        position = stop
    out.append(text[position:end])
    params = {renamed[name]: value for name, value in values.items() if name in renamed}
    return _Parsed("".join(out), params)


def relationship_types(text: str) -> dict[str, str]:
    """The relationship types ``text`` names in its patterns (``-[r:T]->``, ``-[:A|B]-``), as
    {name: the token as written} (a backquoted name keeps its backquotes)."""
    significant = [
        (m.lastgroup or "", m.group(0))
        for m in lexer.tokens(text)
        if m.lastgroup not in ("space", "comment")
    ]
    found: dict[str, str] = {}
    for index in range(1, len(significant) - 2):
        if significant[index][1] != "[" or significant[index - 1][1] != "-":
            continue
        at = index + 1
        if significant[at][0] in ("word", "name") and significant[at + 1][1] == ":":
            at += 1  # the relationship's variable
        while at + 1 < len(significant) and significant[at][1] in (":", "|"):
            at += 1
            if significant[at][1] == ":":  # [:A|:B]
                at += 1
                if at >= len(significant):
                    break
            kind, token = significant[at]
            if kind == "word":
                found.setdefault(token, token)
            elif kind == "name":
                found.setdefault(token[1:-1], token)
            else:
                break
            at += 1
    return found

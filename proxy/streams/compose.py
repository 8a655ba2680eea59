"""Several queries as one FalkorDB query: the atomic unit of a write on FalkorDB.

FalkorDB has no multi-statement transactions, but one ``GRAPH.QUERY`` is atomic: a run-time
error undoes everything it did, and it is one entry of the append-only file (Redis drops a
truncated last entry when it loads the file, so a crash of the server mid-write leaves all of
it or none). ``compose`` turns the queries of a write into one query, each as a subquery::

    [fence: check and set the stream's positions (positions.py)]
    CALL { <query 1> }
    CALL { CALL { <query 2, which ends in RETURN> } RETURN count(*) AS __boltstream_c1 }
    ...
    RETURN ...

Subqueries run in order, each seeing what the ones before it wrote, exactly as the queries one
after the other would (measured on FalkorDB 4.16, and checked against one-by-one execution in
tests/streams/test_compose.py). A query that ends in ``RETURN`` is wrapped twice, so that it
yields exactly one row whatever it returns (zero rows would skip everything after it). Each
query's parameters are renamed apart (``$x`` of the third query becomes
``$__boltstream_p2_0``).

What cannot be composed (``NotComposable``): index and constraint commands (FalkorDB refuses
them inside ``CALL { }``), several statements in one text, and queries with a prefix
(``EXPLAIN``, ``PROFILE``, ``CYPHER``, ``USE``). Anything else FalkorDB refuses inside a
subquery fails the composed query with FalkorDB's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proxy.streams.grouping import _TOKENS  # the Cypher tokens the planner reads too
from proxy.streams.positions import FENCE_HEAD, PREFIX, WRITTEN, Fence, fence_parameters

Query = tuple[str, dict[str, Any]]

_PREFIXES = {"EXPLAIN", "PROFILE", "CYPHER", "USE"}
_SCHEMA_OBJECTS = {"INDEX", "CONSTRAINT"}


class NotComposable(ValueError):
    """A query that cannot run inside one composed query; the message says why."""


@dataclass(frozen=True)
class _Parsed:
    text: str  # with parameters renamed, trailing ';' removed
    params: dict[str, Any]
    returning: bool


def compose(queries: Sequence[Query], fence: Fence | None = None) -> Query:
    """``queries`` (already planned: ``grouping.plan_queries``) and the fence as one query.
    With a fence the result has one row when the fence held, none when it did not; without,
    one row. Raises ``NotComposable``."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if fence is not None:
        parts.append(FENCE_HEAD)
        params.update(fence_parameters(fence))
    for number, (text, values) in enumerate(queries):
        parsed = _parse(text, values, number, len(queries))
        params.update(parsed.params)
        if parsed.returning:
            parts.append(f"CALL {{ CALL {{ {parsed.text}\n}} RETURN count(*) AS "
                         f"{PREFIX}_c{number} }}\n")
        else:
            parts.append(f"CALL {{ {parsed.text}\n}}\n")
    parts.append(f"RETURN {WRITTEN}" if fence is not None else f"RETURN 1 AS {PREFIX}_done")
    return "".join(parts), params


def composable(text: str) -> bool:
    """Whether ``text`` can be a subquery of a composed query."""
    try:
        _parse(text, {}, 0, 1)
    except NotComposable:
        return False
    return True


def _parse(text: str, values: dict[str, Any], number: int, total: int) -> _Parsed:
    where = f"query {number + 1} of {total}"
    tokens = [(m.lastgroup or "", m.group(0), m.start(), m.end())
              for m in _TOKENS.finditer(text)]
    significant = [t for t in tokens if t[0] != "space"
                   and not (t[0] == "skip" and t[1].startswith(("//", "/*")))]
    while significant and significant[-1][1] == ";":
        significant.pop()
    if not significant:
        raise NotComposable(f"{where} is empty")
    first = significant[0][1].upper()
    if first in _PREFIXES:
        raise NotComposable(f"{where} starts with {first}, which cannot run inside a subquery")
    depth = 0
    returning = False
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
        after = significant[index + 1][1] if index + 1 < len(significant) else ""
        if before in (".", ":") or after == ":":
            continue  # a property key or a label
        word = token.upper()
        if word in _SCHEMA_OBJECTS and before.upper() in ("CREATE", "DROP"):
            raise NotComposable(f"{where} is an index or constraint command, which FalkorDB "
                                "runs only on its own")
        if word == "RETURN":
            returning = True
    end = significant[-1][3]
    renamed: dict[str, str] = {}
    out: list[str] = []
    position = 0
    for kind, token, start, stop in tokens:
        if stop > end:
            break
        if kind != "param":
            continue
        name = token[2:-1] if token.startswith("$`") else token[1:]
        new = renamed.get(name)
        if new is None:
            new = renamed[name] = f"{PREFIX}_p{number}_{len(renamed)}"
        out.append(text[position:start])
        out.append("$" + new)
        position = stop
    out.append(text[position:end])
    params = {renamed[name]: value for name, value in values.items() if name in renamed}
    return _Parsed("".join(out), params, returning)

"""The one Cypher lexer: whitespace and comments, the first keyword, and tokens.

Everything in boltstream that looks at Cypher text goes through here: the router (which handler
answers a query), the stream grammar's prefilter, the FalkorDB backend (parameters written into
the query text, ``EXPLAIN``), and the stream writers' grouping planner. So "what is a comment",
"where does a string end" and "what is a parameter" have one answer.

Whitespace and comments are skipped exactly as the stream grammar ignores them (stream.lark:
``WS``, ``COMMENT``), inside atomic groups ``(?>...)`` so that no input can make a pattern
backtrack: the non-atomic ``(?:/\\*.*?\\*/\\s*)*`` takes exponential time on a run of ``/**/``
followed by a non-match, because one comment can also be read as spanning several.

Tokens (``TOKEN``, one alternation; ``match.lastgroup`` is the kind):

==========  =====================================================================
``string``  ``'...'`` or ``"..."`` with backslash escapes
``name``    a backquoted name, ```...```
``comment`` ``// ...`` to the end of the line, or ``/* ... */``
``param``   ``$name`` or ``$`quoted name``` (groups ``param_name`` / ``param_quoted``)
``number``  an unsigned integer or decimal, with an optional exponent
``word``    an identifier or keyword
``space``   whitespace
``other``   any other single character (punctuation, an unterminated quote)
==========  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Whitespace and comments, exactly as the grammar ignores them.
SKIP = r"\s+|//[^\n]*|/\*.*?\*/"
# Any amount of them (possibly none), and at least one: both atomic.
LEAD = rf"(?>(?:{SKIP})*)"
GAP = rf"(?>(?:{SKIP})+)"

_FIRST_WORD = re.compile(rf"{LEAD}([A-Za-z]+)", re.DOTALL)

TOKEN = re.compile(
    r"""
      (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<name>`[^`]*`)
    | (?P<comment>//[^\n]*|/\*.*?\*/)
    | (?P<param>\$(?:`(?P<param_quoted>[^`]*)`|(?P<param_name>\w+)))
    | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
    | (?P<word>[A-Za-z_]\w*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.S | re.X,
)


def first_keyword(query: str) -> str | None:
    """The first word after leading whitespace and comments, upper-cased; None if the query
    starts with anything else. Costs one anchored match: the router calls it on every RUN."""
    found = _FIRST_WORD.match(query)
    return found.group(1).upper() if found is not None else None


def after_keyword(query: str, keyword: str) -> str | None:
    """The rest of ``query`` after its first word, if that word is ``keyword`` (any case);
    else None. ``after_keyword("/* x */ EXPLAIN MATCH (n)", "EXPLAIN") == " MATCH (n)"``."""
    found = _FIRST_WORD.match(query)
    if found is None or found.group(1).upper() != keyword:
        return None
    return query[found.end() :]


def tokens(query: str) -> Iterator[re.Match[str]]:
    """Every token of ``query`` in order (spaces and comments included); see the table above."""
    return TOKEN.finditer(query)


def param_name(match: re.Match[str]) -> str | None:
    """The parameter name of a ``param`` token (without ``$`` and backquotes), else None."""
    name = match.group("param_name")
    return name if name is not None else match.group("param_quoted")

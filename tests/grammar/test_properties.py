"""Hypothesis: random clauses round-trip through text; random text only ever raises
StreamSyntaxError, at a position inside the text; whatever parses passes the prefilter."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from grammar import (
    CreateStream,
    DropStream,
    ShowStreams,
    StartAllStreams,
    StartStream,
    StopAllStreams,
    StopStream,
    StreamClause,
    StreamSyntaxError,
    TestStream,
    looks_like_stream_clause,
    parse_stream_clause,
)

IDENTIFIER = re.compile(r"[^\W\d]\w*")
GAPS = [
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u00a0",
    "\u3000",
    "/**/",
    "/* c */",
    "/* a\nb */",
    "/* // */",
    "// c\n",
    "//\n",
]

identifiers = st.from_regex(IDENTIFIER, fullmatch=True).filter(lambda s: len(s) <= 30)
names = st.one_of(identifiers, st.text(min_size=1, max_size=20))
texts = st.text(max_size=30)
# A comma in a topic string separates topics (WITH TOPIC 'a,b'): one topic has none.
topics = st.text(max_size=30).filter(lambda t: "," not in t)
counts = st.one_of(st.integers(1, 1000), st.integers(1, 2**63 - 1))
optional_counts = st.none() | counts

on_errors = st.one_of(
    st.just((None, None)),
    st.just(("stop", None)),
    st.just(("skip", None)),
    st.tuples(st.just("dead letter"), texts),
)
deliveries = st.sampled_from([None, "at least once", "exactly once"])
create_streams = st.builds(
    lambda name, uri, topic, transform, interval, size, on_error, delivery: CreateStream(
        name, uri, topic, transform, interval, size, on_error[0], on_error[1], delivery
    ),
    names,
    texts,
    topics,
    texts,
    optional_counts,
    optional_counts,
    on_errors,
    deliveries,
)
clauses: st.SearchStrategy[StreamClause] = st.one_of(
    create_streams,
    st.builds(DropStream, names),
    st.just(ShowStreams()),
    st.builds(StartStream, names, optional_counts),
    st.builds(StopStream, names),
    st.just(StartAllStreams()),
    st.just(StopAllStreams()),
    st.builds(TestStream, names, optional_counts),
)


def gap(draw: DrawFn) -> str:
    return draw(st.lists(st.sampled_from(GAPS), min_size=1, max_size=3).map("".join))


def keyword(draw: DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.lower() if flip else c.upper() for c, flip in zip(word, flips, strict=True))


def name_text(draw: DrawFn, name: str) -> str:
    if IDENTIFIER.fullmatch(name) and draw(st.booleans()):
        return name
    return "`" + name.replace("`", "``") + "`"


ESCAPES = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}


def string_text(draw: DrawFn, value: str) -> str:
    quote = draw(st.sampled_from("'\""))
    out = [quote]
    for char in value:
        if char in (quote, "\\"):
            out.append("\\" + char)
            continue
        how = draw(st.sampled_from(["raw", "raw", "named", "u", "U"]))
        if how == "named" and char in ESCAPES:
            out.append("\\" + keyword(draw, ESCAPES[char]))
        elif how == "named" and char in "'\"":
            out.append("\\" + char)
        elif how == "u" and ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04{draw(st.sampled_from('xX'))}}")
        elif how == "U":
            out.append(f"\\U{ord(char):08x}")
        else:
            out.append(char)
    out.append(quote)
    return "".join(out)


@st.composite
def rendered(draw: DrawFn, clause: StreamClause) -> str:
    """``clause`` as query text, with random case, whitespace, comments and spellings."""
    parts: list[str] = []

    def words(*ws: str) -> None:
        parts.extend(keyword(draw, w) for w in ws)

    def limit(count: int | None) -> None:
        if count is not None:
            words("LIMIT")
            parts.append(str(count))
            words("BATCHES")

    match clause:
        case CreateStream():
            words("CREATE", "STREAM")
            parts.append(name_text(draw, clause.name))
            words("AS", "LOAD", "DATA", "KAFKA")
            parts.append(string_text(draw, clause.uri))
            words("WITH", "TOPIC")
            parts.append(string_text(draw, clause.topic))
            words("WITH", "TRANSFORM")
            parts.append(string_text(draw, clause.transform))
            options: list[tuple[str, object]] = [
                (o, v)
                for o, v in (
                    ("INTERVAL", clause.batch_interval_ms),
                    ("SIZE", clause.batch_size),
                    ("ON ERROR", clause.on_error),
                    ("DELIVERY", clause.delivery),
                )
                if v is not None
            ]
            for option, value in draw(st.permutations(options)):
                if option == "DELIVERY":
                    words("DELIVERY", *str(value).upper().split())
                    continue
                if option == "ON ERROR":
                    words("ON", "ERROR")
                    if value == "dead letter":
                        words("DEAD", "LETTER")
                        parts.append(string_text(draw, clause.dead_letter_topic or ""))
                    else:
                        words(str(value).upper())
                    continue
                if draw(st.booleans()):
                    words("BATCH_" + option)
                else:
                    words("BATCH", option)
                parts.append(str(value))
        case DropStream() | StopStream():
            words("DROP" if isinstance(clause, DropStream) else "STOP", "STREAM")
            parts.append(name_text(draw, clause.name))
        case ShowStreams():
            words("SHOW", "STREAMS")
        case StartStream() | TestStream():
            words("START" if isinstance(clause, StartStream) else "TEST", "STREAM")
            parts.append(name_text(draw, clause.name))
            limit(clause.limit_batches)
        case StartAllStreams() | StopAllStreams():
            words("START" if isinstance(clause, StartAllStreams) else "STOP", "ALL", "STREAMS")
    if draw(st.booleans()):
        parts.append(";")
    lead = draw(st.sampled_from(["", gap(draw)]))
    tail = draw(st.sampled_from(["", gap(draw), " // the end"]))
    return lead + "".join(part + gap(draw) for part in parts[:-1]) + parts[-1] + tail


def clause_and_text() -> st.SearchStrategy[tuple[StreamClause, str]]:
    return clauses.flatmap(lambda c: st.tuples(st.just(c), rendered(c)))


@settings(max_examples=200, deadline=None)  # a busy machine stalls any one example
@given(clause_and_text())
def test_random_clauses_round_trip(case: tuple[StreamClause, str]) -> None:
    clause, text = case
    assert parse_stream_clause(text) == clause
    assert looks_like_stream_clause(text)


def check_only_syntax_errors(text: str) -> None:
    try:
        parse_stream_clause(text)
    except StreamSyntaxError as error:
        lines = text.split("\n")
        assert 1 <= error.line <= len(lines)
        assert 1 <= error.column <= len(lines[error.line - 1]) + 1
        assert error.message and error.expected
        assert f"(line {error.line}, column {error.column})" in error.message
    else:
        assert looks_like_stream_clause(text)


@settings(max_examples=300, deadline=None)  # a busy machine stalls any one example
@given(st.text())
def test_random_text_raises_only_stream_syntax_error(text: str) -> None:
    check_only_syntax_errors(text)
    looks_like_stream_clause(text)


VOCABULARY = [
    "CREATE",
    "DROP",
    "SHOW",
    "START",
    "STOP",
    "TEST",
    "STREAM",
    "STREAMS",
    "ALL",
    "AS",
    "LOAD",
    "DATA",
    "KAFKA",
    "WITH",
    "TOPIC",
    "TRANSFORM",
    "BATCH_INTERVAL",
    "BATCH_SIZE",
    "BATCH",
    "INTERVAL",
    "SIZE",
    "LIMIT",
    "BATCHES",
    "ON",
    "ERROR",
    "SKIP",
    "DEAD",
    "LETTER",
    "s",
    "`q`",
    "``",
    "`",
    "'k'",
    '"t"',
    "'",
    '"',
    "'\\",
    "'\\q'",
    "'\\u'",
    "5",
    "0",
    "-1",
    "1.5",
    "010",
    "99999999999999999999",
    ";",
    "$p",
    "(",
    ")",
    "/*",
    "*/",
    "//",
    "\n",
    "-",
    ".",
    "\\",
]


@settings(max_examples=500, deadline=None)  # a busy machine stalls any one example
@given(
    st.lists(
        st.tuples(st.sampled_from(VOCABULARY), st.sampled_from(["", " ", "\n", "/**/"])),
        max_size=20,
    )
)
def test_token_soup_raises_only_stream_syntax_error(soup: list[tuple[str, str]]) -> None:
    check_only_syntax_errors("".join(token + gap for token, gap in soup))


@settings(max_examples=150, deadline=None)  # a busy machine stalls any one example
@given(clause_and_text(), st.data())
def test_mutated_clauses_raise_only_stream_syntax_error(
    case: tuple[StreamClause, str], data: st.DataObject
) -> None:
    _, text = case
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    insert = data.draw(st.sampled_from(["", *VOCABULARY, text[start:end]]))
    check_only_syntax_errors(text[:start] + insert + text[end:])


@settings(max_examples=100, deadline=None)  # a busy machine stalls any one example
@given(clause_and_text())
def test_trailing_garbage_is_reported_where_it_starts(case: tuple[StreamClause, str]) -> None:
    _, text = case
    query = text + "\n  garbage"
    try:
        parse_stream_clause(query)
    except StreamSyntaxError as error:
        assert (error.line, error.column) == (query.count("\n") + 1, 3)
        assert error.message.startswith(f"Invalid input 'garbage' (line {error.line}, column 3)")
        assert error.expected[-1] == "end of input"
    else:
        raise AssertionError(f"parsed {query!r}")

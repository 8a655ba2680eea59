"""looks_like_stream_clause: true/false tables, adversarial inputs, the router's keyword index."""

from __future__ import annotations

import contextlib
import time
import timeit
from typing import Any

import pytest

from grammar import (
    KEYWORDS,
    ShowStreams,
    StreamClause,
    StreamSyntaxError,
    looks_like_stream_clause,
    parse_stream_clause,
)
from proxy.answers.router import QueryContext, Router

STREAM_CLAUSES = [
    "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'",
    "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p",  # Memgraph 2.x
    "create kafka /* c */ stream s TOPICS t TRANSFORM m.p",
    "CREATE STREAM s TOPICS t TRANSFORM m.p",  # Memgraph 2.0
    "CREATE PULSAR STREAM s TOPICS t TRANSFORM m.p",  # refused by the proxy, never forwarded
    "CHECK STREAM s",
    "CHECK STREAM s BATCH_LIMIT 2 TIMEOUT 100",
    "create stream s",
    "DROP STREAM s",
    "SHOW STREAMS",
    "show streams;",
    "START STREAM s",
    "START ALL STREAMS",
    "STOP STREAM s",
    "STOP ALL STREAMS",
    "TEST STREAM s LIMIT 1 BATCHES",
    "SHOW STREAM s OFFSETS",
    "ALTER STREAM s SKIP FAILED MESSAGE",
    "ALTER STREAM s SET OFFSET TO 0 FOR PARTITION 0",
    "ALTER STREAM s SET BATCH_SIZE 5",
    "  \n\tSHOW STREAMS",
    "// comment\nSHOW STREAMS",
    "/* comment */SHOW STREAMS",
    "/* a */ /* b */ // c\r\n SHOW/**/STREAMS",
    "CREATE\nSTREAM s",
    "CREATE/* */STREAM s",
    "START // c\n ALL /* c */ STREAMS",
    "\u00a0SHOW\u2003STREAMS",  # Unicode whitespace, as the grammar allows
    # These pass the prefilter and then get the proxy's syntax error (they are stream clauses
    # in form; no backend would run them either).
    "CREATE STREAM",
    "CREATE STREAM`x`",
    "SHOW STREAMS YIELD *",
    "START STREAM s BATCH_LIMIT 5",  # Memgraph 2.x syntax
    "CREATE STREAM s TOPICS t TRANSFORM m.p",  # Memgraph 1.6-2.0 syntax
]

ORDINARY_QUERIES = [
    "",
    "   ",
    "MATCH (n) RETURN n",
    "CREATE (n)",
    "CREATE (s:STREAM)",
    "CREATE (:STREAM {name: 'x'})",
    "CREATE (s:Stream)-[:TO]->(t)",
    "CREATE INDEX FOR (n:Person) ON (n.name)",
    "CREATE CONSTRAINT c FOR (n:P) REQUIRE n.id IS UNIQUE",
    "CREATE DATABASE streams",
    "CREATE STREAMS",
    "CREATE STREAMS_X",
    "CREATE STREAMING x",
    "CREATE STREAM_X",
    "CREATESTREAM s",
    "CREATE ROLE stream",
    "CREATE USER stream SET PASSWORD 'x'",
    "CREATE KAFKA STREAMS",
    "CHECK STREAMS",
    "SHOW DATABASES",
    "SHOW INDEXES",
    "SHOW CONSTRAINTS",
    "SHOW PROCEDURES YIELD name",
    "SHOW STREAMSX",
    "START DATABASE neo4j",
    "STOP DATABASE neo4j",
    "DROP DATABASE x",
    "DROP INDEX i",
    "START ALL STREAM",
    "STOP ALL",
    "START",
    "TEST",
    "UNWIND $rows AS r CREATE (:N {id: r})",
    "RETURN 'SHOW STREAMS'",
    "EXPLAIN SHOW STREAMS",
    "// SHOW STREAMS",
    "// c SHOW STREAMS",
    "/* SHOW STREAMS */",
    "/* never closed SHOW STREAMS",
    ";SHOW STREAMS",
    "\u017fHOW STREAMS",  # long s: keywords ignore case in ASCII only
    "SHOW STREAM\u017f",
    "CALL dbms.components()",
]


@pytest.mark.parametrize("query", STREAM_CLAUSES)
def test_stream_clauses_pass(query: str) -> None:
    assert looks_like_stream_clause(query) is True


@pytest.mark.parametrize("query", ORDINARY_QUERIES)
def test_ordinary_queries_do_not(query: str) -> None:
    assert looks_like_stream_clause(query) is False


ADVERSARIAL = [
    "/**/" * 5000 + "(",
    "/* */" * 5000 + "SHOW STREAMX",
    " " * 100_000 + "(",
    "/*" * 5000,
    "/*" + "x" * 100_000,
    "//\n" * 5000 + "(",
    "////" * 5000,
    "CREATE" + " /**/" * 5000 + "(",
    "START" + " /**/" * 5000 + " ALL" + " /**/" * 5000 + "(",
    "'" + "\\a" * 20_000,
    "SHOW STREAMS '" + "\\" * 20_000,
    "DROP STREAM `" + "``" * 20_000,
    "CREATE STREAM s AS LOAD DATA KAFKA " + "'x' " * 5000,
]


@pytest.mark.parametrize("query", ADVERSARIAL, ids=lambda q: f"{q[:12]!r}x{len(q)}")
def test_adversarial_input_takes_linear_time(query: str) -> None:
    # Exponential backtracking would take seconds to hours here; linear takes about a
    # millisecond. CPU time of this thread, not wall time: a loaded machine (the suite runs
    # beside services) must not fail it, and 500x headroom does not hide a backtracking bug.
    started = time.thread_time()
    looks_like_stream_clause(query)
    with contextlib.suppress(StreamSyntaxError):
        parse_stream_clause(query)
    assert time.thread_time() - started < 0.5


def test_cost_does_not_grow_with_query_length() -> None:
    short = "MATCH (n) RETURN n"
    long = "MATCH (n) WHERE n.name IN [" + ", ".join(f"'n{i}'" for i in range(2000)) + "] RETURN n"
    assert len(long) > 10_000

    def best(query: str) -> float:
        # CPU time of this thread (see above), the best of several.
        return min(
            timeit.repeat(
                lambda: looks_like_stream_clause(query),
                number=2000,
                repeat=5,
                timer=time.thread_time,
            )
        )

    # Same work for both (fails at the first word). Reading 10 KB would cost ~40x more.
    assert best(long) < 3 * best(short)


class _StreamHandler:
    """What the proxy's stream handler will look like, for the router's sake."""

    name = "streams"
    keywords = KEYWORDS
    relay = True

    def match(self, query: str) -> StreamClause | StreamSyntaxError | None:
        if not looks_like_stream_clause(query):
            return None
        try:
            return parse_stream_clause(query)
        except StreamSyntaxError as error:
            return error

    async def run(self, parsed: Any, ctx: QueryContext) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize("query", STREAM_CLAUSES)
def test_router_keyword_index_reaches_every_stream_clause(query: str) -> None:
    classified = Router([_StreamHandler()], relay=True).classify(query)
    assert classified is not None and classified.parsed is not None


@pytest.mark.parametrize("query", ORDINARY_QUERIES)
def test_router_forwards_ordinary_queries(query: str) -> None:
    assert Router([_StreamHandler()], relay=True).classify(query) is None


def test_router_answers_with_the_parsed_clause() -> None:
    classified = Router([_StreamHandler()], relay=False).classify("show streams;")
    assert classified is not None and classified.parsed == ShowStreams()

"""The one Cypher lexer: first keyword, tokens, parameters, and no backtracking on comments."""

from __future__ import annotations

import pytest

from grammar import lexer


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("MATCH (n) RETURN n", "MATCH"),
        ("  call db.ping()", "CALL"),
        ("// a comment\n/* and another */ SHOW STREAMS", "SHOW"),
        ("/* CREATE */ match (n)", "MATCH"),
        ("(x)", None),
        ("", None),
        ("   ", None),
        ("$p", None),
    ],
)
def test_first_keyword(query: str, word: str | None) -> None:
    assert lexer.first_keyword(query) == word


def test_after_keyword() -> None:
    assert lexer.after_keyword("/* x */ EXPLAIN MATCH (n)", "EXPLAIN") == " MATCH (n)"
    assert lexer.after_keyword("explain\nRETURN 1", "EXPLAIN") == "\nRETURN 1"
    assert lexer.after_keyword("EXPLAINED", "EXPLAIN") is None
    assert lexer.after_keyword("MATCH (n)", "EXPLAIN") is None


def kinds(query: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "", m.group(0)) for m in lexer.tokens(query) if m.lastgroup != "space"]


def test_token_kinds() -> None:
    query = (
        "MATCH (n:`My Label` {k: 'it''s $no', d: \"x\\\"y\"}) // $nope\nRETURN $p, $`q r`, 1.5e3"
    )
    assert kinds(query) == [
        ("word", "MATCH"),
        ("other", "("),
        ("word", "n"),
        ("other", ":"),
        ("name", "`My Label`"),
        ("other", "{"),
        ("word", "k"),
        ("other", ":"),
        ("string", "'it'"),
        ("string", "'s $no'"),
        ("other", ","),
        ("word", "d"),
        ("other", ":"),
        ("string", '"x\\"y"'),
        ("other", "}"),
        ("other", ")"),
        ("comment", "// $nope"),
        ("word", "RETURN"),
        ("param", "$p"),
        ("other", ","),
        ("param", "$`q r`"),
        ("other", ","),
        ("number", "1.5e3"),
    ]


def test_parameter_names() -> None:
    params = [
        lexer.param_name(m)
        for m in lexer.tokens("RETURN $a, $`b c`, '$d', /* $e */ $f1")
        if m.lastgroup == "param"
    ]
    assert params == ["a", "b c", "f1"]


def test_tokens_cover_the_text() -> None:
    query = "CREATE (n {x: 'unterminated) RETURN n /* open"
    assert "".join(m.group(0) for m in lexer.tokens(query)) == query


@pytest.mark.timeout(5)
def test_comment_runs_do_not_stall() -> None:
    # A nested quantifier over comments backtracks exponentially on this without the atomic
    # groups (seconds at 30 comments).
    assert lexer.first_keyword("/**/" * 5000 + "(") is None
    assert lexer.first_keyword("/*" + " " * 100_000) is None

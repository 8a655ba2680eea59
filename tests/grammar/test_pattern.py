"""The connector's pattern language: its documented examples parse to what they mean, and its
rules are enforced with messages that say where."""

from __future__ import annotations

import pytest

from grammar.pattern import (
    Mapping,
    NodePattern,
    PatternError,
    RelationshipPattern,
    Selection,
    parse_pattern,
)


def test_node_pattern_with_alias_and_implicit_wildcard() -> None:
    assert parse_pattern("(:User{!id: userId})") == NodePattern(
        ("User",), Selection(keys=(Mapping("userId", "id"),), everything=True)
    )


def test_node_pattern_with_explicit_properties_takes_only_those() -> None:
    pattern = parse_pattern("(:Person:Actor{!id, name, address.city})")
    assert pattern == NodePattern(
        ("Person", "Actor"),
        Selection(
            keys=(Mapping("id", "id"),),
            include=(Mapping("name", "name"), Mapping("address.city", "address.city")),
        ),
    )


def test_wildcard_with_exclusions() -> None:
    pattern = parse_pattern("(:User{!id, *, -password, -address})")
    assert isinstance(pattern, NodePattern)
    assert pattern.selection.everything
    assert pattern.selection.exclude == ("password", "address")
    # Exclusions alone mean "everything but".
    alone = parse_pattern("(:User{!id, -password})")
    assert isinstance(alone, NodePattern) and alone.selection.everything


def test_documented_relationship_pattern() -> None:
    pattern = parse_pattern(
        "(:User{!id: userId})-[:LIVES_IN{since}]->"
        "(:City{!name: address.city, !country: address.country})"
    )
    assert isinstance(pattern, RelationshipPattern)
    assert pattern.type == "LIVES_IN"
    assert pattern.start == NodePattern(("User",), Selection(keys=(Mapping("userId", "id"),)))
    assert pattern.end.selection.keys == (
        Mapping("address.city", "name"),
        Mapping("address.country", "country"),
    )
    assert pattern.selection == Selection(include=(Mapping("since", "since"),))


def test_left_pointing_relationship_swaps_start_and_end() -> None:
    pattern = parse_pattern("(:LabelA{!idA, aa})<-[:REL_TYPE]-(:LabelB{!idB, bb})")
    assert isinstance(pattern, RelationshipPattern)
    assert pattern.start.labels == ("LabelB",) and pattern.end.labels == ("LabelA",)
    assert pattern.selection.everything  # nothing named: every remaining field


def test_simple_form() -> None:
    assert parse_pattern("User{!userId}") == parse_pattern("(:User{!userId})")
    pattern = parse_pattern("User:Actor{!userId} BOUGHT{price, currency} Product{!productId}")
    assert isinstance(pattern, RelationshipPattern)
    assert (pattern.start.labels, pattern.type, pattern.end.labels) == (
        ("User", "Actor"),
        "BOUGHT",
        ("Product",),
    )
    assert [m.name for m in pattern.selection.include] == ["price", "currency"]


def test_backticked_names_and_prefixes() -> None:
    pattern = parse_pattern(
        "(:`My Label`{!`the id`: __key.id, `odd``name`, __header.h, t: __timestamp})"
    )
    assert isinstance(pattern, NodePattern)
    assert pattern.labels == ("My Label",)
    assert pattern.selection.keys == (Mapping("__key.id", "the id"),)
    assert pattern.selection.include == (
        Mapping("odd`name", "odd`name"),
        Mapping("__header.h", "h"),
        Mapping("__timestamp", "t"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "it is empty"),
        ("(:User{name})", "at least one key selector"),
        ("(:User{!id, -foo, bar})", "mutually exclusive"),
        ("(:A{!id})-[:R]-(:B{!id})", "direction of the relationship must be given"),
        ("(:A{!id})<-[:R]->(:B{!id})", "direction of the relationship must be given"),
        ("(:A{!id})-->(:B{!id})", "needs a type"),
        ("(:A{!id})-[:R]->(:B{name})", "each node of a relationship pattern"),
        ("(:A{!id, *})-[:R]->(:B{!id})", "'*' is not allowed on the start and end nodes"),
        ("(:A{!id})-[:R]->(:B{!id, -x})", "exclusions are not allowed on the start and end"),
        ("(:A{!id, id})", "given twice"),
        ("(:A{!id}", "expected ')' at the end"),
        ("(:A{!id}) extra", "expected '-' at column 11"),
        ("(:A{!id, ?})", "unexpected '?' at column 10"),
        ("(:``{!id})", "empty name"),
        ("(:A{!id})-[:R]->(:B{!id}) (:C{!id})", "the end of the pattern at column 27"),
    ],
)
def test_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("Invalid pattern")

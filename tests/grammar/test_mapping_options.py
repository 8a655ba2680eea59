"""CREATE STREAM's mapping options: WITH CYPHER, WITH PATTERN (repeated), WITH FORMAT, MERGE
NODE / RELATIONSHIP PROPERTIES; what the parser takes and how it refuses the rest."""

from __future__ import annotations

import pytest

from grammar import CreateStream, StreamSyntaxError, parse_stream_clause

HEAD = "CREATE STREAM s AS LOAD DATA KAFKA 'k:9092' WITH TOPIC 't'"


def parse(options: str) -> CreateStream:
    clause = parse_stream_clause(f"{HEAD} {options}")
    assert isinstance(clause, CreateStream)
    return clause


def test_template() -> None:
    clause = parse("WITH CYPHER 'MERGE (p:Person {id: event.id}) SET p.name = event.name'")
    assert clause == CreateStream(
        "s", "k:9092", "t", cypher="MERGE (p:Person {id: event.id}) SET p.name = event.name"
    )
    assert clause.transform is None
    assert clause.has_mapping


def test_template_in_double_quotes_keeps_single_quotes_and_escapes() -> None:
    clause = parse("WITH CYPHER \"CREATE (:N {s: 'a\\nb'})\"")
    assert clause.cypher == "CREATE (:N {s: 'a\nb'})"


def test_patterns_repeat_in_order_between_other_options() -> None:
    clause = parse(
        "WITH PATTERN '(:User{!id})' BATCH_SIZE 5 with pattern '(:Product{!sku})' "
        "ON ERROR SKIP WITH PATTERN '(:User{!id})-[:BOUGHT]->(:Product{!sku})'"
    )
    assert clause.patterns == (
        "(:User{!id})",
        "(:Product{!sku})",
        "(:User{!id})-[:BOUGHT]->(:Product{!sku})",
    )
    assert clause.batch_size == 5
    assert clause.on_error == "skip"


@pytest.mark.parametrize(
    ("spelling", "value"),
    [("CUD", "cud"), ("json", "json"), ("Text", "text"), ("BYTES", "bytes")],
)
def test_formats(spelling: str, value: str) -> None:
    clause = parse(f"WITH FORMAT {spelling}")
    assert clause.value_format == value
    assert clause.has_mapping is (value == "cud")


def test_merge_properties_options() -> None:
    clause = parse("MERGE RELATIONSHIP PROPERTIES WITH PATTERN '(:A{!id})' merge node properties")
    assert clause.merge_node_properties
    assert clause.merge_relationship_properties
    assert not parse("WITH PATTERN '(:A{!id})'").merge_node_properties


def test_transform_may_come_after_other_options() -> None:
    clause = parse("BATCH_SIZE 3 WITH TRANSFORM 'builtin:depc' ON ERROR SKIP")
    assert clause.transform == "builtin:depc"
    assert not clause.has_mapping


def test_neither_or_both_parse_the_engine_refuses_them() -> None:
    # Neither a transform nor a mapping, or both: an argument error from the engine
    # (tests/streams/test_mapping_streams.py), not a syntax error.
    assert parse("BATCH_SIZE 3").transform is None
    both = parse("WITH TRANSFORM 'x' WITH CYPHER 'CREATE (:N)'")
    assert both.transform == "x" and both.cypher == "CREATE (:N)"


def error(options: str) -> StreamSyntaxError:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(f"{HEAD} {options}")
    return raised.value


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ("WITH CYPHER 'a' WITH CYPHER 'b'", "WITH CYPHER"),
        ("WITH FORMAT CUD BATCH_SIZE 2 WITH FORMAT JSON", "WITH FORMAT"),
        ("MERGE NODE PROPERTIES MERGE NODE PROPERTIES", "MERGE NODE PROPERTIES"),
        (
            "MERGE RELATIONSHIP PROPERTIES MERGE RELATIONSHIP PROPERTIES",
            "MERGE RELATIONSHIP PROPERTIES",
        ),
        ("WITH TRANSFORM 'a' WITH TRANSFORM 'b'", "WITH TRANSFORM"),
    ],
)
def test_repeats_are_refused_at_the_repeat(options: str, option: str) -> None:
    found = error(options)
    assert found.message.endswith(f"{option} is given more than once")
    assert found.column == len(HEAD) + 2 + options.rindex(option.split()[0])


def test_unknown_format() -> None:
    found = error("WITH FORMAT AVRO")
    assert found.message == (
        f"Invalid input 'AVRO' (line 1, column {len(HEAD) + 14}): expected BYTES, CUD, JSON or TEXT"
    )


def test_expected_after_a_mapping_leaves_out_the_transform_and_the_given_options() -> None:
    found = error("WITH PATTERN '(:A{!id})' WITH FORMAT JSON FOO")
    assert "WITH TRANSFORM" not in found.expected
    assert "WITH PATTERN" in found.expected  # it repeats
    assert not any(e.startswith("WITH FORMAT") for e in found.expected)
    assert "MERGE NODE PROPERTIES" in found.expected


def test_expected_after_a_transform_leaves_out_the_mapping() -> None:
    found = error("WITH TRANSFORM 'x' FOO")
    assert found.expected == [
        "BATCH_INTERVAL",
        "BATCH_SIZE",
        "CONFIGS",
        "CONSUMER_GROUP",
        "CREDENTIALS",
        "DATABASE",
        "DELIVERY AT LEAST ONCE",
        "DELIVERY EXACTLY ONCE",
        "ON ERROR DEAD LETTER",
        "ON ERROR SKIP",
        "ON ERROR STOP",
        "';'",
        "end of input",
    ]


def test_merge_needs_its_whole_phrase() -> None:
    found = error("MERGE PROPERTIES")
    assert found.expected == ["NODE PROPERTIES", "RELATIONSHIP PROPERTIES"]

"""CREATE STREAM's mapping options: WITH CYPHER, WITH PATTERN (repeated), WITH FORMAT, MERGE
NODE / RELATIONSHIP PROPERTIES; what the parser takes and how it refuses the rest."""

from __future__ import annotations

import pytest

from grammar import (
    AlterStream,
    CreateKafkaStream,
    CreateStream,
    StreamSyntaxError,
    parse_stream_clause,
)

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
    assert found.message.endswith(f": {option} is given more than once")
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


# -- the same options in Memgraph 2.x's CREATE KAFKA STREAM and in ALTER STREAM ... SET ----------

KAFKA_HEAD = "CREATE KAFKA STREAM s TOPICS t"


def test_memgraph_clause_takes_a_mapping_instead_of_its_transform() -> None:
    clause = parse_stream_clause(
        f"{KAFKA_HEAD} WITH PATTERN '(:A{{!id}})' BATCH_SIZE 5 WITH PATTERN '(:B{{!id}})' "
        "MERGE NODE PROPERTIES DATABASE other"
    )
    assert clause == CreateKafkaStream(
        "s",
        ("t",),
        None,
        False,
        batch_size=5,
        database="other",
        patterns=("(:A{!id})", "(:B{!id})"),
        merge_node_properties=True,
    )
    template = parse_stream_clause("CREATE STREAM s TOPICS t WITH CYPHER 'CREATE (:N)'")
    assert isinstance(template, CreateKafkaStream) and template.cypher == "CREATE (:N)"
    assert template.transform is None and template.has_mapping


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (  # neither a TRANSFORM nor a mapping: Memgraph's words
            f"{KAFKA_HEAD} WITH FORMAT TEXT",
            f"Unexpected end of input (line 1, column {len(KAFKA_HEAD) + 18}): "
            "TRANSFORM is required",
        ),
        (
            f"{KAFKA_HEAD} WITH CYPHER 'a' WITH CYPHER 'b'",
            f"Invalid input 'WITH CYPHER' (line 1, column {len(KAFKA_HEAD) + 18}): "
            "WITH CYPHER is given more than once",
        ),
    ],
)
def test_memgraph_clause_refusals(query: str, message: str) -> None:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(query)
    assert raised.value.message == message


def test_memgraph_clause_after_a_mapping_expects_no_transform() -> None:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(f"{KAFKA_HEAD} WITH CYPHER 'x' FOO")
    assert "TRANSFORM" not in raised.value.expected
    assert "WITH CYPHER" not in raised.value.expected
    assert "DATABASE" in raised.value.expected


@pytest.mark.parametrize(
    ("options", "clause"),
    [
        ("WITH CYPHER 'MERGE (:N)'", AlterStream("s", cypher="MERGE (:N)")),
        (
            "WITH PATTERN 'a' BATCH_SIZE 2 WITH PATTERN 'b'",
            AlterStream("s", batch_size=2, patterns=("a", "b")),
        ),
        ("WITH FORMAT TEXT", AlterStream("s", value_format="text")),
        ("MERGE RELATIONSHIP PROPERTIES", AlterStream("s", merge_relationship_properties=True)),
        ("TRANSFORM m.p", AlterStream("s", transform="m.p", module=True)),
        ("TRANSFORM 'm.p'", AlterStream("s", transform="m.p")),
        (
            "CONFIGS {'client.id': 'x'} CREDENTIALS {}",
            AlterStream("s", configs=(("client.id", "x"),), credentials=()),
        ),
    ],
)
def test_alter_takes_the_mapping_options_and_the_stream_settings(
    options: str, clause: AlterStream
) -> None:
    assert parse_stream_clause(f"ALTER STREAM s SET {options}") == clause


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("CONFIGS {} CONFIGS {}", "CONFIGS is given more than once"),
        ("WITH FORMAT JSON WITH FORMAT TEXT", "WITH FORMAT is given more than once"),
        ("CONSUMER_GROUP g", "expected BATCH_INTERVAL"),  # the group stays: not an option
        ("DATABASE other", "expected BATCH_INTERVAL"),
        ("DELIVERY EXACTLY ONCE", "expected BATCH_INTERVAL"),
    ],
)
def test_alter_refuses_repeats_and_what_it_cannot_change(options: str, problem: str) -> None:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(f"ALTER STREAM s SET {options}")
    assert problem in raised.value.message

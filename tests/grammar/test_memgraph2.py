"""Memgraph 2.x's stream clauses (reference/memgraph_streams.md §2), and the per-stream
settings and several topics of the legacy clause."""

from __future__ import annotations

import pytest

from grammar import (
    CheckStream,
    CreateKafkaStream,
    CreateStream,
    StartStream,
    StreamSyntaxError,
    UnsupportedStreamClause,
    parse_stream_clause,
)


def test_create_kafka_stream_with_every_option() -> None:
    clause = parse_stream_clause(
        "CREATE KAFKA STREAM movies TOPICS ratings, movie-info.v2, 'a,b' "
        "TRANSFORM movielens.rating CONSUMER_GROUP grp-1.x BATCH_INTERVAL 250 BATCH_SIZE 500 "
        "BOOTSTRAP_SERVERS 'h1:9092,h2:9092' "
        "CONFIGS {'client.id': 'mine', name: 'v'} "
        "CREDENTIALS {'sasl.password': 'secret'};"
    )
    assert clause == CreateKafkaStream(
        name="movies",
        topics=("ratings", "movie-info.v2", "a", "b"),
        transform="movielens.rating",
        module=True,
        consumer_group="grp-1.x",
        batch_interval_ms=250,
        batch_size=500,
        bootstrap_servers="h1:9092,h2:9092",
        configs=(("client.id", "mine"), ("name", "v")),
        credentials=(("sasl.password", "secret"),),
    )


def test_settings_keys_are_strings_or_plain_names() -> None:
    clause = parse_stream_clause(
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p CONFIGS {'client.id': 'x', name: 'v'}"
    )
    assert isinstance(clause, CreateKafkaStream)
    assert clause.configs == (("client.id", "x"), ("name", "v"))
    with pytest.raises(StreamSyntaxError):
        parse_stream_clause("CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p CONFIGS {`k`: 'v'}")


@pytest.mark.parametrize(
    "query",
    [
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p",
        "CREATE KAFKA STREAM s TRANSFORM m.p TOPICS t",
        "create kafka stream s transform m.p topics t",
        "CREATE STREAM s TOPICS t TRANSFORM m.p",  # Memgraph 2.0
        "CREATE STREAM s TRANSFORM m.p TOPICS 't'",
    ],
)
def test_parts_in_any_order(query: str) -> None:
    assert parse_stream_clause(query) == CreateKafkaStream("s", ("t",), "m.p")


def test_a_transform_uri_instead_of_a_module() -> None:
    clause = parse_stream_clause("CREATE KAFKA STREAM s TOPICS t TRANSFORM 'builtin:cud'")
    assert clause == CreateKafkaStream("s", ("t",), "builtin:cud", module=False)


def test_boltstream_options_on_the_2x_clause() -> None:
    clause = parse_stream_clause(
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p ON ERROR DEAD LETTER 'dlq' "
        "DELIVERY EXACTLY ONCE"
    )
    assert isinstance(clause, CreateKafkaStream)
    assert (clause.on_error, clause.dead_letter_topic, clause.delivery) == (
        "dead letter",
        "dlq",
        "exactly once",
    )


def test_legacy_clause_several_topics_and_settings() -> None:
    clause = parse_stream_clause(
        "CREATE STREAM s AS LOAD DATA KAFKA 'k:1' WITH TOPIC 'a, b' WITH TOPIC 'c' "
        "WITH TRANSFORM 't.py' CONSUMER_GROUP g CONFIGS {'client.id': 'x'} "
        "CREDENTIALS {'sasl.password': 'p'} BATCH_SIZE 3"
    )
    assert clause == CreateStream(
        "s",
        "k:1",
        "a",
        "t.py",
        batch_size=3,
        more_topics=("b", "c"),
        consumer_group="g",
        configs=(("client.id", "x"),),
        credentials=(("sasl.password", "p"),),
    )


def test_legacy_clause_unchanged() -> None:
    clause = parse_stream_clause(
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'"
    )
    assert clause == CreateStream("s", "k", "t", "x")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("CHECK STREAM s", CheckStream("s")),
        ("CHECK STREAM s BATCH_LIMIT 3", CheckStream("s", 3)),
        ("CHECK STREAM s TIMEOUT 500", CheckStream("s", None, 500)),
        ("check stream s timeout 5 batch_limit 2;", CheckStream("s", 2, 5)),
        ("START STREAM s BATCH_LIMIT 4", StartStream("s", 4, True, None)),
        ("START STREAM s TIMEOUT 9 BATCH_LIMIT 4", StartStream("s", 4, True, 9)),
        ("START STREAM s LIMIT 4 BATCHES", StartStream("s", 4)),
        ("START STREAM s", StartStream("s")),
    ],
)
def test_check_and_limited_start(query: str, expected: object) -> None:
    assert parse_stream_clause(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "CREATE PULSAR STREAM s TOPICS t TRANSFORM m.p SERVICE_URL 'pulsar://h:6650'",
        "create pulsar stream",
        "CREATE PULSAR STREAM s 'unterminated",
    ],
)
def test_pulsar_is_recognised_and_refused(query: str) -> None:
    clause = parse_stream_clause(query)
    assert isinstance(clause, UnsupportedStreamClause)
    assert "Pulsar streams are not supported" in clause.reason

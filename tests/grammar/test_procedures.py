"""Memgraph 2.x's stream procedures, as the proxy recognises them (grammar/procedures.py)."""

from __future__ import annotations

import pytest

from grammar import StreamSyntaxError, UnsupportedStreamClause
from grammar.procedures import (
    KafkaSetStreamOffset,
    KafkaStreamInfo,
    Parameter,
    match_procedure,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("CALL mg.kafka_set_stream_offset('s', -1)", KafkaSetStreamOffset("s", -1)),
        ('call MG.KAFKA_SET_STREAM_OFFSET("s\\"x", 42);', KafkaSetStreamOffset('s"x', 42)),
        (
            "CALL mg.kafka_set_stream_offset($name, $offset)",
            KafkaSetStreamOffset(Parameter("name"), Parameter("offset")),
        ),
        ("CALL mg.kafka_stream_info('s')", KafkaStreamInfo("s")),
        ("CALL mg.kafka_stream_info('s') YIELD *", KafkaStreamInfo("s")),
        ("  CALL mg . kafka_stream_info ( 's' ) YIELD topics, configs", KafkaStreamInfo("s")),
        ("/* c */ CALL mg.kafka_stream_info($s)", KafkaStreamInfo(Parameter("s"))),
    ],
)
def test_calls(query: str, expected: object) -> None:
    assert match_procedure(query) == expected


def test_pulsar_is_refused() -> None:
    found = match_procedure("CALL mg.pulsar_stream_info('s') YIELD *")
    assert isinstance(found, UnsupportedStreamClause)
    assert "Pulsar streams are not supported" in found.reason


@pytest.mark.parametrize(
    "query",
    [
        "CALL db.labels()",
        "CALL mg.procedures()",
        "CALL mg.kafka_other('s')",
        "MATCH (n) RETURN n",
        "RETURN 'CALL mg.kafka_stream_info(1)'",
    ],
)
def test_other_queries_are_not_ours(query: str) -> None:
    assert match_procedure(query) is None


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("CALL mg.kafka_stream_info", "expected '('"),
        ("CALL mg.kafka_stream_info(s)", "expected a string, an integer or a $parameter"),
        ("CALL mg.kafka_set_stream_offset('s')", "takes 2 arguments"),
        ("CALL mg.kafka_stream_info('s', 1)", "expected ')'"),
        ("CALL mg.kafka_stream_info('s') RETURN 1", "expected ')'"),
    ],
)
def test_bad_calls_are_ours_and_refused(query: str, detail: str) -> None:
    with pytest.raises(StreamSyntaxError) as raised:
        match_procedure(query)
    assert detail in raised.value.message

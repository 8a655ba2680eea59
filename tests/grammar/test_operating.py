"""The clauses that operate streams (issue 11): SHOW STREAM ... OFFSETS, ALTER STREAM, and
CREATE STREAM's DATABASE option."""

from __future__ import annotations

import pytest

from grammar import (
    AlterStream,
    AlterStreamOffset,
    AlterStreamSkip,
    CreateStream,
    ShowStreamOffsets,
    StreamSyntaxError,
    looks_like_stream_clause,
    parse_stream_clause,
)

HEAD = "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'"


@pytest.mark.parametrize(
    ("query", "clause"),
    [
        ("SHOW STREAM s OFFSETS", ShowStreamOffsets("s")),
        ("show stream `a b` offsets;", ShowStreamOffsets("a b")),
        ("ALTER STREAM s SET OFFSET TO BEGINNING", AlterStreamOffset("s", "beginning")),
        (
            "ALTER STREAM s SET OFFSET TO END FOR PARTITION 2",
            AlterStreamOffset("s", "end", None, 2),
        ),
        ("ALTER STREAM s SET OFFSET TO 0", AlterStreamOffset("s", "offset", 0)),
        (
            "ALTER STREAM s SET OFFSET TO 1234 FOR PARTITION 0",
            AlterStreamOffset("s", "offset", 1234, 0),
        ),
        (
            "ALTER STREAM s SET OFFSET TO TIMESTAMP 1700000000000",
            AlterStreamOffset("s", "timestamp", 1700000000000),
        ),
        ("ALTER STREAM s SKIP FAILED MESSAGE", AlterStreamSkip("s")),
        ("ALTER STREAM s SET BATCH_SIZE 5", AlterStream("s", batch_size=5)),
        (
            "ALTER STREAM s SET TRANSFORM 'y.py' BATCH INTERVAL 50 ON ERROR DEAD LETTER 'dlq'",
            AlterStream(
                "s",
                batch_interval_ms=50,
                on_error="dead letter",
                dead_letter_topic="dlq",
                transform="y.py",
            ),
        ),
        ("ALTER STREAM s SET ON ERROR SKIP", AlterStream("s", on_error="skip")),
        (f"{HEAD} DATABASE other", CreateStream("s", "k", "t", "x", database="other")),
        (
            f"{HEAD} DATABASE `my graph` BATCH_SIZE 3",
            CreateStream("s", "k", "t", "x", batch_size=3, database="my graph"),
        ),
    ],
)
def test_parses(query: str, clause: object) -> None:
    assert looks_like_stream_clause(query)
    assert parse_stream_clause(query) == clause


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "ALTER STREAM s SET OFFSET TO -1",
            "Invalid input '-1' (line 1, column 30): "
            "expected a non-negative integer for the offset",
        ),
        (
            "ALTER STREAM s SET OFFSET TO 5 FOR PARTITION 1.5",
            "Invalid input '1.5' (line 1, column 46): "
            "expected a non-negative integer for PARTITION",
        ),
        (
            "ALTER STREAM s SET OFFSET TO TIMESTAMP 007",
            "Invalid input '007' (line 1, column 40): expected a non-negative integer for "
            "TIMESTAMP, without leading zeros",
        ),
        (
            "ALTER STREAM s SET BATCH_SIZE 0",
            "Invalid input '0' (line 1, column 31): expected a positive integer for BATCH_SIZE",
        ),
        (
            "ALTER STREAM s SET BATCH_SIZE 1 BATCH_SIZE 2",
            "Invalid input 'BATCH_SIZE' (line 1, column 33): BATCH_SIZE is given more than once",
        ),
        (
            "ALTER STREAM s SET TRANSFORM 'a' TRANSFORM 'b'",
            "Invalid input 'TRANSFORM' (line 1, column 34): TRANSFORM is given more than once",
        ),
        (
            "ALTER STREAM s SET",
            "Unexpected end of input (line 1, column 19): expected BATCH_INTERVAL, BATCH_SIZE, "
            "CONFIGS, CREDENTIALS, MERGE NODE PROPERTIES, MERGE RELATIONSHIP PROPERTIES, "
            "OFFSET TO, ON ERROR DEAD LETTER, ON ERROR SKIP, ON ERROR STOP, TRANSFORM, "
            "WITH CYPHER, WITH FORMAT BYTES, WITH FORMAT CUD, WITH FORMAT JSON, "
            "WITH FORMAT TEXT or WITH PATTERN",
        ),
        (
            "ALTER STREAM s SKIP",
            "Unexpected end of input (line 1, column 20): expected FAILED MESSAGE",
        ),
        (
            "SHOW STREAM s",
            "Unexpected end of input (line 1, column 14): expected OFFSETS",
        ),
        (
            f"{HEAD} DATABASE a DATABASE b",
            "Invalid input 'DATABASE' (line 1, column 85): DATABASE is given more than once",
        ),
    ],
)
def test_errors(query: str, message: str) -> None:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(query)
    assert raised.value.message == message


def test_alter_table_is_not_a_stream_clause() -> None:
    assert not looks_like_stream_clause("ALTER DATABASE neo4j SET ACCESS READ ONLY")
    assert not looks_like_stream_clause("SHOW STREAMSX")

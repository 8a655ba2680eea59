"""Malformed clauses: the message, line, column and expected list of each StreamSyntaxError."""

from __future__ import annotations

import pickle

import pytest

from grammar import StreamSyntaxError, parse_stream_clause

HEAD = "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'"
AFTER_HEAD = len(HEAD) + 2  # column of whatever follows HEAD and one space
ANY_CLAUSE = [
    "ALTER STREAM",
    "CHECK STREAM",
    "CREATE KAFKA STREAM",
    "CREATE PULSAR STREAM",
    "CREATE STREAM",
    "DROP STREAM",
    "SHOW STREAM",
    "SHOW STREAMS",
    "START ALL STREAMS",
    "START STREAM",
    "STOP ALL STREAMS",
    "STOP STREAM",
    "TEST STREAM",
]
END = ["';'", "end of input"]
ON_ERROR = ["ON ERROR DEAD LETTER", "ON ERROR SKIP", "ON ERROR STOP"]
ON_ERROR_TEXT = "ON ERROR DEAD LETTER, ON ERROR SKIP, ON ERROR STOP"
DELIVERY = ["DELIVERY AT LEAST ONCE", "DELIVERY EXACTLY ONCE"]
DELIVERY_TEXT = "DELIVERY AT LEAST ONCE, DELIVERY EXACTLY ONCE"
SETTINGS = ["CONFIGS", "CONSUMER_GROUP", "CREDENTIALS"]  # per-stream Kafka settings
SETTINGS_TEXT = "CONFIGS, CONSUMER_GROUP, CREDENTIALS"
MERGE = ["MERGE NODE PROPERTIES", "MERGE RELATIONSHIP PROPERTIES"]
WITH_MAPPING = [
    "WITH CYPHER",
    "WITH FORMAT BYTES",
    "WITH FORMAT CUD",
    "WITH FORMAT JSON",
    "WITH FORMAT TEXT",
    "WITH PATTERN",
]


def error_of(query: str) -> StreamSyntaxError:
    with pytest.raises(StreamSyntaxError) as raised:
        parse_stream_clause(query)
    return raised.value


CASES = [
    # -- required parts missing or misspelt
    (
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' FOO",
        "Invalid input 'FOO' (line 1, column 40): expected WITH TOPIC",
        1,
        40,
        ["WITH TOPIC"],
    ),
    (  # WITH TOPIC left out: WITH is fine, TRANSFORM is not
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TRANSFORM 'x'",
        "Invalid input 'TRANSFORM' (line 1, column 45): expected TOPIC",
        1,
        45,
        ["TOPIC"],
    ),
    (  # a transform or a mapping follows WITH (neither at all is the engine's error)
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH",
        "Unexpected end of input (line 1, column 59): expected CYPHER, FORMAT BYTES, "
        "FORMAT CUD, FORMAT JSON, FORMAT TEXT, PATTERN, TOPIC or TRANSFORM",
        1,
        59,
        [
            "CYPHER",
            "FORMAT BYTES",
            "FORMAT CUD",
            "FORMAT JSON",
            "FORMAT TEXT",
            "PATTERN",
            "TOPIC",
            "TRANSFORM",
        ],
    ),
    (
        "CREATE STREAM s LOAD DATA KAFKA 'k'",
        "Invalid input 'LOAD' (line 1, column 17): expected AS LOAD DATA KAFKA, BATCH_INTERVAL, "
        f"BATCH_SIZE, BOOTSTRAP_SERVERS, {SETTINGS_TEXT}, DATABASE, {DELIVERY_TEXT}, "
        f"{', '.join(MERGE)}, {ON_ERROR_TEXT}, TOPICS, TRANSFORM, {', '.join(WITH_MAPPING[:-1])} "
        "or WITH PATTERN",
        1,
        17,
        [
            "AS LOAD DATA KAFKA",
            "BATCH_INTERVAL",
            "BATCH_SIZE",
            "BOOTSTRAP_SERVERS",
            *SETTINGS,
            "DATABASE",
            *DELIVERY,
            *MERGE,
            *ON_ERROR,
            "TOPICS",
            "TRANSFORM",
            *WITH_MAPPING,
        ],
    ),
    (
        "CREATE STREAM s AS LOAD DATA KAFKA localhost",
        "Invalid input 'localhost' (line 1, column 36): expected a string",
        1,
        36,
        ["a string"],
    ),
    (
        "CREATE STREAM s\n  AS LOAD DATA\n  KAFKA 'k'\n  WITH TOPIX 't'",
        "Invalid input 'TOPIX' (line 4, column 8): expected TOPIC",
        4,
        8,
        ["TOPIC"],
    ),
    (
        f"{HEAD} BATCH",
        f"Unexpected end of input (line 1, column {AFTER_HEAD + 5}): expected INTERVAL or SIZE",
        1,
        AFTER_HEAD + 5,
        ["INTERVAL", "SIZE"],
    ),
    (
        f"{HEAD} BATCH_LIMIT 5",
        f"Invalid input 'BATCH_LIMIT' (line 1, column {AFTER_HEAD}): "
        f"expected BATCH_INTERVAL, BATCH_SIZE, {SETTINGS_TEXT}, DATABASE, {DELIVERY_TEXT}, "
        f"{ON_ERROR_TEXT}, ';' or end of input",
        1,
        AFTER_HEAD,
        ["BATCH_INTERVAL", "BATCH_SIZE", *SETTINGS, "DATABASE", *DELIVERY, *ON_ERROR, *END],
    ),
    # -- counts
    (
        f"{HEAD} BATCH_SIZE 0",
        f"Invalid input '0' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_INTERVAL -100",
        f"Invalid input '-100' (line 1, column {AFTER_HEAD + 15}): "
        "expected a positive integer for BATCH_INTERVAL",
        1,
        AFTER_HEAD + 15,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH INTERVAL 0",
        f"Invalid input '0' (line 1, column {AFTER_HEAD + 15}): "
        "expected a positive integer for BATCH_INTERVAL",
        1,
        AFTER_HEAD + 15,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH SIZE 1.5",
        f"Invalid input '1.5' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_INTERVAL 100ms",
        f"Invalid input '100ms' (line 1, column {AFTER_HEAD + 15}): "
        "expected a positive integer for BATCH_INTERVAL",
        1,
        AFTER_HEAD + 15,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_SIZE 1e3",
        f"Invalid input '1e3' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_SIZE 010",
        f"Invalid input '010' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE, without leading zeros",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_SIZE 9223372036854775808",
        f"Invalid input '9223372036854775808' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE, at most 9223372036854775807",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        f"{HEAD} BATCH_SIZE 'ten'",
        f"Invalid input ''ten'' (line 1, column {AFTER_HEAD + 11}): expected a positive integer",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (  # a bad count is reported even when more errors follow it
        f"{HEAD} BATCH_SIZE 0 garbage 'unterminated",
        f"Invalid input '0' (line 1, column {AFTER_HEAD + 11}): "
        "expected a positive integer for BATCH_SIZE",
        1,
        AFTER_HEAD + 11,
        ["a positive integer"],
    ),
    (
        "START STREAM s LIMIT 0 BATCHES",
        "Invalid input '0' (line 1, column 22): expected a positive integer for LIMIT",
        1,
        22,
        ["a positive integer"],
    ),
    (
        "TEST STREAM s LIMIT BATCHES",
        "Invalid input 'BATCHES' (line 1, column 21): expected a positive integer",
        1,
        21,
        ["a positive integer"],
    ),
    # -- LIMIT without BATCHES
    (
        "START STREAM s LIMIT 5",
        "Unexpected end of input (line 1, column 23): expected BATCHES",
        1,
        23,
        ["BATCHES"],
    ),
    (
        "START STREAM s LIMIT 5   ",
        "Unexpected end of input (line 1, column 26): expected BATCHES",
        1,
        26,
        ["BATCHES"],
    ),
    (
        "TEST STREAM s LIMIT 5;",
        "Invalid input ';' (line 1, column 22): expected BATCHES",
        1,
        22,
        ["BATCHES"],
    ),
    (
        "START STREAM s LIMIT 5 BATCH",
        "Invalid input 'BATCH' (line 1, column 24): expected BATCHES",
        1,
        24,
        ["BATCHES"],
    ),
    # -- options given twice
    (
        f"{HEAD} BATCH_SIZE 1 BATCH_SIZE 2",
        f"Invalid input 'BATCH_SIZE' (line 1, column {AFTER_HEAD + 13}): "
        "BATCH_SIZE is given more than once",
        1,
        AFTER_HEAD + 13,
        ["BATCH_INTERVAL", *SETTINGS, "DATABASE", *DELIVERY, *ON_ERROR, *END],
    ),
    (
        f"{HEAD} BATCH_SIZE 1 BATCH  size 2",
        f"Invalid input 'BATCH size' (line 1, column {AFTER_HEAD + 13}): "
        "BATCH_SIZE is given more than once",
        1,
        AFTER_HEAD + 13,
        ["BATCH_INTERVAL", *SETTINGS, "DATABASE", *DELIVERY, *ON_ERROR, *END],
    ),
    (
        f"{HEAD} BATCH INTERVAL 1 BATCH_SIZE 2 BATCH_INTERVAL 3",
        f"Invalid input 'BATCH_INTERVAL' (line 1, column {AFTER_HEAD + 30}): "
        "BATCH_INTERVAL is given more than once",
        1,
        AFTER_HEAD + 30,
        [*SETTINGS, "DATABASE", *DELIVERY, *ON_ERROR, *END],
    ),
    (
        f"{HEAD} DELIVERY EXACTLY ONCE BATCH_SIZE 1 DELIVERY AT LEAST ONCE",
        f"Invalid input 'DELIVERY' (line 1, column {AFTER_HEAD + 35}): "
        "DELIVERY is given more than once",
        1,
        AFTER_HEAD + 35,
        ["BATCH_INTERVAL", *SETTINGS, "DATABASE", *ON_ERROR, *END],
    ),
    (
        f"{HEAD} DELIVERY EXACTLY TWICE",
        f"Invalid input 'TWICE' (line 1, column {AFTER_HEAD + 17}): expected ONCE",
        1,
        AFTER_HEAD + 17,
        ["ONCE"],
    ),
    (
        f"{HEAD} DELIVERY",
        f"Unexpected end of input (line 1, column {AFTER_HEAD + 8}): "
        "expected AT LEAST ONCE or EXACTLY ONCE",
        1,
        AFTER_HEAD + 8,
        ["AT LEAST ONCE", "EXACTLY ONCE"],
    ),
    # -- ON ERROR
    (
        f"{HEAD} ON ERROR STOP ON ERROR SKIP",
        f"Invalid input 'ON' (line 1, column {AFTER_HEAD + 14}): ON ERROR is given more than once",
        1,
        AFTER_HEAD + 14,
        ["BATCH_INTERVAL", "BATCH_SIZE", *SETTINGS, "DATABASE", *DELIVERY, *END],
    ),
    (
        f"{HEAD} ON ERROR SKIP BATCH_SIZE 1 BATCH_INTERVAL 2 on error stop",
        f"Invalid input 'on' (line 1, column {AFTER_HEAD + 44}): ON ERROR is given more than once",
        1,
        AFTER_HEAD + 44,
        [*SETTINGS, "DATABASE", *DELIVERY, *END],
    ),
    (
        f"{HEAD} ON",
        f"Unexpected end of input (line 1, column {AFTER_HEAD + 2}): "
        "expected ERROR DEAD LETTER, ERROR SKIP or ERROR STOP",
        1,
        AFTER_HEAD + 2,
        ["ERROR DEAD LETTER", "ERROR SKIP", "ERROR STOP"],
    ),
    (
        f"{HEAD} ON ERROR CONTINUE",
        f"Invalid input 'CONTINUE' (line 1, column {AFTER_HEAD + 9}): "
        "expected DEAD LETTER, SKIP or STOP",
        1,
        AFTER_HEAD + 9,
        ["DEAD LETTER", "SKIP", "STOP"],
    ),
    (
        f"{HEAD} ON ERROR DEAD LETTER",
        f"Unexpected end of input (line 1, column {AFTER_HEAD + 20}): expected a string",
        1,
        AFTER_HEAD + 20,
        ["a string"],
    ),
    (
        f"{HEAD} ON ERROR DEAD LETTER dlq",
        f"Invalid input 'dlq' (line 1, column {AFTER_HEAD + 21}): expected a string",
        1,
        AFTER_HEAD + 21,
        ["a string"],
    ),
    (
        f"{HEAD} ON ERROR DEADLETTER 'dlq'",
        f"Invalid input 'DEADLETTER' (line 1, column {AFTER_HEAD + 9}): "
        "expected DEAD LETTER, SKIP or STOP",
        1,
        AFTER_HEAD + 9,
        ["DEAD LETTER", "SKIP", "STOP"],
    ),
    (
        f"{HEAD} ON ERROR DEAD LETTER $topic",
        f"Invalid input '$topic' (line 1, column {AFTER_HEAD + 21}): expected a string "
        "(query parameters are not supported in stream clauses)",
        1,
        AFTER_HEAD + 21,
        ["a string"],
    ),
    (
        "START STREAM s ON ERROR SKIP",
        "Invalid input 'ON' (line 1, column 16): expected BATCH_LIMIT, LIMIT, TIMEOUT, "
        "';' or end of input",
        1,
        16,
        ["BATCH_LIMIT", "LIMIT", "TIMEOUT", *END],
    ),
    (
        "START STREAM s LIMIT 1 BATCHES LIMIT 2 BATCHES",
        "Invalid input 'LIMIT' (line 1, column 32): LIMIT is given more than once",
        1,
        32,
        END,
    ),
    # -- strings
    (
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't",
        """Unterminated string literal (line 1, column 51): expected a closing "'\"""",
        1,
        51,
        ["'"],
    ),
    (
        'CREATE STREAM s AS LOAD DATA KAFKA "k',
        "Unterminated string literal (line 1, column 36): expected a closing '\"'",
        1,
        36,
        ['"'],
    ),
    (  # the last quote is escaped
        "CREATE STREAM s AS LOAD DATA KAFKA 'k\\'",
        """Unterminated string literal (line 1, column 36): expected a closing "'\"""",
        1,
        36,
        ["'"],
    ),
    (
        "CREATE STREAM s AS LOAD DATA KAFKA 'a\\qb' WITH",
        "Invalid escape sequence '\\q' (line 1, column 38): expected one of "
        "\\\\ \\' \\\" \\b \\f \\n \\r \\t \\uXXXX \\UXXXXXXXX",
        1,
        38,
        ["\\\\", "\\'", '\\"', "\\b", "\\f", "\\n", "\\r", "\\t", "\\uXXXX", "\\UXXXXXXXX"],
    ),
    # -- names
    (
        "START STREAM 5",
        "Invalid input '5' (line 1, column 14): expected a stream name",
        1,
        14,
        ["a stream name"],
    ),
    (
        "DROP STREAM 'quoted'",
        "Invalid input ''quoted'' (line 1, column 13): expected a stream name",
        1,
        13,
        ["a stream name"],
    ),
    (
        "DROP STREAM ``",
        "Invalid input '``' (line 1, column 13): a stream name cannot be empty",
        1,
        13,
        ["a stream name"],
    ),
    (
        "DROP STREAM `no end",
        "Unterminated quoted name (line 1, column 13): expected a closing '`'",
        1,
        13,
        ["`"],
    ),
    (
        "DROP STREAM my-stream",
        "Invalid input '-stream' (line 1, column 15): expected ';' or end of input",
        1,
        15,
        END,
    ),
    (
        "DROP STREAM",
        "Unexpected end of input (line 1, column 12): expected a stream name",
        1,
        12,
        ["a stream name"],
    ),
    (
        "DROP STREAM $name",
        "Invalid input '$name' (line 1, column 13): expected a stream name "
        "(query parameters are not supported in stream clauses)",
        1,
        13,
        ["a stream name"],
    ),
    (
        "START STREAM s LIMIT $n BATCHES",
        "Invalid input '$n' (line 1, column 22): expected a positive integer "
        "(query parameters are not supported in stream clauses)",
        1,
        22,
        ["a positive integer"],
    ),
    # -- trailing garbage
    (
        "SHOW STREAMS garbage",
        "Invalid input 'garbage' (line 1, column 14): expected ';' or end of input",
        1,
        14,
        END,
    ),
    (
        "SHOW STREAMS; SHOW STREAMS",
        "Invalid input 'SHOW' (line 1, column 15): expected end of input",
        1,
        15,
        ["end of input"],
    ),
    (
        "SHOW STREAMS;;",
        "Invalid input ';' (line 1, column 14): expected end of input",
        1,
        14,
        ["end of input"],
    ),
    (
        "START STREAM s now",
        "Invalid input 'now' (line 1, column 16): expected BATCH_LIMIT, LIMIT, TIMEOUT, "
        "';' or end of input",
        1,
        16,
        ["BATCH_LIMIT", "LIMIT", "TIMEOUT", *END],
    ),
    (
        "STOP STREAM s LIMIT 1 BATCHES",
        "Invalid input 'LIMIT' (line 1, column 15): expected ';' or end of input",
        1,
        15,
        END,
    ),
    (
        "START ALL STREAMS\n  now",
        "Invalid input 'now' (line 2, column 3): expected ';' or end of input",
        2,
        3,
        END,
    ),
    (
        f"{HEAD} garbage",
        f"Invalid input 'garbage' (line 1, column {AFTER_HEAD}): "
        f"expected BATCH_INTERVAL, BATCH_SIZE, {SETTINGS_TEXT}, DATABASE, {DELIVERY_TEXT}, "
        f"{ON_ERROR_TEXT}, ';' or end of input",
        1,
        AFTER_HEAD,
        ["BATCH_INTERVAL", "BATCH_SIZE", *SETTINGS, "DATABASE", *DELIVERY, *ON_ERROR, *END],
    ),
    (
        "SHOW STREAMS /* never closed",
        "Unterminated comment (line 1, column 14): expected '*/'",
        1,
        14,
        ["*/"],
    ),
    # -- not a stream clause at all, or another product's stream syntax
    (
        "",
        "Unexpected end of input (line 1, column 1): expected ALTER STREAM, CHECK STREAM, "
        "CREATE KAFKA STREAM, "
        "CREATE PULSAR STREAM, CREATE STREAM, DROP STREAM, SHOW STREAM, "
        "SHOW STREAMS, START ALL STREAMS, START STREAM, STOP ALL STREAMS, STOP STREAM or "
        "TEST STREAM",
        1,
        1,
        ANY_CLAUSE,
    ),
    (
        "  // only a comment",
        "Unexpected end of input (line 1, column 20): expected ALTER STREAM, CHECK STREAM, "
        "CREATE KAFKA STREAM, "
        "CREATE PULSAR STREAM, CREATE STREAM, DROP STREAM, SHOW STREAM, "
        "SHOW STREAMS, START ALL STREAMS, START STREAM, STOP ALL STREAMS, STOP STREAM or "
        "TEST STREAM",
        1,
        20,
        ANY_CLAUSE,
    ),
    (
        "MATCH (n) RETURN n",
        "Invalid input 'MATCH' (line 1, column 1): expected ALTER STREAM, CHECK STREAM, "
        "CREATE KAFKA STREAM, "
        "CREATE PULSAR STREAM, CREATE STREAM, DROP STREAM, SHOW STREAM, "
        "SHOW STREAMS, START ALL STREAMS, START STREAM, STOP ALL STREAMS, STOP STREAM or "
        "TEST STREAM",
        1,
        1,
        ANY_CLAUSE,
    ),
    (
        "CREATE (n)",
        "Invalid input '(' (line 1, column 8): expected KAFKA STREAM, PULSAR STREAM or STREAM",
        1,
        8,
        ["KAFKA STREAM", "PULSAR STREAM", "STREAM"],
    ),
    (
        "SHOW DATABASES",
        "Invalid input 'DATABASES' (line 1, column 6): expected STREAM or STREAMS",
        1,
        6,
        ["STREAM", "STREAMS"],
    ),
    (
        "START STREAMX s",
        "Invalid input 'STREAMX' (line 1, column 7): expected ALL STREAMS or STREAM",
        1,
        7,
        ["ALL STREAMS", "STREAM"],
    ),
    (
        "STOP ALL",
        "Unexpected end of input (line 1, column 9): expected STREAMS",
        1,
        9,
        ["STREAMS"],
    ),
    # -- Memgraph 2.x
    (
        "CREATE KAFKA STREAM s TOPICS t",
        "Unexpected end of input (line 1, column 31): TRANSFORM is required",
        1,
        31,
        ["TRANSFORM"],
    ),
    (
        "CREATE STREAM s TRANSFORM m.p",
        "Unexpected end of input (line 1, column 30): TOPICS is required",
        1,
        30,
        ["TOPICS"],
    ),
    (
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p TOPICS u",
        "Invalid input 'TOPICS' (line 1, column 46): TOPICS is given more than once",
        1,
        46,
        [
            "BATCH_INTERVAL",
            "BATCH_SIZE",
            "BOOTSTRAP_SERVERS",
            *SETTINGS,
            "DATABASE",
            *DELIVERY,
            *ON_ERROR,
            *END,
        ],
    ),
    (
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p CONFIGS {'a': 1}",
        "Invalid input '1' (line 1, column 60): expected a string",
        1,
        60,
        ["a string"],
    ),
    (
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m.p CREDENTIALS {'a' 'b'}",
        "Invalid input ''b'' (line 1, column 63): expected ':'",
        1,
        63,
        ["':'"],
    ),
    (
        "CREATE KAFKA STREAM s TOPICS t TRANSFORM m",
        "Unexpected end of input (line 1, column 43): expected '.'",
        1,
        43,
        ["'.'"],
    ),
    (
        "START STREAM s TIMEOUT 100",
        "Unexpected end of input (line 1, column 27): TIMEOUT can only be given with BATCH_LIMIT",
        1,
        27,
        ["BATCH_LIMIT"],
    ),
    (
        "CHECK STREAM s BATCH_LIMIT 0",
        "Invalid input '0' (line 1, column 28): expected a positive integer for BATCH_LIMIT",
        1,
        28,
        ["a positive integer"],
    ),
    (
        "CHECK STREAM s TIMEOUT 1 TIMEOUT 2",
        "Invalid input 'TIMEOUT' (line 1, column 26): TIMEOUT is given more than once",
        1,
        26,
        ["BATCH_LIMIT", *END],
    ),
    (  # ASCII case-insensitivity only: a long s is not an S
        "\u017fHOW STREAMS",
        "Invalid input '\u017fHOW' (line 1, column 1): expected ALTER STREAM, CHECK STREAM, "
        "CREATE KAFKA STREAM, "
        "CREATE PULSAR STREAM, CREATE STREAM, DROP STREAM, SHOW STREAM, "
        "SHOW STREAMS, START ALL STREAMS, START STREAM, STOP ALL STREAMS, STOP STREAM or "
        "TEST STREAM",
        1,
        1,
        ANY_CLAUSE,
    ),
]


@pytest.mark.parametrize(("query", "message", "line", "column", "expected"), CASES)
def test_error(query: str, message: str, line: int, column: int, expected: list[str]) -> None:
    error = error_of(query)
    assert (error.message, error.line, error.column, error.expected) == (
        message,
        line,
        column,
        expected,
    )
    assert str(error) == message


@pytest.mark.parametrize(
    ("literal", "shown", "offset"),
    [
        ("'\\q'", "\\q", 1),
        ("'ok\\x41'", "\\x", 3),  # no \x escapes in Cypher
        ("'\\u12'", "\\u", 1),  # \u takes exactly four hex digits
        ("'\\uD800'", "\\uD800", 1),  # a lone surrogate cannot be sent as UTF-8
        ("'\\uDFFF'", "\\uDFFF", 1),
        ("'\\U00110000'", "\\U00110000", 1),  # beyond Unicode
        ("'\\U1F600'", "\\U", 1),  # \U takes exactly eight
        ("'a\\\\\\z'", "\\z", 4),  # an escaped backslash, then a bad escape
        ("'\\\n'", "\\", 1),  # backslash-newline (shown up to the newline)
    ],
)
def test_bad_escapes_point_at_the_backslash(literal: str, shown: str, offset: int) -> None:
    query = f"CREATE STREAM s AS LOAD DATA KAFKA {literal} WITH TOPIC 't' WITH TRANSFORM 'x'"
    error = error_of(query)
    column = query.index(literal) + 1 + offset
    assert error.message.startswith(f"Invalid escape sequence '{shown}' (line 1, column {column}):")
    assert (error.line, error.column) == (1, column)


def test_long_input_is_shortened_in_the_message() -> None:
    error = error_of("SHOW STREAMS " + "x" * 200)
    assert error.message == (
        "Invalid input '" + "x" * 37 + "...' (line 1, column 14): expected ';' or end of input"
    )


def test_found_text_stops_at_a_newline() -> None:
    error = error_of("SHOW STREAMS 'two\nlines'")
    assert error.message.startswith("Invalid input ''two' (line 1, column 14)")


def test_columns_count_characters_not_bytes() -> None:
    error = error_of("DROP STREAM `名前` oops")
    assert (error.line, error.column) == (1, 18)


def test_error_policy_and_pickling() -> None:
    error = error_of("SHOW STREAMS garbage")
    assert isinstance(error, ValueError)
    assert error.code == "Neo.ClientError.Statement.SyntaxError"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.line, copy.column, copy.expected) == (
        error.message,
        error.line,
        error.column,
        error.expected,
    )


def test_no_lark_exception_chained() -> None:
    # The FAILURE should not carry lark internals, and a traceback should not show them either.
    error = error_of("CREATE STREAM s AS LOAD DATA KAFKA 'k' FOO")
    assert error.__cause__ is None and error.__suppress_context__

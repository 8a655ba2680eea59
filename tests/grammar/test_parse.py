"""Every clause in many spellings, the manual's own examples, and defaults left to the engine."""

from __future__ import annotations

import pytest

from grammar import (
    KEYWORDS,
    CreateStream,
    DropStream,
    ShowStreams,
    StartAllStreams,
    StartStream,
    StopAllStreams,
    StopStream,
    StreamClause,
    TestStream,
    looks_like_stream_clause,
    parse_stream_clause,
)

MANUAL = CreateStream("mystream", "localhost:9092", "test", "http://localhost/transform.py")


def parses_to(query: str, clause: StreamClause) -> None:
    assert parse_stream_clause(query) == clause
    assert looks_like_stream_clause(query)


# reference/seeds/000_*.txt, verbatim (the bracketed syntax lines with their placeholders filled).
@pytest.mark.parametrize(
    ("query", "clause"),
    [
        (
            "CREATE STREAM mystream AS LOAD DATA KAFKA 'localhost:9092' WITH TOPIC 'test' WITH\n"
            "TRANSFORM 'http://localhost/transform.py'",
            MANUAL,
        ),
        (
            "CREATE STREAM stream_name AS\nLOAD DATA KAFKA 'URI'\nWITH TOPIC 'topic'\n"
            "WITH TRANSFORM 'URI'\nBATCH_INTERVAL 100\nBATCH_SIZE 10",
            CreateStream("stream_name", "URI", "topic", "URI", 100, 10),
        ),
        ("DROP STREAM stream_name;", DropStream("stream_name")),
        ("SHOW STREAMS;", ShowStreams()),
        ("SHOW STREAMS", ShowStreams()),
        ("START STREAM stream_name LIMIT 3 BATCHES;", StartStream("stream_name", 3)),
        ("START STREAM mystream;", StartStream("mystream")),
        ("STOP STREAM stream_name;", StopStream("stream_name")),
        ("STOP STREAM mystream;", StopStream("mystream")),
        ("START ALL STREAMS;", StartAllStreams()),
        ("STOP ALL STREAMS;", StopAllStreams()),
        ("TEST STREAM stream_name LIMIT 2 BATCHES;", TestStream("stream_name", 2)),
        ("TEST STREAM mystream;", TestStream("mystream")),
    ],
)
def test_manual_examples(query: str, clause: StreamClause) -> None:
    parses_to(query, clause)


def test_legacy_unit_test_spelling() -> None:
    # Memgraph's own legacy test (memgraph_streams.md §1.1): two-word options, mixed case.
    parses_to(
        "CREATE STREAM strim AS LOAD DATA KAFKA 'localhost' WITH TOPIC 'tropika' "
        "WITH TRANSFORM 'localhost/test.py' bAtCH inTErvAL 168 Batch SIze 17",
        CreateStream("strim", "localhost", "tropika", "localhost/test.py", 168, 17),
    )


def test_defaults_are_left_to_the_engine() -> None:
    created = parse_stream_clause(
        "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'"
    )
    assert isinstance(created, CreateStream)
    assert created.batch_interval_ms is None and created.batch_size is None
    assert parse_stream_clause("START STREAM s") == StartStream("s", None)
    assert parse_stream_clause("TEST STREAM s") == TestStream("s", None)


CREATE_HEAD = "CREATE STREAM s AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'x'"


@pytest.mark.parametrize(
    ("options", "interval", "size"),
    [
        ("BATCH_INTERVAL 5", 5, None),
        ("BATCH_SIZE 7", None, 7),
        ("BATCH_INTERVAL 5 BATCH_SIZE 7", 5, 7),
        ("BATCH_SIZE 7 BATCH_INTERVAL 5", 5, 7),
        ("BATCH INTERVAL 5 BATCH SIZE 7", 5, 7),
        ("BATCH SIZE 7 BATCH INTERVAL 5", 5, 7),
        ("BATCH_SIZE 7 BATCH INTERVAL 5", 5, 7),
        ("batch interval 5 BATCH_SIZE 7", 5, 7),
        ("BATCH/* two words */INTERVAL 5 BATCH\n  SIZE 7", 5, 7),
        ("BATCH // line comment\nSIZE 7", None, 7),
        ("BATCH_INTERVAL 1 BATCH_SIZE 1", 1, 1),
        ("BATCH_INTERVAL 9223372036854775807", 2**63 - 1, None),
    ],
)
def test_batch_options_both_spellings_either_order(
    options: str, interval: int | None, size: int | None
) -> None:
    parses_to(f"{CREATE_HEAD} {options}", CreateStream("s", "k", "t", "x", interval, size))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("ON ERROR STOP", {"on_error": "stop"}),
        ("on error skip", {"on_error": "skip"}),
        ("ON ERROR DEAD LETTER 'dlq'", {"on_error": "dead letter", "dead_letter_topic": "dlq"}),
        (
            'On Error Dead Letter "a.b-c_d"',
            {"on_error": "dead letter", "dead_letter_topic": "a.b-c_d"},
        ),
        (
            "ON/* c */ERROR // c\n DEAD\nLETTER'x'",
            {"on_error": "dead letter", "dead_letter_topic": "x"},
        ),
        ("ON ERROR SKIP BATCH_SIZE 7", {"on_error": "skip", "batch_size": 7}),
        ("BATCH_SIZE 7 ON ERROR SKIP", {"on_error": "skip", "batch_size": 7}),
        (
            "BATCH INTERVAL 5 ON ERROR STOP BATCH SIZE 7",
            {"on_error": "stop", "batch_interval_ms": 5, "batch_size": 7},
        ),
        (
            "ON ERROR DEAD LETTER 'd' BATCH_SIZE 7 BATCH_INTERVAL 5",
            {
                "on_error": "dead letter",
                "dead_letter_topic": "d",
                "batch_interval_ms": 5,
                "batch_size": 7,
            },
        ),
        (
            "BATCH_SIZE 7 BATCH_INTERVAL 5 ON ERROR DEAD LETTER ''",
            {
                "on_error": "dead letter",
                "dead_letter_topic": "",
                "batch_interval_ms": 5,
                "batch_size": 7,
            },
        ),
    ],
)
def test_on_error_option_in_any_position(options: str, expected: dict[str, object]) -> None:
    parses_to(f"{CREATE_HEAD} {options};", CreateStream("s", "k", "t", "x", **expected))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("DELIVERY EXACTLY ONCE", {"delivery": "exactly once"}),
        ("delivery at least once", {"delivery": "at least once"}),
        (
            "BATCH_SIZE 7 DELIVERY EXACTLY ONCE ON ERROR SKIP",
            {"delivery": "exactly once", "batch_size": 7, "on_error": "skip"},
        ),
        (
            "DELIVERY/* c */EXACTLY // c\n ONCE BATCH INTERVAL 5",
            {"delivery": "exactly once", "batch_interval_ms": 5},
        ),
        (
            "ON ERROR DEAD LETTER 'd' DELIVERY AT LEAST ONCE BATCH_INTERVAL 5 BATCH_SIZE 1",
            {
                "on_error": "dead letter",
                "dead_letter_topic": "d",
                "delivery": "at least once",
                "batch_interval_ms": 5,
                "batch_size": 1,
            },
        ),
    ],
)
def test_delivery_option_in_any_position(options: str, expected: dict[str, object]) -> None:
    parses_to(f"{CREATE_HEAD} {options}", CreateStream("s", "k", "t", "x", **expected))


def test_every_option_once_in_every_order() -> None:
    """The options are ``option*`` in the grammar: any order, each once, none required."""
    import itertools

    options = {
        "BATCH_INTERVAL 5": {"batch_interval_ms": 5},
        "BATCH SIZE 6": {"batch_size": 6},
        "ON ERROR SKIP": {"on_error": "skip"},
        "DELIVERY EXACTLY ONCE": {"delivery": "exactly once"},
    }
    for size in range(len(options) + 1):
        for chosen in itertools.permutations(options, size):
            expected: dict[str, object] = {}
            for text in chosen:
                expected.update(options[text])
            parses_to(
                f"{CREATE_HEAD} {' '.join(chosen)}", CreateStream("s", "k", "t", "x", **expected)
            )  # type: ignore[arg-type]


def test_on_error_is_left_to_the_engine_when_absent() -> None:
    created = parse_stream_clause(f"{CREATE_HEAD} BATCH_SIZE 3")
    assert isinstance(created, CreateStream)
    assert created.on_error is None and created.dead_letter_topic is None
    built_in = parse_stream_clause(
        "CREATE STREAM d AS LOAD DATA KAFKA 'k' WITH TOPIC 't' WITH TRANSFORM 'builtin:depc' "
        "ON ERROR DEAD LETTER 't.dlq'"
    )
    assert built_in == CreateStream(
        "d", "k", "t", "builtin:depc", on_error="dead letter", dead_letter_topic="t.dlq"
    )


@pytest.mark.parametrize(
    "query",
    [
        "SHOW STREAMS",
        "show streams",
        "ShOw StReAmS",
        "  SHOW STREAMS  ",
        "\n\tSHOW\n\n\tSTREAMS\n",
        "SHOW\r\nSTREAMS\r\n",
        "SHOW\u00a0STREAMS\u2028",  # Unicode whitespace, as Cypher allows
        "SHOW STREAMS;",
        "SHOW STREAMS ;",
        "SHOW STREAMS;  ",
        "SHOW STREAMS; // trailing comment",
        "SHOW STREAMS /* c */ ; /* c */",
        "// leading comment\nSHOW STREAMS",
        "/* leading */SHOW STREAMS",
        "/* a */ /* b */ // c\n SHOW STREAMS",
        "SHOW/**/STREAMS",
        "SHOW/* multi\nline */STREAMS",
        "SHOW // a comment between keywords\nSTREAMS",
        "SHOW STREAMS // no newline at the end",
        "SHOW STREAMS /* // not a line comment */",
    ],
)
def test_case_whitespace_comments_semicolon(query: str) -> None:
    parses_to(query, ShowStreams())


@pytest.mark.parametrize(
    ("query", "clause"),
    [
        ("drop stream s", DropStream("s")),
        ("Drop Stream S", DropStream("S")),  # names keep their case
        ("DROP STREAM _private_1", DropStream("_private_1")),
        ("DROP STREAM ünïcödé_名前", DropStream("ünïcödé_名前")),
        ("DROP STREAM `my stream`", DropStream("my stream")),
        ("DROP STREAM `with``backtick`", DropStream("with`backtick")),
        ("DROP STREAM `1starts with a digit`", DropStream("1starts with a digit")),
        ("DROP STREAM `multi\nline`", DropStream("multi\nline")),
        ("DROP STREAM`quoted`", DropStream("quoted")),
        # Keywords are names where a name is wanted (the legacy grammar allowed it too).
        ("DROP STREAM stream", DropStream("stream")),
        ("START STREAM all", StartStream("all")),
        ("START STREAM limit LIMIT 2 BATCHES", StartStream("limit", 2)),
        ("STOP STREAM streams", StopStream("streams")),
        ("TEST STREAM batches LIMIT 1 BATCHES", TestStream("batches", 1)),
        ("start stream s limit 10 batches", StartStream("s", 10)),
        ("START STREAM s LIMIT 10 BATCHES;", StartStream("s", 10)),
        ("START STREAM s\nLIMIT\n10\nBATCHES", StartStream("s", 10)),
        ("TEST STREAM s /* x */ LIMIT /* y */ 4 /* z */ BATCHES", TestStream("s", 4)),
        ("start all streams", StartAllStreams()),
        ("STOP\tALL\tSTREAMS", StopAllStreams()),
        ("Start All Streams;", StartAllStreams()),
    ],
)
def test_names_and_lifecycle_clauses(query: str, clause: StreamClause) -> None:
    parses_to(query, clause)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("''", ""),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'\"'", '"'),
        ('"\'"', "'"),
        ("'back\\\\slash'", "back\\slash"),
        ("'\\t\\n\\r\\b\\f'", "\t\n\r\b\f"),
        ("'\\T\\N\\R\\B\\F'", "\t\n\r\b\f"),  # openCypher letters are case-insensitive
        ("'\\u00e9\\u4E2D'", "é中"),
        ("'\\U0001F600'", "\U0001f600"),
        ("'raw\nnewline'", "raw\nnewline"),
        ("'// not a comment /* either */'", "// not a comment /* either */"),
        ("'WITH TOPIC'", "WITH TOPIC"),
    ],
)
def test_string_literals_and_escapes(literal: str, value: str) -> None:
    query = f"CREATE STREAM s AS LOAD DATA KAFKA {literal} WITH TOPIC {literal} WITH TRANSFORM 'x'"
    parses_to(query, CreateStream("s", value, value, "x"))


def test_strings_need_no_space_around_them() -> None:
    parses_to(
        "CREATE STREAM s AS LOAD DATA KAFKA'k'WITH TOPIC\"t\"WITH TRANSFORM'x'BATCH_SIZE 2;",
        CreateStream("s", "k", "t", "x", None, 2),
    )


def test_clause_values_are_plain_strings() -> None:
    created = parse_stream_clause(CREATE_HEAD)
    assert isinstance(created, CreateStream)
    for value in (created.name, created.uri, created.topic, created.transform):
        assert type(value) is str  # not lark's Token subclass


def test_clauses_are_frozen_and_hashable() -> None:
    clause = parse_stream_clause("START STREAM s LIMIT 2 BATCHES")
    with pytest.raises(AttributeError):
        clause.name = "other"  # type: ignore[misc, union-attr]
    assert {clause, StartStream("s", 2)} == {StartStream("s", 2)}


def test_keywords_are_the_first_words_of_every_clause() -> None:
    assert KEYWORDS == ("CREATE", "DROP", "SHOW", "START", "STOP", "TEST", "CHECK", "ALTER")

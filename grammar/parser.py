"""``parse_stream_clause``: query text -> a clause dataclass, or a ``StreamSyntaxError``.

How a parse runs. The LALR parser (stream.lark, built once at import) is driven token by token
through lark's interactive parser (``iter_parse``), so each value is checked as soon as it is
lexed, before the parser sees it, and an error is always reported at the first bad place in the
text. The callbacks that build the clause then decode the checked values.

* ``NUMBER`` must be a positive decimal integer that fits a signed 64-bit integer (a Bolt
  Integer, so that the values can go back to clients as they are). The message names the
  option: BATCH_INTERVAL, BATCH_SIZE or LIMIT.
* ``STRING`` escapes are Cypher's: ``\\\\ \\' \\" \\b \\f \\n \\r \\t \\uXXXX \\UXXXXXXXX``;
  anything else, or a surrogate code point, is an error at the backslash.
* ``QUOTED_NAME`` loses its backticks (a doubled backtick is one backtick), and may not be empty.

Lark's own exceptions never leave this module. An unexpected token or character becomes
``Invalid input 'X' (line L, column C): expected A, B or C``. The expected list comes from the
parse table: each acceptable keyword is followed forward while the only continuations are
keywords, so it reads ``WITH TOPIC`` or ``START ALL STREAMS`` rather than ``WITH`` or ``START``.
Unterminated strings, quoted names and comments, a repeated option, and a ``$parameter`` get
messages of their own.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from importlib.resources import files
from typing import Any, Protocol, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

from grammar.clauses import (
    AlterStream,
    AlterStreamOffset,
    AlterStreamSkip,
    CheckStream,
    CreateKafkaStream,
    CreateStream,
    Delivery,
    DropStream,
    MappingClauseOptions,
    OnError,
    ShowStreamOffsets,
    ShowStreams,
    StartAllStreams,
    StartStream,
    StopAllStreams,
    StopStream,
    StreamClause,
    TestStream,
    UnsupportedStreamClause,
    ValueFormat,
)
from grammar.errors import StreamSyntaxError

INT64_MAX = 2**63 - 1

# What each non-keyword terminal is called in "expected ..." lists.
_VALUE_NAMES = {
    "NAME": "a stream name",
    "QUOTED_NAME": "a stream name",
    "STRING": "a string",
    "NUMBER": "a positive integer",
    "_SEMICOLON": "';'",
    "_COMMA": "','",
    "_DOT": "'.'",
    "_COLON": "':'",
    "_LBRACE": "'{'",
    "_RBRACE": "'}'",
    "TOPIC_NAME": "a topic name",
    "$END": "end of input",
}
# Options that may appear once per clause, with the terminals that start each spelling.
_OPTION_OF_TERMINAL = {
    "_BATCH_INTERVAL": "BATCH_INTERVAL",
    "_INTERVAL": "BATCH_INTERVAL",  # only ever after BATCH
    "_BATCH_SIZE": "BATCH_SIZE",
    "_SIZE": "BATCH_SIZE",  # only ever after BATCH
    "_LIMIT": "LIMIT",
    "_ON": "ON ERROR",
    "_DELIVERY": "DELIVERY",
    # WITH TRANSFORM in the legacy clause, TRANSFORM in Memgraph's and in ALTER ... SET: one option.
    "_TRANSFORM": "TRANSFORM",
    "_DATABASE": "DATABASE",
    "_CYPHER": "WITH CYPHER",  # only ever after WITH
    "_FORMAT": "WITH FORMAT",  # only ever after WITH
    "_NODE": "MERGE NODE PROPERTIES",  # only ever after MERGE
    "_RELATIONSHIP": "MERGE RELATIONSHIP PROPERTIES",  # only ever after MERGE
    "_TOPICS": "TOPICS",
    "_CONSUMER_GROUP": "CONSUMER_GROUP",
    "_BOOTSTRAP_SERVERS": "BOOTSTRAP_SERVERS",
    "_CONFIGS": "CONFIGS",
    "_CREDENTIALS": "CREDENTIALS",
    "_BATCH_LIMIT": "BATCH_LIMIT",
    "_TIMEOUT": "TIMEOUT",
}
# The second words of options, with the first word they come after.
_SECOND_WORD = {
    "_INTERVAL": "_BATCH",
    "_SIZE": "_BATCH",
    "_TRANSFORM": "_WITH",
    "_CYPHER": "_WITH",
    "_FORMAT": "_WITH",
    "_NODE": "_MERGE",
    "_RELATIONSHIP": "_MERGE",
}
# The first keywords of each option of CREATE STREAM, as expected lists show them.
_OPTION_OF_PHRASE = {
    "BATCH_INTERVAL": "BATCH_INTERVAL",
    "BATCH_SIZE": "BATCH_SIZE",
    "ON": "ON ERROR",
    "DELIVERY": "DELIVERY",
    "WITH TRANSFORM": "TRANSFORM",
    "WITH CYPHER": "WITH CYPHER",
    "WITH FORMAT": "WITH FORMAT",
    "MERGE NODE": "MERGE NODE PROPERTIES",
    "MERGE RELATIONSHIP": "MERGE RELATIONSHIP PROPERTIES",
    "WITH PATTERN": "WITH PATTERN",
    "TOPICS": "TOPICS",
    "TRANSFORM": "TRANSFORM",
    "CONSUMER_GROUP": "CONSUMER_GROUP",
    "BOOTSTRAP_SERVERS": "BOOTSTRAP_SERVERS",
    "CONFIGS": "CONFIGS",
    "CREDENTIALS": "CREDENTIALS",
    "BATCH_LIMIT": "BATCH_LIMIT",
    "TIMEOUT": "TIMEOUT",
    "DATABASE": "DATABASE",
}
# A stream has a transform or a mapping: once one is given, the other is not expected.
_MAPPING_OPTIONS = frozenset(
    {
        "WITH CYPHER",
        "WITH PATTERN",
        "WITH FORMAT",
        "MERGE NODE PROPERTIES",
        "MERGE RELATIONSHIP PROPERTIES",
    }
)
# The keyword arguments of MappingClauseOptions.
_MAPPING_FIELDS = frozenset(f.name for f in dataclasses.fields(MappingClauseOptions))
# Terminals after which a NUMBER may be 0 (offsets, timestamps, partitions).
_ZERO_ALLOWED = {"_TO": "the offset", "_TIMESTAMP": "TIMESTAMP", "_PARTITION": "PARTITION"}
_MAX_PHRASE_WORDS = 5  # longest: AS LOAD DATA KAFKA
_FOUND_MAX_CHARS = 40

_POSITIVE_INTEGER = re.compile(r"[1-9][0-9]*")
# Every backslash in a lexed STRING is followed by a character; group 3 is any other pair.
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([\s\S]))")
_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_VALID_ESCAPES = ["\\\\", "\\'", '\\"', "\\b", "\\f", "\\n", "\\r", "\\t", "\\uXXXX", "\\UXXXXXXXX"]
_LEXEME_AT = re.compile(r"\$\w*|\w+|.", re.DOTALL)


class _Build(Transformer[Token, Any]):
    """Parse-table callbacks (run inline by the LALR parser): rule children -> values."""

    def start(self, children: list[StreamClause]) -> StreamClause:
        return children[0]

    def name(self, children: list[Token]) -> str:
        token = children[0]
        return token[1:-1].replace("``", "`") if token.type == "QUOTED_NAME" else str(token)

    def batch_interval(self, children: list[Token]) -> tuple[str, int]:
        return ("batch_interval_ms", int(children[0]))

    def batch_size(self, children: list[Token]) -> tuple[str, int]:
        return ("batch_size", int(children[0]))

    def limit(self, children: list[Token]) -> int:
        return int(children[0])

    def on_error_stop(self, children: list[Token]) -> tuple[str, OnError]:
        return ("on_error", "stop")

    def on_error_skip(self, children: list[Token]) -> tuple[str, OnError]:
        return ("on_error", "skip")

    def on_error_dead_letter(self, children: list[Token]) -> tuple[str, tuple[OnError, str]]:
        return ("on_error", ("dead letter", _string_value(children[0])))

    def delivery_at_least_once(self, children: list[Token]) -> tuple[str, Delivery]:
        return ("delivery", "at least once")

    def delivery_exactly_once(self, children: list[Token]) -> tuple[str, Delivery]:
        return ("delivery", "exactly once")

    def with_transform(self, children: list[Token]) -> tuple[str, str]:
        return ("transform", _string_value(children[0]))

    def cypher(self, children: list[Token]) -> tuple[str, str]:
        return ("cypher", _string_value(children[0]))

    def pattern(self, children: list[Token]) -> tuple[str, str]:
        return ("pattern", _string_value(children[0]))

    def format_cud(self, children: list[Token]) -> tuple[str, ValueFormat]:
        return ("value_format", "cud")

    def format_json(self, children: list[Token]) -> tuple[str, ValueFormat]:
        return ("value_format", "json")

    def format_text(self, children: list[Token]) -> tuple[str, ValueFormat]:
        return ("value_format", "text")

    def format_bytes(self, children: list[Token]) -> tuple[str, ValueFormat]:
        return ("value_format", "bytes")

    def merge_node_properties(self, children: list[Token]) -> tuple[str, bool]:
        return ("merge_node_properties", True)

    def merge_relationship_properties(self, children: list[Token]) -> tuple[str, bool]:
        return ("merge_relationship_properties", True)

    def more_topic(self, children: list[Token]) -> tuple[str, tuple[str, ...]]:
        return ("more_topic", _split_topics(_string_value(children[0])))

    def topics(self, children: list[tuple[str, ...]]) -> tuple[str, tuple[str, ...]]:
        return ("topics", tuple(t for named in children for t in named))

    def topic_name(self, children: list[Token]) -> tuple[str, ...]:
        token = children[0]
        if token.type == "STRING":
            return _split_topics(_string_value(token))
        return (str(token),)

    def transform_module(self, children: list[str]) -> tuple[str, tuple[str, bool]]:
        return ("transform", (f"{children[0]}.{children[1]}", True))

    def transform_uri(self, children: list[Token]) -> tuple[str, tuple[str, bool]]:
        return ("transform", (_string_value(children[0]), False))

    def consumer_group(self, children: list[tuple[str, ...]]) -> tuple[str, str]:
        return ("consumer_group", ",".join(children[0]))

    def bootstrap_servers(self, children: list[Token]) -> tuple[str, str]:
        return ("bootstrap_servers", _string_value(children[0]))

    def configs(self, children: list[tuple[tuple[str, str], ...]]) -> tuple[str, Any]:
        return ("configs", children[0])

    def credentials(self, children: list[tuple[tuple[str, str], ...]]) -> tuple[str, Any]:
        return ("credentials", children[0])

    def settings(self, children: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple(children)

    def setting(self, children: list[Token]) -> tuple[str, str]:
        key, value = children
        return (_string_value(key) if key.type == "STRING" else str(key), _string_value(value))

    def batch_limit(self, children: list[Token]) -> tuple[str, int]:
        return ("limit_batches", int(children[0]))

    def timeout(self, children: list[Token]) -> tuple[str, int]:
        return ("timeout_ms", int(children[0]))

    def database(self, children: list[str]) -> tuple[str, str]:
        return ("database", children[0])

    def offset_beginning(self, children: list[Token]) -> tuple[str, int | None]:
        return ("beginning", None)

    def offset_end(self, children: list[Token]) -> tuple[str, int | None]:
        return ("end", None)

    def offset_number(self, children: list[Token]) -> tuple[str, int | None]:
        return ("offset", int(children[0]))

    def offset_timestamp(self, children: list[Token]) -> tuple[str, int | None]:
        return ("timestamp", int(children[0]))

    def for_partition(self, children: list[Token]) -> tuple[str, int]:
        return ("partition", int(children[0]))

    def show_stream_offsets(self, children: list[str]) -> ShowStreamOffsets:
        return ShowStreamOffsets(children[0])

    def alter_stream_offset(self, children: list[Any]) -> AlterStreamOffset:
        name, (target, value), *rest = children
        partition = rest[0][1] if rest else None
        return AlterStreamOffset(name, target, value, partition)

    def alter_stream_skip(self, children: list[str]) -> AlterStreamSkip:
        return AlterStreamSkip(children[0])

    def alter_stream_set(self, children: list[Any]) -> AlterStream:
        name, *options = children
        values = _options(options)
        transform = values.pop("transform", None)
        if transform is not None:
            values["transform"], values["module"] = transform
        return AlterStream(name, **values)

    def create_stream(self, children: list[Any]) -> CreateStream:
        name, uri, topic, *rest = children
        more = [t for option, value in rest if option == "more_topic" for t in value]
        options = [item for item in rest if item[0] != "more_topic"]
        first, *others = _split_topics(_string_value(topic))
        return CreateStream(
            name, _string_value(uri), first, more_topics=(*others, *more), **_options(options)
        )

    def create_kafka_stream(self, children: list[Any]) -> CreateKafkaStream:
        name, *options = children
        values = _options(options)
        topics = values.pop("topics", None)
        transform = values.pop("transform", None)
        if topics is None:
            raise _Missing("TOPICS")
        if transform is None:
            if not MappingClauseOptions(**_mapping_values(values)).has_mapping:
                raise _Missing("TRANSFORM")
            transform = (None, False)  # a mapping instead: the engine checks it
        text, module = transform
        return CreateKafkaStream(name, topics, text, module, **values)

    def check_stream(self, children: list[Any]) -> CheckStream:
        name, *options = children
        return CheckStream(name, **dict(options))

    def create_pulsar_stream(self, children: list[Any]) -> UnsupportedStreamClause:
        return UnsupportedStreamClause(
            "CREATE PULSAR STREAM",
            "Pulsar streams are not supported: boltstream reads Kafka and "
            "Kafka-compatible brokers (Redpanda, Tansu...) only; use CREATE KAFKA STREAM",
        )

    def start_stream_limited(self, children: list[Any]) -> StartStream:
        name, *options = children
        values = dict(options)
        if "limit_batches" not in values:
            raise _Missing("BATCH_LIMIT", "TIMEOUT can only be given with BATCH_LIMIT")
        return StartStream(name, values["limit_batches"], True, values.get("timeout_ms"))

    def drop_stream(self, children: list[str]) -> DropStream:
        return DropStream(children[0])

    def show_streams(self, children: list[Any]) -> ShowStreams:
        return ShowStreams()

    def start_stream(self, children: list[Any]) -> StartStream:
        return StartStream(*children)

    def stop_stream(self, children: list[str]) -> StopStream:
        return StopStream(children[0])

    def start_all_streams(self, children: list[Any]) -> StartAllStreams:
        return StartAllStreams()

    def stop_all_streams(self, children: list[Any]) -> StopAllStreams:
        return StopAllStreams()

    def test_stream(self, children: list[Any]) -> TestStream:
        return TestStream(*children)


class _Missing(Exception):
    """A required part of a clause that the grammar takes in any order was left out."""

    def __init__(self, part: str, detail: str | None = None) -> None:
        super().__init__(part)
        self.part = part
        self.detail = detail or f"{part} is required"


def _options(options: list[tuple[str, Any]]) -> dict[str, Any]:
    """An option list as keyword arguments (ON ERROR DEAD LETTER is two fields; the patterns
    of WITH PATTERN, repeated, are one, in order)."""
    values = dict(item for item in options if item[0] != "pattern")
    patterns = tuple(value for option, value in options if option == "pattern")
    if patterns:
        values["patterns"] = patterns
    on_error = values.pop("on_error", None)
    if isinstance(on_error, tuple):
        values["on_error"], values["dead_letter_topic"] = on_error
    elif on_error is not None:
        values["on_error"] = on_error
    return values


def _mapping_values(values: dict[str, Any]) -> dict[str, Any]:
    """The mapping options among a clause's keyword arguments."""
    return {key: value for key, value in values.items() if key in _MAPPING_FIELDS}


def _split_topics(text: str) -> tuple[str, ...]:
    """'a,b' names two topics (Memgraph's TOPICS 'a,b', and the legacy WITH TOPIC 'a,b');
    the topics are checked by the engine."""
    if "," not in text:
        return (text,)
    return tuple(part.strip() for part in text.split(","))


class _Interactive(Protocol):
    """The part of lark's InteractiveParser used here (lark leaves these methods unannotated).

    ``iter_parse`` needs lark 1.1.2 or later; the tests pass on 1.1.2, 1.1.9 and 1.3.1."""

    parser_state: Any

    def iter_parse(self) -> Iterator[Token]: ...
    def feed_token(self, token: Token) -> Any: ...
    def accepts(self) -> set[str]: ...


_PARSER = Lark(
    files("grammar").joinpath("stream.lark").read_text(encoding="utf-8"),
    parser="lalr",
    lexer="contextual",
    transformer=_Build(),
)
_PULSAR = ["_CREATE", "_PULSAR", "_STREAM"]
_EXPECTED_BY_STACK: dict[tuple[int, ...], tuple[str, ...]] = {}
_KEYWORD_TERMINALS = frozenset(
    t.name for t in _PARSER.terminals if t.name.startswith("_") and t.name not in _VALUE_NAMES
)


def parse_stream_clause(query: str) -> StreamClause:
    """Parse one stream clause (a trailing ``;`` and comments allowed).

    Raises ``StreamSyntaxError`` for anything else, whether or not ``looks_like_stream_clause``
    passed it; nothing else escapes. Run the returned clause; report the error as a FAILURE.
    """
    interactive = _start(query)
    accepted: list[Token] = []
    try:
        # iter_parse feeds each token to the parser after yielding it.
        for token in interactive.iter_parse():
            _check(query, token, accepted)
            _check_repeat(query, token, accepted)
            accepted.append(token)
            if [t.type for t in accepted] == _PULSAR:
                return _Build().create_pulsar_stream([])  # refused, whatever follows
        end = len(query)
        line, column = _line_column(query, end)
        eof = Token("$END", "", start_pos=end, line=line, column=column, end_pos=end)
        return cast(StreamClause, interactive.feed_token(eof))
    except _Missing as missing:
        raise _error(
            query, len(query), "Unexpected end of input", [missing.part], missing.detail
        ) from None
    except UnexpectedToken as e:
        if accepted and accepted[-1] is e.token:  # lexed and checked, then refused
            accepted.pop()
        raise _unexpected_token(query, e.token, accepted) from None
    except UnexpectedCharacters as e:
        raise _unexpected_character(query, e.pos_in_stream or 0, accepted) from None


def _start(query: str) -> _Interactive:
    return cast(_Interactive, _PARSER.parse_interactive(query))


# -- tokens -----------------------------------------------------------------------------------


def _check(query: str, token: Token, accepted: list[Token]) -> None:
    """Raise for a freshly lexed value that the grammar's terminals let through but is invalid."""
    if token.type == "NUMBER":
        after = accepted[-1].type if accepted else ""
        zero_ok = after in _ZERO_ALLOWED and str(token) == "0"
        problem = None if zero_ok else _count_problem(str(token))
        if problem is not None:
            # The contextual lexer only yields NUMBER right after an option keyword.
            option = _ZERO_ALLOWED.get(after) or _OPTION_OF_TERMINAL.get(after, "the count")
            if after in _ZERO_ALLOWED:
                problem = problem or ""
                raise _error(
                    query,
                    _start_pos(token),
                    f"Invalid input '{_shorten(token)}'",
                    ["a non-negative integer"],
                    f"expected a non-negative integer for {option}{problem}",
                )
            raise _error(
                query,
                _start_pos(token),
                f"Invalid input '{_shorten(token)}'",
                ["a positive integer"],
                f"expected a positive integer for {option}{problem}",
            )
    elif token.type == "STRING":
        for escape in _ESCAPE.finditer(token, 1, len(token) - 1):
            if _escaped_char(escape) is None:
                raise _error(
                    query,
                    _start_pos(token) + escape.start(),
                    f"Invalid escape sequence '{_shorten(escape.group())}'",
                    _VALID_ESCAPES,
                    "expected one of " + " ".join(_VALID_ESCAPES),
                )
    elif token.type == "QUOTED_NAME" and len(token) == 2:
        raise _error(
            query,
            _start_pos(token),
            "Invalid input '``'",
            ["a stream name"],
            "a stream name cannot be empty",
        )


def _count_problem(value: str) -> str | None:
    """None if ``value`` is a valid count, else what to add to "expected a positive integer"."""
    if _POSITIVE_INTEGER.fullmatch(value):
        return None if int(value) <= INT64_MAX else f", at most {INT64_MAX}"
    if value.isascii() and value.isdigit() and int(value) > 0:
        return ", without leading zeros"  # 010 is octal in openCypher; refuse to guess
    return ""


def _string_value(token: Token) -> str:
    """The value of a STRING that ``_check`` passed."""
    return _ESCAPE.sub(lambda escape: _escaped_char(escape) or "", token[1:-1])


def _escaped_char(escape: re.Match[str]) -> str | None:
    """The character an escape stands for, or None if it is not a valid escape."""
    other = escape.group(3)
    if other is not None:
        return _SIMPLE_ESCAPES.get(other.lower())
    code = int(escape.group(1) or escape.group(2), 16)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return None  # a lone surrogate cannot be encoded as UTF-8 for Bolt
    return chr(code)


def _check_repeat(query: str, token: Token, accepted: list[Token]) -> None:
    """Raise at the start of an option that the clause already gave (the grammar takes any
    number of options, in any order: counting them is done here)."""
    repeated = _repeated_option(token, accepted)
    if repeated is not None:
        raise _repeat_error(query, token, accepted, *repeated)


# -- errors -----------------------------------------------------------------------------------


def _unexpected_token(query: str, token: Token, accepted: list[Token]) -> StreamSyntaxError:
    if token.type == "$END":
        return _error(query, len(query), "Unexpected end of input", _expected_after(accepted))
    position = _start_pos(token)
    found = query[position : token.end_pos if token.end_pos is not None else position]
    repeated = _repeated_option(token, accepted)
    if repeated is not None:
        return _repeat_error(query, token, accepted, *repeated)
    return _error(query, position, f"Invalid input '{_shorten(found)}'", _expected_after(accepted))


def _repeat_error(
    query: str, token: Token, accepted: list[Token], option: str, before: int
) -> StreamSyntaxError:
    position = _start_pos(accepted[before]) if before < len(accepted) else _start_pos(token)
    found = " ".join([*accepted[before:], token])
    return _error(
        query,
        position,
        f"Invalid input '{_shorten(found)}'",
        _expected_after(accepted[:before]),
        f"{option} is given more than once",
    )


def _repeated_option(token: Token, accepted: list[Token]) -> tuple[str, int] | None:
    """(option, index in ``accepted`` where the repeat starts) if ``token`` repeats an option."""
    option = _OPTION_OF_TERMINAL.get(token.type)
    if option is None:
        return None
    before = len(accepted)
    first = _SECOND_WORD.get(token.type)
    if first is not None:
        if accepted and accepted[-1].type == first:
            before -= 1
        elif token.type != "_TRANSFORM":  # Memgraph's TRANSFORM, ALTER's SET TRANSFORM: alone
            return None
    if any(_OPTION_OF_TERMINAL.get(t.type) == option for t in accepted[:before]):
        if option == "TRANSFORM" and before < len(accepted) and accepted[before].type == "_WITH":
            option = "WITH TRANSFORM"  # the legacy clause's spelling
        return option, before
    return None


def _unexpected_character(query: str, position: int, accepted: list[Token]) -> StreamSyntaxError:
    char = query[position]
    if char in "'\"":
        return _error(
            query, position, "Unterminated string literal", [char], f"expected a closing {char!r}"
        )
    if char == "`":
        return _error(query, position, "Unterminated quoted name", ["`"], "expected a closing '`'")
    if query.startswith("/*", position):
        return _error(query, position, "Unterminated comment", ["*/"], "expected '*/'")
    found = _shorten(_lexeme_at(query, position))
    expected = _expected_after(accepted)
    if char == "$":
        return _error(
            query,
            position,
            f"Invalid input '{found}'",
            expected,
            f"expected {_join(expected)} (query parameters are not supported in stream clauses)",
        )
    return _error(query, position, f"Invalid input '{found}'", expected)


def _expected_after(accepted: list[Token]) -> list[str]:
    interactive = _start("")
    for token in accepted:
        interactive.feed_token(token)
    # What is acceptable depends only on the LR state stack. The grammar has no recursion, so
    # there are few distinct stacks and the cache stays small.
    stack = tuple(interactive.parser_state.state_stack)
    expected = _EXPECTED_BY_STACK.get(stack)
    if expected is None:
        phrases = set(_phrases(interactive, _MAX_PHRASE_WORDS))
        expected = _EXPECTED_BY_STACK[stack] = tuple(sorted(phrases, key=_expected_order))
    given = {_OPTION_OF_TERMINAL[t.type] for t in accepted if t.type in _OPTION_OF_TERMINAL}
    if any(t.type == "_PATTERN" for t in accepted):
        given.add("WITH PATTERN")
    if not given:
        return list(expected)
    # The grammar accepts any option again; a repeat is an error, so it is not expected (but
    # WITH PATTERN, which repeats); nor is a mapping after a transform or the reverse.
    unwanted = given - {"WITH PATTERN"}
    if "TRANSFORM" in given:
        unwanted |= _MAPPING_OPTIONS
    if given & _MAPPING_OPTIONS:
        unwanted.add("TRANSFORM")
    return [phrase for phrase in expected if _option_of_phrase(phrase) not in unwanted]


def _option_of_phrase(phrase: str) -> str | None:
    words = phrase.split(" ")
    return _OPTION_OF_PHRASE.get(" ".join(words[:2])) or _OPTION_OF_PHRASE.get(words[0])


def _expected_order(phrase: str) -> tuple[int, str]:
    """Keywords first, then values (``a string``), then ``';'``, then ``end of input``."""
    if phrase == "end of input":
        return (3, phrase)
    if phrase == "';'":
        return (2, phrase)
    return (1 if phrase[:1].islower() else 0, phrase)


def _phrases(interactive: _Interactive, words_left: int) -> Iterator[str]:
    accepts = interactive.accepts()
    for terminal in accepts:
        if terminal not in _KEYWORD_TERMINALS:
            yield _VALUE_NAMES[terminal]
            continue
        if terminal == "_BATCH" and {"_BATCH_INTERVAL", "_BATCH_SIZE"} & accepts:
            continue  # the two-word spelling; the expected list shows the underscore one
        word = terminal[1:]
        after = copy.copy(interactive)
        after.feed_token(Token(terminal, word))
        following = after.accepts()
        if words_left > 1 and following and following <= _KEYWORD_TERMINALS:
            for rest in _phrases(after, words_left - 1):
                yield f"{word} {rest}"
        else:
            yield word


def _error(
    query: str, position: int, lead: str, expected: list[str], detail: str | None = None
) -> StreamSyntaxError:
    line, column = _line_column(query, position)
    if detail is None:
        detail = f"expected {_join(expected)}" if expected else "not a stream clause"
    return StreamSyntaxError(
        f"{lead} (line {line}, column {column}): {detail}", line, column, expected
    )


# -- text helpers -----------------------------------------------------------------------------


def _line_column(query: str, position: int) -> tuple[int, int]:
    line_start = query.rfind("\n", 0, position) + 1
    return query.count("\n", 0, position) + 1, position - line_start + 1


def _start_pos(token: Token) -> int:
    return token.start_pos if token.start_pos is not None else 0


def _lexeme_at(query: str, position: int) -> str:
    found = _LEXEME_AT.match(query, position)
    return found.group() if found is not None else ""


def _shorten(text: str) -> str:
    text = text.split("\n", 1)[0]
    return text if len(text) <= _FOUND_MAX_CHARS else text[: _FOUND_MAX_CHARS - 3] + "..."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]

"""builtin:command and builtin:request message checks, the dead-letter item contract, the
built-in registry, and query results as JSON. In-process, no services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bolt import values as bv
from proxy.streams import builtin
from proxy.streams.builtin import _common, command, request
from proxy.streams.jsonvalues import to_json
from proxy.streams.outcomes import (
    DEAD_LETTER_QUERY,
    Accepted,
    OutcomeError,
    Rejected,
    per_message,
    single,
    split,
)

pytestmark = pytest.mark.timeout(30)


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- the dead-letter item ---------------------------------------------------------------------


def test_every_builtin_uses_the_engines_dead_letter_query() -> None:
    # The built-ins run alone in the worker: their pinned code carries _common's marker.
    assert _common.DEAD_LETTER == DEAD_LETTER_QUERY
    for item in builtin.BUILTINS.values():
        assert f'DEAD_LETTER = "{DEAD_LETTER_QUERY}"' in item.source().code


def test_split_takes_dead_letter_items_out_of_a_user_result() -> None:
    pairs = [
        ("CREATE (:A)", {}),
        (DEAD_LETTER_QUERY, {"index": 2, "reason": " bad "}),
        ("CREATE (:B)", {}),
        (DEAD_LETTER_QUERY, {"index": 2, "reason": "again"}),
        (DEAD_LETTER_QUERY, {"index": 0, "reason": ""}),
    ]
    result = split(pairs, 3)
    assert result.queries == [("CREATE (:A)", {}), ("CREATE (:B)", {})]
    assert result.rejected == {2: "bad", 0: "rejected by the transform"}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        (
            {"index": 3, "reason": "x"},
            "dead-letter item for message 3, but the batch has 3 messages",
        ),
        ({"index": -1, "reason": "x"}, "for message -1"),
        ({"index": True, "reason": "x"}, "needs exactly the parameters index (an int)"),
        ({"index": 0}, "needs exactly the parameters"),
        ({"index": 0, "reason": 5}, "needs exactly the parameters"),
        ({"index": 0, "reason": "x", "more": 1}, "needs exactly the parameters"),
    ],
)
def test_malformed_dead_letter_items_are_errors(params: dict[str, Any], problem: str) -> None:
    with pytest.raises(OutcomeError, match="transform result item 0") as caught:
        split([(DEAD_LETTER_QUERY, params)], 3)
    assert problem in str(caught.value)


def test_per_message_needs_one_item_per_message_in_place() -> None:
    assert per_message([("Q", {}), (DEAD_LETTER_QUERY, {"index": 1, "reason": "r"})], 2) == [
        Accepted([("Q", {})]),
        Rejected("r"),
    ]
    with pytest.raises(OutcomeError, match="returned 1 items for 2 messages"):
        per_message([("Q", {})], 2)
    with pytest.raises(OutcomeError, match="item 0 rejects message 1"):
        per_message([(DEAD_LETTER_QUERY, {"index": 1, "reason": "r"}), ("Q", {})], 2)
    assert single([("A", {}), ("B", {})]) == Accepted([("A", {}), ("B", {})])
    assert single([(DEAD_LETTER_QUERY, {"index": 0, "reason": "no"})]) == Rejected("no")


def test_registry() -> None:
    assert builtin.names() == "builtin:depc, builtin:command, builtin:request"
    assert builtin.lookup("builtin:depc") is builtin.BUILTINS["depc"]
    assert builtin.lookup("BUILTIN:command") is builtin.BUILTINS["command"]
    assert builtin.lookup("builtin:nope") is None and builtin.is_builtin("builtin:nope")
    assert builtin.lookup("depc.py") is None and not builtin.is_builtin("/x/builtin:depc")
    source = builtin.BUILTINS["depc"].source()
    assert source.uri == "builtin:depc"
    # _common first, then depc's own code without its imports of _common and __future__.
    common = Path(_common.__file__).read_text()
    assert source.code.startswith(common)
    own = source.code[len(common) :]
    assert "def query_of(" in own and "_common" not in own and "__future__" not in own
    compile(source.code, "builtin:depc", "exec")  # one file, as the worker runs it
    assert builtin.BUILTINS["depc"].policies == ("dead_letter",)
    assert builtin.BUILTINS["command"].default_policy == "stop"
    assert builtin.BUILTINS["request"].default_policy == "skip"


# -- builtin:command --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"command": "CREATE (:A)"}, ("CREATE (:A)", {})),
        (
            {"command": "CREATE (:A {x: $x})", "params": {"x": [1, {"y": None}]}, "with_key": "k"},
            ("CREATE (:A {x: $x})", {"x": [1, {"y": None}]}),
        ),
        (
            {"with_key": "k", "command": 'MERGE (u:User {name: "user_1"}) ON MATCH SET u.p = 1'},
            ('MERGE (u:User {name: "user_1"}) ON MATCH SET u.p = 1', {}),
        ),
    ],
)
def test_command_messages(message: Any, expected: tuple[str, dict[str, Any]]) -> None:
    assert command.stream([raw(message)]) == [expected]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"CREATE (:A)", "the message is not JSON"),
        (raw(["CREATE (:A)"]), "the message must be a JSON object with a command"),
        (raw({}), "command must be a non-empty string"),
        (raw({"command": "  "}), "command must be a non-empty string"),
        (raw({"command": 5}), "command must be a non-empty string"),
        (raw({"command": "RETURN 1", "params": [1]}), "params must be an object"),
        (raw({"command": "RETURN 1", "params": None}), "params must be an object"),
        (
            raw({"command": "RETURN 1", "parms": {}}),
            'unknown field "parms" (allowed: command, params, with_key)',
        ),
        (raw({"command": "RETURN 1", "with_key": 5}), "with_key must be a string"),
        (raw({"command": "RETURN 1", "params": {"x": 2**64}}), "params.x is outside 64-bit"),
        (b'{"command": "RETURN $x", "params": {"x": "\\ud800"}}', "params.x is not valid Unicode"),
        (b'{"command": "RETURN 1", "command": "RETURN 2"}', 'the message has the key "command"'),
    ],
)
def test_invalid_command_messages(message: bytes, reason: str) -> None:
    ((query, params),) = command.stream([message])
    assert query == DEAD_LETTER_QUERY and params["index"] == 0
    assert params["reason"].startswith(reason), params["reason"]


# -- builtin:request --------------------------------------------------------------------------


def test_request_messages() -> None:
    message = {"to": "resp", "with_key": "q1", "command": "MATCH (n) RETURN n", "params": {"x": 1}}
    assert request.stream([raw(message)]) == [
        ("MATCH (n) RETURN n", {"to": "resp", "key": "q1", "params": {"x": 1}})
    ]
    del message["params"]
    assert request.stream([raw(message)]) == [
        ("MATCH (n) RETURN n", {"to": "resp", "key": "q1", "params": {}})
    ]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"to": "r", "with_key": "k"}, "command must be a non-empty string"),
        ({"to": "r", "with_key": "k", "command": ""}, "command must be a non-empty string"),
        (
            {"to": "r", "with_key": "k", "command": "RETURN 1", "params": 5},
            "params must be an object",
        ),
        ({"to": "r", "with_key": "k", "execute": "RETURN 1"}, 'unknown field "execute"'),
        (
            {"to": "r", "with_key": "k", "command": "RETURN $x", "params": {"x": -(2**63) - 1}},
            "params.x is outside 64-bit integers",
        ),
    ],
)
def test_requests_answered_with_an_error(message: Any, error: str) -> None:
    ((query, envelope),) = request.stream([raw(message)])
    assert query == "" and envelope == {"to": "r", "key": "k", "error": envelope["error"]}
    assert envelope["error"].startswith(error)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"MATCH (n) RETURN n", "the request is not JSON"),
        (raw({"with_key": "k", "command": "RETURN 1"}), "to must name the response topic"),
        (raw({"to": "no spaces", "with_key": "k", "command": "RETURN 1"}), "to must name"),
        (raw({"to": "..", "with_key": "k", "command": "RETURN 1"}), "to must name"),
        (raw({"to": "t" * 250, "with_key": "k", "command": "RETURN 1"}), "to must name"),
        (raw({"to": "r", "command": "RETURN 1"}), "with_key must be a string"),
        (raw({"to": "r", "with_key": 7, "command": "RETURN 1"}), "with_key must be a string"),
    ],
)
def test_requests_that_cannot_be_answered_are_dead_letters(message: bytes, reason: str) -> None:
    ((query, params),) = request.stream([message])
    assert query == DEAD_LETTER_QUERY
    assert params["reason"].startswith(reason)


# -- results as JSON --------------------------------------------------------------------------


def test_bolt_values_as_json() -> None:
    a = bv.Node(1, ("B", "A"), {"x": 1.5, "when": bv.Date(19724)}, "1")
    b = bv.Node(2, ("A",), {})
    rel = bv.Relationship(7, 1, 2, "R", {"w": float("nan")}, "7", "1", "2")
    assert to_json(a) == {
        "id": 1,
        "element_id": "1",
        "labels": ["A", "B"],
        "properties": {"x": 1.5, "when": "2024-01-02"},
    }
    assert to_json(rel) == {
        "id": 7,
        "element_id": "7",
        "type": "R",
        "start": 1,
        "end": 2,
        "properties": {"w": "NaN"},
    }
    # A path traversed against a relationship's direction: start and end stay the stored ones.
    path = bv.Path((a, b), (bv.UnboundRelationship(7, "R", {}, "7"),), (-1, 1))
    assert to_json(path) == {
        "nodes": [to_json(a), {"id": 2, "element_id": "2", "labels": ["A"], "properties": {}}],
        "relationships": [
            {"id": 7, "element_id": "7", "type": "R", "start": 2, "end": 1, "properties": {}}
        ],
    }
    assert to_json([float("inf"), -float("inf"), b"\x00\x01", {"k": (1, 2)}]) == [
        "Infinity",
        "-Infinity",
        "AAE=",
        {"k": [1, 2]},
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (bv.Date(0), "1970-01-01"),
        (bv.Date(-1), "1969-12-31"),
        (bv.LocalTime(3723_000000001), "01:02:03.000000001"),
        (bv.Time(3723_000000000, 3600), "01:02:03+01:00"),
        (bv.Time(0, 0), "00:00:00Z"),
        (bv.LocalDateTime(1704164645, 0), "2024-01-02T03:04:05"),
        (bv.DateTime(1704164645, 500, -5400), "2024-01-02T01:34:05.000000500-01:30"),
        (
            bv.DateTimeZoneId(1704164645, 0, "Europe/Paris"),
            "2024-01-02T04:04:05+01:00[Europe/Paris]",
        ),
        (bv.Duration(14, 3, 3723, 500_000_000), "P1Y2M3DT1H2M3.5S"),
        (bv.Duration(0, 1, 7200, 0), "P1DT2H"),
        (bv.Duration(0, 0, 0, 0), "PT0S"),
        (bv.Duration(0, 0, -90, 0), "PT-1M-30S"),
    ],
)
def test_temporal_values_as_iso_strings(value: Any, text: str) -> None:
    assert to_json(value) == text


def test_points() -> None:
    assert to_json(bv.Point2D(4326, 2.0, 1.0)) == {"srid": 4326, "x": 2.0, "y": 1.0}
    assert to_json(bv.Point3D(9157, 1.0, 2.0, 3.0)) == {"srid": 9157, "x": 1.0, "y": 2.0, "z": 3.0}

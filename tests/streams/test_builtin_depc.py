"""builtin:depc: every validation rule of the reference, in both formats, the query it builds,
and injection attempts. In-process (the same file runs in the worker; one test loads it there).
The stream end to end, with the dead-letter topic, is in test_builtin_streams.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from proxy.streams.builtin import BUILTINS, depc
from proxy.streams.outcomes import DEAD_LETTER_QUERY, Accepted, Rejected, per_message
from proxy.streams.transform import TransformRunner

pytestmark = pytest.mark.timeout(30)


def outcome(message: Any) -> Accepted | Rejected:
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    return per_message(depc.stream([raw]), 1)[0]


def accepted(message: Any) -> tuple[str, dict[str, Any]]:
    result = outcome(message)
    assert isinstance(result, Accepted), result
    (query,) = result.queries
    return query


def rejected(message: Any) -> str:
    result = outcome(message)
    assert isinstance(result, Rejected), result
    return result.reason


NESTED_FULL = {
    "source": {"label": "A", "name": "foo", "props": {"from": 1515241242, "to": 1515244850}},
    "target": {"label": "B", "name": "bar", "props": {"from": 1533636245, "to": 1533643445}},
    "rel": {"from": 1527847440, "to": 1527854640},
}
FLAT_FULL = {
    "source_label": "A",
    "source_name": "foo",
    "source_from": 1515241242,
    "source_to": 1515244850,
    "target_label": "B",
    "target_name": "bar",
    "target_from": 1533636245,
    "target_to": 1533643445,
    "rel_from": 1527847440,
    "rel_to": 1527854640,
}
EDGE = (
    "MERGE (s:`A` {name: $source_name}) SET s += $source_props "
    "MERGE (t:`B` {name: $target_name}) SET t += $target_props "
    "MERGE (s)-[r:DEPENDS_ON]->(t) SET r += $rel_props"
)
NODE = "MERGE (s:`A` {name: $source_name}) SET s += $source_props"


def test_both_formats_of_the_reference_give_the_same_query() -> None:
    expected = (
        EDGE,
        {
            "source_name": "foo",
            "source_props": {"from": 1515241242, "to": 1515244850},
            "target_name": "bar",
            "target_props": {"from": 1533636245, "to": 1533643445},
            "rel_props": {"from": 1527847440, "to": 1527854640},
        },
    )
    assert accepted(NESTED_FULL) == expected
    assert accepted(FLAT_FULL) == expected
    assert accepted({"metadata": NESTED_FULL}) == expected  # OVH EventBus envelope
    assert accepted({"metadata": FLAT_FULL}) == expected


@pytest.mark.parametrize(
    ("message", "query", "params"),
    [
        (
            {"source": {"label": "A", "name": "foo"}},
            NODE,
            {"source_name": "foo", "source_props": {}},
        ),
        (
            {"source_label": "A", "source_name": "foo"},
            NODE,
            {"source_name": "foo", "source_props": {}},
        ),
        (
            {"source": {"label": "A", "name": "foo", "props": {"to": 1}}},
            NODE,
            {"source_name": "foo", "source_props": {"to": 1}},
        ),
        (
            {"source_label": "A", "source_name": "foo", "source_from": 0},
            NODE,
            {"source_name": "foo", "source_props": {"from": 0}},
        ),
        (
            {"source_label": "A", "source_name": "foo", "source_from": 3.0},
            NODE,  # JSON integer
            {"source_name": "foo", "source_props": {"from": 3}},
        ),
        # A target without rel: the documentation's own example (what DepC meant).
        (
            {"source": {"label": "A", "name": "foo"}, "target": {"label": "B", "name": "bar"}},
            EDGE,
            {
                "source_name": "foo",
                "source_props": {},
                "target_name": "bar",
                "target_props": {},
                "rel_props": {},
            },
        ),
        (
            {
                "source_label": "A",
                "source_name": "foo",
                "target_label": "B",
                "target_name": "bar",
                "rel_to": 9,
            },
            EDGE,
            {
                "source_name": "foo",
                "source_props": {},
                "target_name": "bar",
                "target_props": {},
                "rel_props": {"to": 9},
            },
        ),
    ],
)
def test_optional_parts(message: Any, query: str, params: dict[str, Any]) -> None:
    assert accepted(message) == (query, params)


@pytest.mark.parametrize("label", ["MyLabel", "Mylabel", "My123Label", "A", "ABC9"])
def test_labels_the_reference_accepts(label: str) -> None:
    query, _ = accepted({"source": {"label": label, "name": "foo"}})
    assert f":`{label}` " in query
    query, _ = accepted(
        {"source_label": "A", "source_name": "x", "target_label": label, "target_name": "y"}
    )
    assert f"(t:`{label}` " in query


BAD_LABELS = [
    "mylabel",
    "myLabel",
    "123Label",
    "My#Label{}",
    " ",
    "",
    "A\n",
    "A B",
    "\u00c4",
    "A`B",
    "A`) DETACH DELETE (n) //",
    "A:B",
    "A{x: 1}",
    5,
    None,
    ["A"],
]


@pytest.mark.parametrize("label", BAD_LABELS)
def test_labels_the_reference_rejects(label: Any) -> None:
    reason = rejected({"source": {"label": label, "name": "foo"}})
    assert reason.startswith("source.label must be a string matching ^[A-Z]+[a-zA-Z0-9]*$")
    reason = rejected(
        {"source_label": "A", "source_name": "x", "target_label": label, "target_name": "y"}
    )
    assert reason.startswith("target_label must be a string matching")
    reason = rejected(
        {"source": {"label": "A", "name": "x"}, "target": {"label": label, "name": "y"}}
    )
    assert reason.startswith("target.label must be")


@pytest.mark.parametrize(
    "name",
    [
        "foo",
        "#F$o%ob&/a-r.",
        "Foo",
        "foo123bar",
        "a:b",
        "[x]",
        "{y}",
        "~!^_|",
        "x})-[:R]->(m)DETACH_DELETE(n)//",
    ],
)
def test_names_the_reference_accepts(name: str) -> None:
    _, params = accepted({"source": {"label": "A", "name": name}})
    assert params["source_name"] == name  # a parameter, never part of the query text
    _, params = accepted({"source_label": "A", "source_name": name})
    assert params["source_name"] == name


@pytest.mark.parametrize(
    "name",
    [
        "foo bar",
        "foo'bar",
        'foo"bar',
        "foo`bar",
        "",
        "foo\\bar",
        "f\u00f6\u00f6",
        "tab\t",
        "new\nline",
        "x\x7f",
        5,
        None,
    ],
)
def test_names_the_reference_rejects(name: Any) -> None:
    assert rejected({"source": {"label": "A", "name": name}}).startswith(
        "source.name must be a non-empty string of printable ASCII"
    )
    assert rejected({"source_label": "A", "source_name": name}).startswith(
        "source_name must be a non-empty string"
    )
    assert rejected(
        {"source_label": "A", "source_name": "x", "target_label": "B", "target_name": name}
    ).startswith("target_name must be")


@pytest.mark.parametrize("value", [-1, "1", 1.5, True, None, 2**63, [1], {"a": 1}])
def test_from_must_be_an_integer_at_least_0(value: Any) -> None:
    assert rejected({"source": {"label": "A", "name": "x", "props": {"from": value}}}).startswith(
        "source.props.from must be an integer >= 0"
    )
    assert rejected({"source_label": "A", "source_name": "x", "source_from": value}).startswith(
        "source_from must be an integer >= 0"
    )
    assert rejected({**FLAT_FULL, "rel_from": value}).startswith("rel_from must be")
    assert rejected({**NESTED_FULL, "rel": {"from": value}}).startswith("rel.from must be")


@pytest.mark.parametrize("value", [0, -1, True, 0.0, "5"])
def test_to_must_be_an_integer_at_least_1(value: Any) -> None:
    assert rejected({"source": {"label": "A", "name": "x", "props": {"to": value}}}).startswith(
        "source.props.to must be an integer >= 1"
    )
    assert rejected({**FLAT_FULL, "target_to": value}).startswith("target_to must be an integer")
    assert rejected({**NESTED_FULL, "rel": {"to": value}}).startswith("rel.to must be")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            {"source": {"label": "A", "name": "x"}, "target": {"label": "B"}},
            "target needs both label and name (target.name is missing)",
        ),
        (
            {"source": {"label": "A", "name": "x"}, "target": {"name": "y"}},
            "target needs both label and name (target.label is missing)",
        ),
        ({"source": {"label": "A"}}, "source needs both label and name (source.name is missing)"),
        (
            {"source_label": "A", "source_name": "x", "target_label": "B"},
            "a target needs both label and name: target_label without target_name",
        ),
        (
            {"source_label": "A", "source_name": "x", "target_name": "y"},
            "a target needs both label and name: target_name without target_label",
        ),
        ({"source": {"label": "A", "name": "x"}, "rel": {"from": 1}}, "rel needs a target"),
        (
            {"source_label": "A", "source_name": "x", "rel_from": 1},
            "rel_from needs a target (target_label and target_name)",
        ),
        (
            {"source_label": "A", "source_name": "x", "target_to": 3},
            "target_to needs a target (target_label and target_name)",
        ),
        ({"source_label": "A"}, "the message has no source: source_name is missing"),
        ({"target_label": "B", "target_name": "y"}, "the message has no source: source_label is"),
        ({}, "the message has no source"),
    ],
)
def test_targets_and_sources_need_label_and_name(message: Any, reason: str) -> None:
    assert rejected(message).startswith(reason)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            {**NESTED_FULL, "extra": 1},
            'the message has unknown field "extra" (allowed: source, target, rel)',
        ),
        ({**NESTED_FULL, "source_label": "A"}, 'the message has unknown field "source_label"'),
        (
            {"source": {"label": "A", "name": "x", "color": "red"}},
            'source has unknown field "color" (allowed: label, name, props)',
        ),
        (
            {"source": {"label": "A", "name": "x", "props": {"weight": 1}}},
            'source.props has unknown field "weight" (allowed: from, to)',
        ),
        ({**NESTED_FULL, "rel": {"type": "USES"}}, 'rel has unknown field "type"'),
        (
            {**FLAT_FULL, "source_color": "red", "x": 1},
            'the message has unknown fields "source_color", "x"',
        ),
        ({"metadata": NESTED_FULL, "id": 1}, 'the message has unknown fields "metadata", "id"'),
    ],
)
def test_unknown_fields_are_rejected(message: Any, reason: str) -> None:
    assert rejected(message).startswith(reason)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "the message is empty"),
        (b"   ", "the message is empty"),
        (b"not json", "the message is not JSON"),
        (b"\xff\xfe", "the message is not UTF-8 text"),
        (b"[1, 2]", "the message must be a JSON object, not an array"),
        (b'"A"', "the message must be a JSON object, not a string"),
        (b"null", "the message must be a JSON object, not null"),
        (
            b'{"source_label": "A", "source_name": "x", "source_from": NaN}',
            "the message is not standard JSON (NaN)",
        ),
        (
            b'{"source_label": "A", "source_label": "B", "source_name": "x"}',
            'the message has the key "source_label" twice',
        ),
        (b"[" * 100000, "the message is"),
        (
            b'{"source_label": "A", "source_name": "x", "source_from": 1' + b"0" * 5000 + b"}",
            "the message is not JSON",
        ),
    ],
)
def test_messages_that_are_not_json_objects(raw: bytes, reason: str) -> None:
    assert rejected(raw).startswith(reason)


def test_a_batch_keeps_one_item_per_message_in_order() -> None:
    batch = [
        json.dumps(NESTED_FULL).encode(),
        b"nope",
        json.dumps(FLAT_FULL).encode(),
        json.dumps({"source": {"label": "a", "name": "x"}}).encode(),
    ]
    items = depc.stream(batch)
    assert [query == DEAD_LETTER_QUERY for query, _ in items] == [False, True, False, True]
    assert [params.get("index") for _, params in items] == [None, 1, None, 3]


def test_the_query_text_holds_only_checked_labels() -> None:
    """Whatever a message says, the query is one of two shapes with two labels in them."""
    hostile = [
        "A` {name: 'x'}) DETACH DELETE s //",
        "A`",
        "`",
        "A\u0060B",
        "A)\n MATCH (n",
        "A\u200b",
        "A\r",
    ]
    for label in hostile:
        for message in (
            {"source": {"label": label, "name": "x"}},
            {"source_label": "A", "source_name": "x", "target_label": label, "target_name": "y"},
        ):
            assert isinstance(outcome(message), Rejected)
    query, _ = accepted(NESTED_FULL)
    assert query.count("`") == 4
    with pytest.raises(depc.Invalid):  # the last guard, in case a bad label ever got through
        depc.query_of({"source": {"label": "A`B", "name": "x", "props": {}}})


def test_it_loads_and_runs_in_the_sandboxed_worker() -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        async with TransformRunner(BUILTINS["depc"].source(), name="depc-test") as runner:
            return await runner.run([json.dumps(NESTED_FULL).encode(), b"{}"])

    result = asyncio.run(scenario())
    assert result[0][0] == EDGE
    assert result[1][0] == DEAD_LETTER_QUERY and result[1][1]["index"] == 1

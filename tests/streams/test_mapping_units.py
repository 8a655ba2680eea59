"""The mapping strategies without services: decoding messages, quoting names, batching, and
what each strategy makes of good and bad messages. (What the queries do to a real graph is
tests/streams/test_mapping_graph.py.)"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from grammar.pattern import parse_pattern
from proxy.streams.mapping import EVENTS, BadMessage, ValueFormat, combine, decode
from proxy.streams.mapping.cud import FALKORDB, CudMapper
from proxy.streams.mapping.cypher import COMPOUND, IDENTITY, BadName, quote, storable
from proxy.streams.mapping.pattern import PatternMapper, PatternOptions
from proxy.streams.mapping.template import BadTemplate, Template
from proxy.streams.outcomes import Accepted, Rejected


@dataclass
class FakeMessage:
    """What confluent-kafka's Message offers, for decode."""

    raw_value: bytes | None
    raw_key: bytes | None = None
    raw_headers: list[tuple[str, bytes | None]] | None = None
    stamp: tuple[int, int] = (1, 1700000000000)
    where: tuple[str, int, int] = ("t", 0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self) -> bytes | None:
        return self.raw_value

    def key(self) -> bytes | None:
        return self.raw_key

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self.raw_headers

    def timestamp(self) -> tuple[int, int]:
        return self.stamp

    def topic(self) -> str:
        return self.where[0]

    def partition(self) -> int:
        return self.where[1]

    def offset(self) -> int:
        return self.where[2]


def message(value: Any, key: Any = None, **kw: Any) -> FakeMessage:
    raw = (
        None
        if value is None
        else (value if isinstance(value, bytes) else json.dumps(value).encode())
    )
    raw_key = None if key is None else (key if isinstance(key, bytes) else json.dumps(key).encode())
    return FakeMessage(raw, raw_key, **kw)


# -- events -----------------------------------------------------------------------------------


def test_decode_binds_everything_the_connector_binds_and_more() -> None:
    event = decode(
        FakeMessage(
            b'{"id": 1}',
            b'{"k": 2}',
            [("h", b"v"), ("bin", b"\xff"), ("h", b"last")],
            where=("people", 3, 41),
        )
    )
    assert event.row() == {
        "value": {"id": 1},
        "key": {"k": 2},
        "header": {"h": "last", "bin": "/w=="},
        "timestamp": 1700000000000,
        "topic": "people",
        "partition": 3,
        "offset": 41,
    }
    assert not event.tombstone


def test_tombstone_is_a_null_value_not_an_empty_one() -> None:
    assert decode(FakeMessage(None, b"7")).tombstone
    with pytest.raises(BadMessage, match="empty"):
        decode(FakeMessage(b"", b"7"))
    assert decode(FakeMessage(b"", b"7"), ValueFormat.TEXT).value == ""


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "not JSON"),
        (b'{"a": 1, "a": 2}', "twice"),
        (b"NaN", "not standard JSON"),
        (b"\xff", "not UTF-8"),
        (b"1" + b"0" * 30, "64-bit"),
        (b"[" * 5000, "nested too deeply"),
    ],
)
def test_bad_json_values_are_bad_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode(FakeMessage(raw))


def test_formats_and_keys() -> None:
    assert decode(FakeMessage(b"\x00\x01"), ValueFormat.BYTES).value == "AAE="
    with pytest.raises(BadMessage, match="UTF-8"):
        decode(FakeMessage(b"\xff"), ValueFormat.TEXT)
    assert decode(FakeMessage(b"1", b"plain-id")).key == "plain-id"  # text key
    assert decode(FakeMessage(b"1", b"\xff\xfe")).key == "//4="  # binary key
    assert decode(FakeMessage(b"1", stamp=(0, -1))).timestamp is None


# -- names and batching -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Person", "My Label", "a.b", "ü", "a:b", "$x", "1st"])
def test_names_are_quoted(name: str) -> None:
    assert quote(name) == f"`{name}`"


@pytest.mark.parametrize(
    "name", ["", "  ", "A`B", "A`) DETACH DELETE (n) //", "a\nb", "\x00", "x" * 201, 5, None, ["A"]]
)
def test_names_that_could_break_out_are_refused(name: Any) -> None:
    with pytest.raises(BadName):
        quote(name)


def test_storable_values() -> None:
    assert all(storable(v) for v in (None, 1, 1.5, "s", True, [1, 2], ["a"], []))
    assert not any(storable(v) for v in ({}, {"a": 1}, [{"a": 1}], [None], [[1]]))


def test_combine_joins_runs_of_one_shape_in_order() -> None:
    a, b = "UNWIND $__boltstream_events AS ev A", "UNWIND $__boltstream_events AS ev B"
    queries = [
        (a, {EVENTS: [1]}),
        (a, {EVENTS: [2]}),
        (b, {EVENTS: [3]}),
        ("RETURN 1", {}),
        (a, {EVENTS: [4]}),
        (a, {EVENTS: [5]}),
        (a, {EVENTS: [6], "other": 1}),
    ]
    assert combine(queries) == [
        (a, {EVENTS: [1, 2]}),
        (b, {EVENTS: [3]}),
        ("RETURN 1", {}),
        (a, {EVENTS: [4, 5]}),
        (a, {EVENTS: [6], "other": 1}),
    ]
    assert queries[0] == (a, {EVENTS: [1]})  # the input is not changed


def test_combine_never_puts_one_entity_twice_in_a_query() -> None:
    a = "UNWIND $__boltstream_events AS ev A"
    queries = [
        (a, {EVENTS: [1], IDENTITY: frozenset({"x"})}),
        (a, {EVENTS: [2], IDENTITY: frozenset({"y"})}),
        (a, {EVENTS: [3], IDENTITY: frozenset({"x", "z"})}),  # x again: a new query
        (a, {EVENTS: [4], IDENTITY: frozenset()}),
        (a, {EVENTS: [5], IDENTITY: frozenset({"y"})}),
    ]
    assert combine(queries) == [(a, {EVENTS: [1, 2]}), (a, {EVENTS: [3, 4, 5]})]


def test_keyed_messages_of_one_entity_are_kept_apart() -> None:
    template = Template("MERGE (p:P {id: event.id}) SET p.v = event.v")
    outcomes = [
        template.outcome(decode(message({"id": 1, "v": v}, key=k)))
        for v, k in ((1, "a"), (2, "b"), (3, "a"), (4, None), (5, None))
    ]
    queries = [q for o in outcomes for q in o.queries]  # type: ignore[union-attr]
    assert [len(p[EVENTS]) for _, p in combine(queries)] == [2, 3]
    pattern = PatternMapper([parse_pattern("(:P{!id})")])
    outcomes = [pattern.outcome(decode(message({"id": i}))) for i in (1, 2, 1, 1, 3)]
    queries = [q for o in outcomes for q in o.queries]  # type: ignore[union-attr]
    assert [len(p[EVENTS]) for _, p in combine(queries)] == [2, 1, 2]


# -- templates ------------------------------------------------------------------------------


def test_template_binds_the_message_like_the_connector() -> None:
    template = Template(
        "MERGE (p:Person {id: event.id}) SET p.name = __value.name, p.k = __key, "
        "p.h = __header.h, p.t = __timestamp, p.w = [__topic, __partition, __offset];"
    )
    outcome = template.outcome(decode(message({"id": 1, "name": "Ann"})))
    assert isinstance(outcome, Accepted)
    ((text, params),) = outcome.queries
    assert text.startswith(f"UNWIND ${EVENTS} AS __boltstream_event WITH ")
    for binding in (
        "AS event",
        "AS __value",
        "AS __key",
        "AS __header",
        "AS __timestamp",
        "AS __topic",
        "AS __partition",
        "AS __offset",
    ):
        assert binding in text
    assert text.endswith("p.w = [__topic, __partition, __offset]")
    assert params[EVENTS][0]["value"] == {"id": 1, "name": "Ann"}


def test_template_binds_and_sends_only_what_it_names() -> None:
    template = Template("CREATE (:N {id: event.id, s: '__key', `__offset`: 1}) // __topic")
    outcome = template.outcome(decode(message({"id": 1}, key="k")))
    assert isinstance(outcome, Accepted)
    ((text, params),) = outcome.queries
    assert text == (
        f"UNWIND ${EVENTS} AS __boltstream_event WITH __boltstream_event.value AS event "
        "CREATE (:N {id: event.id, s: '__key', `__offset`: 1}) // __topic"
    )
    assert params[EVENTS] == [{"value": {"id": 1}}]
    alone = Template("CREATE (:Tick)").outcome(decode(message({"id": 1})))
    assert isinstance(alone, Accepted)
    assert alone.queries[0][0] == f"UNWIND ${EVENTS} AS __boltstream_event CREATE (:Tick)"
    assert alone.queries[0][1][EVENTS] == [{}]


@pytest.mark.parametrize("text", ["", "  ;  ", "x" * 70000, "RETURN 1\x00"])
def test_bad_templates_are_refused(text: str) -> None:
    with pytest.raises(BadTemplate):
        Template(text)


# -- patterns ----------------------------------------------------------------------------------


def outcome_rows(outcome: Any) -> list[dict[str, Any]]:
    assert isinstance(outcome, Accepted), outcome
    return [row for _, params in outcome.queries for row in params[EVENTS]]


def test_node_pattern_rows_take_keys_then_every_other_field() -> None:
    mapper = PatternMapper([parse_pattern("(:User{!id: userId, -secret})")])
    value = {
        "userId": 1,
        "name": "John",
        "secret": "x",
        "address": {"city": "London", "zip": {"code": "N1"}},
    }
    (row,) = outcome_rows(mapper.outcome(decode(message(value))))
    assert row == {
        "k": [1],
        "p": {"name": "John", "address.city": "London", "address.zip.code": "N1"},
    }


def test_relationship_pattern_wildcard_leaves_out_what_the_nodes_used() -> None:
    mapper = PatternMapper(
        [
            parse_pattern(
                "(:User{!id: userId})-[:BOUGHT]->(:Product{!id: productId, name: productName})"
            )
        ]
    )
    value = {"userId": 1, "productId": 9, "productName": "Tea", "price": 3.5}
    (row,) = outcome_rows(mapper.outcome(decode(message(value))))
    assert row == {
        "sk": [1],
        "sp": {},
        "ek": [9],
        "ep": {"name": "Tea"},
        "k": [],
        "p": {"price": 3.5},
    }


def test_keys_are_found_in_the_value_then_the_key() -> None:
    mapper = PatternMapper([parse_pattern("(:User{!id, name})")])
    (row,) = outcome_rows(mapper.outcome(decode(message({"name": "A"}, key={"id": 5}))))
    assert row["k"] == [5]
    missing = mapper.outcome(decode(message({"name": "A"})))
    assert missing == Rejected("Key 'id' could not be located in the message.")
    explicit = PatternMapper([parse_pattern("(:User{!id: __key.id})")])
    assert explicit.outcome(decode(message({"id": 1}))) == Rejected(
        "Key 'id' could not be located in the keys."
    )


def test_tombstones_delete_what_the_key_names() -> None:
    mapper = PatternMapper([parse_pattern("(:User{!id})")])
    outcome = mapper.outcome(decode(message(None, key={"id": 7})))
    assert isinstance(outcome, Accepted)
    ((text, params),) = outcome.queries
    assert "DETACH DELETE n" in text and params[EVENTS] == [{"k": [7]}]
    assert isinstance(mapper.outcome(decode(message(None))), Rejected)  # no key: nothing named


def test_several_patterns_per_topic_one_query_per_pattern_for_a_block_of_messages() -> None:
    mapper = PatternMapper(
        [
            parse_pattern("(:User{!id: userId, name})"),
            parse_pattern("(:User{!id: userId})-[:LIVES_IN]->(:City{!name: city})"),
        ]
    )
    outcomes = [
        mapper.outcome(decode(message(value)))
        for value in (
            {"userId": 1, "name": "a", "city": "Oslo"},
            {"userId": 2, "name": "b", "city": "Rome"},
            {"userId": 3, "name": "c", "city": "Oslo"},  # Oslo again: a new block
            {"userId": 4, "name": "d", "city": "Bern"},
        )
    ]
    queries = [q for o in outcomes for q in o.queries]  # type: ignore[union-attr]
    assert all(text == COMPOUND for text, _ in queries)
    joined = combine(queries)
    users, lives = (joined[0][0], joined[1][0])
    assert [text for text, _ in joined] == [users, lives, users, lives]
    assert "MERGE (n:`User`" in users and "LIVES_IN" in lives
    assert [[row["k"] for row in params[EVENTS]] for _, params in joined] == [
        [[1], [2]],
        [[], []],
        [[3], [4]],
        [[], []],
    ]
    assert [row["ek"] for row in joined[1][1][EVENTS]] == [["Oslo"], ["Rome"]]
    # A message missing a key of one of them is bad as a whole.
    assert isinstance(mapper.outcome(decode(message({"userId": 1}))), Rejected)


def test_pattern_messages_that_cannot_be_stored_are_bad() -> None:
    mapper = PatternMapper([parse_pattern("(:User{!id, tags})")])
    assert isinstance(mapper.outcome(decode(message({"id": 1, "tags": [{"a": 1}]}))), Rejected)
    assert isinstance(mapper.outcome(decode(message([1, 2]))), Rejected)  # not a map
    assert isinstance(mapper.outcome(decode(message({"id": {"x": 1}}))), Rejected)


def test_merge_and_replace_options_change_the_set_clause() -> None:
    text_of = lambda mapper: mapper.outcome(decode(message({"id": 1}))).queries[0][0]  # noqa: E731
    replace = text_of(PatternMapper([parse_pattern("(:U{!id})")]))
    merge = text_of(
        PatternMapper([parse_pattern("(:U{!id})")], PatternOptions(merge_node_properties=True))
    )
    assert "SET n = ev.p, n.`id` = ev.k[0]" in replace
    assert "SET n += ev.p" in merge


# -- CUD -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        (
            {"type": "node", "op": "create", "labels": ["Foo", "Bar"], "properties": {"id": 1}},
            "CREATE (n:`Foo`:`Bar`) SET n += ev.p",
        ),
        (
            {
                "type": "NODE",
                "op": "Merge",
                "labels": ["Foo"],
                "ids": {"id": 1},
                "properties": {"x": 2},
            },
            "MERGE (n:`Foo` {`id`: ev.k[0]}) SET n += ev.p",
        ),
        (
            {"type": "node", "op": "update", "ids": {"id": 1}, "properties": {}},
            "MATCH (n {`id`: ev.k[0]}) SET n += ev.p",
        ),
        (
            {"type": "node", "op": "delete", "labels": ["Foo"], "ids": {"id": 1}, "detach": True},
            "MATCH (n:`Foo` {`id`: ev.k[0]}) DETACH DELETE n",
        ),
        (
            {"type": "node", "op": "delete", "ids": {"_id": 3}},
            "MATCH (n) WHERE id(n) = ev.k DELETE",
        ),
        (
            {"type": "node", "op": "delete", "ids": {"_elementId": "3"}},
            "WHERE toString(id(n)) = ev.k DELETE n",
        ),
        (
            {
                "type": "relationship",
                "op": "merge",
                "rel_type": "BOUGHT",
                "from": {"labels": ["User"], "ids": {"userId": 1}, "op": "merge"},
                "to": {"labels": ["Product"], "ids": {"productId": 100}},
                "properties": {"price": 10},
            },
            "MERGE (s:`User` {`userId`: ev.s[0]}) WITH ev, s MATCH (e:`Product` "
            "{`productId`: ev.e[0]}) WITH ev, s, e MERGE (s)-[r:`BOUGHT`]->(e) SET r += ev.p",
        ),
        (
            {
                "type": "relationship",
                "op": "create",
                "rel_type": "R",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 2}},
                "properties": {},
            },
            "CREATE (s)-[r:`R`]->(e) SET r += ev.p",
        ),
        (
            {
                "type": "relationship",
                "op": "update",
                "rel_type": "R",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 2}},
                "ids": {"k": 5},
                "properties": {"x": 1},
            },
            "MATCH (s)-[r:`R` {`k`: ev.k[0]}]->(e) SET r += ev.p",
        ),
        (
            {
                "type": "relationship",
                "op": "delete",
                "rel_type": "R",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 2}},
            },
            "MATCH (s)-[r:`R`]->(e) DELETE r",
        ),
    ],
)
def test_cud_operations(doc: dict[str, Any], fragment: str) -> None:
    outcome = CudMapper(FALKORDB).outcome(decode(message(doc)))
    assert isinstance(outcome, Accepted), outcome
    ((text, _),) = outcome.queries
    assert fragment in text


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "node", "op": "create"}, "properties is required"),
        ({"type": "node", "op": "create", "properties": {}, "ids": {"a": 1}}, "ids is not allowed"),
        ({"type": "node", "op": "merge", "ids": {}, "properties": {}}, "at least one ID"),
        ({"type": "node", "op": "upsert", "ids": {"a": 1}}, "op must be one of"),
        ({"type": "vertex", "op": "create", "properties": {}}, "type must be one of"),
        ({"type": "node", "op": "delete", "ids": {"a": 1}, "detach": "yes"}, "boolean"),
        ({"type": "node", "op": "create", "properties": {"m": {"a": 1}}}, "a map"),
        ({"type": "node", "op": "create", "labels": ["A`B"], "properties": {}}, "backtick"),
        ({"type": "node", "op": "create", "labels": "A", "properties": {}}, "list of strings"),
        (
            {
                "type": "relationship",
                "op": "create",
                "rel_type": "",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 1}},
                "properties": {},
            },
            "'rel_type' must be specified",
        ),
        (
            {
                "type": "relationship",
                "op": "create",
                "rel_type": "R",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 1}, "extra": 1},
                "properties": {},
            },
            "to.extra is not allowed",
        ),
        (
            {
                "type": "relationship",
                "op": "delete",
                "rel_type": "R",
                "from": {"ids": {"a": 1}, "op": "merge"},
                "to": {"ids": {"b": 1}},
            },
            "MATCH",
        ),
        (
            {
                "type": "relationship",
                "op": "create",
                "rel_type": "R",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {}},
                "properties": {},
            },
            "at least one ID",
        ),
        (
            {
                "type": "relationship",
                "op": "create",
                "rel_type": "R` DETACH",
                "from": {"ids": {"a": 1}},
                "to": {"ids": {"b": 1}},
                "properties": {},
            },
            "backtick",
        ),
        ([1, 2], "must be a map"),
    ],
)
def test_cud_validation_is_strict(doc: Any, reason: str) -> None:
    outcome = CudMapper().outcome(decode(message(doc)))
    assert isinstance(outcome, Rejected), outcome
    assert reason in outcome.reason and outcome.reason.startswith("invalid CUD message")


def test_cud_tombstone_changes_nothing() -> None:
    assert CudMapper().outcome(decode(message(None, key=1))) == Accepted([])


@pytest.mark.parametrize("fmt", ["json", "text", "bytes"])
def test_a_value_only_template_maps_as_the_full_decode_does(fmt: str) -> None:
    # Mapper takes a short cut for templates that read the value alone (Template.value_outcomes);
    # it must give what the general path (decode, then Template.outcome) gives.
    from proxy.streams.definition import MappingSpec
    from proxy.streams.mapping.mapper import Mapper

    template = "MERGE (:T {v: event})"
    mapper = Mapper(MappingSpec("cypher", template=template, value_format=fmt))
    strategy = Template(template)
    assert strategy.reads_value_only
    messages = [
        message({"a": 1}),
        message("text"),
        message(None),  # a tombstone
        message(b""),
        message(b"\xff\xfe not utf-8"),
        message(b"{not json"),
        message(7, key={"id": 1}),
        message(7, key=b"plain key"),
        message(7, key=b"\xff"),
    ]
    for each in messages:
        try:
            expected = strategy.outcome(decode(each, ValueFormat(fmt)))
        except BadMessage as exc:
            got = mapper.outcome(each)
            assert isinstance(got, Rejected) and str(exc) in got.reason
            continue
        assert mapper.outcome(each) == expected
    assert not Template("CREATE (:T {v: event, k: __key})").reads_value_only

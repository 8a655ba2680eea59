"""Mapping streams without services: CREATE's checks of the mapping options (``build_spec``),
the definition document, TEST STREAM's rows, and the runner's transform stage mapping
batches in the proxy (fakes for Kafka and the graph from test_runner.py). The real thing
with the broker and FalkorDB: test_mapping_streams.py."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from proxy.streams.definition import (
    DefinitionError,
    Delivery,
    MappingSpec,
    StreamDefinition,
    TransformRef,
)
from proxy.streams.mapping.cypher import EVENTS
from proxy.streams.mapping.mapper import (
    BadMapping,
    Mapper,
    MappingOptions,
    build_spec,
    check_template,
)
from proxy.streams.outcomes import DEAD_LETTER_QUERY, Rejected
from proxy.streams.positions import Fence
from proxy.streams.runner import Counts, RunEnd
from proxy.streams.writers import PermanentWriteError
from tests.streams.test_mapping_units import message
from tests.streams.test_runner import FakeGraph, Rig, asynctest, until

pytestmark = pytest.mark.timeout(30)

TEMPLATE = "MERGE (p:Person {id: event.id}) SET p.name = event.name"


# -- CREATE's checks ------------------------------------------------------------------------


def spec(transform: str | None = None, **options: Any) -> MappingSpec | None:
    return build_spec(transform, MappingOptions(**options))


def refused(transform: str | None = None, **options: Any) -> str:
    with pytest.raises(BadMapping) as raised:
        spec(transform, **options)
    return str(raised.value)


def test_each_strategy_makes_a_spec() -> None:
    assert spec(template=f"  {TEMPLATE} ;\n") == MappingSpec("cypher", template=TEMPLATE)
    assert spec(template="CREATE (:Line {t: event})", value_format="text") == MappingSpec(
        "cypher", template="CREATE (:Line {t: event})", value_format="text"
    )
    assert spec(
        patterns=("(:A{!id})", "(:B{!id})"), merge_node_properties=True, value_format="json"
    ) == MappingSpec("pattern", patterns=("(:A{!id})", "(:B{!id})"), merge_node_properties=True)
    assert spec(value_format="cud") == MappingSpec("cud")
    assert spec("builtin:depc") is None


@pytest.mark.parametrize(
    ("transform", "options", "message"),
    [
        (None, {}, "a stream needs WITH TRANSFORM 'uri' or a mapping: WITH CYPHER 'template', "),
        (None, {"value_format": "json"}, "a stream needs WITH TRANSFORM 'uri' or a mapping"),
        ("x.py", {"template": "CREATE ()"}, "WITH CYPHER does not go with WITH TRANSFORM"),
        ("x.py", {"value_format": "text"}, "WITH FORMAT TEXT does not go with WITH TRANSFORM"),
        (
            "x.py",
            {"merge_node_properties": True},
            "MERGE NODE PROPERTIES does not go with WITH TRANSFORM",
        ),
        (
            None,
            {"template": "CREATE ()", "patterns": ("(:A{!id})",)},
            "WITH CYPHER and WITH PATTERN do not go together",
        ),
        (
            None,
            {"value_format": "cud", "patterns": ("(:A{!id})",)},
            "WITH PATTERN and WITH FORMAT CUD do not go together",
        ),
        (
            None,
            {"template": "CREATE ()", "merge_relationship_properties": True},
            "MERGE RELATIONSHIP PROPERTIES applies to WITH PATTERN only",
        ),
        (
            None,
            {"patterns": ("(:A{!id})",), "value_format": "bytes"},
            "WITH FORMAT BYTES does not go with WITH PATTERN",
        ),
        (None, {"patterns": ("(:A{id})",)}, "the pattern '(:A{id})' is invalid: "),
        (
            None,
            {"patterns": ("(:A{!id})", "(:B{!id}")},
            "pattern 2 '(:B{!id}' is invalid: ",
        ),
        (
            None,
            {"patterns": ("(:`A``) DETACH DELETE (x`{!id})",)},
            "the pattern cannot be used: the label 'A`) DETACH DELETE (x' contains a backtick",
        ),
    ],
)
def test_what_does_not_make_a_stream(
    transform: str | None, options: dict[str, Any], message: str
) -> None:
    assert message in refused(transform, **options)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "the Cypher template is empty"),
        (" ; ", "the Cypher template is empty"),
        ("CREATE (:N {id: $id})", "uses the parameter $id (column 17): a template has no"),
        ("CREATE (:N); MATCH (n) DETACH DELETE n", "more than one statement (';' at column 12)"),
        ("CREATE (:N {s: 'open})", "unterminated quote ' at column 16"),
        ("CREATE (:`N {s: 1})", "unterminated quote ` at column 10"),
        ("CREATE (:N) /* no end", "unterminated comment at column 13"),
        ("CREATE (:N {id: event.id}", "does not close the '(' at column 8"),
        ("CREATE (:N {id: event.id]})", "unmatched ']' at column 25"),
    ],
)
def test_templates_checked_as_far_as_a_lexer_can(template: str, message: str) -> None:
    with pytest.raises(BadMapping) as raised:
        check_template(template)
    assert message in str(raised.value)


def test_templates_with_strings_comments_and_subqueries_pass() -> None:
    text = (
        "MERGE (p:`Per;son` {id: event.id}) // a ; in a comment\n"
        "SET p.note = 'a ; ( in a string', p.q = \"$not_a_param\" "
        "WITH p CALL { WITH p MERGE (p)-[:AT]->(:City {name: event.city}) }"
    )
    assert check_template(text) == text


# -- the definition document ------------------------------------------------------------------

BASE = StreamDefinition(
    name="s",
    uri="k:9092",
    topic="t",
    transform=None,
    batch_interval_ms=100,
    batch_size=10,
    consumer_group="s",
    mapping=MappingSpec("pattern", patterns=("(:A{!id})", "(:B{!k, -x, *})")),
)


def test_a_mapping_stream_is_a_version_2_document_read_back_whole() -> None:
    for mapping in (
        BASE.mapping,
        MappingSpec("cypher", template="CREATE (:N {s: 'it''s'})", value_format="bytes"),
        MappingSpec("cud"),
        MappingSpec("pattern", patterns=("(:A{!id})",), merge_relationship_properties=True),
    ):
        definition = replace(BASE, mapping=mapping, delivery=Delivery.EXACTLY_ONCE)
        document = json.loads(definition.to_json())
        assert document["version"] == 2 and document["transform"] is None
        assert StreamDefinition.from_json(definition.to_json()) == definition


def test_a_transform_stream_stays_a_version_1_document() -> None:
    definition = replace(BASE, transform=TransformRef("/x.py", "code", "ab"), mapping=None)
    document = json.loads(definition.to_json())
    assert document["version"] == 1 and document["mapping"] is None
    del document["mapping"]  # as written before mappings existed
    assert StreamDefinition.from_json(json.dumps(document)) == definition


def test_a_stream_has_a_transform_or_a_mapping() -> None:
    with pytest.raises(ValueError, match="a transform or a mapping"):
        replace(BASE, mapping=None)
    document = json.loads(BASE.to_json())
    document["transform"] = {"uri": "/x.py", "code": "", "sha256": ""}
    with pytest.raises(DefinitionError, match="a transform or a mapping"):
        StreamDefinition.from_json(json.dumps(document))
    document = json.loads(BASE.to_json())
    document["mapping"]["kind"] = "xslt"
    with pytest.raises(DefinitionError, match="unknown mapping kind 'xslt'"):
        StreamDefinition.from_json(json.dumps(document))


def test_show_streams_shows_the_mapping_in_the_clause_words() -> None:
    assert BASE.source_shown == "PATTERN '(:A{!id})' PATTERN '(:B{!k, -x, *})'"
    cypher = MappingSpec("cypher", template="CREATE (:N {s: 'a'})", value_format="text")
    assert cypher.shown == "CYPHER 'CREATE (:N {s: \\'a\\'})' FORMAT TEXT"
    merged = MappingSpec("pattern", patterns=("(:A{!id})",), merge_node_properties=True).shown
    assert merged == "PATTERN '(:A{!id})' MERGE NODE PROPERTIES"
    assert MappingSpec("cud").shown == "FORMAT CUD"


# -- TEST STREAM's rows -------------------------------------------------------------------------


def test_test_rows_are_the_joined_queries_with_a_dead_letter_item_per_bad_message() -> None:
    mapper = Mapper(MappingSpec("cypher", template=TEMPLATE))
    rows = mapper.test_rows(
        [
            message({"id": 1, "name": "a"}, where=("t", 0, 0)),
            message({"id": 2, "name": "b"}, where=("t", 0, 1)),
            message(b"{not json", where=("t", 0, 2)),
            message({"id": 3, "name": "c"}, where=("t", 0, 3)),
        ]
    )
    assert [query for query, _ in rows] == [rows[0][0], DEAD_LETTER_QUERY, rows[0][0]]
    assert rows[0][0].startswith(f"UNWIND ${EVENTS} AS ")
    assert rows[0][0].endswith(TEMPLATE)
    assert [row["value"] for row in rows[0][1][EVENTS]] == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
    ]
    assert rows[1][1]["index"] == 2
    assert rows[1][1]["reason"].startswith("the message cannot be read: ")
    assert rows[2][1][EVENTS] == [{"value": {"id": 3, "name": "c"}}]
    assert all(set(params) <= {EVENTS, "index", "reason"} for _, params in rows)


def test_outcomes_reject_alone_what_cannot_be_read_or_mapped() -> None:
    mapper = Mapper(MappingSpec("pattern", patterns=("(:P{!id, name})",)))
    outcomes = mapper.outcomes(
        [message({"id": 1}), message([1, 2]), message({"name": "no id"}), message({"id": 2})]
    )
    assert [type(o).__name__ for o in outcomes] == ["Accepted", "Rejected", "Rejected", "Accepted"]
    assert isinstance(outcomes[1], Rejected) and "must be a map" in outcomes[1].reason
    assert isinstance(outcomes[2], Rejected)
    assert outcomes[2].reason == "Key 'id' could not be located in the message."


# -- the runner ---------------------------------------------------------------------------------


class RowGraph(FakeGraph):
    """FakeGraph for mapping queries: records each query's rows (the messages' values);
    refuses a query holding a value in ``bad``."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[str, list[Any]]] = []

    async def write_batch(
        self,
        queries: list[tuple[str, dict[str, Any]]],
        owner: str | None,
        *,
        group: bool = True,
        atomic: bool = False,
        fence: Fence | None = None,
    ) -> None:
        self.writes.append((len(queries), atomic, fence))
        for _text, params in queries:
            assert set(params) == {EVENTS}, "the identities never reach the backend"
            for row in params[EVENTS]:
                if row["value"] in self.bad:
                    raise PermanentWriteError(f"no {row['value']}", detail="no", rolled_back=True)
        if fence is not None:
            if any(self.positions.get(tp) != fence.expected.get(tp) for tp in fence.next):
                raise AssertionError("fence lost")
            self.positions.update(fence.next)
        for text, params in queries:
            values = [row["value"] for row in params[EVENTS]]
            self.queries.append((text, values))
            self.applied += values


def mapping_rig(**definition: Any) -> Rig:
    rig = Rig(
        transform=None,
        mapping=MappingSpec("cypher", template="CREATE (:N {v: event})"),
        **definition,
    )
    rig.graph = RowGraph()
    rig.transform = None  # type: ignore[assignment]
    return rig


def push_json(rig: Rig, *batches: list[Any]) -> None:
    rig.source.push(*[[json.dumps(v) if v != "BAD" else "{bad" for v in b] for b in batches])


@asynctest
async def test_a_mapping_stream_joins_waiting_batches_into_one_query() -> None:
    rig = mapping_rig()
    push_json(rig, [1, 2, 3], [4, 5, 6], [7])
    runner = rig.start()
    await until(lambda: len(rig.graph.applied) == 7)
    graph = rig.graph
    assert isinstance(graph, RowGraph)
    assert [values for _, values in graph.queries] == [[1, 2, 3, 4, 5, 6, 7]]
    assert rig.source.commits == [{("t", 0): 7}]
    await runner.stop()
    assert (await rig.ended()).how is RunEnd.STOPPED


@asynctest
async def test_skip_a_message_that_does_not_read_and_apply_the_rest_of_its_batch() -> None:
    rig = mapping_rig(error_policy="skip")
    push_json(rig, [1, "BAD", 3], [4])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 4)
    assert sorted(rig.graph.applied) == [1, 3, 4]
    assert rig.progress.totals == Counts(messages=4, batches=2, skipped=1)
    assert rig.source.commits[-1] == {("t", 0): 4}
    await runner.stop()


@asynctest
async def test_dead_letter_a_message_the_backend_refuses_with_the_reason() -> None:
    rig = mapping_rig(error_policy="dead_letter", dead_letter_topic="dlq")
    rig.graph.bad = {2}
    push_json(rig, [1, 2, 3])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 3)
    assert rig.graph.applied == [1, 3]
    (record,) = rig.producer.records
    assert record.value == b"2"
    headers = dict(record.headers)
    assert headers["boltstream.error"].startswith(b"the backend rejected it: ")
    await runner.stop()


@asynctest
async def test_stop_at_a_bad_message_after_writing_the_ones_before() -> None:
    rig = mapping_rig()
    push_json(rig, [1, 2, "BAD", 4])
    rig.start()
    ended = await rig.ended()
    assert ended.how is RunEnd.FAILED
    assert ended.error is not None
    assert "offset 2: the message cannot be read: " in ended.error
    assert rig.graph.applied == [1, 2]
    assert rig.source.commits == [{("t", 0): 2}]


@asynctest
async def test_exactly_once_mapping_writes_are_fenced() -> None:
    rig = mapping_rig(delivery=Delivery.EXACTLY_ONCE, error_policy="skip")
    push_json(rig, [1, 2], [3, "BAD"])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 4)
    assert rig.graph.applied == [1, 2, 3]
    assert rig.graph.positions == {("t", 0): 4}
    assert all(fence is not None for _n, _atomic, fence in rig.graph.writes)
    await runner.stop()


# -- CREATE asks the backend to EXPLAIN a template ------------------------------------------------


class ExplainingWriter(RowGraph):
    """Answers EXPLAIN: ``refuse`` (code, detail) for the template, ``plain`` whether a plain
    query is explained (a backend without EXPLAIN refuses it too)."""

    def __init__(self, refuse: tuple[str, str] | None, plain: bool = True) -> None:
        super().__init__()
        self.refuse, self.plain = refuse, plain
        self.asked: list[str] = []

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> Any:
        self.asked.append(query)
        assert params == {EVENTS: []}
        is_plain = query.endswith(" AS x RETURN x")
        if (is_plain and not self.plain) or (not is_plain and self.refuse is not None):
            code, detail = self.refuse or ("Neo.ClientError.Statement.SyntaxError", "no")
            raise PermanentWriteError(detail, code=code, detail=detail)
        return None


def explain(writer: ExplainingWriter) -> str | None:
    import asyncio

    from proxy.streams.clauses import StreamError, _explain_template

    async def check() -> None:
        await _explain_template("F : ", MappingSpec("cypher", template=TEMPLATE), writer, None, 1)

    try:
        asyncio.run(check())
    except StreamError as exc:
        return exc.message
    return None


def test_a_template_the_backend_explains_passes() -> None:
    writer = ExplainingWriter(None)
    assert explain(writer) is None
    (asked,) = writer.asked
    assert asked.startswith(f"EXPLAIN UNWIND ${EVENTS} AS ") and asked.endswith(TEMPLATE)


def test_a_template_the_backend_finds_wrong_is_refused() -> None:
    writer = ExplainingWriter(("Neo.ClientError.Statement.SyntaxError", "'nope' not defined"))
    assert explain(writer) == "F : the backend refuses the Cypher template: 'nope' not defined"


@pytest.mark.parametrize(
    ("refuse", "plain"),
    [
        (("Neo.ClientError.Statement.SyntaxError", "EXPLAIN? never heard of it"), False),
        (("Neo.DatabaseError.General.UnknownError", "something else"), True),
        (("Neo.ClientError.Security.Forbidden", "not allowed to read"), True),
    ],
)
def test_a_backend_without_explain_or_other_errors_refuse_nothing(
    refuse: tuple[str, str], plain: bool
) -> None:
    assert explain(ExplainingWriter(refuse, plain)) is None


def test_a_relationship_node_naming_only_keys_is_merged_not_wiped() -> None:
    mapper = Mapper(
        MappingSpec("pattern", patterns=("(:U{!id})-[:R{since}]->(:C{!name, country})",))
    )
    (outcome,) = mapper.outcomes([message({"id": 1, "name": "x", "country": "y", "since": 2})])
    assert not isinstance(outcome, Rejected)
    ((text, _params),) = outcome.queries
    assert "SET s" not in text  # (:U{!id}): keys only, left alone beyond them
    assert "SET e = ev.ep, e.`name` = ev.ek[0]" in text  # (:C{!name, country}): replaced
    assert "SET r = ev.p" in text


def test_property_keys_from_messages_are_checked_like_labels() -> None:
    evil = "x`}) DETACH DELETE n //"
    cud = Mapper(MappingSpec("cud")).outcome(
        message({"type": "node", "op": "create", "labels": ["A"], "properties": {evil: 1}})
    )
    assert isinstance(cud, Rejected)
    assert "property key" in cud.reason and "backtick" in cud.reason
    pattern = Mapper(MappingSpec("pattern", patterns=("(:P{!id, *})",))).outcome(
        message({"id": 1, "nested": {evil: 2}})
    )
    assert isinstance(pattern, Rejected)
    assert "property key 'nested.x`}) DETACH" in pattern.reason


@pytest.mark.parametrize(
    ("text", "types"),
    [
        ("MATCH (a)-[r:T]->(b) SET r.x = 1", {"T": "T"}),
        ("MERGE (s)-[:`BOUGHT`]->(e)", {"BOUGHT": "`BOUGHT`"}),
        ("MATCH (a)-[:A|B]-(c), (c)<-[x:C|:D*1..2]-(d)", {"A": "A", "B": "B", "C": "C", "D": "D"}),
        ("RETURN [1, 2][0], ev.k[0], {a: 1}, [x IN l | x]", {}),
        ("MATCH (a)-[]->(b)-->(c)-[r]-(d) RETURN 1", {}),
    ],
)
def test_relationship_types_a_composed_query_names(text: str, types: dict[str, str]) -> None:
    from proxy.streams.compose import relationship_types

    assert relationship_types(text) == types

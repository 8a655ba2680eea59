"""CREATE's and ALTER's one value each (``proxy.streams.spec``), without services: every field
of a clause reaches the spec, every field of a definition that ALTER does not set is kept, every
option ALTER sets changes the definition, and ALTER checks what CREATE checks (EXPLAIN of a
template included). A fake broker listing and a fake backend stand in for the real ones."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import grammar
from proxy.streams.clauses import Checks, StreamError, StreamStatus, define, redefine
from proxy.streams.definition import (
    Delivery,
    MappingSpec,
    StreamDefinition,
    TransformRef,
)
from proxy.streams.mapping.mapper import MappingOptions
from proxy.streams.spec import StreamOptions, StreamSpec, options_of, spec_of
from proxy.streams.transform import TransformPolicy
from proxy.streams.writers import PermanentWriteError

TOPICS = ("t1", "t2", "dlq")


class FakeAdmin:
    """The broker's topic listing (``kafka.TopicAdmin.topics``)."""

    def __init__(self, topics: tuple[str, ...] = TOPICS) -> None:
        self.listed = dict.fromkeys(topics, 1)
        self.asked: list[dict[str, Any] | None] = []

    async def topics(self, uri: str, timeout: float, own: Any = None) -> dict[str, int]:
        self.asked.append(None if own is None else dict(own))
        return self.listed


class ExplainingBackend:
    """EXPLAINs plain queries; refuses templates that name ``nope`` as FalkorDB does."""

    def __init__(self) -> None:
        self.explained: list[str] = []

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> None:
        self.explained.append(query)
        if "nope" in query:
            code = "Neo.ClientError.Statement.SyntaxError"
            raise PermanentWriteError("'nope' not defined", code=code, detail="'nope' not defined")


def checks(tmp_path: Path | None = None, writer: Any = None) -> Checks:
    return Checks(
        admin=FakeAdmin(),  # type: ignore[arg-type]
        policy=TransformPolicy(allowed_dirs=(tmp_path,) if tmp_path else ()),
        broker_timeout=1.0,
        writer=writer,
    )


def alter(old: StreamDefinition, options: StreamOptions, writer: Any = None) -> StreamDefinition:
    return asyncio.run(redefine(old, options, checks(writer=writer)))


def refused(old: StreamDefinition, options: StreamOptions, writer: Any = None) -> str:
    with pytest.raises(StreamError) as raised:
        alter(old, options, writer)
    error = raised.value
    if error.kind == "invalid":  # what the clause says is wrong: named as ALTER's failure
        assert error.message.startswith("Failed to alter Kafka stream "), error.message
    return error.message


# Two stored streams that, between them, give every field a value other than its default:
# ALTER must hand each value back unless it sets that field.
TRANSFORM_STREAM = StreamDefinition(
    name="s",
    uri="k:9092",
    topic="t1",
    transform=TransformRef("/x/t.py", "def stream(batch):\n    return []\n", "ab" * 32),
    batch_interval_ms=250,
    batch_size=33,
    consumer_group="group-s",
    owner="alice",
    error_policy="dead_letter",
    dead_letter_topic="dlq",
    delivery=Delivery.EXACTLY_ONCE,
    database="other",
    more_topics=("t2",),
    configs=(("client.id", "me"),),
    credentials=(("sasl.password", "hunter2"),),
    transformation="mod.proc",
)
MAPPING_STREAM = dataclasses.replace(
    TRANSFORM_STREAM,
    transform=None,
    transformation=None,
    mapping=MappingSpec("cypher", template="CREATE (:N {v: event.v})", value_format="text"),
)
SAMPLES = (TRANSFORM_STREAM, MAPPING_STREAM)


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def test_the_samples_set_every_field_of_a_definition() -> None:
    """A field added to StreamDefinition needs a value here, so that ALTER is tested on it."""
    for field in dataclasses.fields(StreamDefinition):
        default = default_of(field)
        assert default is dataclasses.MISSING or any(
            getattr(sample, field.name) != default for sample in SAMPLES
        ), f"give StreamDefinition.{field.name} a value other than its default in SAMPLES"


@pytest.mark.parametrize("old", SAMPLES, ids=["transform", "mapping"])
@pytest.mark.parametrize(
    ("options", "changed"),
    [
        (StreamOptions(batch_size=7), {"batch_size": 7}),
        (StreamOptions(batch_interval_ms=5), {"batch_interval_ms": 5}),
        (
            StreamOptions(on_error="skip"),
            {"error_policy": "skip", "dead_letter_topic": None},
        ),
    ],
)
def test_alter_keeps_every_field_it_does_not_set(
    old: StreamDefinition, options: StreamOptions, changed: dict[str, Any]
) -> None:
    # A module stream's transform is kept pinned (not fetched again): no module is needed.
    new = alter(old, options)
    for field in dataclasses.fields(StreamDefinition):
        expected = changed.get(field.name, getattr(old, field.name))
        assert getattr(new, field.name) == expected, field.name


ALTERABLE = {
    "transform": ("transform", None),  # checked below, with a real script
    "transformation": ("transformation", None),  # needs a module: test_memgraph2
    "mapping": ("mapping", None),  # test_alter_changes_the_mapping
    "batch_interval_ms": ("batch_interval_ms", 9),
    "batch_size": ("batch_size", 8),
    "on_error": ("error_policy", "skip"),
    "dead_letter_topic": ("dead_letter_topic", None),  # with on_error only
    "configs": ("configs", (("client.id", "other"),)),
    "credentials": ("credentials", (("sasl.password", "other"),)),
}


def test_every_option_alter_may_set_is_known_here() -> None:
    assert {f.name for f in dataclasses.fields(StreamOptions)} == set(ALTERABLE)


@pytest.mark.parametrize(
    ("option", "value"), [(name, value) for name, (_, value) in ALTERABLE.items() if value]
)
def test_every_option_alter_sets_changes_the_definition(option: str, value: Any) -> None:
    new = alter(TRANSFORM_STREAM, StreamOptions(**{option: value}))
    field, expected = ALTERABLE[option]
    assert getattr(new, field) == expected != getattr(TRANSFORM_STREAM, field)


def test_alter_fetches_checks_and_pins_a_new_transform(tmp_path: Path) -> None:
    script = tmp_path / "new.py"
    script.write_text("def stream(batch):\n    return []\n")
    new = asyncio.run(
        redefine(MAPPING_STREAM, StreamOptions(transform=str(script)), checks(tmp_path))
    )
    assert new.transform is not None and new.transform.uri == str(script)
    assert new.transform.code == script.read_text()
    assert new.mapping is None and new.transformation is None
    assert new.consumer_group == MAPPING_STREAM.consumer_group
    broken = tmp_path / "broken.py"
    broken.write_text("def nothing_here():\n    pass\n")
    with pytest.raises(StreamError) as raised:
        asyncio.run(
            redefine(TRANSFORM_STREAM, StreamOptions(transform=str(broken)), checks(tmp_path))
        )
    assert raised.value.kind == "external"


def cypher(template: str) -> StreamOptions:
    return StreamOptions(mapping=MappingOptions(template=template))


def test_alter_changes_the_mapping() -> None:
    # A new template replaces the old mapping whole (its FORMAT TEXT too).
    new = alter(MAPPING_STREAM, cypher("MERGE (:M {v: event.v})"))
    assert new.mapping == MappingSpec("cypher", template="MERGE (:M {v: event.v})")
    # Options that choose no mapping apply to the stream's own.
    fmt = alter(MAPPING_STREAM, StreamOptions(mapping=MappingOptions(value_format="bytes")))
    assert MAPPING_STREAM.mapping is not None
    assert fmt.mapping == dataclasses.replace(MAPPING_STREAM.mapping, value_format="bytes")
    patterns = alter(
        MAPPING_STREAM,
        StreamOptions(mapping=MappingOptions(patterns=("(:A{!id})", "(:B{!id})"))),
    )
    assert patterns.mapping == MappingSpec("pattern", patterns=("(:A{!id})", "(:B{!id})"))
    merged = alter(patterns, StreamOptions(mapping=MappingOptions(merge_node_properties=True)))
    assert patterns.mapping is not None
    assert merged.mapping == dataclasses.replace(patterns.mapping, merge_node_properties=True)
    # A transform stream becomes a mapping stream; its pinned transform goes.
    mapped = alter(TRANSFORM_STREAM, cypher("CREATE (:N)"))
    assert (mapped.transform, mapped.transformation) == (None, None)
    assert mapped.mapping == MappingSpec("cypher", template="CREATE (:N)")


@pytest.mark.parametrize(
    ("old", "options", "message"),
    [
        (TRANSFORM_STREAM, StreamOptions(mapping=MappingOptions(value_format="text")), "a mapping"),
        (
            MAPPING_STREAM,
            StreamOptions(transform="x.py", mapping=MappingOptions(template="CREATE ()")),
            "not both",
        ),
        (MAPPING_STREAM, cypher("CREATE (n) SET n.x = $x"), "uses the parameter $x"),
        (MAPPING_STREAM, cypher("CREATE (n:N) SET n.x = nope"), "refuses the Cypher template"),
        (
            MAPPING_STREAM,
            StreamOptions(mapping=MappingOptions(merge_node_properties=True)),
            "applies to WITH PATTERN only",
        ),
        (
            dataclasses.replace(MAPPING_STREAM, mapping=MappingSpec("cud")),
            StreamOptions(mapping=MappingOptions(value_format="json")),
            "reads CUD documents",
        ),
        (MAPPING_STREAM, StreamOptions(configs=(("group.id", "x"),)), "use CONSUMER_GROUP"),
        (MAPPING_STREAM, StreamOptions(configs=(("no.such.setting", "1"),)), "no.such.setting"),
        (MAPPING_STREAM, StreamOptions(batch_size=10**7), "BATCH_SIZE must be between"),
        (MAPPING_STREAM, StreamOptions(on_error="dead letter", dead_letter_topic="t2"), "own"),
        (
            MAPPING_STREAM,
            StreamOptions(on_error="dead letter", dead_letter_topic="gone"),
            "dead-letter topic 'gone' not found",
        ),
        (TRANSFORM_STREAM, StreamOptions(transform="builtin:request"), "EXACTLY ONCE"),
        (TRANSFORM_STREAM, StreamOptions(transform="builtin:nope"), "no such built-in"),
    ],
)
def test_alter_refuses_what_create_refuses(
    old: StreamDefinition, options: StreamOptions, message: str
) -> None:
    assert message in refused(old, options, ExplainingBackend())


def test_alter_explains_a_template_and_never_shows_credentials() -> None:
    backend = ExplainingBackend()
    alter(MAPPING_STREAM, cypher("CREATE (:Fine)"), backend)
    assert backend.explained and backend.explained[0].startswith("EXPLAIN UNWIND")
    message = refused(MAPPING_STREAM, StreamOptions(configs=(("no.such.setting", "1"),)))
    assert message.startswith("Failed to alter Kafka stream s : ")
    assert "hunter2" not in message


def test_create_takes_one_spec_and_applies_the_defaults(tmp_path: Path) -> None:
    spec = StreamSpec(
        "s",
        "k:9092",
        ("t1", "t2"),
        cypher("CREATE (:N)"),
        consumer_group="g",
        owner="",
    )
    definition = asyncio.run(define(spec, checks(tmp_path, ExplainingBackend())))
    assert (definition.topic, definition.more_topics, definition.owner) == ("t1", ("t2",), None)
    assert (definition.batch_interval_ms, definition.batch_size) == (100, 10)
    assert (definition.error_policy, definition.delivery) == ("stop", Delivery.AT_LEAST_ONCE)


# -- from the clauses ---------------------------------------------------------------------------


CHOICES = {"on_error": "skip", "delivery": "exactly once", "value_format": "text"}
SETTINGS = ("configs", "credentials")


def other_value(name: str, value: Any) -> Any:
    """A value for the clause field ``name`` other than ``value``."""
    if name in CHOICES:
        return CHOICES[name]
    if isinstance(value, bool):
        return not value
    if name.startswith("batch_"):
        return (value or 0) + 1
    if name in SETTINGS:
        return (*(value or ()), ("k", "v"))
    if isinstance(value, tuple):
        return (*value, "z")
    return (value or "") + "z"


def changed_one_by_one(base: Any) -> Any:
    """``base`` with each of its fields changed, one at a time (the clause's name and its
    DATABASE, which the handler resolves against the session's, excepted)."""
    for field in dataclasses.fields(base):
        if field.name not in ("name", "database"):
            value = other_value(field.name, getattr(base, field.name))
            yield field.name, dataclasses.replace(base, **{field.name: value})


@pytest.mark.parametrize(
    "base",
    [
        grammar.CreateStream("s", "k:9092", "t", "x.py"),
        grammar.CreateKafkaStream("s", ("t",), "m.p"),
    ],
    ids=["legacy", "memgraph"],
)
def test_every_field_of_a_create_clause_reaches_the_spec(
    base: grammar.CreateStream | grammar.CreateKafkaStream,
) -> None:
    """A clause field that the spec does not carry would be dropped without a word."""
    before = spec_of(base, owner=None, database=None)
    for name, changed in changed_one_by_one(base):
        assert spec_of(changed, owner=None, database=None) != before, name


def test_every_field_of_alter_reaches_the_options() -> None:
    base = grammar.AlterStream("s", transform="y.py")
    for name, changed in changed_one_by_one(base):
        assert options_of(changed) != options_of(base), name


def test_a_memgraph_clause_with_a_module_or_a_mapping() -> None:
    module = spec_of(grammar.CreateKafkaStream("s", ("t",), "m.p"), owner="bob", database="g")
    assert (module.options.transformation, module.options.transform) == ("m.p", None)
    assert (module.owner, module.database, module.uri) == ("bob", "g", None)
    clause = grammar.parse_stream_clause(
        "CREATE KAFKA STREAM s TOPICS a, b WITH PATTERN '(:A{!id})' MERGE NODE PROPERTIES"
    )
    assert isinstance(clause, grammar.CreateKafkaStream)
    mapped = spec_of(clause, owner=None, database=None)
    assert mapped.topics == ("a", "b")
    assert mapped.options.transform is None and mapped.options.transformation is None
    assert mapped.options.mapping == MappingOptions(
        patterns=("(:A{!id})",), merge_node_properties=True
    )


# -- SHOW STREAMS -------------------------------------------------------------------------------


def test_show_streams_columns_and_values_come_from_one_place() -> None:
    columns = StreamStatus.columns()
    assert columns[:12] == [  # the manual's table first, in its order
        "name",
        "uri",
        "topic",
        "transform",
        "status",
        "batch_interval",
        "batch_size",
        "consumer_group",
        "owner",
        "messages_processed",
        "lag",
        "last_error",
    ]
    status = StreamStatus(
        name="s",
        uri="k",
        topic="t",
        transform="x.py",
        status="running",
        batch_interval=1,
        batch_size=2,
        consumer_group="g",
        owner=None,
        messages_processed=3,
        lag=4,
        last_error=None,
        configs={"client.id": "me"},
    )
    row = dict(zip(columns, status.row(), strict=True))
    assert (row["type"], row["is running"], row["configs"]) == ("kafka", True, {"client.id": "me"})
    assert row["credentials"] == {} and row["holders"] == {}

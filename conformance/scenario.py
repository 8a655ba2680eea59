"""The scenario every real client runs through the proxy, and what it must show.

A scenario is a list of steps. Each step is plain data (``Step.wire()``) sent as JSON to a client
program (``conformance/clients/*.py``, ``conformance/js/client.mjs``), which runs it with that
client's own API and prints what the client showed, normalised to JSON:

=====================  ==========================================================================
client value           normalised JSON
=====================  ==========================================================================
null/bool/str/list/map themselves (floats only non-integral, so JSON keeps them floats)
integer                an int (the JS client writes ``{"$int": "<decimal>"}``, read back as int)
node                   ``{"$node": {"id": int, "eid": str|null, "labels": [sorted], "props": {}}}``
relationship           ``{"$rel": {"id", "eid", "type", "start": int, "end": int, "props"}}``
path                   ``{"$path": {"nodes": [node...], "rels": [relationship...]}}``
date                   ``{"$date": "YYYY-MM-DD"}``
local date-time        ``{"$localdatetime": "YYYY-MM-DDTHH:MM:SS[.nnnnnnnnn]"}``
local time             ``{"$localtime": "HH:MM:SS[.nnnnnnnnn]"}``
duration               ``{"$duration": [months, days, seconds, nanoseconds]}``
=====================  ==========================================================================

Parameters use the same forms for temporal values (each client builds its own temporal type).

Step kinds (what a client does with it):

- ``connect``: open the connection the client's own way (its connect-time queries included) and
  report ``{"agent": server agent or null, "protocol": "M.m" or null, ...}``;
- ``run``: one auto-commit query -> a *result*: ``{"keys", "rows", "counters", "query_type"}``
  (``counters``: ``nodes_created``... or null when the client shows none);
- ``tx``: an explicit transaction running ``queries`` then ``end`` ("commit"/"rollback") ->
  ``{"results": [result...]}``;
- ``managed``: a transaction function (``execute_write``...; clients without one use ``tx``);
- ``poll``: run ``query`` (auto-commit, like ``run``) every 0.2 s until its first row is
  ``[true]`` or ``timeout`` seconds have passed -> ``{"result": last result, "attempts": n}``.

A step with ``"autocommit": true`` holds a stream clause that the client runs in an auto-commit
transaction: a client whose plain queries run in an explicit transaction (pymgclient by
default) switches to auto-commit for that step, as Memgraph's users must. The proxy also runs
stream clauses inside explicit transactions (step ``stream_clause_in_transaction``).

A client reports ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": {"class", "code",
"message"}}`` per step and goes on with the next step, so one failure does not hide the others.

``__LABEL__`` in a query is replaced by a label unique to one client run; ``__STREAM__``,
``__TOPIC__``, ``__BROKER__`` and ``__TRANSFORM__`` by that run's stream name, its topic (which
holds the tutorial's messages ``1`` and ``1 2``), the broker's ``host:port`` and the path of
the manual's transform (``tests/streams/manual_transform.py``, copied where the proxy may load
it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy import NEO4J_COMPAT_VERSION, SERVER_AGENT

LABEL = "__LABEL__"
STREAM = "__STREAM__"
TOPIC = "__TOPIC__"
BROKER = "__BROKER__"
TRANSFORM = "__TRANSFORM__"
# placeholder -> the key of its value in a run's ``values`` (and in the checks' ``ctx``)
PLACEHOLDERS = {
    LABEL: "label",
    STREAM: "stream",
    TOPIC: "topic",
    BROKER: "broker",
    TRANSFORM: "transform",
}


@dataclass(frozen=True)
class Profile:
    """What a client can show, so the checks ask each client only for what it has."""

    protocol: str | None  # the Bolt version the client reports, None if it shows none
    agent: bool = True  # shows the server agent
    element_ids: bool = True  # Bolt 5: nodes and relationships carry element ids
    counters: bool = True  # shows write counters of a result
    query_type: bool = True  # shows the summary's query type
    error_codes: bool = True  # errors carry the Neo4j status code (pymgclient: message only)
    websocket: str | None = None  # "ws"/"wss": every connection must be a WebSocket to the proxy


@dataclass
class Outcome:
    """What one client showed for one step."""

    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None
    trace: str = ""

    def result(self) -> Any:
        assert self.ok, f"step failed in the client: {self.error}\n{self.trace}"
        return self.value

    def failure(self) -> dict[str, Any]:
        assert not self.ok, f"step should have failed, the client showed {self.value!r}"
        assert self.error is not None
        return self.error


Check = Callable[[Outcome, Profile, dict[str, Any]], None]


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # connect | run | tx | managed | poll
    check: Check
    query: str = ""
    queries: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    end: str = "commit"
    autocommit: bool = False  # a stream clause: the client runs it in auto-commit
    timeout: float = 0.0  # poll: how long to wait for [true]

    def wire(self, values: dict[str, str]) -> dict[str, Any]:
        """The JSON a client program receives for this step (``values``: see PLACEHOLDERS)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "end": self.end,
            "query": substitute(self.query, values),
            "queries": [substitute(q, values) for q in self.queries],
            "params": self.params,
            "autocommit": self.autocommit,
            "timeout": self.timeout,
        }


def substitute(text: str, values: dict[str, str]) -> str:
    for placeholder, key in PLACEHOLDERS.items():
        if placeholder in text:
            text = text.replace(placeholder, values[key])
    return text


def scenario_input(steps: list[Step], values: dict[str, str], **options: Any) -> str:
    return json.dumps({**values, "steps": [s.wire(values) for s in steps], **options})


# -- helpers for checks ----------------------------------------------------------------------


def node(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and "$node" in value, f"not a node: {value!r}"
    found: dict[str, Any] = value["$node"]
    assert type(found["id"]) is int, f"node id must be an integer: {found!r}"
    return found


def rel(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and "$rel" in value, f"not a relationship: {value!r}"
    found: dict[str, Any] = value["$rel"]
    for key in ("id", "start", "end"):
        assert type(found[key]) is int, f"relationship {key} must be an integer: {found!r}"
    return found


def path(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and "$path" in value, f"not a path: {value!r}"
    found: dict[str, Any] = value["$path"]
    return found


def single_row(result: dict[str, Any], keys: list[str]) -> list[Any]:
    assert result["keys"] == keys, f"columns {result['keys']} != {keys}"
    assert len(result["rows"]) == 1, f"expected one row, got {result['rows']!r}"
    row: list[Any] = result["rows"][0]
    return row


def needs(ctx: dict[str, Any], key: str, step: str) -> dict[str, Any]:
    assert key in ctx, f"nothing to compare with: step {step} did not pass"
    found: dict[str, Any] = ctx[key]
    return found


def check_element_ids(profile: Profile, *entities: dict[str, Any]) -> None:
    for entity in entities:
        if profile.element_ids:
            assert isinstance(entity["eid"], str) and entity["eid"], entity
        else:
            assert entity.get("eid") in (None, str(entity["id"])), entity


def check_error(error: dict[str, Any], profile: Profile, code: str, words: tuple[str, ...]) -> None:
    if profile.error_codes:
        assert error["code"] == code, f"expected {code}, the client showed {error!r}"
    message = (error.get("message") or "").lower()
    assert any(w.lower() in message for w in words), f"message does not say {words}: {error!r}"


# -- the steps -------------------------------------------------------------------------------


def check_connect(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    value = outcome.result()
    if profile.agent:
        assert value["agent"] == SERVER_AGENT, value
    if profile.protocol is not None:
        assert value["protocol"] == profile.protocol, value
    if "kernel_version" in value:  # clients that read dbms.components on connect
        assert value["kernel_version"] == NEO4J_COMPAT_VERSION, value
    if "database" in value:  # the home database the client resolved
        assert value["database"] == "neo4j", value
    if profile.websocket is not None:  # what the page's WebSocket constructor was given
        opened = value["websockets"]
        assert opened and set(opened) == {f"{profile.websocket}://{ctx['address']}/"}, value
    if "default_autocommit" in value:  # pymgclient: connected (status 0 = READY), and its
        # default mode is the one that sends BEGIN/COMMIT as query texts
        assert value["status"] == 0 and value["default_autocommit"] is False, value


def check_create(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    result = outcome.result()
    a_value, r_value, b_value = single_row(result, ["a", "r", "b"])
    a, r, b = node(a_value), rel(r_value), node(b_value)
    label = ctx["label"]
    assert a["labels"] == [label] and b["labels"] == [label], (a, b)
    assert a["props"] == {"name": "a", "born": {"$date": "1990-05-17"}, "score": 1.5}, a
    assert b["props"] == {"name": "b", "tags": ["x", "y"]}, b
    assert r["type"] == "KNOWS" and r["props"] == {"since": 2001}, r
    assert a["id"] != b["id"], "two nodes share an id"
    assert (r["start"], r["end"]) == (a["id"], b["id"]), "relationship ends are not a and b"
    check_element_ids(profile, a, b, r)
    if profile.element_ids:
        assert a["eid"] != b["eid"]
    if profile.counters:
        counters = result["counters"]
        assert counters["nodes_created"] == 2 and counters["relationships_created"] == 1, counters
        assert counters["properties_set"] == 6, counters
    if profile.query_type:  # Neo4j says "rw" for CREATE ... RETURN; clients need a valid type
        assert result["query_type"] in ("w", "rw"), result
    ctx.update(a=a, b=b, r=r)


def check_path_forward(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    p_value, hops, names = single_row(outcome.result(), ["p", "hops", "names"])
    p = path(p_value)
    assert hops == 1 and names == ["a", "b"], (hops, names)
    nodes = [node(n) for n in p["nodes"]]
    rels = [rel(r) for r in p["rels"]]
    assert [n["props"]["name"] for n in nodes] == ["a", "b"], nodes
    a, b, r = (needs(ctx, key, "create_graph") for key in "abr")
    assert [n["id"] for n in nodes] == [a["id"], b["id"]], "node ids changed since create_graph"
    assert len(rels) == 1 and rels[0]["type"] == "KNOWS" and rels[0]["id"] == r["id"], rels
    assert (rels[0]["start"], rels[0]["end"]) == (nodes[0]["id"], nodes[1]["id"]), rels


def check_path_backward(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    (p_value,) = single_row(outcome.result(), ["p"])
    p = path(p_value)
    nodes = [node(n) for n in p["nodes"]]
    rels = [rel(r) for r in p["rels"]]
    assert [n["props"]["name"] for n in nodes] == ["b", "a"], nodes
    # walked against its direction: the relationship still goes from a to b
    a, b = needs(ctx, "a", "create_graph"), needs(ctx, "b", "create_graph")
    assert len(rels) == 1, rels
    assert (rels[0]["start"], rels[0]["end"]) == (a["id"], b["id"]), rels


def check_temporal(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    row = single_row(outcome.result(), ["d", "ldt", "lt", "dur"])
    assert row == [
        {"$date": "2024-02-29"},
        {"$localdatetime": "2024-01-02T03:04:05"},
        {"$localtime": "12:34:56"},
        {"$duration": [0, 3, 4 * 3600, 0]},
    ], row


TEMPORAL_PARAMS = {
    "d": {"$date": "2020-01-31"},
    "ldt": {"$localdatetime": "2021-06-01T07:08:09"},
    "lt": {"$localtime": "01:02:03"},
    "dur": {"$duration": [0, 2, 5, 0]},
}


def check_temporal_params(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    row = single_row(outcome.result(), ["d", "ldt", "lt", "dur"])
    assert row == [TEMPORAL_PARAMS[k] for k in ("d", "ldt", "lt", "dur")], row


def check_maps(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    row = single_row(outcome.result(), ["m", "nested", "big", "neg", "s"])
    assert row == [
        {"k": [1, 2.5, "x", True, None], "m": {"n": None, "deep": {"x": 1}}},
        [1, [2, 3]],
        9007199254740993,
        -42,
        "héllo ✓ 😀",
    ], row


PARAMS = {
    "s": "ünïcödé ✓ 'quoted' \"too\"",
    "i": 1234567890123,
    "f": 0.25,
    "b": True,
    "n": None,
    "l": [1, "two", 0.5],
    "m": {"a": 1, "b": ["c"]},
}


def check_params(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    keys = list(PARAMS)
    row = single_row(outcome.result(), keys)
    assert dict(zip(keys, row, strict=True)) == PARAMS, row


def check_explicit_tx(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    created, counted = outcome.result()["results"]
    assert created["keys"] == ["name"] and created["rows"] == [["c"]], created
    assert counted["keys"] == ["n"] and counted["rows"] == [[3]], counted


def rows_are(expected: list[list[Any]], keys: list[str]) -> Check:
    def check(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
        result = outcome.result()
        assert result["keys"] == keys, result
        assert result["rows"] == expected, result

    return check


def check_managed(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    (result,) = outcome.result()["results"]
    assert result["keys"] == ["name"] and result["rows"] == [["d"]], result


def check_read_rollback(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    (result,) = outcome.result()["results"]
    assert result["rows"] == [[4]], result


def check_syntax_error(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    check_error(
        outcome.failure(),
        profile,
        "Neo.ClientError.Statement.SyntaxError",
        ("RETURN", "syntax", "invalid input"),
    )


def check_tx_error(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    check_error(
        outcome.failure(),
        profile,
        "Neo.ClientError.Statement.ArithmeticError",
        ("division by zero", "/ by zero"),
    )


CORE_STEPS: list[Step] = [
    Step("connect", "connect", check_connect),
    Step(
        "create_graph",
        "run",
        check_create,
        query=(
            f"CREATE (a:{LABEL} {{name: 'a', born: date('1990-05-17'), score: 1.5}})"
            f"-[r:KNOWS {{since: 2001}}]->(b:{LABEL} {{name: 'b', tags: ['x', 'y']}}) "
            "RETURN a, r, b"
        ),
    ),
    Step(
        "match_path",
        "run",
        check_path_forward,
        query=(
            f"MATCH p = (:{LABEL} {{name: 'a'}})-[:KNOWS]->(:{LABEL}) "
            "RETURN p, length(p) AS hops, [n IN nodes(p) | n.name] AS names"
        ),
    ),
    Step(
        "match_path_backwards",
        "run",
        check_path_backward,
        query=(f"MATCH p = (:{LABEL} {{name: 'b'}})<-[:KNOWS]-(:{LABEL}) RETURN p"),
    ),
    Step(
        "temporal_values",
        "run",
        check_temporal,
        query=(
            "RETURN date('2024-02-29') AS d, localdatetime('2024-01-02T03:04:05') AS ldt, "
            "localtime('12:34:56') AS lt, duration({days: 3, hours: 4}) AS dur"
        ),
    ),
    Step(
        "temporal_parameters",
        "run",
        check_temporal_params,
        query="RETURN $d AS d, $ldt AS ldt, $lt AS lt, $dur AS dur",
        params=TEMPORAL_PARAMS,
    ),
    Step(
        "maps_and_lists",
        "run",
        check_maps,
        query=(
            "RETURN {k: [1, 2.5, 'x', true, null], m: {n: null, deep: {x: 1}}} AS m, "
            "[1, [2, 3]] AS nested, 9007199254740993 AS big, -42 AS neg, 'héllo ✓ 😀' AS s"
        ),
    ),
    Step(
        "parameters",
        "run",
        check_params,
        query="RETURN " + ", ".join(f"${k} AS {k}" for k in PARAMS),
        params=PARAMS,
    ),
    Step("empty_result", "run", rows_are([], ["n"]), query=f"MATCH (n:{LABEL}Nothing) RETURN n"),
    Step(
        "batch_write",
        "run",
        rows_are([[3, 6]], ["created", "total"]),
        query=(
            f"UNWIND $rows AS row CREATE (b:{LABEL}Batch {{name: row.name, n: row.n}}) "
            "RETURN count(b) AS created, sum(b.n) AS total"
        ),
        params={"rows": [{"name": f"x{i}", "n": i} for i in (1, 2, 3)]},
    ),
    # more rows than the drivers' default fetch size (1000): PULL n, has_more, PULL again
    Step(
        "large_result",
        "run",
        rows_are([[i, f"row {i}"] for i in range(1, 2501)], ["i", "s"]),
        query="UNWIND range(1, 2500) AS i RETURN i, 'row ' + toString(i) AS s",
    ),
    Step(
        "explicit_transaction",
        "tx",
        check_explicit_tx,
        queries=(
            f"CREATE (c:{LABEL} {{name: 'c'}}) RETURN c.name AS name",
            f"MATCH (n:{LABEL}) RETURN count(n) AS n",
        ),
    ),
    Step(
        "after_commit",
        "run",
        rows_are([["a"], ["b"], ["c"]], ["name"]),
        query=f"MATCH (n:{LABEL}) RETURN n.name AS name ORDER BY name",
    ),
    Step(
        "managed_transaction",
        "managed",
        check_managed,
        queries=(f"CREATE (d:{LABEL} {{name: 'd'}}) RETURN d.name AS name",),
    ),
    Step(
        "read_transaction_rollback",
        "tx",
        check_read_rollback,
        end="rollback",
        queries=(f"MATCH (n:{LABEL}) RETURN count(n) AS n",),
    ),
    Step("syntax_error", "run", check_syntax_error, query="RETURN RETURN"),
    Step("recovery", "run", rows_are([["still here"]], ["s"]), query="RETURN 'still here' AS s"),
    Step(
        "error_in_transaction",
        "tx",
        check_tx_error,
        queries=(f"MATCH (n:{LABEL}) RETURN count(n) AS n", "RETURN 1 / 0 AS boom"),
    ),
    Step(
        "recovery_after_transaction_error",
        "run",
        rows_are([[4]], ["n"]),
        query=f"MATCH (n:{LABEL}) RETURN count(n) AS n",
    ),
]

# -- the stream lifecycle of the tutorial (README "Streams", seeds/000) ----------------------

# SHOW STREAMS starts with these columns, in this order (README "Streams"); later columns may
# follow them
STREAM_COLUMNS = [
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


def check_stream_columns(keys: list[str]) -> None:
    assert keys[: len(STREAM_COLUMNS)] == STREAM_COLUMNS, f"SHOW STREAMS columns: {keys}"


# TEST STREAM on the topic holding `1` and `1 2`, as the manual prints it
TEST_TABLE = [
    ["CREATE (:Node {id: $id})", {"id": "1"}],
    [
        "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
        {"from_id": "1", "to_id": "2"},
    ],
]


def stream_row(result: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """SHOW STREAMS: the documented columns in order, and this run's stream in exactly one
    row."""
    check_stream_columns(result["keys"])
    mine = [row for row in result["rows"] if row[0] == ctx["stream"]]
    assert len(mine) == 1, f"stream {ctx['stream']} in {len(mine)} rows: {result['rows']!r}"
    return dict(zip(result["keys"], mine[0], strict=True))


def show_streams_says(status: str, processed: int | None = None, lag: int | None = None) -> Check:
    def check(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
        row = stream_row(outcome.result(), ctx)
        first_five = [row[k] for k in STREAM_COLUMNS[:5]]
        assert first_five == [
            ctx["stream"],
            ctx["broker"],
            ctx["topic"],
            ctx["transform"],
            status,
        ], first_five
        assert (row["batch_interval"], row["batch_size"]) == (100, 10), row  # the defaults
        assert row["consumer_group"] == ctx["stream"], row
        assert row["owner"] == ctx["user"], row
        assert row["last_error"] is None, row
        if processed is not None:
            assert row["messages_processed"] == processed, row
        if lag is not None:
            assert row["lag"] == lag, row

    return check


def check_stream_gone(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    result = outcome.result()
    check_stream_columns(result["keys"])
    assert all(row[0] != ctx["stream"] for row in result["rows"]), result["rows"]


def no_rows(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    """A successful result with no columns and no rows (CREATE/START/STOP/DROP STREAM)."""
    result = outcome.result()
    assert result["keys"] == [] and result["rows"] == [], result


def check_test_stream(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    result = outcome.result()
    assert result["keys"] == ["query", "params"], result["keys"]
    assert result["rows"] == TEST_TABLE, result["rows"]


def check_stream_in_transaction(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    """SHOW STREAMS inside an explicit transaction answers at once, like in auto-commit."""
    (result,) = outcome.result()["results"]
    row = stream_row(result, ctx)
    assert row["status"] == "stopped", row


def check_polled(outcome: Outcome, profile: Profile, ctx: dict[str, Any]) -> None:
    value = outcome.result()
    assert value["result"]["rows"] == [[True]], (
        f"the stream's node and edge did not show up after {value['attempts']} tries: {value}"
    )


STREAM_CREATE = (
    f"CREATE STREAM {STREAM} AS LOAD DATA KAFKA '{BROKER}' WITH TOPIC '{TOPIC}' "
    f"WITH TRANSFORM '{TRANSFORM}'"
)

# The tutorial's graph is empty, so its `1 2` message matches no node 2 and creates nothing;
# here node 2 exists first, so the two messages give (:Node {id: "1"})-[:Edge]->(:Node {id: "2"}).
# Every client's stream writes :Node to the default graph: each run clears it first (clients
# run one after another).
STREAM_LIFECYCLE_STEPS: list[Step] = [
    Step("stream_clear_graph", "run", no_rows, query="MATCH (n:Node) DETACH DELETE n"),
    Step(
        "stream_seed_node",
        "run",
        rows_are([["2"]], ["id"]),
        query="CREATE (n:Node {id: '2'}) RETURN n.id AS id",
    ),
    Step("create_stream", "run", no_rows, query=STREAM_CREATE, autocommit=True),
    Step(
        "show_streams_stopped",
        "run",
        show_streams_says("stopped", processed=0, lag=2),
        query="SHOW STREAMS",
        autocommit=True,
    ),
    Step(
        "stream_clause_in_transaction", "tx", check_stream_in_transaction, queries=("SHOW STREAMS",)
    ),
    Step("test_stream", "run", check_test_stream, query=f"TEST STREAM {STREAM}", autocommit=True),
    Step(
        "graph_untouched_by_test",
        "run",
        rows_are([["2"]], ["id"]),
        query="MATCH (n:Node) RETURN n.id AS id",
    ),
    Step("start_stream", "run", no_rows, query=f"START STREAM {STREAM}", autocommit=True),
    Step(
        "show_streams_running",
        "run",
        show_streams_says("running"),
        query="SHOW STREAMS",
        autocommit=True,
    ),
    Step(
        "wait_for_stream_writes",
        "poll",
        check_polled,
        timeout=30.0,
        query=("MATCH (:Node {id: '1'})-[e:Edge]->(:Node {id: '2'}) RETURN count(e) = 1 AS done"),
    ),
    Step(
        "graph_from_stream",
        "run",
        rows_are([["1", "Edge", "2"], ["2", None, None]], ["id", "edge", "to"]),
        query=(
            "MATCH (n:Node) OPTIONAL MATCH (n)-[e:Edge]->(m:Node) "
            "RETURN n.id AS id, type(e) AS edge, m.id AS to ORDER BY id"
        ),
    ),
    Step("stop_stream", "run", no_rows, query=f"STOP STREAM {STREAM}", autocommit=True),
    Step(
        "show_streams_stopped_again",
        "run",
        show_streams_says("stopped", processed=2, lag=0),
        query="SHOW STREAMS",
        autocommit=True,
    ),
    Step("drop_stream", "run", no_rows, query=f"DROP STREAM {STREAM}", autocommit=True),
    Step("show_streams_dropped", "run", check_stream_gone, query="SHOW STREAMS", autocommit=True),
]

SCENARIO: list[Step] = CORE_STEPS + STREAM_LIFECYCLE_STEPS

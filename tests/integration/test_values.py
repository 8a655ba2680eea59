"""Every value type through ``RETURN $p`` with the official driver, and graph values out.

On the embedded backend every type FalkorDB has round-trips; the types it lacks (byte arrays,
time zones, Cartesian points) get a clear TypeError instead of a silently different value.
Through FalkorDB's own Bolt port only the plain types are checked: that server mangles
strings with quotes and every temporal or spatial parameter by itself (seen with direct
connections too), and byte-exact relaying of every type is proven against a stub in
test_relay_stub.py.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import neo4j
import pytest
from neo4j.exceptions import CypherTypeError
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Duration

from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)

PLAIN: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    "zero": 0,
    "tiny": -16,
    "int8": -128,
    "int16": 32767,
    "int32": -(2**31),
    "int64_min": -(2**63),
    "int64_max": 2**63 - 1,
    "float": 1.5,
    "negative_float": -2.25,
    "string": "plain text",
    "empty_string": "",
    "unicode": "naïve 日本語 🎉",
    "list": [1, "a", None, [2.5, True]],
    "empty_list": [],
    "map": {"a": 1, "b": [1, 2], "c": {"d": "e"}},
    "empty_map": {},
}

EMBEDDED_ONLY: dict[str, Any] = {
    "nan": float("nan"),
    "tiny_float": -2.25e-300,
    "infinity": float("inf"),
    "quotes_and_escapes": 'it\'s "quoted" \\ back\nslash\ttab',
    "long_string": "x" * 70_000,
    "long_list": list(range(5_000)),
    "odd_keys": {"with space": 1, "dash-key": 2, "ünï": 3},
    "date": datetime.date(2024, 2, 29),
    "local_datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "local_time": datetime.time(3, 4, 5),
    "duration": Duration(months=1, days=2, seconds=3),
    "point": WGS84Point((1.5, 2.5)),
}

UNSUPPORTED: dict[str, Any] = {
    "bytes": b"\x00\x01",
    "zoned_datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "cartesian_point": CartesianPoint((1.0, 2.0)),
}


def same(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(got, float) and math.isnan(got)
    return bool(expected == got)


def round_trip(proxy: ProxyProcess, value: Any) -> Any:
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=proxy.auth) as driver:
        with driver.session() as session:
            record = session.run("RETURN $p AS p", p=value).single()
    assert record is not None
    return record["p"]


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_values_round_trip(proxy: ProxyProcess, name: str) -> None:
    assert same(PLAIN[name], round_trip(proxy, PLAIN[name]))


@pytest.mark.parametrize("name", sorted(EMBEDDED_ONLY))
def test_every_falkordb_type_round_trips(embedded_proxy: ProxyProcess, name: str) -> None:
    got = round_trip(embedded_proxy, EMBEDDED_ONLY[name])
    assert same(EMBEDDED_ONLY[name], got), (EMBEDDED_ONLY[name], got)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_types_falkordb_lacks_are_refused_clearly(embedded_proxy: ProxyProcess, name: str) -> None:
    with pytest.raises(CypherTypeError, match="FalkorDB"):
        round_trip(embedded_proxy, UNSUPPORTED[name])


def test_graph_values_and_temporal_results(embedded_proxy: ProxyProcess) -> None:
    with neo4j.GraphDatabase.driver(embedded_proxy.bolt_uri, auth=embedded_proxy.auth) as driver:
        with driver.session() as session:
            session.run(
                "CREATE (a:PV {k: 1})-[:R {w: 2}]->(b:PV {k: 2})<-[:R {w: 3}]-(c:PV {k: 3})"
            ).consume()
            record = session.run(
                "MATCH p = (:PV {k: 1})-[:R]->(:PV)<-[:R]-(:PV {k: 3}) "
                "RETURN p, date('2024-03-01') AS d, point({latitude: 1.0, longitude: 2.0}) AS pt"
            ).single()
    assert record is not None
    path = record["p"]
    assert isinstance(path, neo4j.graph.Path)
    assert [n["k"] for n in path.nodes] == [1, 2, 3]
    rels = list(path.relationships)
    assert [r["w"] for r in rels] == [2, 3]
    # The second relationship points back along the path: c -> b.
    assert rels[1].start_node["k"] == 3 and rels[1].end_node["k"] == 2
    assert record["d"] == neo4j.time.Date(2024, 3, 1)
    assert record["pt"] == WGS84Point((2.0, 1.0))


def test_write_statistics_and_query_type(embedded_proxy: ProxyProcess) -> None:
    with neo4j.GraphDatabase.driver(embedded_proxy.bolt_uri, auth=embedded_proxy.auth) as driver:
        with driver.session() as session:
            write = session.run("CREATE (n:Stat {a: 1, b: 2})").consume()
            read_write = session.run("CREATE (n:Stat) RETURN n").consume()
            read = session.run("MATCH (n:Stat) RETURN count(n)").consume()
    assert write.counters.nodes_created == 1 and write.counters.properties_set == 2
    assert write.counters.labels_added == 1 and write.counters.contains_updates
    assert write.query_type == "w"
    assert read_write.query_type == "rw"
    assert read.query_type == "r" and not read.counters.contains_updates

"""py2neo 2021.2 (its own Bolt client: offers 4.3 at most, routes with
``dbms.routing.getRoutingTable``) running the conformance scenario."""

from __future__ import annotations

import os
import sys
from typing import Any

import py2neo
from interchange.time import Date, DateTime, Duration, Time
from py2neo import Graph, Node, Path, Relationship
from py2neo.errors import Neo4jError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common


def _split_seconds(second: float) -> tuple[int, int]:
    whole = int(second)
    return whole, round((second - whole) * 1_000_000_000)


def _node(n: Node) -> dict[str, Any]:
    return {
        "$node": {
            "id": n.identity,
            "eid": None,
            "labels": sorted(n.labels),
            "props": normalize(dict(n)),
        }
    }


def _rel(r: Relationship) -> dict[str, Any]:
    return {
        "$rel": {
            "id": r.identity,
            "eid": None,
            "type": type(r).__name__,
            "start": r.start_node.identity,
            "end": r.end_node.identity,
            "props": normalize(dict(r)),
        }
    }


def normalize(value: Any) -> Any:
    if isinstance(value, Node):
        return _node(value)
    if isinstance(value, Relationship):
        return _rel(value)
    if isinstance(value, Path):
        return {
            "$path": {
                "nodes": [_node(n) for n in value.nodes],
                "rels": [_rel(r) for r in value.relationships],
            }
        }
    if isinstance(value, DateTime):
        assert value.tzinfo is None, f"unexpected zoned date-time {value!r}"
        second, nanos = _split_seconds(value.second)
        return common.fmt_local_datetime(
            value.year, value.month, value.day, value.hour, value.minute, second, nanos
        )
    if isinstance(value, Date):
        return common.fmt_date(value.year, value.month, value.day)
    if isinstance(value, Time):
        assert value.tzinfo is None, f"unexpected zoned time {value!r}"
        second, nanos = _split_seconds(value.second)
        return common.fmt_local_time(value.hour, value.minute, second, nanos)
    if isinstance(value, Duration):
        return common.fmt_duration(
            value.months, value.days, value.seconds, round(value.subseconds * 1_000_000_000)
        )
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def _result(cursor: Any) -> dict[str, Any]:
    keys = list(cursor.keys())
    rows = [[normalize(v) for v in record.values()] for record in cursor]
    stats = cursor.stats()
    counters = {
        k: stats.get(k, 0)
        for k in ("nodes_created", "relationships_created", "properties_set", "labels_added")
    }
    return common.result(keys, rows, counters, cursor.summary().get("type"))


TEMPORAL = {
    "$date": Date.from_iso_format,
    "$localdatetime": DateTime.from_iso_format,
    "$localtime": Time.from_iso_format,
    "$duration": lambda p: Duration(
        months=p[0], days=p[1], seconds=p[2], subseconds=p[3] / 1_000_000_000
    ),
}


class Py2neo(common.Client):
    name = "py2neo"
    version = py2neo.__version__

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.graph: Graph | None = None

    def connect(self, step: dict[str, Any]) -> dict[str, Any]:
        # Graph() opens a connection eagerly (HELLO with the credentials); neo4j:// first
        # fetches a routing table with CALL dbms.routing.getRoutingTable on "system".
        self.graph = Graph(
            self.scenario["uri"], auth=(self.scenario["user"], self.scenario["password"])
        )
        service = self.graph.service
        connector = service.connector
        cx = connector._acquire()  # the public API shows no protocol version
        try:
            protocol = "{}.{}".format(*cx.protocol_version)
        finally:
            cx.release()
        # kernel_version and product come from CALL dbms.components()
        return {
            "agent": connector.server_agent,
            "protocol": protocol,
            "kernel_version": str(service.kernel_version),
            "product": service.product,
        }

    def _graph(self) -> Graph:
        assert self.graph is not None, "not connected"
        return self.graph

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        return common.decode_params(params, TEMPORAL)

    def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        return _result(self._graph().run(query, params))

    def tx(self, queries: list[str], end: str) -> dict[str, Any]:
        graph = self._graph()
        tx = graph.begin()
        try:
            results = [_result(tx.run(q)) for q in queries]
        except BaseException:
            if not tx.closed:
                graph.rollback(tx)
            raise
        if end == "commit":
            graph.commit(tx)
        else:
            graph.rollback(tx)
        return {"results": results}

    def managed(self, queries: list[str]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []

        def work(tx: Any) -> None:
            results[:] = [_result(tx.run(q)) for q in queries]

        self._graph().update(work)  # py2neo's retrying unit of work
        return {"results": results}

    def error(self, exc: BaseException) -> dict[str, Any]:
        found = super().error(exc)
        if isinstance(exc, Neo4jError):
            found["code"] = exc.code
            found["message"] = exc.message
        return found

    def close(self) -> None:
        if self.graph is not None:
            self.graph.service.connector.close()


if __name__ == "__main__":
    common.drive(Py2neo)

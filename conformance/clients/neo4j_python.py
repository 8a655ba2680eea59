"""The official Python driver's sync API (``neo4j`` 6.x, or ``neo4j-driver`` 5.28 in its own
virtualenv) running the conformance scenario: ``python neo4j_python.py < scenario.json``."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import neo4j
from neo4j.graph import Node, Path, Relationship
from neo4j.time import Date, DateTime, Duration, Time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common


def _node(n: Node) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ident = n.id
    return {
        "$node": {
            "id": ident,
            "eid": n.element_id,
            "labels": sorted(n.labels),
            "props": normalize(dict(n)),
        }
    }


def _rel(r: Relationship) -> dict[str, Any]:
    assert r.start_node is not None and r.end_node is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ident, start, end = r.id, r.start_node.id, r.end_node.id
    return {
        "$rel": {
            "id": ident,
            "eid": r.element_id,
            "type": r.type,
            "start": start,
            "end": end,
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
        return common.fmt_local_datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.nanosecond,
        )
    if isinstance(value, Date):
        return common.fmt_date(value.year, value.month, value.day)
    if isinstance(value, Time):
        assert value.tzinfo is None, f"unexpected zoned time {value!r}"
        return common.fmt_local_time(value.hour, value.minute, value.second, value.nanosecond)
    if isinstance(value, Duration):
        return common.fmt_duration(value.months, value.days, value.seconds, value.nanoseconds)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def _result(result: neo4j.Result) -> dict[str, Any]:
    keys = list(result.keys())
    rows = [[normalize(v) for v in record.values()] for record in result]
    summary = result.consume()
    c = summary.counters
    counters = {
        "nodes_created": c.nodes_created,
        "relationships_created": c.relationships_created,
        "properties_set": c.properties_set,
        "labels_added": c.labels_added,
    }
    return common.result(keys, rows, counters, summary.query_type)


TEMPORAL = {
    "$date": lambda s: Date.from_iso_format(s),
    "$localdatetime": lambda s: DateTime.from_iso_format(s),
    "$localtime": lambda s: Time.from_iso_format(s),
    "$duration": lambda p: Duration(months=p[0], days=p[1], seconds=p[2], nanoseconds=p[3]),
}


class Neo4jPython(common.Client):
    name = "neo4j-python"
    version = neo4j.__version__

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.uri = scenario["uri"]
        self.driver = neo4j.GraphDatabase.driver(
            self.uri, auth=(scenario["user"], scenario["password"])
        )
        self.session = self.driver.session()

    def connect(self, step: dict[str, Any]) -> dict[str, Any]:
        self.driver.verify_connectivity()
        info = self.driver.get_server_info()
        # what an application shows first: a query through the driver's own helper
        records, summary, keys = self.driver.execute_query("RETURN 1 AS one")
        assert keys == ["one"] and records[0]["one"] == 1, records
        return {
            "agent": info.agent,
            "protocol": "{}.{}".format(*info.protocol_version),
            "address": str(info.address),
            "database": summary.database,
        }

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        return common.decode_params(params, TEMPORAL)

    def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        return _result(self.session.run(query, params))

    def tx(self, queries: list[str], end: str) -> dict[str, Any]:
        with self.session.begin_transaction() as tx:
            results = [_result(tx.run(q)) for q in queries]
            if end == "commit":
                tx.commit()
            else:
                tx.rollback()
        return {"results": results}

    def managed(self, queries: list[str]) -> dict[str, Any]:
        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [_result(tx.run(q)) for q in queries]

        return {"results": self.session.execute_write(work)}

    def error(self, exc: BaseException) -> dict[str, Any]:
        found = super().error(exc)
        if isinstance(exc, neo4j.exceptions.Neo4jError):
            found["message"] = exc.message or str(exc)
        return found

    def close(self) -> None:
        self.session.close()
        self.driver.close()


if __name__ == "__main__":
    common.drive(Neo4jPython)

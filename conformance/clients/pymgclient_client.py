"""Memgraph's pymgclient (libmgclient, C; offers Bolt 4.4/4.3/4.1) running the conformance
scenario. Its default is ``autocommit=False``: every query then runs inside a transaction that
pymgclient opens by sending the query text ``BEGIN`` and ends with ``COMMIT``/``ROLLBACK``
texts (never the Bolt BEGIN/COMMIT messages). ``"autocommit": true`` in the scenario options
runs the plain steps in auto-commit mode and switches it off for the transaction steps. Stream
clauses run only in auto-commit transactions, so the default mode switches to auto-commit for
them, as a Memgraph user must."""

from __future__ import annotations

import contextlib
import os
import sys
from importlib.metadata import version
from typing import Any

import mgclient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common


def _node(n: Any) -> dict[str, Any]:
    return {
        "$node": {
            "id": n.id,
            "eid": None,
            "labels": sorted(n.labels),
            "props": normalize(n.properties),
        }
    }


def _rel(r: Any) -> dict[str, Any]:
    return {
        "$rel": {
            "id": r.id,
            "eid": None,
            "type": r.type,
            "start": r.start_id,
            "end": r.end_id,
            "props": normalize(r.properties),
        }
    }


def normalize(value: Any) -> Any:
    if isinstance(value, mgclient.Node):
        return _node(value)
    if isinstance(value, mgclient.Relationship):
        return _rel(value)
    if isinstance(value, mgclient.Path):
        return {
            "$path": {
                "nodes": [_node(n) for n in value.nodes],
                "rels": [_rel(r) for r in value.relationships],
            }
        }
    temporal = common.normalize_stdlib(value)
    if temporal is not None:
        return temporal
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


class Pymgclient(common.Client):
    name = "pymgclient"
    version = version("pymgclient")

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.autocommit = bool(scenario.get("autocommit", False))
        self.conn: Any = None

    def connect(self, step: dict[str, Any]) -> dict[str, Any]:
        s = self.scenario
        sslmode = mgclient.MG_SSLMODE_REQUIRE if s.get("tls") else mgclient.MG_SSLMODE_DISABLE
        self.conn = mgclient.connect(
            host=s["host"],
            port=s["port"],
            username=s["user"],
            password=s["password"],
            sslmode=sslmode,
        )
        default_autocommit = self.conn.autocommit
        self.conn.autocommit = self.autocommit
        return {
            "agent": None,
            "protocol": None,
            "status": self.conn.status,
            "default_autocommit": default_autocommit,
        }

    def _execute(self, query: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        cursor = self.conn.cursor()
        cursor.execute(query, params or {})
        rows = [[normalize(v) for v in row] for row in cursor.fetchall()]
        keys = [column.name for column in cursor.description or []]
        return common.result(keys, rows)

    def _end(self, end: str) -> None:
        if end == "commit":
            self.conn.commit()
        else:
            self.conn.rollback()

    def run(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.autocommit:
            return self._execute(query, params)
        try:
            found = self._execute(query, params)
        except BaseException:
            self._rollback_quietly()
            raise
        self.conn.commit()
        return found

    def run_autocommit(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        """Stream clauses run only in auto-commit (Memgraph's rule too): switch for them."""
        if self.autocommit:
            return self._execute(query, params)
        self.conn.autocommit = True
        try:
            return self._execute(query, params)
        finally:
            self.conn.autocommit = False

    def tx(self, queries: list[str], end: str) -> dict[str, Any]:
        if self.autocommit:
            self.conn.autocommit = False
        try:
            try:
                results = [self._execute(q) for q in queries]
            except BaseException:
                self._rollback_quietly()
                raise
            self._end(end)
        finally:
            if self.autocommit:
                self.conn.autocommit = True
        return {"results": results}

    def _rollback_quietly(self) -> None:
        # pymgclient may already have ended the transaction when the query failed
        with contextlib.suppress(mgclient.InterfaceError):
            self.conn.rollback()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


if __name__ == "__main__":
    common.drive(Pymgclient)

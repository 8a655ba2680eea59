"""What Neo4j Browser 2025.x (JavaScript driver 5.26) sends when it connects and while it is
open, replayed over plain TCP with the exact offer of that driver (shared/reference/bolt.md
§2.3, §10 "Neo4j Browser"). The WebSocket transport Browser uses, with the driver Browser
ships (5.26.0) in a real browser, is in test_browser_driver.py.

Almost everything Browser runs on its own is a managed read transaction (BEGIN mode "r" with
``tx_metadata {type: "system", app: "neo4j-browser_v..."}`` + RUN + PULL {n: 1000}, COMMIT), and
each test checks the columns and types Browser's code reads from the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bolt.messages import (
    Begin,
    Commit,
    Failure,
    Hello,
    Ignored,
    Logon,
    Pull,
    Reset,
    Route,
    Run,
    Success,
)
from bolt.versions import Version
from conformance.replay import Replay, check_failure_5_7, check_pull_summary, check_run_success
from conformance.scenario import check_stream_columns
from conformance.test_cypher_shell_replay import check_routing_table
from proxy import NEO4J_COMPAT_VERSION
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)

# neo4j-driver 5.26.0 (pinned by Neo4j Browser 2025.06): 5.7..5.0, 4.4..4.2, 4.1, 3.0.
OFFER = bytes.fromhex("00070705 00020404 00000104 00000003")
JS526_SUPPORTS = [Version(5, m) for m in range(8)] + [Version(4, m) for m in range(1, 5)]
BROWSER = "neo4j-browser_v2025.06.0"
SYSTEM_META = {"type": "system", "app": BROWSER}
USER_META = {"type": "user-direct", "app": BROWSER}
SHOW_DATABASES_COLUMNS = [
    "name", "type", "aliases", "access", "address", "role", "writer", "requestedStatus",
    "currentStatus", "statusMessage", "default", "home", "constituents",
]
META_QUERY = (
    "CALL db.labels() YIELD label RETURN {name:'labels', data:COLLECT(label)[..1000]} AS result\n"
    "UNION ALL\n"
    "CALL db.relationshipTypes() YIELD relationshipType "
    "RETURN {name:'relationshipTypes', data:COLLECT(relationshipType)[..1000]} AS result\n"
    "UNION ALL\n"
    "CALL db.propertyKeys() YIELD propertyKey "
    "RETURN {name:'propertyKeys', data:COLLECT(propertyKey)[..1000]} AS result"
)
COUNTS_QUERY = (
    "MATCH () RETURN { name:'nodes', data:count(*) } AS result UNION ALL "
    "MATCH ()-[]->() RETURN { name:'relationships', data: count(*)} AS result"
)


class Browser(Replay):
    def read_tx(self, db: str, query: str, params: dict[str, Any] | None = None,
                ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        """``session.executeRead`` as Browser's background queries use it; returns the
        fields, records and last summary, after checking every answer's shape."""
        begin, run, pull = self.exchange(
            Begin({"db": db, "mode": "r", "tx_metadata": SYSTEM_META}),
            Run(query, params or {}, {}), Pull(n=1000))
        assert isinstance(begin.summary, Success), begin.summary
        assert isinstance(run.summary, Success), f"{query!r}: {run.summary!r}"
        fields = check_run_success(run.metadata)
        check_pull_summary(pull.metadata, db=db)
        (commit,) = self.exchange(Commit())
        assert isinstance(commit.metadata.get("bookmark"), str), commit.metadata
        for record in pull.records:
            assert len(record) == len(fields), (fields, record)
        return fields, pull.records, pull.metadata

    def user_query(self, query: str, params: dict[str, Any] | None = None,
                   ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        """A query typed into the editor: auto-commit, ``user-direct`` metadata."""
        run, pull = self.exchange(
            Run(query, params or {}, {"db": "neo4j", "tx_metadata": USER_META}), Pull(n=1000))
        fields = check_run_success(run.metadata)
        check_pull_summary(pull.metadata, db="neo4j")
        return fields, pull.records, pull.metadata


def hello_extra(proxy: ProxyProcess) -> dict[str, Any]:
    return {
        "user_agent": "neo4j-browser/v2025.06.0",
        "bolt_agent": {"product": "neo4j-javascript/5.26.0",
                       "platform": "Linux x86_64", "language_details": "Chrome 131"},
        "routing": {"address": f"{proxy.host}:{proxy.port}"},
    }


@pytest.fixture
def browser(proxy: ProxyProcess) -> Iterator[Browser]:
    with Browser(proxy.address, JS526_SUPPORTS) as client:
        client.negotiate(OFFER)
        client.exchange(
            Hello(hello_extra(proxy)),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}))
        yield client


def test_handshake_hello_and_routing_for_system(proxy: ProxyProcess) -> None:
    with Browser(proxy.address, JS526_SUPPORTS) as client:
        assert client.negotiate(OFFER) == b"\x00\x00\x07\x05"  # legacy reply: 5.7
        hello, logon = client.exchange(
            Hello(hello_extra(proxy)),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}))
        assert str(hello.metadata["server"]).startswith("Neo4j/")
        assert isinstance(hello.metadata["connection_id"], str)
        assert isinstance(hello.metadata.get("hints", {}), dict)
        assert isinstance(logon.summary, Success), logon.summary
        # neo4j:// : verifyConnectivity({database: 'system'}) first
        (route,) = client.exchange(Route({"address": f"{proxy.host}:{proxy.port}"}, [], "system"))
        check_routing_table(route.metadata["rt"], proxy, "system")


def test_show_databases(browser: Browser) -> None:
    # the connect check runs it on "SYSTEM", the periodic refresh on "system"
    for db in ("SYSTEM", "system"):
        fields, records, _ = browser.read_tx(db, "SHOW DATABASES")
        assert fields == SHOW_DATABASES_COLUMNS, fields
        rows = {row[0]: dict(zip(fields, row, strict=True)) for row in records}
        assert {"neo4j", "system"} <= set(rows), rows
        for row in rows.values():
            # record.get('currentStatus') throws if the column is missing
            assert row["currentStatus"] == "online" and row["requestedStatus"] == "online", row
            assert isinstance(row["address"], str) and isinstance(row["role"], str), row
            assert isinstance(row["aliases"], list), row
        # Browser picks the database with "home", else "default"
        assert rows["neo4j"]["home"] is True and rows["neo4j"]["default"] is True, rows
        assert rows["system"]["home"] is False and rows["system"]["type"] == "system", rows


def test_components(browser: Browser) -> None:
    fields, records, _ = browser.read_tx(
        "system", "CALL dbms.components() YIELD name, versions, edition")
    assert fields == ["name", "versions", "edition"]
    (name, versions, edition), = records
    assert name == "Neo4j Kernel" and versions == [NEO4J_COMPAT_VERSION], records
    # versions[0] drives every feature check: >= 5.0 enables SHOW PROCEDURES / FUNCTIONS
    assert int(versions[0].split(".")[0]) >= 5
    assert edition in ("community", "enterprise"), edition


def test_client_config(browser: Browser) -> None:
    fields, records, _ = browser.read_tx("system", "CALL dbms.clientConfig()")
    assert {"name", "value"} <= set(fields), fields
    for record in records:
        assert isinstance(record[fields.index("name")], str), record


def test_show_current_user(browser: Browser, proxy: ProxyProcess) -> None:
    fields, records, _ = browser.read_tx("system", "CALL dbms.showCurrentUser()")
    assert {"username", "roles"} <= set(fields), fields
    (record,) = records
    row = dict(zip(fields, record, strict=True))
    assert row["username"] == proxy.auth[0], row
    assert isinstance(row["roles"], list) and all(isinstance(r, str) for r in row["roles"])


def test_labels_types_and_keys(browser: Browser) -> None:
    label, rel_type, key = (f"Browser{uuid.uuid4().hex[:6]}", f"SEES_{uuid.uuid4().hex[:6]}",
                            f"key{uuid.uuid4().hex[:6]}")
    browser.user_query(f"CREATE (:{label} {{{key}: 1}})-[:{rel_type}]->(:{label})")
    fields, records, _ = browser.read_tx("neo4j", META_QUERY)
    assert fields == ["result"], fields
    # Browser reads record.get(0).data of three records, in this order
    assert [r[0]["name"] for r in records] == ["labels", "relationshipTypes", "propertyKeys"]
    labels, types, keys = (r[0]["data"] for r in records)
    assert all(isinstance(x, str) for x in labels + types + keys)
    assert label in labels and rel_type in types and key in keys, records


def test_procedures_and_functions(browser: Browser) -> None:
    fields, records, _ = browser.read_tx("system", "SHOW PROCEDURES yield name, description, "
                                                   "signature")
    assert fields == ["name", "description", "signature"], fields
    assert records, "no procedures listed"
    assert all(isinstance(v, str) for record in records for v in record), records
    fields, records, _ = browser.read_tx("system", "SHOW FUNCTIONS yield name, description, "
                                                   "signature")
    assert fields == ["name", "description", "signature"], fields
    assert all(isinstance(v, str) for record in records for v in record), records


def test_counts(browser: Browser) -> None:
    browser.user_query("CREATE (:BrowserCount)-[:COUNTED]->(:BrowserCount)")
    fields, records, summary = browser.read_tx("neo4j", COUNTS_QUERY)
    assert fields == ["result"]
    (nodes,), (rels,) = records
    assert nodes["name"] == "nodes" and type(nodes["data"]) is int and nodes["data"] >= 2
    assert rels["name"] == "relationships" and type(rels["data"]) is int and rels["data"] >= 1
    assert type(summary["t_last"]) is int  # resultConsumedAfter, shown as the query's time


def test_graph_view_follow_up_by_integer_ids(browser: Browser) -> None:
    """Browser draws nodes by their integer ``identity`` and asks for the relationships
    between what it shows with ``id()`` (bolt.md §10 item 9)."""
    label = f"BrowserView{uuid.uuid4().hex[:6]}"
    browser.user_query(f"CREATE (:{label} {{n: 1}})-[:LINKS]->(:{label} {{n: 2}})")
    fields, records, _ = browser.user_query(f"MATCH (a:{label}) RETURN a ORDER BY a.n")
    existing, new = (record[0].id for record in records)
    assert existing != new
    fields, records, _ = browser.user_query(
        "MATCH (a)-[r]->(b) WHERE id(a) IN $existingNodeIds AND id(b) IN $newNodeIds RETURN r;",
        {"existingNodeIds": [existing], "newNodeIds": [new]})
    (record,) = records
    rel = record[0]
    assert (rel.start_node_id, rel.end_node_id, rel.type) == (existing, new, "LINKS"), rel
    # and expanding a node: its neighbours and their count
    fields, records, _ = browser.user_query(
        f"MATCH (a) WHERE id(a) = {existing} WITH a, size([(a)--() | 1]) AS allNeighboursCount "
        f"MATCH path = (a)--(o) WHERE NOT id(o) IN [] RETURN path, allNeighboursCount "
        "ORDER BY id(o) LIMIT 100")
    assert fields == ["path", "allNeighboursCount"] and len(records) == 1, records
    path, count = records[0]
    assert count == 1 and [n.id for n in path.nodes] == [existing, new], records


def test_error_and_recovery(browser: Browser) -> None:
    """An unknown procedure in a managed transaction: a 5.7 FAILURE the JS driver classifies
    by ``neo4j_code`` (Browser's ProcedureNotFound fallbacks need it), IGNORED for the rest of
    the pipeline, RESET, and the connection works again."""
    begin, run, pull = browser.exchange(
        Begin({"db": "system", "mode": "r", "tx_metadata": SYSTEM_META}),
        Run("CALL dbms.noSuchProcedure()", {}, {}), Pull(n=1000))
    assert isinstance(begin.summary, Success), begin.summary
    assert isinstance(run.summary, Failure), run.summary
    check_failure_5_7(run.summary, "Neo.ClientError.Procedure.ProcedureNotFound")
    assert isinstance(pull.summary, Ignored), pull.summary
    (reset,) = browser.exchange(Reset())
    assert reset.metadata == {}
    _fields, records, _ = browser.read_tx("system", "CALL dbms.components() YIELD name, "
                                                    "versions, edition")
    assert records[0][0] == "Neo4j Kernel"


def test_stream_clauses_need_auto(browser: Browser) -> None:
    """A query typed into the editor runs in a transaction function (``executeWrite``: BEGIN,
    RUN, PULL, COMMIT); stream clauses run only in auto-commit transactions, so Browser shows
    ForbiddenDueToTransactionType. Prefixed with ``:auto`` Browser sends it as an auto-commit
    RUN (``session.run``), and the stream clause answers."""
    begin, run, pull = browser.exchange(
        Begin({"db": "neo4j", "tx_metadata": USER_META}),
        Run("SHOW STREAMS", {}, {}), Pull(n=1000))
    assert isinstance(begin.summary, Success), begin.summary
    check_failure_5_7(run.summary, "Neo.ClientError.Transaction.ForbiddenDueToTransactionType")
    assert "auto-commit" in run.summary.metadata["message"], run.summary
    assert isinstance(pull.summary, Ignored), pull.summary
    (reset,) = browser.exchange(Reset())
    assert reset.metadata == {}
    # :auto SHOW STREAMS
    fields, records, _ = browser.user_query("SHOW STREAMS")
    check_stream_columns(fields)
    for record in records:
        assert len(record) == len(fields) and record[4] in ("stopped", "running", "error")

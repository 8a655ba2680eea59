"""What Neo4j Browser 2025.x (JavaScript driver 5.26) sends when it connects and while it is
open, replayed over plain TCP with the exact offer of that driver (shared/reference/bolt.md
§2.3, §10 "Neo4j Browser"). The WebSocket transport Browser uses, with the driver Browser
ships (5.26.0) in a real browser, is in test_browser_driver.py.

Almost everything Browser runs on its own is a managed read transaction (BEGIN mode "r" with
``tx_metadata {type: "system", app: "neo4j-browser_v..."}`` + RUN + PULL {n: 1000}, COMMIT), and
each test checks the columns and types Browser's code reads from the answer.
"""

from __future__ import annotations

import time
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
    Rollback,
    Route,
    Run,
    Success,
)
from bolt.values import Duration
from bolt.versions import Version
from conformance.harness import StreamSetup
from conformance.replay import Replay, check_failure_5_7, check_pull_summary, check_run_success
from conformance.scenario import TEST_TABLE, check_stream_columns
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
    "name",
    "type",
    "aliases",
    "access",
    "address",
    "role",
    "writer",
    "requestedStatus",
    "currentStatus",
    "statusMessage",
    "default",
    "home",
    "constituents",
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
    user = ""

    def read_tx(
        self,
        db: str,
        query: str,
        params: dict[str, Any] | None = None,
    ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        """``session.executeRead`` as Browser's background queries use it; returns the
        fields, records and last summary, after checking every answer's shape."""
        begin, run, pull = self.exchange(
            Begin({"db": db, "mode": "r", "tx_metadata": SYSTEM_META}),
            Run(query, params or {}, {}),
            Pull(n=1000),
        )
        assert isinstance(begin.summary, Success), begin.summary
        assert isinstance(run.summary, Success), f"{query!r}: {run.summary!r}"
        fields = check_run_success(run.metadata)
        check_pull_summary(pull.metadata, db=db)
        (commit,) = self.exchange(Commit())
        assert isinstance(commit.metadata.get("bookmark"), str), commit.metadata
        for record in pull.records:
            assert len(record) == len(fields), (fields, record)
        return fields, pull.records, pull.metadata

    def editor_query(
        self,
        query: str,
        params: dict[str, Any] | None = None,
    ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        """A query typed into the editor without ``:auto``: a transaction function
        (``executeWrite``: BEGIN with ``user-direct`` metadata, RUN, PULL, then COMMIT)."""
        begin, run, pull = self.exchange(
            Begin({"db": "neo4j", "tx_metadata": USER_META}),
            Run(query, params or {}, {}),
            Pull(n=1000),
        )
        assert isinstance(begin.summary, Success), begin.summary
        assert isinstance(run.summary, Success), f"{query!r}: {run.summary!r}"
        fields = check_run_success(run.metadata)
        assert isinstance(pull.summary, Success), f"{query!r}: {pull.summary!r}"
        check_pull_summary(pull.metadata, db="neo4j")
        (commit,) = self.exchange(Commit())
        assert isinstance(commit.summary, Success), f"COMMIT of {query!r}: {commit.summary!r}"
        assert isinstance(commit.metadata.get("bookmark"), str), commit.metadata
        return fields, pull.records, pull.metadata

    def user_query(
        self,
        query: str,
        params: dict[str, Any] | None = None,
    ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
        """A query typed into the editor: auto-commit, ``user-direct`` metadata."""
        run, pull = self.exchange(
            Run(query, params or {}, {"db": "neo4j", "tx_metadata": USER_META}), Pull(n=1000)
        )
        fields = check_run_success(run.metadata)
        check_pull_summary(pull.metadata, db="neo4j")
        return fields, pull.records, pull.metadata


def hello_extra(proxy: ProxyProcess) -> dict[str, Any]:
    return {
        "user_agent": "neo4j-browser/v2025.06.0",
        "bolt_agent": {
            "product": "neo4j-javascript/5.26.0",
            "platform": "Linux x86_64",
            "language_details": "Chrome 131",
        },
        "routing": {"address": f"{proxy.host}:{proxy.port}"},
    }


@pytest.fixture
def browser(proxy: ProxyProcess) -> Iterator[Browser]:
    with Browser(proxy.address, JS526_SUPPORTS) as client:
        client.negotiate(OFFER)
        client.exchange(
            Hello(hello_extra(proxy)),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}),
        )
        client.user = proxy.auth[0]
        yield client


def test_handshake_hello_and_routing_for_system(proxy: ProxyProcess) -> None:
    with Browser(proxy.address, JS526_SUPPORTS) as client:
        assert client.negotiate(OFFER) == b"\x00\x00\x07\x05"  # legacy reply: 5.7
        hello, logon = client.exchange(
            Hello(hello_extra(proxy)),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}),
        )
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
        "system", "CALL dbms.components() YIELD name, versions, edition"
    )
    assert fields == ["name", "versions", "edition"]
    ((name, versions, edition),) = records
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
    label, rel_type, key = (
        f"Browser{uuid.uuid4().hex[:6]}",
        f"SEES_{uuid.uuid4().hex[:6]}",
        f"key{uuid.uuid4().hex[:6]}",
    )
    browser.user_query(f"CREATE (:{label} {{{key}: 1}})-[:{rel_type}]->(:{label})")
    fields, records, _ = browser.read_tx("neo4j", META_QUERY)
    assert fields == ["result"], fields
    # Browser reads record.get(0).data of three records, in this order
    assert [r[0]["name"] for r in records] == ["labels", "relationshipTypes", "propertyKeys"]
    labels, types, keys = (r[0]["data"] for r in records)
    assert all(isinstance(x, str) for x in labels + types + keys)
    assert label in labels and rel_type in types and key in keys, records


def test_procedures_and_functions(browser: Browser) -> None:
    fields, records, _ = browser.read_tx(
        "system", "SHOW PROCEDURES yield name, description, signature"
    )
    assert fields == ["name", "description", "signature"], fields
    assert records, "no procedures listed"
    assert all(isinstance(v, str) for record in records for v in record), records
    fields, records, _ = browser.read_tx(
        "system", "SHOW FUNCTIONS yield name, description, signature"
    )
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
        {"existingNodeIds": [existing], "newNodeIds": [new]},
    )
    (record,) = records
    rel = record[0]
    assert (rel.start_node_id, rel.end_node_id, rel.type) == (existing, new, "LINKS"), rel
    # and expanding a node: its neighbours and their count
    fields, records, _ = browser.user_query(
        f"MATCH (a) WHERE id(a) = {existing} WITH a, size([(a)--() | 1]) AS allNeighboursCount "
        f"MATCH path = (a)--(o) WHERE NOT id(o) IN [] RETURN path, allNeighboursCount "
        "ORDER BY id(o) LIMIT 100"
    )
    assert fields == ["path", "allNeighboursCount"] and len(records) == 1, records
    path, count = records[0]
    assert count == 1 and [n.id for n in path.nodes] == [existing, new], records


def test_error_and_recovery(browser: Browser) -> None:
    """An unknown procedure in a managed transaction: a 5.7 FAILURE the JS driver classifies
    by ``neo4j_code`` (Browser's ProcedureNotFound fallbacks need it), IGNORED for the rest of
    the pipeline, RESET, and the connection works again."""
    begin, run, pull = browser.exchange(
        Begin({"db": "system", "mode": "r", "tx_metadata": SYSTEM_META}),
        Run("CALL dbms.noSuchProcedure()", {}, {}),
        Pull(n=1000),
    )
    assert isinstance(begin.summary, Success), begin.summary
    assert isinstance(run.summary, Failure), run.summary
    check_failure_5_7(run.summary, "Neo.ClientError.Procedure.ProcedureNotFound")
    assert isinstance(pull.summary, Ignored), pull.summary
    (reset,) = browser.exchange(Reset())
    assert reset.metadata == {}
    _fields, records, _ = browser.read_tx(
        "system", "CALL dbms.components() YIELD name, versions, edition"
    )
    assert records[0][0] == "Neo4j Kernel"


def test_stream_tutorial_without_auto(browser: Browser, stream_setup: StreamSetup) -> None:
    """The stream tutorial typed into Browser's editor as is, without ``:auto``: each query runs
    in a transaction function (BEGIN, RUN, PULL, COMMIT). SHOW and TEST answer at once; CREATE,
    START, STOP and DROP take effect at COMMIT."""
    name = f"browser_{uuid.uuid4().hex[:8]}"
    topic = stream_setup.broker.create_topic(f"{name}_topic")
    stream_setup.broker.produce(topic, ["1", "1 2"], one_by_one=True)
    browser.user_query("MATCH (n:Node) DETACH DELETE n")
    browser.user_query("CREATE (:Node {id: '2'})")

    def show() -> dict[str, Any]:
        fields, records, _ = browser.editor_query("SHOW STREAMS")
        check_stream_columns(fields)
        rows = [dict(zip(fields, r, strict=True)) for r in records if r[0] == name]
        assert len(rows) == 1, records
        return rows[0]

    fields, records, summary = browser.editor_query(
        f"CREATE STREAM {name} AS LOAD DATA KAFKA '{stream_setup.broker.bootstrap}' "
        f"WITH TOPIC '{topic}' WITH TRANSFORM '{stream_setup.transform}'"
    )
    assert (fields, records) == ([], []) and summary["type"] == "s", summary
    row = show()
    assert (row["status"], row["topic"], row["owner"]) == ("stopped", topic, browser.user)
    fields, records, _ = browser.editor_query(f"TEST STREAM {name}")
    assert fields == ["query", "params"] and records == TEST_TABLE, records
    browser.editor_query(f"START STREAM {name}")
    assert show()["status"] == "running"
    deadline = time.monotonic() + 30
    while True:
        _, records, _ = browser.editor_query(
            "MATCH (:Node {id: '1'})-[e:Edge]->(:Node {id: '2'}) RETURN count(e) AS c"
        )
        if records == [[1]] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert records == [[1]], "the stream's edge never showed up"
    browser.editor_query(f"STOP STREAM {name}")
    assert show()["status"] == "stopped"
    browser.editor_query(f"DROP STREAM {name}")
    fields, records, _ = browser.editor_query("SHOW STREAMS")
    assert all(r[0] != name for r in records), records


def test_stream_change_rolled_back_is_not_applied(
    browser: Browser, stream_setup: StreamSetup
) -> None:
    """A stream clause that changes streams waits for COMMIT: a ROLLBACK (Browser closes a
    transaction without committing it) discards it."""
    name = f"browser_{uuid.uuid4().hex[:8]}"
    topic = stream_setup.broker.create_topic(f"{name}_topic")
    _begin, _run, pull = browser.exchange(
        Begin({"db": "neo4j", "tx_metadata": USER_META}),
        Run(
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{stream_setup.broker.bootstrap}' "
            f"WITH TOPIC '{topic}' WITH TRANSFORM '{stream_setup.transform}'",
            {},
            {},
        ),
        Pull(n=1000),
    )
    assert isinstance(pull.summary, Success), pull.summary
    (rollback,) = browser.exchange(Rollback())
    assert isinstance(rollback.summary, Success), rollback.summary
    _, records, _ = browser.editor_query("SHOW STREAMS")
    assert all(r[0] != name for r in records), records


def test_labels_added_counts_nodes(browser: Browser) -> None:
    """Browser's result summary says "Added 2 labels, created 2 nodes" for two new :Person
    nodes, as with Neo4j (a label counts once per node that gets it)."""
    label = f"Person{uuid.uuid4().hex[:6]}"
    _fields, _records, summary = browser.editor_query(
        f"CREATE (:{label} {{name: 'a'}}), (:{label} {{name: 'b'}})"
    )
    assert summary["stats"]["labels-added"] == 2, summary
    assert summary["stats"]["nodes-created"] == 2, summary
    _fields, _records, summary = browser.editor_query(f"CREATE (:{label}:Extra)")
    assert summary["stats"]["labels-added"] == 2, summary


QUERIES_FRAME = (
    "SHOW TRANSACTIONS YIELD currentQuery, username, metaData, parameters, status, "
    "elapsedTime, database, transactionId"
)


def test_queries_frame_lists_and_terminates(browser: Browser, proxy: ProxyProcess) -> None:
    """``:queries``: Browser lists what runs on every connection, and its kill button
    terminates a transaction; the connection that had it gets Terminated on its next request."""
    with Browser(proxy.address, JS526_SUPPORTS) as other:
        other.negotiate(OFFER)
        other.exchange(
            Hello(hello_extra(proxy)),
            Logon({"scheme": "basic", "principal": proxy.auth[0], "credentials": proxy.auth[1]}),
        )
        _begin, _run, pull = other.exchange(
            Begin({"db": "neo4j", "tx_metadata": USER_META}),
            Run("RETURN $x AS x", {"x": 41}, {}),
            Pull(n=1000),
        )
        assert isinstance(pull.summary, Success), pull.summary
        fields, records, _ = browser.editor_query(QUERIES_FRAME)
        assert fields == [
            "currentQuery",
            "username",
            "metaData",
            "parameters",
            "status",
            "elapsedTime",
            "database",
            "transactionId",
        ], fields
        rows = [dict(zip(fields, r, strict=True)) for r in records]
        mine = [r for r in rows if r["currentQuery"] == QUERIES_FRAME]
        theirs = [r for r in rows if r["currentQuery"] == "RETURN $x AS x"]
        assert len(mine) == 1 and len(theirs) == 1, rows
        row = theirs[0]
        assert row["username"] == proxy.auth[0] and row["database"] == "neo4j", row
        assert row["metaData"] == USER_META and row["parameters"] == {"x": 41}, row
        assert row["status"] == "Running", row
        assert isinstance(row["elapsedTime"], Duration), row  # Browser formats a Duration
        fields, records, _ = browser.editor_query(
            f'TERMINATE TRANSACTIONS "{row["transactionId"]}"'
        )
        assert fields == ["transactionId", "username", "message"], fields
        assert records == [[row["transactionId"], proxy.auth[0], "Transaction terminated."]]
        (after,) = other.exchange(Run("RETURN 1", {}, {}))
        check_failure_5_7(after.summary, "Neo.ClientError.Transaction.Terminated")
        (reset,) = other.exchange(Reset())
        assert isinstance(reset.summary, Success), reset.summary
        _fields, records, _ = browser.editor_query(QUERIES_FRAME)
        assert all(r[7] != row["transactionId"] for r in records), records

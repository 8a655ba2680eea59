"""Streams in front of a Bolt backend: batches go through the official async driver with the
proxy's service account, one transaction each, as the stream's owner where the backend can
impersonate.

The Bolt backends here: a second boltstream (embedded FalkorDB, with users), a real Bolt server
that checks credentials, and ArcadeDB, a real Bolt database with transactions. The scripted
stub server shows the exact messages the writer sends (impersonation, one transaction per
batch)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest

from bolt.chunking import chunk
from bolt.messages import Tag
from bolt.packstream import Packer, Structure, unpack
from bolt.versions import Version
from proxy.streams.catalog import CATALOG_FILE
from proxy.streams.positions import LABEL
from proxy.streams.writers import BoltWriter, PermanentWriteError
from tests.arcadedb import ArcadeDB
from tests.streams.conftest import (
    KAFKA_TEST_CONFIG,
    Broker,
    arcade_proxy,
    count,
    create_stream,
    run,
    show,
    stream_name,
    wait_until,
)
from tests.stubserver import StubBoltServer, StubConnection
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(90)

SECRET = "s3cret-service-password"


@pytest.fixture(scope="module")
def graph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """The backend: a boltstream on its own FalkorDB that accepts two users."""
    folder = tmp_path_factory.mktemp("bolt-backend")
    users = folder / "users"
    users.write_text(f"alice:pw\nsvc:{SECRET}\n")
    with ProxyProcess(
        "--data-dir", str(folder / "data"), "--fsync", "everysec", "--users-file", str(users)
    ) as server:
        yield server


def relay(tmp: Path, transforms: Path, backend: ProxyProcess, password: str) -> ProxyProcess:
    """A proxy in front of ``backend`` whose service account comes from the environment."""
    return ProxyProcess(
        "--data-dir",
        str(tmp),
        "--backend",
        backend.bolt_uri,
        "--transform-allowed-dirs",
        str(transforms),
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        "--log-level",
        "debug",
        env={"BOLTSTREAM_BACKEND_USER": "svc", "BOLTSTREAM_BACKEND_PASSWORD": password},
        auth=("alice", "pw"),
    ).start()


def test_batches_use_the_service_account(
    graph_server: ProxyProcess, broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    proxy = relay(tmp_path / "proxy", transforms, graph_server, SECRET)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "pw")) as drv:
            name = stream_name()
            broker.produce(topic, [f"{name}:{i}" for i in range(25)])
            create_stream(drv, name, broker, topic, transforms / "msg.py")
            assert show(drv, name)["owner"] == "alice"  # the relay's client principal
            run(drv, f"START STREAM {name}")
            wait_until(
                lambda: count(drv, "(m:Msg)", f"WHERE m.body STARTS WITH '{name}'") == 25,
                message="the messages in the backend",
            )
            shown = run(drv, "SHOW STREAMS")
            run(drv, f"STOP STREAM {name}")
        with neo4j.GraphDatabase.driver(graph_server.bolt_uri, auth=("alice", "pw")) as drv:
            assert count(drv, "(m:Msg)", f"WHERE m.body STARTS WITH '{name}'") == 25
    finally:
        proxy.stop()
    # The password is nowhere: not in SHOW STREAMS, the catalog, or the (debug) log.
    assert SECRET not in repr(shown)
    catalog = (tmp_path / "proxy" / CATALOG_FILE).read_bytes()
    assert b"alice" in catalog and SECRET.encode() not in catalog
    assert SECRET not in proxy.log_text()


def test_a_refused_service_account_stops_the_stream(
    graph_server: ProxyProcess, broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    proxy = relay(tmp_path / "proxy", transforms, graph_server, "wrong")
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "pw")) as drv:
            name = stream_name()
            broker.produce(topic, [f"{name}:1"])
            create_stream(drv, name, broker, topic, transforms / "msg.py")
            run(drv, f"START STREAM {name}")
            row = wait_until(lambda: (r := show(drv, name))["status"] == "error" and r)
            assert "Neo.ClientError.Security.Unauthorized" in row["last_error"]
            assert broker.committed(name, topic) == {0: -1001}
    finally:
        proxy.stop()


# -- the exact messages, against a scripted server --------------------------------------------

V54 = Version(5, 4)


def reply(tag: int, *fields: Any) -> bytes:
    return chunk(Packer(V54).pack(Structure(tag, tuple(fields))))


def fields_of(payload: bytes) -> list[Any]:
    value = unpack(payload)
    return list(value.fields)


def login(conn: StubConnection) -> None:
    conn.expect(Tag.HELLO)
    conn.send(reply(Tag.SUCCESS, {"server": "Neo4j/5.26.0", "connection_id": "bolt-1"}))
    conn.expect(Tag.LOGON)
    conn.send(reply(Tag.SUCCESS, {}))


@pytest.fixture
def stub() -> Iterator[StubBoltServer]:
    server = StubBoltServer((5, 4))
    yield server
    server.close()


def test_one_transaction_per_batch_as_the_owner(stub: StubBoltServer) -> None:
    seen: dict[str, Any] = {}

    def script(conn: StubConnection) -> None:
        login(conn)
        seen["begin"] = fields_of(conn.expect(Tag.BEGIN))[0]
        conn.send(reply(Tag.SUCCESS, {}))
        runs = []
        for _ in range(2):
            runs.append(fields_of(conn.expect(Tag.RUN))[:2])
            conn.send(reply(Tag.SUCCESS, {"fields": []}))
            conn.expect(Tag.PULL)
            conn.send(reply(Tag.SUCCESS, {}))
        seen["runs"] = runs
        conn.expect(Tag.COMMIT)
        conn.send(reply(Tag.SUCCESS, {"bookmark": "b1"}))

    stub.scripts.put(script)

    async def write() -> None:
        writer = BoltWriter(f"bolt://127.0.0.1:{stub.port}", ("svc", "pw"))
        try:
            await writer.write_batch(
                [
                    ("CREATE (:A {x: $x})", {"x": 1}),
                    ("CREATE (:A {x: $x})", {"x": 2}),
                    ("MERGE (:B)", {}),
                ],
                "alice",
            )
        finally:
            await writer.close()

    asyncio.run(write())
    assert not stub.errors, stub.errors
    assert seen["begin"]["imp_user"] == "alice"
    assert seen["runs"] == [
        [
            "UNWIND $__boltstream_rows AS __boltstream_row CREATE (:A {x: __boltstream_row.x})",
            {"__boltstream_rows": [{"x": 1}, {"x": 2}]},
        ],
        ["MERGE (:B)", {}],
    ]


def test_refused_impersonation_is_permanent(stub: StubBoltServer) -> None:
    def script(conn: StubConnection) -> None:
        login(conn)
        conn.expect(Tag.BEGIN)
        conn.send(
            reply(
                Tag.FAILURE,
                {
                    "code": "Neo.ClientError.Security.Forbidden",
                    "message": "Impersonation of user 'bob' denied",
                },
            )
        )
        conn.expect(Tag.RESET)
        conn.send(reply(Tag.SUCCESS, {}))

    stub.scripts.put(script)

    async def write() -> None:
        writer = BoltWriter(f"bolt://127.0.0.1:{stub.port}", ("svc", "pw"))
        try:
            await writer.write_batch([("CREATE (:A)", {})], "bob")
        finally:
            await writer.close()

    with pytest.raises(PermanentWriteError, match="Forbidden: Impersonation of user 'bob'"):
        asyncio.run(write())


def test_backends_that_cannot_impersonate_get_the_service_account() -> None:
    """Before Bolt 4.4 there is no ``imp_user``: the driver refuses it, and the writer runs
    batches as the service account (that backend has no narrower identity to offer)."""
    stub = StubBoltServer((4, 3))
    seen: dict[str, Any] = {}

    def script(conn: StubConnection) -> None:
        seen["hello"] = fields_of(conn.expect(Tag.HELLO))[0]
        conn.send(reply(Tag.SUCCESS, {"server": "Neo4j/4.3.0", "connection_id": "bolt-1"}))
        seen["begin"] = fields_of(conn.expect(Tag.BEGIN))[0]
        conn.send(reply(Tag.SUCCESS, {}))
        conn.expect(Tag.RUN)
        conn.send(reply(Tag.SUCCESS, {"fields": []}))
        conn.expect(Tag.PULL)
        conn.send(reply(Tag.SUCCESS, {}))
        conn.expect(Tag.COMMIT)
        conn.send(reply(Tag.SUCCESS, {"bookmark": "b1"}))

    stub.scripts.put(script)

    async def write() -> None:
        writer = BoltWriter(f"bolt://127.0.0.1:{stub.port}", ("svc", "pw"))
        try:
            await writer.write_batch([("CREATE (:A)", {})], "alice")
        finally:
            await writer.close()

    try:
        asyncio.run(write())
    finally:
        stub.close()
    assert not stub.errors, stub.errors
    assert seen["hello"]["principal"] == "svc"
    assert "imp_user" not in seen["begin"]


# -- reads (builtin:request) and failures pinned to a query ------------------------------------


def read_with(stub: StubBoltServer, query: str = "MATCH (n) RETURN n.x AS x") -> Any:
    async def read() -> Any:
        writer = BoltWriter(f"bolt://127.0.0.1:{stub.port}", ("svc", "pw"))
        try:
            return await writer.read(query, {"p": 1}, "alice")
        finally:
            await writer.close()

    return asyncio.run(read())


def test_reads_run_in_a_read_transaction_that_is_rolled_back(stub: StubBoltServer) -> None:
    seen: dict[str, Any] = {}

    def script(conn: StubConnection) -> None:
        login(conn)
        seen["begin"] = fields_of(conn.expect(Tag.BEGIN))[0]
        conn.send(reply(Tag.SUCCESS, {}))
        seen["run"] = fields_of(conn.expect(Tag.RUN))[:2]
        conn.send(reply(Tag.SUCCESS, {"fields": ["x"]}))
        conn.expect(Tag.PULL)
        conn.send(reply(Tag.RECORD, [1]) + reply(Tag.RECORD, [None]))
        conn.send(reply(Tag.SUCCESS, {"type": "r"}))
        conn.expect(Tag.ROLLBACK)  # a read commits nothing
        conn.send(reply(Tag.SUCCESS, {}))

    stub.scripts.put(script)
    result = read_with(stub)
    assert not stub.errors, stub.errors
    assert (result.fields, result.rows) == (["x"], [[1], [None]])
    assert seen["begin"]["mode"] == "r" and seen["begin"]["imp_user"] == "alice"
    assert seen["run"] == ["MATCH (n) RETURN n.x AS x", {"p": 1}]


def test_a_read_that_wrote_is_refused_and_rolled_back(stub: StubBoltServer) -> None:
    """A server that ignores the READ access mode (Memgraph, FalkorDB's Bolt port) runs a
    write: the summary says so, the answer is an AccessMode error, and the transaction is
    rolled back (which undoes it wherever the server can roll back)."""

    def script(conn: StubConnection) -> None:
        login(conn)
        conn.expect(Tag.BEGIN)
        conn.send(reply(Tag.SUCCESS, {}))
        conn.expect(Tag.RUN)
        conn.send(reply(Tag.SUCCESS, {"fields": []}))
        conn.expect(Tag.PULL)
        conn.send(reply(Tag.SUCCESS, {"type": "w", "stats": {"nodes-created": 1}}))
        conn.expect(Tag.ROLLBACK)
        conn.send(reply(Tag.SUCCESS, {}))

    stub.scripts.put(script)
    with pytest.raises(PermanentWriteError) as caught:
        read_with(stub, "CREATE (:X)")
    assert not stub.errors, stub.errors
    assert caught.value.code == "Neo.ClientError.Statement.AccessMode"
    assert "refused" in caught.value.detail


def test_an_ungrouped_failure_names_its_query(stub: StubBoltServer) -> None:
    def script(conn: StubConnection) -> None:
        login(conn)
        conn.expect(Tag.BEGIN)
        conn.send(reply(Tag.SUCCESS, {}))
        conn.expect(Tag.RUN)
        conn.send(reply(Tag.SUCCESS, {"fields": []}))
        conn.expect(Tag.PULL)
        conn.send(reply(Tag.SUCCESS, {}))
        conn.expect(Tag.RUN)
        conn.send(
            reply(
                Tag.FAILURE,
                {"code": "Neo.ClientError.Statement.ArithmeticError", "message": "/ by zero"},
            )
        )
        while conn.next_payload() is not None:  # whatever the driver does to clean up
            conn.send(reply(Tag.SUCCESS, {}))

    stub.scripts.put(script)

    async def write() -> None:
        writer = BoltWriter(f"bolt://127.0.0.1:{stub.port}", ("svc", "pw"))
        try:
            await writer.write_batch(
                [("CREATE (:A)", {}), ("RETURN 1/0", {}), ("CREATE (:B)", {})], None, group=False
            )
        finally:
            await writer.close()

    with pytest.raises(PermanentWriteError) as caught:
        asyncio.run(write())
    error = caught.value
    assert (error.index, error.rolled_back) == (1, True)
    assert error.reason == "Neo.ClientError.Statement.ArithmeticError: / by zero"


def test_requests_through_a_bolt_backend(
    graph_server: ProxyProcess, broker: Broker, transforms: Path, tmp_path: Path
) -> None:
    """builtin:request in front of a Bolt server: reads answered as the stream's owner; a write
    is refused. This backend (boltstream on FalkorDB) ignores the READ access mode and cannot
    roll a write back: the answer says so rather than pretending nothing happened."""
    import json

    label = f"BoltReq{os.getpid()}"
    with neo4j.GraphDatabase.driver(graph_server.bolt_uri, auth=("alice", "pw")) as drv:
        run(drv, f"CREATE (:{label} {{name: 'a', n: 1}})")
    requests = broker.create_topic(f"bolt_requests_{label}")
    responses = broker.create_topic(f"bolt_responses_{label}")
    broker.produce(
        requests,
        [
            json.dumps(
                {
                    "to": responses,
                    "with_key": "read",
                    "command": f"MATCH (n:{label}) RETURN n, n.n + $d AS m",
                    "params": {"d": 1},
                }
            ),
            json.dumps(
                {
                    "to": responses,
                    "with_key": "write",
                    "command": f"CREATE (:{label} {{name: 'evil'}})",
                }
            ),
        ],
    )
    proxy = relay(tmp_path / "proxy", transforms, graph_server, SECRET)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "pw")) as drv:
            name = stream_name("bolt_server")
            create_stream(drv, name, broker, requests, "builtin:request")
            run(drv, f"START STREAM {name}")
            wait_until(lambda: show(drv, name)["messages_processed"] == 2, message="both requests")
            run(drv, f"DROP STREAM {name}")
    finally:
        proxy.stop()
    body = {r.key().decode(): json.loads(r.value()) for r in broker.consume(responses, 2)}
    (row,) = body["read"]["rows"]
    assert row["n"]["labels"] == [label] and row["n"]["properties"] == {"name": "a", "n": 1}
    assert row["m"] == 2
    assert body["write"]["ok"] is False
    assert body["write"]["error"]["code"] == "Neo.ClientError.Statement.AccessMode"
    assert body["write"]["error"]["message"].startswith(
        "write queries are refused here (read-only); this server ran it anyway and could not "
        "roll it back: Cannot roll back: the backing FalkorDB has no multi-statement"
    )


# -- against ArcadeDB: a Bolt database with real transactions ----------------------------------


def test_batches_reach_arcadedb_as_the_service_account(
    arcadedb: ArcadeDB, broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    proxy = arcade_proxy(arcadedb, tmp_path / "proxy", transforms, "--log-level", "debug")
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=arcadedb.auth) as drv:
            name = stream_name("arcade")
            broker.produce(topic, [f"{name}:{i}" for i in range(25)])
            create_stream(drv, name, broker, topic, transforms / "msg.py", "BATCH_SIZE 4")
            assert show(drv, name)["owner"] == "root"
            run(drv, f"START STREAM {name}")
            wait_until(
                lambda: count(drv, "(m:Msg)", f"WHERE m.body STARTS WITH '{name}'") == 25,
                message="the messages in ArcadeDB",
            )
            run(drv, f"DROP STREAM {name}")
        with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as direct:
            assert count(direct, "(m:Msg)", f"WHERE m.body STARTS WITH '{name}'") == 25
    finally:
        proxy.stop()
    password = arcadedb.auth[1]
    assert password not in proxy.log_text()
    assert password.encode() not in (tmp_path / "proxy" / CATALOG_FILE).read_bytes()


def test_batches_go_to_the_backend_database_named(
    arcadedb: ArcadeDB, broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    """``--backend-database``: every write of a stream, its exactly-once positions included,
    names that database, so none lands in whatever the server's default is (ArcadeDB settles
    it per connection: see tests/arcadedb.py)."""
    database = arcadedb.create_database("streams_here")
    proxy = arcade_proxy(arcadedb, tmp_path / "proxy", transforms, "--backend-database", database)
    name = stream_name("arcade_db")
    sent = [f"{name}:{i}" for i in range(12)]
    broker.produce(topic, sent)

    def rows(query: str, db: str | None) -> list[Any]:
        with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as direct:
            records, _, _ = direct.execute_query(query, {"s": name}, database_=db)
        return [record[0] for record in records]

    bodies = "MATCH (r:Rec) WHERE r.body STARTS WITH $s RETURN r.body"
    positions = f"MATCH (p:{LABEL}) WHERE p.stream = $s RETURN p.next"
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=arcadedb.auth) as drv:
            create_stream(
                drv,
                name,
                broker,
                topic,
                transforms / "create.py",
                "BATCH_SIZE 5",
                "DELIVERY EXACTLY ONCE",
            )
            run(drv, f"START STREAM {name}")
            wait_until(lambda: rows(positions, database) == [12], message="the positions")
            assert sorted(rows(bodies, database)) == sorted(sent)
            run(drv, f"DROP STREAM {name}")
    finally:
        proxy.stop()
    assert rows(bodies, None) == [] and rows(positions, None) == []  # the default database


def test_arcadedb_refusing_the_service_account_stops_the_stream(
    arcadedb: ArcadeDB, broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    proxy = ProxyProcess(
        "--data-dir",
        str(tmp_path / "proxy"),
        "--backend",
        arcadedb.bolt_uri,
        "--backend-user",
        "root",
        "--transform-allowed-dirs",
        str(transforms),
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        env={"BOLTSTREAM_BACKEND_PASSWORD": "wrong"},
        auth=arcadedb.auth,
    ).start()
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=arcadedb.auth) as drv:
            name = stream_name("arcade_refused")
            broker.produce(topic, [f"{name}:1"])
            create_stream(drv, name, broker, topic, transforms / "msg.py")
            run(drv, f"START STREAM {name}")
            row = wait_until(lambda: (r := show(drv, name))["status"] == "error" and r)
            assert row["last_error"] == (
                "the backend refused the batch: "
                "Neo.ClientError.Security.Unauthorized: "
                "Authentication failed"
            )
            assert broker.committed(name, topic) == {0: -1001}
            run(drv, f"DROP STREAM {name}")
    finally:
        proxy.stop()


def test_a_refused_write_leaves_nothing_in_arcadedb(arcadedb: ArcadeDB) -> None:
    """One transaction per write: a query that fails undoes the ones before it, grouped or
    not, so the applier's isolation writes each other message exactly once (test_executors.py
    shows how with a fake; this is the real database)."""
    label = f"Undo{os.getpid()}"

    async def write() -> tuple[PermanentWriteError, PermanentWriteError]:
        writer = BoltWriter(arcadedb.bolt_uri, arcadedb.auth)
        errors = []
        try:
            for group in (True, False):
                with pytest.raises(PermanentWriteError) as caught:
                    await writer.write_batch(
                        [(f"CREATE (:{label} {{i: $i}})", {"i": i}) for i in range(5)]
                        + [(f"MATCH (n:{label}) SET n.x = 1 / $zero", {"zero": 0})],
                        None,
                        group=group,
                    )
                errors.append(caught.value)
        finally:
            await writer.close()
        return errors[0], errors[1]

    grouped, ungrouped = asyncio.run(write())
    assert grouped.rolled_back and grouped.index is None
    assert (ungrouped.rolled_back, ungrouped.index) == (True, 5)
    with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as direct:
        assert count(direct, f"(n:{label})") == 0

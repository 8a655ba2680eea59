"""Byte-exact relay checks against a scripted Bolt server (the real-database versions of these
behaviours run in test_driver.py against FalkorDB's own Bolt port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bolt.chunking import chunk
from bolt.messages import (
    Begin,
    Commit,
    Failure,
    Goodbye,
    Hello,
    Ignored,
    Logon,
    Pull,
    Reset,
    Rollback,
    Route,
    Run,
    Success,
    Tag,
    encode_request,
)
from bolt.packstream import Packer, Structure
from bolt.values import (
    Date,
    DateTime,
    DateTimeZoneId,
    Duration,
    LocalDateTime,
    LocalTime,
    Point2D,
    Point3D,
    Time,
)
from bolt.versions import Version
from tests.boltclient import RawBolt, offer_bytes
from tests.stubserver import StubBoltServer, StubConnection
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(30)


def response(tag: int, *fields: object) -> bytes:
    return chunk(Packer(Version(5, 4)).pack(Structure(tag, tuple(fields))))


SUCCESS_EMPTY = response(Tag.SUCCESS, {})
# A RECORD whose integer uses the 8-byte form: decoding and re-encoding would shrink it to 01,
# so getting these exact bytes back proves the record was relayed untouched. Split over two
# chunks for the same reason.
ODD_RECORD = bytes.fromhex("0004 B17191CB 0008 0000000000000001 0000")


@pytest.fixture(scope="module", params=[(5, 4), (5, 7)], ids=["bolt5.4", "bolt5.7"])
def stub(request: pytest.FixtureRequest) -> Iterator[tuple[StubBoltServer, ProxyProcess]]:
    server = StubBoltServer(request.param)
    proxy = ProxyProcess("--backend", f"bolt://127.0.0.1:{server.port}").start()
    yield server, proxy
    proxy.stop()
    server.close()


def connect(proxy: ProxyProcess) -> RawBolt:
    client = RawBolt(proxy.address)
    client.handshake(offer_bytes((5, 8, 8), (4, 4, 2)))
    return client


def login(client: RawBolt) -> None:
    client.send(
        Hello({"user_agent": "test/1", "bolt_agent": {"product": "test/1"}}),
        Logon({"scheme": "basic", "principal": "u", "credentials": "p"}),
    )
    assert isinstance(client.recv(), Success)
    assert isinstance(client.recv(), Success)


def serve_login(conn: StubConnection) -> None:
    conn.expect(Tag.HELLO)
    conn.send(response(Tag.SUCCESS, {"server": "Neo4j/5.99.0", "connection_id": "stub-1"}))
    conn.expect(Tag.LOGON)
    conn.send(SUCCESS_EMPTY)


def test_records_and_summaries_pass_through_byte_exact(stub) -> None:
    server, proxy = stub
    summary = response(Tag.SUCCESS, {"type": "r", "t_last": 1, "db": "neo4j", "bookmark": "b"})

    def script(conn: StubConnection) -> None:
        serve_login(conn)
        conn.expect(Tag.RUN)
        conn.expect(Tag.PULL)
        conn.send(response(Tag.SUCCESS, {"fields": ["x"], "t_first": 0}) + ODD_RECORD + summary)

    server.scripts.put(script)
    with connect(proxy) as client:
        assert client.version == Version(*server.version)
        login(client)
        client.send(Run("RETURN 1 AS x", {}, {}), Pull(1000, -1))
        assert isinstance(client.recv(), Success)
        _payload, wire = client.recv_framed()
        assert wire == ODD_RECORD
        _payload, wire = client.recv_framed()
        assert wire == summary
    assert not server.errors


def test_run_with_every_value_type_reaches_the_backend_byte_exact(stub) -> None:
    server, proxy = stub
    seen: list[StubConnection] = []
    version = Version(*server.version)
    params = {
        "null": None,
        "bool": True,
        "int": -(2**63),
        "float": 1.5,
        "str": 'it\'s "q"',
        "bytes": b"\x00\xff",
        "list": [1, [2, [3]]],
        "map": {"a": {"b": {}}},
        "date": Date(19000),
        "time": Time(1, 3600),
        "local_time": LocalTime(5),
        "local_datetime": LocalDateTime(1, 2),
        "datetime": DateTime(10, 20, -3600),
        "zoned": DateTimeZoneId(10, 20, "Europe/Paris"),
        "duration": Duration(1, 2, 3, 4),
        "point2d": Point2D(7203, 1.0, 2.0),
        "point3d": Point3D(9157, 1.0, 2.0, 3.0),
    }
    run_bytes = chunk(encode_request(Run("RETURN $p AS p", {"p": params}, {}), version))

    def script(conn: StubConnection) -> None:
        seen.append(conn)
        serve_login(conn)
        conn.expect(Tag.RUN)
        conn.expect(Tag.PULL)
        conn.send(response(Tag.SUCCESS, {"fields": ["p"]}) + response(Tag.SUCCESS, {}))

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send_bytes(run_bytes)
        client.send(Pull(-1, -1))
        assert isinstance(client.recv(), Success)
        assert isinstance(client.recv(), Success)
    assert seen and seen[0].finished.wait(5)
    assert chunk(seen[0].received[2]) == run_bytes
    assert not server.errors


def test_pipelined_transaction_in_one_write(stub) -> None:
    server, proxy = stub

    def script(conn: StubConnection) -> None:
        serve_login(conn)
        for tag in (Tag.BEGIN, Tag.RUN, Tag.PULL, Tag.COMMIT):
            conn.expect(tag)
        conn.send(
            SUCCESS_EMPTY
            + response(Tag.SUCCESS, {"fields": [], "qid": 0})
            + response(Tag.SUCCESS, {"type": "w"})
            + response(Tag.SUCCESS, {"bookmark": "bm-1"})
        )

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send(Begin({}), Run("CREATE ()", {}, {}), Pull(-1, -1), Commit())
        replies = [client.recv() for _ in range(4)]
    assert [type(r) for r in replies] == [Success] * 4
    assert replies[3].metadata == {"bookmark": "bm-1"}
    assert not server.errors


def test_failure_is_translated_for_the_client_version(stub) -> None:
    server, proxy = stub
    # The backend uses the format of the *other* generation on purpose: 5.4 clients must see
    # `code`, 5.7 clients `neo4j_code` with a GQL status.
    legacy = server.version < (5, 7)
    sent = (
        {
            "neo4j_code": "Neo.ClientError.Statement.SyntaxError",
            "message": "bad",
            "gql_status": "42001",
            "description": "error: syntax error",
        }
        if legacy
        else {"code": "Neo.ClientError.Statement.SyntaxError", "message": "bad"}
    )

    def script(conn: StubConnection) -> None:
        serve_login(conn)
        conn.expect(Tag.RUN)
        conn.expect(Tag.PULL)
        conn.send(response(Tag.FAILURE, sent) + response(Tag.IGNORED))
        conn.expect(Tag.RESET)
        conn.send(SUCCESS_EMPTY)

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send(Run("RETURN RETURN", {}, {}), Pull(-1, -1))
        failure = client.recv()
        assert isinstance(failure, Failure)
        assert isinstance(client.recv(), Ignored)
        client.send(Reset())
        assert isinstance(client.recv(), Success)
    if legacy:
        assert failure.metadata["code"] == "Neo.ClientError.Statement.SyntaxError"
    else:
        assert failure.metadata["neo4j_code"] == "Neo.ClientError.Statement.SyntaxError"
        assert failure.metadata["gql_status"]
        assert failure.metadata["description"]
    assert failure.metadata["message"] == "bad"
    assert not server.errors


def test_route_is_answered_by_the_proxy_and_goodbye_not_forwarded(stub) -> None:
    server, proxy = stub
    seen: list[StubConnection] = []

    def script(conn: StubConnection) -> None:
        seen.append(conn)
        serve_login(conn)

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send(Route({"address": "example:7687"}, [], None, None))
        routed = client.recv()
        client.send(Goodbye())
        assert client.is_closed()
    assert isinstance(routed, Success)
    table = routed.metadata["rt"]
    assert table["db"] == "neo4j"
    assert {s["role"] for s in table["servers"]} == {"READ", "WRITE", "ROUTE"}
    assert all(s["addresses"] == [f"127.0.0.1:{proxy.port}"] for s in table["servers"])
    assert seen and seen[0].finished.wait(5)
    conn = seen[0]
    # Nothing after LOGON reached the backend: no ROUTE, no GOODBYE.
    assert [payload[1] for payload in conn.received] == [Tag.HELLO, Tag.LOGON]


def test_backend_offer_is_what_client_and_proxy_share(stub) -> None:
    server, proxy = stub
    server.scripts.put(serve_login)
    before = len(server.offers)
    with connect(proxy) as client:
        login(client)
    offer = server.offers[before]
    # Client offered 5.8..5.0 and 4.4..4.2; the proxy never offers 5.5 and puts the highest
    # range first.
    assert offer[4:8] == bytes([0, 2, 8, 5])  # 5.8..5.6
    assert offer[8:12] == bytes([0, 4, 4, 5])  # 5.4..5.0
    assert offer[12:16] == bytes([0, 2, 4, 4])  # 4.4..4.2


def test_a_transaction_of_stream_clauses_never_reaches_the_backend(stub) -> None:
    """BEGIN, SHOW STREAMS, STOP ALL STREAMS and COMMIT (then the same with ROLLBACK) are all
    answered by the proxy: the backend sees nothing after LOGON."""
    server, proxy = stub
    seen: list[StubConnection] = []

    def script(conn: StubConnection) -> None:
        seen.append(conn)
        serve_login(conn)

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        for end in (Commit(), Rollback()):
            client.send(
                Begin({"db": "neo4j"}),
                Run("SHOW STREAMS", {}, {}),
                Pull(-1, -1),
                Run("STOP ALL STREAMS", {}, {}),
                Pull(-1, -1),
                end,
            )
            begin, show, shown, stop, stopped, ended = (client.recv() for _ in range(6))
            assert all(isinstance(r, Success) for r in (begin, show, shown, stop, stopped, ended))
            assert (show.metadata["qid"], stop.metadata["qid"]) == (0, 1)
            assert show.metadata["fields"][:2] == ["name", "uri"]
            assert stopped.metadata["type"] == "s"
        client.send(Goodbye())
        assert client.is_closed()
    assert seen and seen[0].finished.wait(5)
    assert [payload[1] for payload in seen[0].received] == [Tag.HELLO, Tag.LOGON]


def test_mixed_transaction_translates_qids(stub) -> None:
    """A local statement took qid 0, so the backend's first result (its qid 0) is the client's
    qid 1: the RUN SUCCESS and the PULL are translated; the held BEGIN goes first."""
    server, proxy = stub
    seen: list[StubConnection] = []

    def script(conn: StubConnection) -> None:
        seen.append(conn)
        serve_login(conn)
        conn.expect(Tag.BEGIN)
        conn.expect(Tag.RUN)
        conn.send(SUCCESS_EMPTY + response(Tag.SUCCESS, {"fields": ["x"], "qid": 0}))
        conn.expect(Tag.PULL)
        conn.send(response(Tag.RECORD, [1]) + response(Tag.SUCCESS, {"type": "r"}))
        conn.expect(Tag.COMMIT)
        conn.send(response(Tag.SUCCESS, {"bookmark": "bm-2"}))

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send(
            Begin({}),
            Run("SHOW STREAMS", {}, {}),
            Run("RETURN 1 AS x", {}, {}),
            Pull(-1, 1),
            Pull(-1, 0),
            Commit(),
        )
        begin, local_run, backend_run = client.recv(), client.recv(), client.recv()
        record, pulled = client.recv(), client.recv()
        local_pull = client.recv()
        commit = client.recv()
    assert isinstance(begin, Success) and begin.metadata == {}
    assert local_run.metadata["qid"] == 0 and backend_run.metadata["qid"] == 1
    assert record.values == [1] and pulled.metadata == {"type": "r"}
    assert isinstance(local_pull, Success) and local_pull.metadata["type"] == "r"
    assert commit.metadata == {"bookmark": "bm-2"}
    assert seen and seen[0].finished.wait(5)
    pull = next(p for p in seen[0].received if p[1] == Tag.PULL)
    assert pull == encode_request(Pull(-1, 0), Version(*server.version))  # qid 1 -> 0


def test_a_held_begin_that_fails_fails_the_statement(stub) -> None:
    server, proxy = stub
    refused = {"code": "Neo.ClientError.Database.DatabaseNotFound", "message": "no db"}

    def script(conn: StubConnection) -> None:
        serve_login(conn)
        conn.expect(Tag.BEGIN)
        conn.expect(Tag.RUN)
        conn.expect(Tag.PULL)
        conn.send(response(Tag.FAILURE, refused) + response(Tag.IGNORED) + response(Tag.IGNORED))
        conn.expect(Tag.RESET)
        conn.send(SUCCESS_EMPTY)

    server.scripts.put(script)
    with connect(proxy) as client:
        login(client)
        client.send(Begin({"db": "nope"}), Run("RETURN 1", {}, {}), Pull(-1, -1))
        begin, run, pull = client.recv(), client.recv(), client.recv()
        client.send(Reset())
        reset = client.recv()
    assert isinstance(begin, Success)
    assert isinstance(run, Failure) and run.code == refused["code"] and run.message == "no db"
    assert isinstance(pull, Ignored) and isinstance(reset, Success)
    assert not server.errors

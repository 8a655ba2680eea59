"""The sans-IO server connection: bytes in, requests out; answers in, bytes out; the state and
the open results moved by the answers alone."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt.chunking import ChunkDecoder, chunk
from bolt.connection import Received, ServerConnection
from bolt.errors import ClientError, InvalidTransition, MessageTooLarge, ProtocolError
from bolt.messages import (
    Begin,
    Commit,
    Discard,
    Failure,
    Goodbye,
    Hello,
    Logon,
    Pull,
    Record,
    Request,
    Reset,
    Run,
    Success,
    Tag,
    decode_response,
    encode_failure,
    encode_request,
    encode_success,
)
from bolt.packstream import Packer
from bolt.state import Action, State
from bolt.versions import Version

V44, V54, V57 = Version(4, 4), Version(5, 4), Version(5, 7)


def wire(version: Version, *requests: Request) -> bytes:
    return b"".join(chunk(encode_request(r, version)) for r in requests)


def responses(data: bytes, version: Version) -> list[Any]:
    decoder = ChunkDecoder()
    decoder.receive_data(data)
    out = []
    while (payload := decoder.next_message()) is not None:
        out.append(decode_response(payload, version))
    return out


def requests(conn: ServerConnection) -> list[Received]:
    out = []
    while (request := conn.next_request()) is not None:
        out.append(request)
    return out


def ready(version: Version = V57) -> ServerConnection:
    """A connection that has been through HELLO (and LOGON from 5.1)."""
    conn = ServerConnection(version)
    login: list[Request] = [Hello({"user_agent": "t"})]
    if version >= Version(5, 1):
        login.append(Logon({"scheme": "none"}))
    conn.receive_data(wire(version, *login))
    for _ in requests(conn):
        assert conn.check() is Action.PROCESS
        conn.success({})
    assert conn.state is State.READY
    return conn


@pytest.mark.parametrize("one_byte", [False, True])
def test_pipelined_requests_come_out_in_order(one_byte: bool) -> None:
    conn = ServerConnection(V57)
    data = wire(V57, Hello({"user_agent": "t"}), Logon({}), Run("RETURN 1", {}, {}), Pull())
    got: list[Received] = []
    for piece in [data[i : i + 1] for i in range(len(data))] if one_byte else [data]:
        conn.receive_data(piece)
        got += requests(conn)
    assert [r.tag for r in got] == [Tag.HELLO, Tag.LOGON, Tag.RUN, Tag.PULL]
    assert b"".join(r.wire for r in got) == data
    assert conn.unanswered == 4 and conn.head == Tag.HELLO
    assert isinstance(conn.decode(got[2]), Run)


def test_answers_move_the_state_in_request_order() -> None:
    conn = ServerConnection(V57)
    conn.receive_data(wire(V57, Hello({}), Logon({})))
    requests(conn)
    assert conn.state is State.NEGOTIATION
    hello = responses(conn.success({"server": "Neo4j/5.26.0"}), V57)
    assert hello == [Success({"server": "Neo4j/5.26.0"})]
    assert conn.state is State.AUTHENTICATION and conn.head == Tag.LOGON
    conn.success({})
    assert conn.state is State.READY and conn.unanswered == 0


def test_paging_and_the_final_summary() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Run("RETURN 1", {}, {}), Pull(1), Pull(1)))
    requests(conn)
    conn.success({"fields": ["x"]})
    assert conn.state is State.STREAMING and conn.open_results == 1
    out = conn.record([1]) + conn.success({"has_more": True})
    assert responses(out, V57) == [Record([1]), Success({"has_more": True})]
    assert conn.state is State.STREAMING
    conn.success({"has_more": False})
    assert conn.state is State.READY and conn.open_results == 0


def test_transaction_with_two_open_results() -> None:
    """The connection counts open results: the transaction is streaming until both are done,
    in whatever order the client finishes them."""
    conn = ready()
    conn.receive_data(
        wire(
            V57,
            Begin({}),
            Run("A", {}, {}),
            Run("B", {}, {}),
            Pull(-1, 1),
            Discard(-1, 0),
            Commit(),
        )
    )
    requests(conn)
    for _ in range(3):
        conn.success({})
    assert conn.state is State.TX_STREAMING and conn.open_results == 2
    conn.success({"type": "r"})
    assert conn.state is State.TX_STREAMING and conn.open_results == 1
    conn.success({"type": "r"})
    assert conn.state is State.TX_READY and conn.open_results == 0
    conn.success({"bookmark": "b"})
    assert conn.state is State.READY


def test_failed_requests_are_ignored_until_reset() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Run("RETURN RETURN", {}, {}), Pull(), Reset()))
    requests(conn)
    out = conn.failure(ClientError("Neo.ClientError.Statement.SyntaxError", "bad"))
    (failure,) = responses(out, V57)
    assert isinstance(failure, Failure) and failure.metadata["gql_status"] == "42001"
    assert conn.state is State.FAILED
    assert conn.check() is Action.IGNORE
    assert responses(conn.ignored(), V57)[0].tag == Tag.IGNORED
    assert conn.check() is Action.PROCESS  # RESET
    conn.success({})
    assert conn.state is State.READY


def test_a_request_without_a_transition_is_refused_and_the_connection_is_done() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Pull()))
    requests(conn)
    with pytest.raises(InvalidTransition) as caught:
        conn.check()
    assert conn.state is State.DEFUNCT
    (failure,) = responses(conn.violation(caught.value), V57)
    assert failure.metadata["neo4j_code"] == "Neo.ClientError.Request.Invalid"
    assert failure.metadata["gql_status"] == "08N10"


def test_oversized_message_gets_its_own_gql_status() -> None:
    """MessageTooLarge goes out with 22N56, not the generic protocol error 08N06."""
    conn = ServerConnection(V57, max_message_size=100)
    conn.receive_data(wire(V57, Run("x" * 200, {}, {})))
    with pytest.raises(MessageTooLarge) as caught:
        conn.next_request()
    (failure,) = responses(conn.violation(caught.value), V57)
    assert failure.metadata["gql_status"] == "22N56"
    assert conn.state is State.DEFUNCT


@pytest.mark.parametrize("payload", [b"\x01\x02", b"\xb1\x99\xa0"])
def test_garbage_is_a_protocol_error(payload: bytes) -> None:
    conn = ServerConnection(V57)
    conn.receive_data(chunk(payload))
    with pytest.raises(ProtocolError):
        conn.next_request()


def test_goodbye_is_not_answered() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Goodbye()))
    (goodbye,) = requests(conn)
    assert goodbye.tag == Tag.GOODBYE and conn.unanswered == 0
    assert conn.state is State.DEFUNCT


def test_failure_that_closes() -> None:
    from bolt.errors import AuthenticationError

    conn = ServerConnection(V57)
    conn.receive_data(wire(V57, Hello({}), Logon({"scheme": "basic"})))
    requests(conn)
    conn.success({})
    conn.failure(AuthenticationError("no"))
    assert conn.state is State.DEFUNCT


def test_utc_patch_changes_how_datetimes_are_sent() -> None:
    from bolt.values import DateTime

    conn = ready(V44)
    conn.receive_data(wire(V44, Run("RETURN $t", {}, {})))
    requests(conn)
    legacy = conn.record([DateTime(0, 0, 3600)])
    conn.use_utc_patch()
    assert conn.record([DateTime(0, 0, 3600)]) != legacy
    assert b"\xb3\x49" in conn.record([DateTime(0, 0, 3600)])  # 'I': UTC seconds


# -- relayed answers ------------------------------------------------------------------------


def summary(metadata: dict[str, Any], version: Version = V57) -> bytes:
    return chunk(encode_success(metadata, Packer(version)))


def relay(conn: ServerConnection, data: bytes) -> bytes:
    """What a relay sends for ``data`` (one summary)."""
    replacement = conn.relay_summary(data[3], data, 0, len(data))
    return data if replacement is None else replacement


def test_relayed_summaries_pass_as_they_are_and_move_the_state() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Run("RETURN 1", {}, {}), Pull(1), Pull(1)))
    requests(conn)
    run = summary({"fields": ["x"]})
    assert relay(conn, run) is run
    more = summary({"has_more": True})
    assert relay(conn, more) is more
    assert conn.state is State.STREAMING
    last = summary({"type": "r", "has_more": False})
    assert relay(conn, last) is last
    assert conn.state is State.READY


@pytest.mark.parametrize(("backend", "client"), [(V54, V57), (V57, V54)])
def test_relayed_failure_takes_the_clients_shape(backend: Version, client: Version) -> None:
    from bolt.failures import failure_metadata

    conn = ready(client)
    conn.receive_data(wire(client, Run("RETURN RETURN", {}, {})))
    requests(conn)
    metadata = failure_metadata("Neo.ClientError.Statement.SyntaxError", "bad", backend)
    sent = chunk(encode_failure(metadata, Packer(backend)))
    (failure,) = responses(relay(conn, sent), client)
    assert failure.code == "Neo.ClientError.Statement.SyntaxError"
    assert ("neo4j_code" in failure.metadata) is (client >= V57)
    assert conn.state is State.FAILED


def test_vendor_codes_are_made_neo4j_shaped() -> None:
    conn = ready(V54)
    conn.receive_data(wire(V54, Run("x", {}, {})))
    requests(conn)
    sent = chunk(encode_failure({"code": "SyntaxError", "message": "m"}, Packer(V54)))
    (failure,) = responses(relay(conn, sent), V54)
    assert failure.metadata == {"code": "Neo.ClientError.Statement.SyntaxError", "message": "m"}


def test_a_backend_answer_outside_the_table_keeps_the_state() -> None:
    conn = ready()
    conn.receive_data(wire(V57, Commit()))  # no transaction here; a lenient backend says OK
    requests(conn)
    ok = summary({})
    assert relay(conn, ok) is ok
    assert conn.state is State.READY and conn.anomaly is not None


def test_split_requests_then_claim() -> None:
    conn = ready()
    data = wire(V57, Run("RETURN 1", {}, {}), Pull())
    buffer, spans, whole = conn.split_requests(data)
    assert buffer is data and whole
    assert [tag for tag, _s, _e in spans] == [Tag.RUN, Tag.PULL]
    assert conn.unanswered == 0  # split, not handed out
    conn.claim_many([tag for tag, _start, _end in spans])
    assert conn.unanswered == 2 and conn.head == Tag.RUN
    _buffer, spans, whole = conn.split_requests(data[:5])
    assert spans == [] and not whole and conn.buffered == 5


def test_claim_request_checks_what_it_hands_out() -> None:
    conn = ready()
    with pytest.raises(ProtocolError):
        conn.claim_request(Received(0x99, b"\xb0\x99", chunk(b"\xb0\x99")))
    assert conn.unanswered == 0


messages = st.lists(
    st.sampled_from(
        [
            Run("RETURN $x", {"x": [1, "two", {"k": None}]}, {"db": "neo4j"}),
            Pull(1000, -1),
            Discard(-1, 3),
            Begin({"mode": "r"}),
            Commit(),
            Reset(),
        ]
    ),
    min_size=1,
    max_size=8,
)


@given(msgs=messages, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_split_of_the_bytes_gives_the_same_requests(
    msgs: list[Request], cuts: list[int]
) -> None:
    data = wire(V57, *msgs)
    conn = ServerConnection(V57)
    got: list[Received] = []
    pos = 0
    for size in [*cuts, len(data)]:
        conn.receive_data(data[pos : pos + size])
        pos += size
        got += requests(conn)
    assert [conn.decode(r) for r in got] == msgs
    assert b"".join(r.wire for r in got) == data

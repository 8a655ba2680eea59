"""Bad bytes on one connection get a FAILURE or a clean close for that connection only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import neo4j
import pytest

from bolt.chunking import chunk
from bolt.messages import Failure, Hello, Logon, Pull, Run, Success
from tests.boltclient import RawBolt
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(30)

LIMIT = 4096


@pytest.fixture(scope="module", params=["embedded", "relay"])
def small_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """A proxy with a 4 KB message limit, so an oversize message is cheap to make."""
    auth = ("neo4j", "x")
    if request.param == "embedded":
        args = ["--data-dir", str(tmp_path_factory.mktemp("bad-input"))]
    else:
        bolt_port = request.getfixturevalue("falkordb_bolt").bolt_port
        args = ["--backend", f"bolt://127.0.0.1:{bolt_port}"]
        auth = ("falkordb", "")
    with ProxyProcess(*args, "--max-message-size", str(LIMIT), auth=auth) as proxy:
        yield proxy


@pytest.fixture
def bystander(small_proxy: ProxyProcess) -> Iterator[neo4j.Session]:
    """Another client's session, open across the bad input, that must keep working."""
    with neo4j.GraphDatabase.driver(small_proxy.bolt_uri, auth=small_proxy.auth) as driver:
        with driver.session() as session:
            assert session.run("RETURN 1 AS x").single()["x"] == 1
            yield session
            assert session.run("RETURN 2 AS x").single()["x"] == 2


def logged_in(proxy: ProxyProcess) -> RawBolt:
    client = RawBolt(proxy.address)
    client.handshake()
    # FalkorDB's Bolt server refuses an empty password but takes scheme "none".
    client.send(Hello({"user_agent": "bad-input-test/1"}), Logon({"scheme": "none"}))
    assert isinstance(client.recv(), Success)
    assert isinstance(client.recv(), Success)
    return client


def expect_invalid_and_close(client: RawBolt) -> Failure:
    reply = client.recv()
    assert isinstance(reply, Failure), reply
    code = reply.metadata.get("code") or reply.metadata.get("neo4j_code")
    assert code == "Neo.ClientError.Request.Invalid"
    assert client.is_closed()
    return reply


def test_garbage_instead_of_handshake(small_proxy: ProxyProcess, bystander) -> None:
    with socket.create_connection(small_proxy.address, timeout=5) as sock:
        sock.sendall(b"this is not bolt at all!")
        assert sock.recv(100) == b""
    small_proxy.wait_for_log(r"bad handshake .*")


def test_http_requests_on_the_bolt_port(small_proxy: ProxyProcess, bystander) -> None:
    # A plain GET is answered like Neo4j does, with the discovery document, then closed.
    with socket.create_connection(small_proxy.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while part := sock.recv(65536):
            data += part
    assert data.startswith(b"HTTP/1.1 200") and b"bolt_direct" in data
    # Any other method is not Bolt: closed, and the log says it looked like HTTP.
    with socket.create_connection(small_proxy.address, timeout=5) as sock:
        sock.sendall(b"POST /db/neo4j/tx HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""
    small_proxy.wait_for_log(r"looks like HTTP")


def test_chunk_header_that_lies_about_its_size(small_proxy: ProxyProcess, bystander) -> None:
    client = logged_in(small_proxy)
    # Promises 1000 bytes, sends 10, then hangs up.
    client.send_bytes(b"\x03\xe8" + b"\xb3\x10" + b"x" * 8)
    client.close()


def test_message_larger_than_the_limit(small_proxy: ProxyProcess, bystander) -> None:
    with logged_in(small_proxy) as client:
        client.send(Run("RETURN $s", {"s": "x" * (LIMIT * 2)}, {}))
        expect_invalid_and_close(client)
    small_proxy.wait_for_log(r"exceeds the 4096-byte limit")


def test_unknown_message_tag(small_proxy: ProxyProcess, bystander) -> None:
    with logged_in(small_proxy) as client:
        client.send_bytes(chunk(b"\xb0\x55"))
        expect_invalid_and_close(client)
    small_proxy.wait_for_log(r"(?i)unknown message tag")


def test_value_nested_too_deep(small_proxy: ProxyProcess, bystander) -> None:
    with logged_in(small_proxy) as client:
        depth = 200
        params = b"\xa1\x81p" + b"\x91" * depth + b"\x01"
        client.send_bytes(chunk(b"\xb3\x10\x88RETURN 1" + params + b"\xa0"))
        expect_invalid_and_close(client)
    small_proxy.wait_for_log(r"(?i)nest")


def test_message_with_no_transition_in_this_state(small_proxy: ProxyProcess, bystander) -> None:
    with RawBolt(small_proxy.address) as client:
        client.handshake()
        client.send(Run("RETURN 1", {}, {}))  # before HELLO
        expect_invalid_and_close(client)


def test_pull_without_a_result(small_proxy: ProxyProcess, bystander) -> None:
    with logged_in(small_proxy) as client:
        client.send(Pull(10, -1))
        reply = client.recv()
        assert isinstance(reply, Failure)

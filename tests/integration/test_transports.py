"""Bolt over TLS and over WebSocket on the proxy's one port, with real clients."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from bolt.chunking import ChunkDecoder, chunk
from bolt.handshake import MAGIC
from bolt.messages import Hello, Logon, Pull, Record, Run, Success, decode_response, encode_request
from bolt.versions import Version
from tests.support import ProxyProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_proxy(
    tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA
) -> Iterator[tuple[ProxyProcess, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        with cert_file.open("ab") as out:
            out.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    with ProxyProcess(
        "--data-dir", str(folder / "data"), "--tls-cert", str(cert_file), "--tls-key", str(key_file)
    ) as proxy:
        yield proxy, ca_file


def test_encrypted_bolt_with_a_trusted_certificate(tls_proxy) -> None:
    proxy, ca_file = tls_proxy
    # bolt+s:// trusts only the system store; a custom CA goes with bolt:// + encrypted.
    uri = f"bolt://localhost:{proxy.port}"
    with neo4j.GraphDatabase.driver(
        uri,
        auth=proxy.auth,
        encrypted=True,
        trusted_certificates=neo4j.TrustCustomCAs(str(ca_file)),
    ) as driver:
        records, _, _ = driver.execute_query("RETURN 'secret' AS s")
    assert records[0]["s"] == "secret"


def test_bolt_ssc_and_neo4j_ssc_with_a_self_signed_view(tls_proxy) -> None:
    proxy, _ = tls_proxy
    for scheme in ("bolt+ssc", "neo4j+ssc"):
        with neo4j.GraphDatabase.driver(
            f"{scheme}://127.0.0.1:{proxy.port}", auth=proxy.auth
        ) as driver:
            records, _, _ = driver.execute_query("RETURN 1 AS one")
        assert records[0]["one"] == 1


def test_plain_bolt_still_works_on_the_tls_port(tls_proxy) -> None:
    proxy, _ = tls_proxy
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=proxy.auth) as driver:
        records, _, _ = driver.execute_query("RETURN 2 AS two")
    assert records[0]["two"] == 2


class WebSocketBolt:
    """Bolt over a WebSocket, the way the JavaScript driver sends it from a browser: the
    handshake in one message, then each write as a message of at most ``frame`` bytes."""

    def __init__(
        self, address: tuple[str, int], *, context: ssl.SSLContext | None = None, frame: int = 1400
    ) -> None:
        raw = socket.create_connection(address, timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost") if context else raw
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.frame = frame
        self.decoder = ChunkDecoder()
        self.sock.sendall(self.ws.send(Request(host="localhost", target="/")))
        assert isinstance(self._event(), AcceptConnection)
        self.version = Version(5, 0)

    def _event(self) -> object:
        while True:
            for event in self.ws.events():
                return event
            data = self.sock.recv(65536)
            assert data, "closed"
            self.ws.receive_data(data)

    def _bytes(self) -> bytes:
        event = self._event()
        assert isinstance(event, BytesMessage), event
        return bytes(event.data)

    def send(self, data: bytes) -> None:
        for start in range(0, len(data), self.frame):
            self.sock.sendall(self.ws.send(BytesMessage(data=data[start : start + self.frame])))

    def handshake(self) -> None:
        self.send(MAGIC + bytes.fromhex("00070705 00020404 00000104 00000003"))
        reply = self._bytes()  # must be exactly one message of 4 bytes
        assert len(reply) == 4
        self.version = Version(reply[3], reply[2])

    def request(self, *requests: object) -> None:
        self.send(b"".join(chunk(encode_request(r, self.version)) for r in requests))

    def response(self) -> object:
        while True:
            payload = self.decoder.next_message()
            if payload is not None:
                return decode_response(payload, self.version)
            self.decoder.receive_data(self._bytes())


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("frame", [1400, 3], ids=["js-frames", "tiny-frames"])
def test_bolt_over_websocket(tls_proxy, ca: trustme.CA, secure: bool, frame: int) -> None:
    proxy, _ = tls_proxy
    context = None
    if secure:
        context = ssl.create_default_context()
        ca.configure_trust(context)
    client = WebSocketBolt(proxy.address, context=context, frame=frame)
    client.handshake()
    assert client.version == Version(5, 7)
    client.request(
        Hello({"user_agent": "neo4j-javascript/5.26.0"}),
        Logon({"scheme": "basic", "principal": "neo4j", "credentials": "x"}),
        Run("UNWIND range(1, 3) AS x RETURN x", {}, {}),
        Pull(1000, -1),
    )
    replies = [client.response() for _ in range(7)]
    assert [type(r) for r in replies] == [
        Success,
        Success,
        Success,
        Record,
        Record,
        Record,
        Success,
    ]
    assert [r.values for r in replies if isinstance(r, Record)] == [[1], [2], [3]]


def test_plain_http_get_gets_discovery(tls_proxy) -> None:
    proxy, _ = tls_proxy
    with socket.create_connection(proxy.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk_ := sock.recv(65536):
            data += chunk_
    assert data.startswith(b"HTTP/1.1 200")
    assert f"bolt://127.0.0.1:{proxy.port}".encode() in data

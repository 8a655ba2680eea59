"""A scripted Bolt server, for checking what the relay does to exact bytes.

It answers every handshake with a fixed version. A connection that closes right after the
handshake (the proxy's start-up reachability probe) is ignored; every other connection is
handed to the next script in the queue. A script reads requests with ``expect`` and writes
whatever bytes it likes with ``send``.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable

from bolt.chunking import ChunkDecoder
from bolt.messages import Tag


class StubConnection:
    def __init__(self, sock: socket.socket, decoder: ChunkDecoder) -> None:
        self.sock = sock
        self.decoder = decoder
        self.received: list[bytes] = []
        self.finished = threading.Event()  # set once the peer closed and all was recorded

    def next_payload(self) -> bytes | None:
        while True:
            item = self.decoder.next_message()
            if item is not None:
                self.received.append(item)
                return item
            try:
                data = self.sock.recv(65536)
            except (ConnectionError, TimeoutError):
                return None
            if not data:
                return None
            self.decoder.receive_data(data)

    def expect(self, tag: Tag) -> bytes:
        payload = self.next_payload()
        if payload is None:
            raise AssertionError(f"expected {tag.name}, the connection closed")
        if payload[1] != tag:
            raise AssertionError(f"expected {tag.name}, got 0x{payload[1]:02X}")
        return payload

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


Script = Callable[[StubConnection], None]


class StubBoltServer:
    def __init__(self, version: tuple[int, int]) -> None:
        self.version = version
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.scripts: queue.Queue[Script] = queue.Queue()
        self.errors: list[BaseException] = []
        self.done: queue.Queue[StubConnection] = queue.Queue()
        self.offers: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            offer = b""
            while len(offer) < 20:
                part = sock.recv(20 - len(offer))
                if not part:
                    return
                offer += part
            self.offers.append(offer)
            major, minor = self.version
            sock.sendall(bytes([0, 0, minor, major]))
            conn = StubConnection(sock, ChunkDecoder())
            first = conn.next_payload()
            if first is None:
                return  # a probe
            conn.decoder = _Prepend(first, conn.decoder)  # type: ignore[assignment]
            conn.received.clear()
            script = self.scripts.get(timeout=5)
            try:
                script(conn)
            except BaseException as exc:
                self.errors.append(exc)
            # Whatever follows (until the peer closes) is recorded too.
            while conn.next_payload() is not None:
                pass
            conn.finished.set()
            self.done.put(conn)
        finally:
            sock.close()

    def close(self) -> None:
        self.listener.close()


class _Prepend:
    """A decoder that gives back one already-read message first."""

    def __init__(self, first: bytes, decoder: ChunkDecoder) -> None:
        self.first: bytes | None = first
        self.decoder = decoder

    def next_message(self) -> bytes | None:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        return self.decoder.next_message()

    def receive_data(self, data: bytes) -> None:
        self.decoder.receive_data(data)

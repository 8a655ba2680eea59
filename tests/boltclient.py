"""A plain blocking Bolt client for tests that need exact control over the bytes sent."""

from __future__ import annotations

import socket
from typing import Any, Self

from bolt.chunking import ChunkDecoder, chunk
from bolt.handshake import MAGIC
from bolt.messages import Request, decode_response, encode_request
from bolt.versions import Version

# What the Python driver 6.x offers, minus the manifest slot: 5.8..5.0, 4.4..4.2, 3.0.
DEFAULT_OFFER = bytes.fromhex("00080805 00020404 00000003 00000000")


def offer_bytes(*slots: tuple[int, int, int]) -> bytes:
    body = b"".join(bytes([0, rng, minor, major]) for major, minor, rng in slots)
    return MAGIC + body.ljust(16, b"\0")


class RawBolt:
    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = ChunkDecoder(64 << 20)
        self.version = Version(5, 0)

    def handshake(self, offer: bytes = MAGIC + DEFAULT_OFFER) -> bytes:
        self.sock.sendall(offer)
        reply = self._read_exactly(4)
        if reply != b"\x00\x00\x00\x00":
            self.version = Version(reply[3], reply[2])
        return reply

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise EOFError(f"closed after {len(data)} of {n} bytes")
            data += part
        return data

    def send(self, *requests: Request) -> None:
        self.sock.sendall(b"".join(chunk(encode_request(r, self.version)) for r in requests))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_framed(self) -> tuple[bytes, bytes]:
        while True:
            item = self.decoder.next_framed()
            if item is not None:
                return item
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.decoder.receive_data(data)

    def recv(self) -> Any:
        payload, _wire = self.recv_framed()
        return decode_response(payload, self.version)

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection within ``timeout`` (reading what is left)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Byte plumbing between an asyncio stream and the sans-IO Bolt objects.

``BoltWire`` owns one socket: it reads into a ``ChunkDecoder`` and hands out whole messages,
and it collects outgoing bytes so that everything produced for one batch of requests goes out
in one write (drivers pipeline, and small writes cost a syscall each).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from bolt.chunking import ChunkDecoder, chunk

READ_SIZE = 256 * 1024
# Above this many buffered outgoing bytes, wait for the peer to read (backpressure).
HIGH_WATER = 1024 * 1024


def tune_socket(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class BoltWire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 max_message_size: int, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = ChunkDecoder(max_message_size)
        self.log = log
        self._out: list[bytes] = []
        self.closed = False

    def feed(self, data: bytes) -> None:
        """Bytes that arrived before the wire took over (after the handshake)."""
        if data:
            self.decoder.receive_data(data)

    async def read_framed(self) -> list[tuple[bytes, bytes]]:
        """Every whole message available, waiting for at least one; [] at end of stream.

        Each item is (payload, wire bytes). Raises ``MessageTooLarge`` from the decoder.
        """
        messages: list[tuple[bytes, bytes]] = []
        decoder = self.decoder
        while True:
            item = decoder.next_framed()
            while item is not None:
                messages.append(item)
                item = decoder.next_framed()
            if messages:
                return messages
            data = await self.reader.read(READ_SIZE)
            if not data:
                if decoder.buffered:
                    self.log.info("peer closed the connection in the middle of a message")
                return messages
            decoder.receive_data(data)

    def send(self, payload: bytes) -> None:
        self._out.append(chunk(payload))

    def send_raw(self, data: bytes) -> None:
        self._out.append(data)

    @property
    def pending_bytes(self) -> int:
        return sum(map(len, self._out))

    async def flush(self) -> None:
        if not self._out or self.closed:
            self._out.clear()
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        try:
            self.writer.write(data)
            transport = self.writer.transport
            if transport.get_write_buffer_size() > HIGH_WATER:
                await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self.log.debug("write failed: %s", exc)
            self.closed = True

    async def close(self) -> None:
        if self.closed and self.writer.is_closing():
            return
        self.closed = True
        try:
            if self._out:
                self.writer.write(b"".join(self._out))
                self._out.clear()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (ConnectionError, RuntimeError, TimeoutError, OSError):
            pass

"""Byte plumbing between an asyncio stream and the sans-IO Bolt objects (the local session).

``BoltWire`` owns one socket: it reads into a ``ChunkDecoder`` and hands out whole messages,
and it collects outgoing bytes so that everything produced for one batch of requests goes out
in one write (drivers pipeline, and small writes cost a syscall each). The relay does not use
it: it works on protocol callbacks (``proxy.relay``).
"""

from __future__ import annotations

import asyncio
import logging

from bolt.chunking import ChunkDecoder, chunk

READ_SIZE = 256 * 1024
# Above this many buffered outgoing bytes, wait for the peer to read (backpressure).
HIGH_WATER = 1024 * 1024


class BoltWire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 max_message_size: int, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = ChunkDecoder(max_message_size)
        self.log = log
        self._out: list[bytes] = []
        self.closed = False

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

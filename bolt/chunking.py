"""Message framing: chunks in, whole messages out, and back (bolt.md §3).

A message is one or more chunks ``[u16 size][size bytes]`` followed by the end marker ``00 00``.
A ``00 00`` *outside* a message is a NOOP (keep-alive, 4.1+) and carries nothing.

The decoder is on the proxy's hottest path, so it works on one buffer with offsets: it reads
each chunk header once (``_scan`` remembers how far it got into an incomplete message), keeps the
received bytes as they are while they hold whole messages, and only compacts an accumulating
buffer when more than half of it is consumed. The size limit is enforced from the chunk headers,
so a peer that announces a huge message is refused before we buffer it.
"""

from __future__ import annotations

from bolt.errors import MessageTooLarge

NOOP = b"\x00\x00"
MAX_CHUNK_SIZE = 0xFFFF
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

# Compact the buffer once this much has been consumed (and it is most of the buffer): small
# enough to keep memory flat, large enough that pipelined small messages rarely trigger a move.
_COMPACT_AT = 64 * 1024


class ChunkDecoder:
    """Reassemble messages from a chunked byte stream fed in pieces of any size.

    ``receive_data`` then call ``next_message`` / ``next_framed`` until they return None, or
    ``split`` for every whole message at once. Raises ``MessageTooLarge`` once a message's
    payload exceeds ``max_message_size``; the decoder is unusable afterwards (the stream
    position is lost), so close the connection.

    The buffer is the received ``bytes`` object itself while nothing is left over from earlier
    data (the usual case: a read holds whole messages), so slicing a message out copies at most
    once and a read that is exactly one message is not copied at all. Only a message split
    across reads starts a ``bytearray`` that later data is appended to.
    """

    __slots__ = (
        "_broken", "_buf", "_limit", "_max", "_scan", "_size", "_start", "begin", "end", "whole"
    )  # fmt: skip

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        # After ``split``: where its whole messages are in the data it returned, and whether
        # they are all of it (no NOOP, no partial message): then it can be passed on as it is.
        self.begin = self.end = 0
        self.whole = False
        self._buf: bytes | bytearray = b""
        self._max = max_message_size
        self._limit = min(max_message_size, MAX_CHUNK_SIZE)  # the largest one-chunk message
        self._start = 0  # first byte of the current (not yet returned) message or NOOP
        self._scan = 0  # next chunk header to read inside the current message
        self._size = 0  # payload bytes announced so far for the current message
        self._broken: MessageTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that have not been returned as part of a message yet."""
        return len(self._buf) - self._start

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes from the peer."""
        if self._start == len(self._buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._start = self._scan = self._size = 0
            return
        buf = self._buf
        if type(buf) is bytes:  # a message spans reads: accumulate from here on
            start = self._start
            buf = self._buf = bytearray(memoryview(buf)[start:])
            self._scan -= start
            self._start = 0
        buf += data

    def _find_end(self) -> int:
        """Offset of the current message's end marker, or -1 if it is not complete yet.

        Skips NOOPs in front of the message (moving ``_start``) and checks the size limit as
        each header is seen.
        """
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        end = len(buf)
        pos = self._scan
        size = self._size
        while pos + 2 <= end:
            n = (buf[pos] << 8) | buf[pos + 1]
            if n == 0:
                if pos == self._start:  # a NOOP between messages: drop it
                    pos += 2
                    self._start = pos
                    continue
                self._scan = pos
                self._size = size
                return pos
            size += n
            if size > self._max:
                self._broken = MessageTooLarge(
                    f"message exceeds the {self._max}-byte limit ({size} bytes announced so far)"
                )
                raise self._broken
            pos += 2 + n
        if self._start == end and type(buf) is bytearray:
            # only NOOPs so far: don't let keep-alives grow the buffer
            buf.clear()
            self._start = pos = size = 0
        self._scan = pos
        self._size = size
        return -1

    def _consume(self, marker: int) -> None:
        nxt = marker + 2
        buf = self._buf
        if type(buf) is bytearray:
            if nxt == len(buf):
                buf.clear()
                nxt = 0
            elif nxt >= _COMPACT_AT and nxt * 2 > len(buf):
                del buf[:nxt]
                nxt = 0
        self._start = self._scan = nxt
        self._size = 0

    def next_message(self) -> bytes | None:
        """The next whole message payload (chunk headers removed), or None if incomplete."""
        marker = self._find_end()
        if marker < 0:
            return None
        payload = payload_of(self._buf, self._start, marker + 2)
        self._consume(marker)
        return payload

    def next_framed(self) -> tuple[bytes, bytes] | None:
        """``(payload, wire)`` for the next message, or None if incomplete.

        ``wire`` is the exact bytes of that message on the wire (chunk headers and end marker
        included, NOOPs before it excluded), for relaying it unchanged.
        """
        marker = self._find_end()
        if marker < 0:
            return None
        buf = self._buf
        start = self._start
        payload = payload_of(buf, start, marker + 2)
        wire = buf[start : marker + 2]
        self._consume(marker)
        return payload, wire if type(wire) is bytes else bytes(wire)

    def split(self, skip: int = -1) -> tuple[bytes, list[tuple[int, int, int]]]:
        """Every whole message received so far, consumed at once: ``(data, spans)``.

        Each span is ``(tag, start, end)``: the message's second payload byte (its tag, for a
        structure) and its wire bytes ``data[start:end]``. Messages whose tag is ``skip`` get no
        span (a relay passes records on without looking at them), nor do NOOPs. All the whole
        messages are ``data[begin:end]`` (attributes, set here); ``whole`` says that is all of
        ``data``, which is then the received bytes object itself, so a relay can pass it on
        uncopied. Raises ``MessageTooLarge`` like ``next_framed``.
        """
        spans: list[tuple[int, int, int]] = []
        buf = self._buf
        # An accumulating buffer changes under us: the spans index a copy of it.
        data = buf if type(buf) is bytes else bytes(buf)
        pos = self.begin = self._start
        whole = pos == 0 and type(buf) is bytes
        if self._scan == pos:
            # Fast scan while messages are single chunks (almost all are): one header and the
            # end marker each; anything else goes to the general loop below.
            end, limit, append = len(buf), self._limit, spans.append
            while pos + 2 <= end:
                n = (buf[pos] << 8) | buf[pos + 1]
                if n == 0:
                    pos += 2  # a NOOP
                    whole = False
                    continue
                stop = pos + 2 + n
                if n < 2 or n > limit or stop + 2 > end or buf[stop] or buf[stop + 1]:
                    break
                if buf[pos + 3] != skip:
                    append((buf[pos + 3], pos, stop + 2))
                pos = stop + 2
            self._start = self._scan = self.end = pos
            if pos == end:
                self.whole = whole and pos > 0
                return data, spans
        while True:
            marker = self._find_end()
            if marker < 0:
                break
            start = self._start
            first = (buf[start] << 8) | buf[start + 1]
            if first >= 2:
                tag = buf[start + 3]
            else:  # the tag is in a later chunk (legal, if odd); -1 for a 1-byte message
                payload = payload_of(buf, start, marker + 2)
                tag = payload[1] if len(payload) > 1 else -1
            if tag != skip:
                spans.append((tag, start, marker + 2))
            self._start = self._scan = self.end = marker + 2
            self._size = 0
        self.whole = False
        # (a buffer left with nothing but NOOPs was cleared by _find_end: _start is 0 then)
        if type(buf) is bytearray and self.end > self.begin and self._start >= self.end:
            done = self.end
            del buf[:done]
            self._scan -= done
            self._start -= done
        return data, spans


def payload_of(data: bytes | bytearray, start: int, end: int) -> bytes:
    """The payload of the whole message ``data[start:end]`` (chunk headers and end marker
    removed)."""
    n = (data[start] << 8) | data[start + 1]
    if start + 2 + n == end - 2:  # one chunk: the usual case
        payload = data[start + 2 : end - 2]
        return payload if type(payload) is bytes else bytes(payload)
    parts = []
    pos = start
    while pos < end - 2:
        n = (data[pos] << 8) | data[pos + 1]
        parts.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return b"".join(parts)


def chunk(payload: bytes | bytearray, max_chunk_size: int = MAX_CHUNK_SIZE) -> bytes:
    """Frame one message payload: chunk headers, the data, and the ``00 00`` end marker."""
    n = len(payload)
    if n == 0:
        raise ValueError("an empty message cannot be framed (it would read as a NOOP)")
    if not 0 < max_chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}")
    if n <= max_chunk_size:
        return n.to_bytes(2, "big") + payload + NOOP
    out = bytearray()
    chunk_into(out, payload, max_chunk_size)
    return bytes(out)


def chunk_into(
    out: bytearray, payload: bytes | bytearray, max_chunk_size: int = MAX_CHUNK_SIZE
) -> None:
    """Append the framed ``payload`` to ``out`` (saves a copy when batching writes)."""
    n = len(payload)
    if n == 0:
        raise ValueError("an empty message cannot be framed (it would read as a NOOP)")
    view = memoryview(payload)
    for pos in range(0, n, max_chunk_size):
        part = view[pos : pos + max_chunk_size]
        out += len(part).to_bytes(2, "big")
        out += part
    out += NOOP

"""Chunk framing (bolt.md §3): any split, multi-chunk messages, NOOPs, size limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt.chunking import NOOP, ChunkDecoder, chunk, chunk_into
from bolt.errors import MessageTooLarge, ProtocolError

# bolt.md §4.1 examples, chunked.
SUCCESS_WIRE = bytes.fromhex(
    "002CB170A2867365727665728C4E656F346A2F352E32362E30"
    "8D636F6E6E656374696F6E5F696486626F6C742D310000"
)
RUN_WIRE = bytes.fromhex("0012B3108D52455455524E20312041532078A0A00000")
PULL_WIRE = bytes.fromhex("0008B13FA1816EC903E80000")
RECORD_WIRE = bytes.fromhex("0004B17191010000")
RESET_WIRE = bytes.fromhex("0002B00F0000")


def drain(decoder: ChunkDecoder) -> list[bytes]:
    out = []
    while (msg := decoder.next_message()) is not None:
        out.append(msg)
    return out


def drain_framed(decoder: ChunkDecoder) -> list[tuple[bytes, bytes]]:
    out = []
    while (msg := decoder.next_framed()) is not None:
        out.append(msg)
    return out


def test_golden_examples_unframe() -> None:
    for wire in (SUCCESS_WIRE, RUN_WIRE, PULL_WIRE, RECORD_WIRE, RESET_WIRE):
        d = ChunkDecoder()
        d.receive_data(wire)
        assert drain(d) == [wire[2:-2]]
        assert chunk(wire[2:-2]) == wire


@pytest.mark.parametrize("one_byte", [False, True])
def test_pipelined_messages_with_noops(one_byte: bool) -> None:
    stream = NOOP + RUN_WIRE + NOOP + NOOP + PULL_WIRE + RESET_WIRE + NOOP
    d = ChunkDecoder()
    got: list[tuple[bytes, bytes]] = []
    if one_byte:
        for i in range(len(stream)):
            d.receive_data(stream[i : i + 1])
            got += drain_framed(d)
    else:
        d.receive_data(stream)
        got = drain_framed(d)
    assert [wire for _, wire in got] == [RUN_WIRE, PULL_WIRE, RESET_WIRE]
    assert [payload for payload, _ in got] == [RUN_WIRE[2:-2], PULL_WIRE[2:-2], RESET_WIRE[2:-2]]
    assert d.buffered == 0


@pytest.mark.parametrize("one_byte", [False, True])
def test_multi_chunk_message(one_byte: bool) -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    wire = chunk(payload, max_chunk_size=1400)  # the JS driver's chunk size
    assert len(wire) == len(payload) + 2 * 8 + 2  # 8 chunk headers + end marker
    d = ChunkDecoder()
    got = []
    if one_byte:
        for i in range(len(wire)):
            d.receive_data(wire[i : i + 1])
            got += drain_framed(d)
    else:
        d.receive_data(wire)
        got = drain_framed(d)
    assert got == [(payload, wire)]


def test_incomplete_message_waits() -> None:
    d = ChunkDecoder()
    d.receive_data(PULL_WIRE[:-1])
    assert d.next_message() is None
    assert d.next_framed() is None
    assert d.buffered == len(PULL_WIRE) - 1
    d.receive_data(PULL_WIRE[-1:])
    assert d.next_message() == PULL_WIRE[2:-2]
    assert d.next_message() is None


def test_header_lying_about_size_just_waits() -> None:
    # The stream ends mid-chunk: not an error, the rest may still come.
    d = ChunkDecoder()
    d.receive_data(b"\x00\x10" + b"\xb0" * 4)
    assert d.next_message() is None
    assert d.buffered == 6


def test_oversize_is_detected_from_the_header() -> None:
    d = ChunkDecoder(max_message_size=1000)
    d.receive_data(b"\x03\xe9")  # announces 1001 bytes; none of them has arrived
    with pytest.raises(MessageTooLarge):
        d.next_message()
    with pytest.raises(MessageTooLarge):  # sticky: the stream position is lost
        d.next_message()


def test_oversize_across_chunks() -> None:
    d = ChunkDecoder(max_message_size=1000)
    d.receive_data(chunk(b"x" * 1000, max_chunk_size=300))
    assert d.next_message() == b"x" * 1000  # exactly the limit is fine
    d.receive_data(b"\x01\xf4" + b"x" * 500 + b"\x01\xf5")
    with pytest.raises(MessageTooLarge) as info:
        d.next_framed()
    assert isinstance(info.value, ProtocolError)


def test_keepalive_noops_do_not_grow_the_buffer() -> None:
    d = ChunkDecoder()
    for _ in range(1000):
        d.receive_data(NOOP)
        assert d.next_message() is None
    assert d.buffered == 0
    d.receive_data(NOOP[:1])
    assert d.next_message() is None
    d.receive_data(NOOP[1:] + RECORD_WIRE)
    assert d.next_message() == RECORD_WIRE[2:-2]


def test_buffer_compacts_after_many_messages() -> None:
    d = ChunkDecoder()
    d.receive_data(RECORD_WIRE * 20000 + RECORD_WIRE[:3])
    assert len(drain(d)) == 20000
    assert d.buffered == 3
    d.receive_data(RECORD_WIRE[3:])
    # the read's consumed bytes are released once more data comes: only the rest is kept
    assert len(d._buf) < 70 * 1024
    assert drain(d) == [RECORD_WIRE[2:-2]]


def test_chunk_boundaries() -> None:
    assert chunk(b"a" * 65535)[:2] == b"\xff\xff"
    assert len(chunk(b"a" * 65535)) == 65535 + 4
    two = chunk(b"a" * 65536)
    assert two[:2] == b"\xff\xff"
    assert two[65537:65539] == b"\x00\x01"
    assert two.endswith(b"a\x00\x00")
    assert len(two) == 65536 + 6
    out = bytearray(b"prefix")
    chunk_into(out, b"abc", 2)
    assert bytes(out) == b"prefix\x00\x02ab\x00\x01c\x00\x00"


def test_chunk_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        chunk(b"")
    with pytest.raises(ValueError):
        chunk_into(bytearray(), b"")
    with pytest.raises(ValueError):
        chunk(b"x", max_chunk_size=0)
    with pytest.raises(ValueError):
        chunk(b"x", max_chunk_size=65536)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, list[int]]:
    payloads = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=8))
    wire = bytearray()
    for p in payloads:
        wire += NOOP * draw(st.integers(0, 2))
        wire += chunk(p, draw(st.integers(1, 120)))
    wire += NOOP * draw(st.integers(0, 2))
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    return payloads, bytes(wire), cuts


@settings(max_examples=300)
@given(streams())
def test_random_splits(case: tuple[list[bytes], bytes, list[int]]) -> None:
    payloads, wire, cuts = case
    d = ChunkDecoder()
    got: list[tuple[bytes, bytes]] = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        d.receive_data(wire[prev:cut])
        prev = cut
        got += drain_framed(d)
    assert [p for p, _ in got] == payloads
    assert [w for _, w in got] == split_wire(wire)
    assert d.buffered == 0


def split_wire(wire: bytes) -> list[bytes]:
    """Split a wire stream into its messages' exact bytes (independent slow reference)."""
    out: list[bytes] = []
    pos, start, in_msg = 0, 0, False
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        if n == 0:
            if in_msg:
                out.append(wire[start : pos + 2])
                in_msg = False
            pos += 2
            continue
        if not in_msg:
            start, in_msg = pos, True
        pos += 2 + n
    return out


@pytest.mark.parametrize("one_byte", [False, True])
def test_split_gives_spans_of_whole_messages(one_byte: bool) -> None:
    multi = chunk(b"\xb1\x71" + bytes(300), max_chunk_size=1)  # a tag in its own chunk
    stream = NOOP + RUN_WIRE + PULL_WIRE + NOOP + multi + RESET_WIRE
    d = ChunkDecoder()
    got: list[tuple[int, bytes]] = []
    pieces = [stream[i : i + 1] for i in range(len(stream))] if one_byte else [stream]
    for piece in pieces:
        d.receive_data(piece)
        data, spans = d.split()
        got += [(tag, data[start:end]) for tag, start, end in spans]
    assert got == [(0x10, RUN_WIRE), (0x3F, PULL_WIRE), (0x71, multi), (0x0F, RESET_WIRE)]
    assert d.buffered == 0


def test_split_hands_back_the_received_bytes_object() -> None:
    d = ChunkDecoder()
    data = RUN_WIRE + PULL_WIRE
    d.receive_data(data)
    out, spans = d.split()
    assert out is data  # a relay can pass it on without copying
    assert [(start, end) for _, start, end in spans] == [
        (0, len(RUN_WIRE)),
        (len(RUN_WIRE), len(data)),
    ]

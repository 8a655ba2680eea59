"""PackStream v1 (bolt.md §4): golden bytes at every size boundary, round trips, bad input."""

from __future__ import annotations

import contextlib
import enum
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt.errors import NestingTooDeep, PackStreamError
from bolt.packstream import Packer, Structure, Unpacker, unpack, unpack_all

PACKER = Packer()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- golden bytes -----------------------------------------------------------------------------

INTS = [
    (0, "00"),
    (1, "01"),
    (-1, "FF"),
    (-16, "F0"),
    (-17, "C8 EF"),
    (127, "7F"),
    (128, "C9 00 80"),
    (-128, "C8 80"),
    (-129, "C9 FF 7F"),
    (32767, "C9 7F FF"),
    (32768, "CA 00 00 80 00"),
    (-32768, "C9 80 00"),
    (-32769, "CA FF FF 7F FF"),
    (2**31 - 1, "CA 7F FF FF FF"),
    (2**31, "CB 00 00 00 00 80 00 00 00"),
    (-(2**31), "CA 80 00 00 00"),
    (-(2**31) - 1, "CB FF FF FF FF 7F FF FF FF"),
    (-(2**63), "CB 80 00 00 00 00 00 00 00"),
    (2**63 - 1, "CB 7F FF FF FF FF FF FF FF"),
]


@pytest.mark.parametrize(("value", "encoded"), INTS)
def test_int_golden(value: int, encoded: str) -> None:
    assert PACKER.pack(value) == h(encoded)
    decoded = unpack(h(encoded))
    assert decoded == value
    assert type(decoded) is int


@pytest.mark.parametrize(
    ("encoded", "value"),
    [("C8 01", 1), ("C9 00 01", 1), ("CA 00 00 00 01", 1), ("CB FF FF FF FF FF FF FF FF", -1)],
)
def test_wider_int_encodings_are_accepted(encoded: str, value: int) -> None:
    assert unpack(h(encoded)) == value


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_int_out_of_range(value: int) -> None:
    with pytest.raises(PackStreamError):
        PACKER.pack(value)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (None, "C0"),
        (True, "C3"),
        (False, "C2"),
        (1.1, "C1 3F F1 99 99 99 99 99 9A"),
        (-1.1, "C1 BF F1 99 99 99 99 99 9A"),
        (0.0, "C1 00 00 00 00 00 00 00 00"),
        (float("inf"), "C1 7F F0 00 00 00 00 00 00"),
        ("", "80"),
        ("A", "81 41"),
        ("é", "82 C3 A9"),
        ("Größenmaßstäbe", "D0 12 47 72 C3 B6 C3 9F 65 6E 6D 61 C3 9F 73 74 C3 A4 62 65"),
        ([], "90"),
        ([1, 2, 3], "93 01 02 03"),
        ({}, "A0"),
        ({"one": "eins"}, "A1 83 6F 6E 65 84 65 69 6E 73"),
        (b"", "CC 00"),
        (b"\x01\x02\x03", "CC 03 01 02 03"),
        (Structure(0x4E, ()), "B0 4E"),
        (Structure(0x44, (19000,)), "B1 44 C9 4A 38"),
    ],
)
def test_scalar_golden(value: Any, encoded: str) -> None:
    assert PACKER.pack(value) == h(encoded)
    assert unpack(h(encoded)) == value


def test_bool_is_not_packed_as_int() -> None:
    assert PACKER.pack([True, 1, False, 0]) == h("94 C3 01 C2 00")
    assert unpack(h("94 C3 01 C2 00")) == [True, 1, False, 0]
    assert [type(v) for v in unpack(h("92 C3 01"))] == [bool, int]


def test_special_floats() -> None:
    assert math.isnan(unpack(PACKER.pack(float("nan"))))
    negzero = unpack(PACKER.pack(-0.0))
    assert negzero == 0.0
    assert math.copysign(1.0, negzero) == -1.0


SIZES = [0, 1, 15, 16, 255, 256, 65535, 65536]


def _size_header(tiny: int, base: int, n: int) -> bytes:
    if n < 16 and tiny >= 0:
        return bytes([tiny | n])
    if n < 0x100:
        return bytes([base, n])
    if n < 0x10000:
        return bytes([base + 1]) + n.to_bytes(2, "big")
    return bytes([base + 2]) + n.to_bytes(4, "big")


@pytest.mark.parametrize("n", SIZES)
def test_string_sizes(n: int) -> None:
    value = "x" * n
    encoded = _size_header(0x80, 0xD0, n) + value.encode()
    assert PACKER.pack(value) == encoded
    assert unpack(encoded) == value


@pytest.mark.parametrize("n", SIZES)
def test_string_size_counts_utf8_bytes(n: int) -> None:
    value = "é" * (n // 2) + "x" * (n % 2)  # n bytes, fewer characters
    assert PACKER.pack(value)[: len(_size_header(0x80, 0xD0, n))] == _size_header(0x80, 0xD0, n)


@pytest.mark.parametrize("n", SIZES)
def test_list_sizes(n: int) -> None:
    value = [0] * n
    encoded = _size_header(0x90, 0xD4, n) + b"\x00" * n
    assert PACKER.pack(value) == encoded
    assert unpack(encoded) == value


@pytest.mark.parametrize("n", SIZES)
def test_dict_sizes(n: int) -> None:
    value = {f"k{i}": 0 for i in range(n)}
    encoded = PACKER.pack(value)
    header = _size_header(0xA0, 0xD8, n)
    assert encoded.startswith(header)
    if n:
        assert encoded[len(header) :].startswith(b"\x82k0\x00")  # first entry: "k0": 0
    assert unpack(encoded) == value


@pytest.mark.parametrize("n", SIZES)
def test_bytes_sizes(n: int) -> None:
    value = b"\xab" * n
    encoded = _size_header(-1, 0xCC, n) + value
    assert PACKER.pack(value) == encoded
    assert unpack(encoded) == value


def test_structure_headers() -> None:
    for n in range(16):
        encoded = PACKER.pack(Structure(0x7A, tuple(range(n))))
        assert encoded[:2] == bytes([0xB0 | n, 0x7A])
        assert unpack(encoded) == Structure(0x7A, tuple(range(n)))
    with pytest.raises(PackStreamError):
        PACKER.pack(Structure(0x7A, tuple(range(16))))
    with pytest.raises(PackStreamError):
        PACKER.pack(Structure(256, ()))


def test_duplicate_dict_keys_last_wins() -> None:
    assert unpack(h("A2 81 61 01 81 61 02")) == {"a": 2}


def test_non_tiny_string_keys() -> None:
    key = "k" * 20
    assert unpack(PACKER.pack({key: 1})) == {key: 1}


def test_containers_and_subclasses() -> None:
    class Color(enum.IntEnum):
        RED = 200

    class Name(str):
        pass

    assert PACKER.pack((1, 2)) == PACKER.pack([1, 2])
    assert PACKER.pack(Color.RED) == PACKER.pack(200)
    assert PACKER.pack(OrderedDict(a=1)) == PACKER.pack({"a": 1})
    assert PACKER.pack({Name("a"): Name("b")}) == PACKER.pack({"a": "b"})
    assert PACKER.pack(bytearray(b"ab")) == PACKER.pack(b"ab")
    assert PACKER.pack(memoryview(b"ab")) == PACKER.pack(b"ab")


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, 1j, {1: "int key"}, {"ok": {(1,): 1}}, "\ud800"]
)
def test_unpackable_values(value: Any) -> None:
    with pytest.raises(PackStreamError):
        PACKER.pack(value)


def test_self_referencing_value() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PackStreamError):
        PACKER.pack(loop)


# -- round trips --------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=20), children, max_size=6)
        | st.builds(
            Structure,
            st.integers(0, 255),
            st.lists(children, max_size=15).map(tuple),
        )
    )


values = st.recursive(scalars, _containers, max_leaves=30)
plain_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=20), c, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400)
@given(values)
def test_roundtrip(value: Any) -> None:
    encoded = PACKER.pack(value)
    assert unpack(encoded) == value
    assert unpack(memoryview(encoded)) == value
    assert unpack(bytearray(encoded)) == value


@settings(max_examples=200)
@given(st.lists(values, max_size=5))
def test_unpack_all_reads_a_sequence(items: list[Any]) -> None:
    data = b"".join(PACKER.pack(v) for v in items)
    assert unpack_all(data) == items
    reader = Unpacker(data)
    for v in items:
        assert reader.unpack() == v
    assert reader.remaining == 0


@settings(max_examples=200)
@given(plain_values)
def test_same_bytes_as_the_neo4j_driver(value: Any) -> None:
    # The official Python driver's codec is an independent implementation: identical bytes
    # both ways means the smallest-encoding choices and markers agree.
    v1 = pytest.importorskip("neo4j._codec.packstream.v1")
    common = pytest.importorskip("neo4j._codec.packstream._common")
    buf = common.PackableBuffer()
    v1.Packer(buf).pack(value)
    assert bytes(buf.data) == PACKER.pack(value)
    assert v1.Unpacker(common.UnpackableBuffer(PACKER.pack(value))).unpack() == value


# -- bad input --------------------------------------------------------------------------------


@settings(max_examples=100)
@given(values)
def test_every_truncation_fails_cleanly(value: Any) -> None:
    encoded = PACKER.pack(value)
    for cut in range(len(encoded)):
        with pytest.raises(PackStreamError):
            unpack(encoded[:cut])


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_garbage_raises_only_packstream_errors(data: bytes) -> None:
    with contextlib.suppress(PackStreamError):
        unpack(data)


@pytest.mark.parametrize(
    "marker",
    [0xC4, 0xC5, 0xC6, 0xC7, 0xCF, 0xD3, 0xD7, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, *range(0xE0, 0xF0)],
)
def test_unknown_markers(marker: int) -> None:
    with pytest.raises(PackStreamError, match="marker"):
        unpack(bytes([marker]) + b"\x00" * 8)


@pytest.mark.parametrize("key", ["01", "C0", "90", "CC 00", "B0 4E"])
def test_non_string_dict_keys(key: str) -> None:
    with pytest.raises(PackStreamError, match="key"):
        unpack(h("A1") + h(key) + h("01"))


def test_trailing_bytes() -> None:
    with pytest.raises(PackStreamError, match="trailing"):
        unpack(h("01 02"))


def test_empty_input() -> None:
    with pytest.raises(PackStreamError):
        unpack(b"")


def test_invalid_utf8() -> None:
    with pytest.raises(PackStreamError, match="UTF-8"):
        unpack(h("81 FF"))
    with pytest.raises(PackStreamError, match="UTF-8"):
        unpack(h("A1 81 FF 01"))


@pytest.mark.parametrize("header", ["D6 FF FF FF FF", "DA FF FF FF FF", "D2 FF FF FF FF",
                                    "CE FF FF FF FF", "D5 FF FF"])  # fmt: skip
def test_lying_lengths_fail_fast(header: str) -> None:
    with pytest.raises(PackStreamError):
        unpack(h(header) + b"\x00" * 10)


@pytest.mark.parametrize(("opener", "depth_ok"), [("91", 64), ("A1 81 61", 64), ("B1 01", 64)])
def test_nesting_limit(opener: str, depth_ok: int) -> None:
    ok = h(opener) * depth_ok + b"\x00"
    assert unpack(ok) is not None
    with pytest.raises(NestingTooDeep):
        unpack(h(opener) * (depth_ok + 1) + b"\x00")
    with pytest.raises(NestingTooDeep):
        unpack(h(opener) * 3 + b"\x00", max_depth=2)
    assert unpack(h(opener) * 2 + b"\x00", max_depth=2) is not None


def test_nesting_beyond_the_interpreter_stack() -> None:
    with pytest.raises(NestingTooDeep):
        unpack(b"\x91" * 200_000 + b"\x00", max_depth=10**9)


def test_unpacker_structure_header() -> None:
    reader = Unpacker(h("B3 10 80 A0 A0"))
    assert reader.structure_header() == (3, 0x10)
    assert [reader.unpack() for _ in range(3)] == ["", {}, {}]
    with pytest.raises(PackStreamError):
        Unpacker(h("91 01")).structure_header()
    with pytest.raises(PackStreamError):
        Unpacker(h("B1")).structure_header()

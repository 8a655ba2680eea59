"""Handshake (bolt.md §2): real client offers, legacy and manifest replies, byte-at-a-time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bolt.errors import HandshakeError
from bolt.handshake import (
    MAGIC,
    ClientOffer,
    ServerHandshake,
    choose_version,
    client_proposal,
    decode_varint,
    encode_varint,
    parse_server_choice,
)
from bolt.versions import SUPPORTED_VERSIONS, Version

V = Version.parse

# bolt.md §2.3: the 16 proposal bytes each target client sends.
PYTHON_6 = bytes.fromhex("000001FF 00080805 00020404 00000003")  # also Java 5.2x, JS 6.x
JS_5_26 = bytes.fromhex("00070705 00020404 00000104 00000003")
PY2NEO = bytes.fromhex("00030304 00000004 00000003 00000002")
MGCLIENT_OLD = bytes.fromhex("00000104 00000001 00000000 00000000")
PYMGCLIENT_1_6 = bytes.fromhex("00000404 00000304 00000104 00000001")

MANIFEST_REPLY = bytes.fromhex("000001FF 03 00020805 00040405 00030404 00")
HELLO = bytes.fromhex("0004B101A000 00")  # something pipelined after the handshake


def offer(proposals: bytes) -> ClientOffer:
    return ClientOffer.from_bytes(proposals)


@pytest.mark.parametrize(
    ("proposals", "expected"),
    [
        (PYTHON_6, V("5.8")),
        (JS_5_26, V("5.7")),
        (PY2NEO, V("4.3")),
        (MGCLIENT_OLD, V("4.1")),
        (PYMGCLIENT_1_6, V("4.4")),
    ],
)
def test_real_client_offers(proposals: bytes, expected: Version) -> None:
    assert choose_version(offer(proposals), SUPPORTED_VERSIONS) == expected


def test_the_installed_python_driver_offer_is_the_one_in_the_notes() -> None:
    bolt_mod = pytest.importorskip("neo4j._sync.io._bolt")
    assert bolt_mod.Bolt.get_handshake() == PYTHON_6


def test_offer_parsing() -> None:
    o = offer(PYTHON_6)
    assert o.manifest is True
    assert o.slots == ((255, 1, 0), (5, 8, 8), (4, 4, 2), (3, 0, 0))
    assert [str(v) for v in o.versions()] == [
        "5.8", "5.7", "5.6", "5.5", "5.4", "5.3", "5.2", "5.1", "5.0", "4.4", "4.3", "4.2", "3.0",
    ]  # fmt: skip
    assert offer(JS_5_26).manifest is False
    assert [str(v) for v in offer(MGCLIENT_OLD).versions()] == ["4.1", "1.0"]


def test_offer_needs_16_bytes() -> None:
    with pytest.raises(HandshakeError):
        ClientOffer.from_bytes(b"\x00" * 15)


def test_first_satisfiable_slot_wins_not_the_highest() -> None:
    # Client prefers 4.4 over 5.x: honour the client's order.
    o = offer(bytes.fromhex("00000404 00000805 00000000 00000000"))
    assert choose_version(o, SUPPORTED_VERSIONS) == V("4.4")


def test_highest_minor_inside_a_range() -> None:
    o = offer(bytes.fromhex("00080805 00000000 00000000 00000000"))
    assert choose_version(o, [V("5.0"), V("5.2"), V("5.1")]) == V("5.2")


def test_never_5_5() -> None:
    assert choose_version(offer(bytes.fromhex("00000505" + "00" * 12)), [V("5.5")]) is None
    o = offer(bytes.fromhex("00010505 00000000 00000000 00000000"))
    assert choose_version(o, [V("5.5"), V("5.4")]) == V("5.4")
    o = offer(bytes.fromhex("00080805 00000000 00000000 00000000"))
    assert choose_version(o, [V("5.5"), V("5.3")]) == V("5.3")


def test_manifest_marker_and_padding_are_skipped() -> None:
    assert choose_version(offer(bytes.fromhex("000001FF" + "00" * 12)), SUPPORTED_VERSIONS) is None
    assert choose_version(offer(b"\x00" * 16), SUPPORTED_VERSIONS) is None


def test_range_larger_than_minor_stops_at_zero() -> None:
    o = offer(bytes.fromhex("00090205 00000000 00000000 00000000"))
    assert [str(v) for v in o.versions()] == ["5.2", "5.1", "5.0"]


# -- ServerHandshake --------------------------------------------------------------------------


def feed(hs: ServerHandshake, data: bytes, one_byte: bool) -> None:
    if one_byte:
        for i in range(len(data)):
            hs.receive_data(data[i : i + 1])
    else:
        hs.receive_data(data)


@pytest.mark.parametrize("one_byte", [False, True])
def test_legacy_handshake(one_byte: bool) -> None:
    hs = ServerHandshake()
    feed(hs, MAGIC + JS_5_26[:15], one_byte)
    assert hs.offer() is None
    feed(hs, JS_5_26[15:] + HELLO, one_byte)
    o = hs.offer()
    assert o is not None
    assert o.manifest is False
    reply = hs.respond(SUPPORTED_VERSIONS)
    assert type(reply) is bytes
    assert reply == bytes.fromhex("00000705")
    assert hs.done
    assert hs.version == V("5.7")
    assert not hs.manifest_used
    assert not hs.failed
    assert hs.leftover() == HELLO


@pytest.mark.parametrize("one_byte", [False, True])
def test_manifest_handshake_with_pipelined_hello(one_byte: bool) -> None:
    hs = ServerHandshake()
    feed(hs, MAGIC + PYTHON_6, one_byte)
    reply = hs.respond(SUPPORTED_VERSIONS)
    assert type(reply) is bytes
    assert reply == MANIFEST_REPLY
    assert hs.manifest_used
    assert not hs.done
    assert hs.version is None
    choice = bytes.fromhex("00000805") + encode_varint(0)
    feed(hs, choice[:3], one_byte)
    assert not hs.done
    feed(hs, choice[3:] + HELLO, one_byte)
    assert hs.done
    assert hs.version == V("5.8")
    assert hs.capabilities == 0
    assert hs.leftover() == HELLO


def test_manifest_choice_with_multibyte_capabilities_split_anywhere() -> None:
    choice = bytes.fromhex("00000405") + encode_varint(300) + HELLO
    for cut in range(len(choice) + 1):
        hs = ServerHandshake()
        hs.receive_data(MAGIC + PYTHON_6)
        hs.respond(SUPPORTED_VERSIONS)
        hs.receive_data(choice[:cut])
        hs.receive_data(choice[cut:])
        assert hs.version == V("5.4")
        assert hs.capabilities == 300
        assert hs.leftover() == HELLO


def test_manifest_reply_is_parsed_by_python_driver_rule() -> None:
    # Re-implements the driver's reading of a manifest (ranges are major, minor, minor - range)
    # and checks it picks 5.8 and never 5.5.
    count, pos = decode_varint(MANIFEST_REPLY, 4) or (0, 0)
    offered = set()
    for i in range(count):
        _, rng, minor, major = MANIFEST_REPLY[pos + 4 * i : pos + 4 * i + 4]
        offered |= {Version(major, m) for m in range(minor - rng, minor + 1)}
    assert offered == set(SUPPORTED_VERSIONS)


def test_manifest_choice_not_offered() -> None:
    hs = ServerHandshake()
    hs.receive_data(MAGIC + PYTHON_6)
    hs.respond(SUPPORTED_VERSIONS)
    with pytest.raises(HandshakeError, match=r"5\.5"):
        hs.receive_data(bytes.fromhex("00000505 00"))
    assert hs.failed


def test_manifest_client_finds_nothing() -> None:
    hs = ServerHandshake()
    hs.receive_data(MAGIC + PYTHON_6)
    hs.respond([V("4.1")])
    hs.receive_data(bytes.fromhex("00000000 00"))
    assert hs.done
    assert hs.failed
    assert hs.version is None


@pytest.mark.parametrize("construct", [False, True])
def test_manifest_can_be_turned_off(construct: bool) -> None:
    hs = ServerHandshake(max_versions_manifest=not construct)
    hs.receive_data(MAGIC + PYTHON_6)
    reply = hs.respond(SUPPORTED_VERSIONS, use_manifest=False if not construct else None)
    assert reply == bytes.fromhex("00000805")
    assert hs.version == V("5.8")
    assert not hs.manifest_used


def test_no_common_version() -> None:
    hs = ServerHandshake()
    hs.receive_data(MAGIC + bytes.fromhex("00000003 00000002 00000001 00000000"))
    assert hs.respond(SUPPORTED_VERSIONS) == b"\x00\x00\x00\x00"
    assert hs.done
    assert hs.failed
    assert hs.version is None


def test_respond_before_offer_is_a_usage_error() -> None:
    hs = ServerHandshake()
    hs.receive_data(MAGIC)
    with pytest.raises(RuntimeError):
        hs.respond(SUPPORTED_VERSIONS)
    with pytest.raises(RuntimeError):
        hs.leftover()


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP"),
        (b"POST /db/neo4j/tx HTTP/1.1\r\n", "HTTP"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20, "TLS"),
        (b"\x00\x00\x00\x00" + b"\x00" * 16, "not a Bolt client"),
    ],
)
def test_bad_magic(data: bytes, hint: str) -> None:
    hs = ServerHandshake()
    with pytest.raises(HandshakeError, match=hint):
        hs.receive_data(data)
    with pytest.raises(HandshakeError):
        hs.offer()


def test_bad_magic_is_seen_on_the_first_wrong_byte() -> None:
    hs = ServerHandshake()
    hs.receive_data(b"\x60\x60")
    assert hs.offer() is None
    with pytest.raises(HandshakeError):
        hs.receive_data(b"G")


# -- client side --------------------------------------------------------------------------------


def test_client_proposal_for_supported_versions() -> None:
    assert client_proposal(SUPPORTED_VERSIONS) == MAGIC + bytes.fromhex(
        "00020805 00040405 00030404 00000000"
    )


def test_client_proposal_keeps_the_highest_four_ranges() -> None:
    versions = [V("5.8"), V("5.6"), V("5.4"), V("5.2"), V("5.0")]
    assert client_proposal(versions) == MAGIC + bytes.fromhex("00000805 00000605 00000405 00000205")


def test_client_proposal_is_understood_by_our_server() -> None:
    hs = ServerHandshake()
    hs.receive_data(client_proposal([V("4.4"), V("4.3")]))
    assert hs.respond(SUPPORTED_VERSIONS) == bytes.fromhex("00000404")


def test_parse_server_choice() -> None:
    assert parse_server_choice(bytes.fromhex("00000404")) == V("4.4")
    assert parse_server_choice(bytes.fromhex("00000805"), SUPPORTED_VERSIONS) == V("5.8")
    assert parse_server_choice(b"\x00\x00\x00\x00") is None
    with pytest.raises(HandshakeError, match="HTTP"):
        parse_server_choice(b"HTTP")
    with pytest.raises(HandshakeError, match="manifest"):
        parse_server_choice(bytes.fromhex("000001FF"))
    with pytest.raises(HandshakeError):
        parse_server_choice(bytes.fromhex("00000505"), SUPPORTED_VERSIONS)
    with pytest.raises(HandshakeError):
        parse_server_choice(b"\x00\x00\x04")


# -- varints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (1, "01"), (127, "7F"), (128, "8001"), (300, "AC02"), (1851775, "FF8271")],
)
def test_varint_golden(n: int, encoded: str) -> None:
    assert encode_varint(n) == bytes.fromhex(encoded)
    assert decode_varint(bytes.fromhex(encoded)) == (n, len(encoded) // 2)


def test_varint_incomplete_and_too_long() -> None:
    assert decode_varint(b"\x80") is None
    assert decode_varint(b"") is None
    with pytest.raises(HandshakeError):
        decode_varint(b"\xff" * 11)
    with pytest.raises(ValueError):
        encode_varint(-1)


@given(st.integers(min_value=0, max_value=2**63), st.binary(max_size=4))
def test_varint_roundtrip(n: int, tail: bytes) -> None:
    data = encode_varint(n) + tail
    assert decode_varint(data) == (n, len(data) - len(tail))

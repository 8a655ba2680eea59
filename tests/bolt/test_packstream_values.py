"""Versioned structures (bolt.md §4.1): graph shapes 4.4 vs 5.x, DateTime 'F'/'f' vs 'I'/'i'."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt import values as bv
from bolt.errors import PackStreamError
from bolt.packstream import Packer, StructTag, Structure, hydrate, unpack
from bolt.versions import Version

V44, V50, V58 = Version(4, 4), Version(5, 0), Version(5, 8)

NODE = bv.Node(1, ("Person",), {"name": "A"}, "4:db:1")
NODE_BYTES_4 = bytes.fromhex("B3 4E 01 91 86") + b"Person" + bytes.fromhex("A1 84") + b"name"
NODE_BYTES_4 += bytes.fromhex("81 41")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def s(text: str) -> bytes:
    """A tiny PackStream string."""
    return bytes([0x80 | len(text)]) + text.encode()


def roundtrip(value: Any, version: Version | None, utc_patch: bool = False) -> Any:
    return hydrate(unpack(Packer(version, utc_patch).pack(value)))


# -- graph structures ---------------------------------------------------------------------------


def test_node_golden_from_the_notes() -> None:
    assert Packer(V44).pack(NODE) == NODE_BYTES_4
    assert Packer(V50).pack(NODE) == h("B4") + NODE_BYTES_4[1:] + s("4:db:1")


def test_node_without_element_id_uses_str_id() -> None:
    node = bv.Node(42, (), {})
    assert Packer(V58).pack(node) == h("B4 4E 2A 90 A0") + s("42")
    assert Packer(None).pack(node) == Packer(V58).pack(node)  # no version: newest shapes


def test_relationship_shapes() -> None:
    rel = bv.Relationship(5, 1, 2, "KNOWS", {}, "r5", "n1", "")
    assert Packer(V44).pack(rel) == h("B5 52 05 01 02") + s("KNOWS") + h("A0")
    assert Packer(V50).pack(rel) == (
        h("B8 52 05 01 02") + s("KNOWS") + h("A0") + s("r5") + s("n1") + s("2")
    )


def test_unbound_relationship_shapes() -> None:
    rel = bv.UnboundRelationship(7, "T", {"w": 1})
    assert Packer(V44).pack(rel) == h("B3 72 07") + s("T") + h("A1") + s("w") + h("01")
    assert Packer(V50).pack(rel) == h("B4 72 07") + s("T") + h("A1") + s("w") + h("01") + s("7")


def test_path_shape() -> None:
    a, b = bv.Node(1, ("A",), {}), bv.Node(2, ("B",), {})
    r = bv.UnboundRelationship(9, "R", {})
    path = bv.Path((a, b), (r,), (1, 1))
    p44 = Packer(V44)
    assert p44.pack(path) == (
        h("B3 50 92") + p44.pack(a) + p44.pack(b) + h("91") + p44.pack(r) + h("92 01 01")
    )
    assert Packer(V50).pack(path)[:3] == h("B3 50 92")


@pytest.mark.parametrize("version", [V44, V50, V58])
def test_graph_roundtrip(version: Version) -> None:
    a = bv.Node(1, ("A", "B"), {"x": [1, 2]}, "e1")
    b = bv.Node(2, (), {}, "e2")
    r = bv.UnboundRelationship(3, "R", {}, "e3")
    rel = bv.Relationship(3, 1, 2, "R", {"since": bv.Date(1)}, "e3", "e1", "e2")
    path = bv.Path((a, b), (r,), (-1, 1))
    got = roundtrip([a, rel, path], version)
    if version >= V50:
        assert got == [a, rel, path]
    else:  # 4.x has no element ids: they come back empty
        assert got == [
            bv.Node(1, ("A", "B"), {"x": [1, 2]}),
            bv.Relationship(3, 1, 2, "R", {"since": bv.Date(1)}),
            bv.Path((bv.Node(1, ("A", "B"), {"x": [1, 2]}), bv.Node(2, (), {})),
                    (bv.UnboundRelationship(3, "R", {}),), (-1, 1)),
        ]  # fmt: skip


# -- temporal and spatial -----------------------------------------------------------------------

# 2024-07-01T12:00:00+02:00 = 10:00 UTC
UTC_SECONDS = 1719828000
LOCAL_SECONDS = UTC_SECONDS + 7200
DATETIME = bv.DateTime(UTC_SECONDS, 5, 7200)


def test_datetime_legacy_f_on_4_4() -> None:
    assert Packer(V44).pack(DATETIME) == (
        h("B3 46 CA") + LOCAL_SECONDS.to_bytes(4, "big") + h("05 C9 1C 20")
    )


@pytest.mark.parametrize(("version", "patch"), [(V44, True), (V50, False), (V58, False)])
def test_datetime_utc_i(version: Version, patch: bool) -> None:
    assert Packer(version, utc_patch=patch).pack(DATETIME) == (
        h("B3 49 CA") + UTC_SECONDS.to_bytes(4, "big") + h("05 C9 1C 20")
    )


@pytest.mark.parametrize(("version", "patch"), [(V44, False), (V44, True), (V50, False)])
def test_datetime_roundtrip_keeps_utc_seconds(version: Version, patch: bool) -> None:
    value = bv.DateTime(-86400 * 365, 999_999_999, -5 * 3600)
    assert roundtrip(value, version, patch) == value
    assert roundtrip(DATETIME, version, patch) == DATETIME


BERLIN_SUMMER = datetime(2024, 7, 1, 12, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
BERLIN_WINTER = datetime(2024, 1, 15, 12, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(("when", "offset"), [(BERLIN_SUMMER, 7200), (BERLIN_WINTER, 3600)])
def test_zone_id_legacy_uses_the_offset_at_that_instant(when: datetime, offset: int) -> None:
    utc = int(when.timestamp())
    value = bv.DateTimeZoneId(utc, 0, "Europe/Berlin")
    legacy = unpack(Packer(V44).pack(value))
    assert legacy == Structure(0x66, (utc + offset, 0, "Europe/Berlin"))
    modern = unpack(Packer(V50).pack(value))
    assert modern == Structure(0x69, (utc, 0, "Europe/Berlin"))
    assert unpack(Packer(V44, utc_patch=True).pack(value)) == modern
    assert hydrate(legacy) == value
    assert hydrate(modern) == value


@pytest.mark.parametrize("when", [BERLIN_SUMMER, BERLIN_WINTER])
def test_zone_id_legacy_seconds_are_the_wall_clock(when: datetime) -> None:
    # Independent oracle: the wall-clock reading as if it were UTC (what the drivers send).
    # (The neo4j driver's own dehydrator was used here once; it segfaults inside zoneinfo.)
    wall = int((when.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds())
    value = bv.DateTimeZoneId(int(when.timestamp()), 0, "Europe/Berlin")
    assert unpack(Packer(V44).pack(value)).fields == (wall, 0, "Europe/Berlin")


def test_zone_id_ambiguous_wall_clock_takes_the_earlier_offset() -> None:
    # 2024-10-27 02:30 happens twice in Berlin. The legacy 'f' format only has the wall clock,
    # so the second occurrence comes back as the first; re-packing gives the same bytes.
    first = bv.DateTimeZoneId(int(datetime(2024, 10, 27, 0, 30, tzinfo=ZoneInfo("UTC"))
                                  .timestamp()), 0, "Europe/Berlin")  # fmt: skip
    second = bv.DateTimeZoneId(first.seconds + 3600, 0, "Europe/Berlin")
    p = Packer(V44)
    assert p.pack(first) == p.pack(second)
    assert roundtrip(second, V44) == first


@settings(max_examples=150)
@given(
    st.integers(min_value=-(10**10), max_value=10**10),
    st.integers(min_value=0, max_value=999_999_999),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC",
                     "Asia/Kathmandu", "America/Sao_Paulo"]),
)  # fmt: skip
def test_zone_id_legacy_pack_is_stable(seconds: int, nanos: int, tz: str) -> None:
    value = bv.DateTimeZoneId(seconds, nanos, tz)
    p = Packer(V44)
    once = p.pack(value)
    assert p.pack(hydrate(unpack(once))) == once
    assert roundtrip(value, V50) == value


def test_unknown_zone() -> None:
    with pytest.raises(PackStreamError, match="zone"):
        Packer(V44).pack(bv.DateTimeZoneId(0, 0, "Mars/Olympus_Mons"))
    assert Packer(V50).pack(bv.DateTimeZoneId(0, 0, "Mars/Olympus_Mons"))  # passed through
    with pytest.raises(PackStreamError, match="zone"):
        hydrate(Structure(0x66, (0, 0, "Mars/Olympus_Mons")))


SIMPLE_VALUES = [
    (bv.Date(19000), "B1 44 C9 4A 38"),
    (bv.Time(3_600_000_000_000, 3600), "B2 54 CB 00 00 03 46 30 B8 A0 00 C9 0E 10"),
    (bv.LocalTime(1), "B1 74 01"),
    (bv.LocalDateTime(-1, 2), "B2 64 FF 02"),
    (bv.Duration(1, 2, 3, 4), "B4 45 01 02 03 04"),
    (bv.Point2D(7203, 1.0, 2.0), "B3 58 C9 1C 23 C1 3FF0000000000000 C1 4000000000000000"),
    (bv.Point3D(9157, 1.0, 2.0, 3.0),
     "B4 59 C9 23 C5 C1 3FF0000000000000 C1 4000000000000000 C1 4008000000000000"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "encoded"), SIMPLE_VALUES)
@pytest.mark.parametrize("version", [V44, V50])
def test_unversioned_values(value: Any, encoded: str, version: Version) -> None:
    assert Packer(version).pack(value) == h(encoded)
    assert roundtrip(value, version) == value


def test_points_with_int_coordinates() -> None:
    assert hydrate(Structure(0x58, (7203, 1, 2))) == bv.Point2D(7203, 1.0, 2.0)
    assert Packer().pack(bv.Point2D(7203, 1, 2)) == Packer().pack(bv.Point2D(7203, 1.0, 2.0))


# -- hydrate ----------------------------------------------------------------------------------


def test_hydrate_is_copy_on_write() -> None:
    plain = {"a": [1, 2, {"b": "c"}], "d": None}
    assert hydrate(plain) is plain
    mixed: dict[str, list[Any]] = {"a": [1, Structure(0x44, (1,))], "b": [2]}
    out = hydrate(mixed)
    assert out == {"a": [1, bv.Date(1)], "b": [2]}
    assert out["b"] is mixed["b"]
    assert mixed["a"][1] == Structure(0x44, (1,))  # input untouched


def test_unknown_tags_stay_structures() -> None:
    vector = Structure(0x56, (b"\xc8", b"\x01\x02"))
    assert hydrate([vector]) == [vector]


@pytest.mark.parametrize(
    "bad",
    [
        Structure(StructTag.NODE, (1, [])),
        Structure(StructTag.NODE, (1, [1], {})),
        Structure(StructTag.NODE, ("1", [], {})),
        Structure(StructTag.RELATIONSHIP, (1, 2, 3, "T")),
        Structure(StructTag.UNBOUND_RELATIONSHIP, (1, 2, {})),
        Structure(StructTag.PATH, ([1], [], [])),
        Structure(StructTag.PATH, ([], [Structure(StructTag.NODE, (1, [], {}))], [])),
        Structure(StructTag.PATH, ([], [], ["x"])),
        Structure(StructTag.DATE, ("2024-01-01",)),
        Structure(StructTag.DATE, (True,)),
        Structure(StructTag.TIME, (1,)),
        Structure(StructTag.DATE_TIME, (1, 2, None)),
        Structure(StructTag.DATE_TIME_ZONE_ID, (1, 2, 3)),
        Structure(StructTag.DURATION, (1, 2, 3)),
        Structure(StructTag.POINT_2D, (1, "x", 2.0)),
    ],
)
def test_known_tags_with_wrong_shape(bad: Structure) -> None:
    with pytest.raises(PackStreamError):
        hydrate({"p": [bad]})


def test_hydrate_nested_in_graph_properties() -> None:
    node = Structure(0x4E, (1, ["L"], {"born": Structure(0x44, (5,))}))
    assert hydrate(node) == bv.Node(1, ("L",), {"born": bv.Date(5)})

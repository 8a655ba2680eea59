"""PackStream v1: Python values <-> bytes, and structures <-> ``bolt.values`` (bolt.md §4, §4.1).

Three layers, usable one at a time:

* ``unpack`` / ``Unpacker`` turn bytes into plain values. Structures come back as ``Structure``
  (tag + fields) with no interpretation, because the same tag byte means different things at
  message level (0x54 TELEMETRY) and at value level (0x54 Time).
* ``hydrate`` turns value-level structures into ``bolt.values`` types (Node, DateTime...).
* ``Packer`` does both inverse steps at once: it writes ``bolt.values`` in the structure shape
  of the negotiated version (3- vs 4-field Node, 'F' local seconds vs 'I' UTC seconds...).

Both directions sit on the relay's hot path (records out, RUN parameters in), so the code
dispatches on exact ``type()`` first, uses precompiled ``struct`` formats, and decodes straight
from one ``bytes`` object with an integer position instead of slicing per value.

Decoding limits: nesting deeper than ``max_depth`` raises ``NestingTooDeep``; every length is
checked against the bytes actually present, so a lying header fails fast instead of allocating.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bolt import values as bv
from bolt.errors import NestingTooDeep, PackStreamError
from bolt.versions import Version, has_element_ids

DEFAULT_MAX_DEPTH = 64


class StructTag(enum.IntEnum):
    """Value-level structure tags (Bolt "Structure Semantics")."""

    NODE = 0x4E  # 'N': id, labels, properties [, element_id 5.0+]
    RELATIONSHIP = 0x52  # 'R': id, start, end, type, properties [, 3 element ids 5.0+]
    UNBOUND_RELATIONSHIP = 0x72  # 'r': id, type, properties [, element_id 5.0+]
    PATH = 0x50  # 'P': nodes, unbound relationships, indices
    DATE = 0x44  # 'D': days since the epoch
    TIME = 0x54  # 'T': nanoseconds since local midnight, tz offset seconds
    LOCAL_TIME = 0x74  # 't': nanoseconds since midnight
    LOCAL_DATE_TIME = 0x64  # 'd': seconds, nanoseconds (wall clock as if UTC)
    DATE_TIME = 0x49  # 'I' (5.0+ / 4.4 utc patch): UTC seconds, nanoseconds, tz offset
    DATE_TIME_ZONE_ID = 0x69  # 'i' (5.0+ / 4.4 utc patch): UTC seconds, nanoseconds, tz id
    LEGACY_DATE_TIME = 0x46  # 'F' (<5.0): local seconds, nanoseconds, tz offset
    LEGACY_DATE_TIME_ZONE_ID = 0x66  # 'f' (<5.0): local seconds, nanoseconds, tz id
    DURATION = 0x45  # 'E': months, days, seconds, nanoseconds
    POINT_2D = 0x58  # 'X': srid, x, y
    POINT_3D = 0x59  # 'Y': srid, x, y, z


@dataclass(frozen=True, slots=True)
class Structure:
    """A PackStream structure left uninterpreted: a tag byte and its fields."""

    tag: int
    fields: tuple[Any, ...]


# -- packing ----------------------------------------------------------------------------------

_INT8 = struct.Struct(">Bb")
_INT16 = struct.Struct(">Bh")
_INT32 = struct.Struct(">Bi")
_INT64 = struct.Struct(">Bq")
_FLOAT = struct.Struct(">Bd")
_LEN8 = struct.Struct(">BB")
_LEN16 = struct.Struct(">BH")
_LEN32 = struct.Struct(">BI")

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def _zone(tz_id: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz_id)  # ZoneInfo caches instances itself
    except (ZoneInfoNotFoundError, ValueError):
        raise PackStreamError(f"unknown time zone {tz_id!r}") from None


def _offset_at_utc(tz_id: str, utc_seconds: int) -> int:
    """The zone's UTC offset (seconds) at an instant."""
    try:
        local = (_EPOCH + timedelta(seconds=utc_seconds)).astimezone(_zone(tz_id))
    except OverflowError:
        raise PackStreamError("instant outside the range of a legacy zone DateTime") from None
    offset = local.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _offset_at_local(tz_id: str, local_seconds: int) -> int:
    """The zone's UTC offset for a wall-clock time. Ambiguous times take the earlier offset
    (``fold=0``), gaps the offset before the transition: the legacy format cannot say more."""
    try:
        naive = _EPOCH_NAIVE + timedelta(seconds=local_seconds)
    except OverflowError:
        raise PackStreamError("wall-clock time outside the supported range") from None
    offset = naive.replace(tzinfo=_zone(tz_id)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


class Packer:
    """Encode Python values and ``bolt.values`` for one protocol version.

    ``version=None`` means the newest shapes (5.x). ``utc_patch``: the 4.x session agreed on
    ``patch_bolt: ["utc"]``, so DateTimes use the 5.0 'I'/'i' tags with UTC seconds.
    Packs None, bool, int (64-bit), float, str, bytes/bytearray, list/tuple, dict with str keys,
    ``Structure`` and every ``bolt.values`` type; anything else is a ``PackStreamError``.
    """

    __slots__ = ("_dispatch", "_element_ids", "_utc", "utc_patch", "version")

    def __init__(self, version: Version | None = None, utc_patch: bool = False) -> None:
        self.version = version
        self.utc_patch = utc_patch
        self._element_ids = version is None or has_element_ids(version)
        self._utc = self._element_ids or utc_patch
        self._dispatch: dict[type, Callable[[bytearray, Any], None]] = {
            bv.Node: self._node,
            bv.Relationship: self._relationship,
            bv.UnboundRelationship: self._unbound,
            bv.Path: self._path,
            bv.Date: self._date,
            bv.Time: self._time,
            bv.LocalTime: self._local_time,
            bv.LocalDateTime: self._local_date_time,
            bv.DateTime: self._date_time,
            bv.DateTimeZoneId: self._date_time_zone_id,
            bv.Duration: self._duration,
            bv.Point2D: self._point2d,
            bv.Point3D: self._point3d,
        }

    def pack(self, value: Any) -> bytes:
        """The PackStream bytes of ``value``."""
        out = bytearray()
        self.pack_into(out, value)
        return bytes(out)

    def pack_into(self, out: bytearray, value: Any) -> None:
        """Append the PackStream bytes of ``value`` to ``out``."""
        try:
            self._pack(out, value)
        except RecursionError:
            raise PackStreamError("value is nested too deeply (or contains itself)") from None
        except UnicodeEncodeError as exc:
            raise PackStreamError(f"string is not encodable as UTF-8: {exc}") from None

    def _pack(self, out: bytearray, value: Any) -> None:
        # Exact-type checks first, in rough order of frequency in records and metadata; bool
        # must never reach the int branch (it is an int subclass), hence ``is`` not isinstance.
        t = type(value)
        if t is str:
            _pack_str(out, value)
        elif t is int:
            _pack_int(out, value)
        elif value is None:
            out.append(0xC0)
        elif t is dict:
            self._pack_dict(out, value)
        elif t is list or t is tuple:
            self._pack_list(out, value)
        elif t is float:
            out += _FLOAT.pack(0xC1, value)
        elif t is bool:
            out.append(0xC3 if value else 0xC2)
        elif t is bytes or t is bytearray:
            _pack_bytes(out, value)
        elif t is Structure:
            self._pack_struct(out, value.tag, value.fields)
        else:
            handler = self._dispatch.get(t)
            if handler is not None:
                handler(out, value)
            else:
                self._pack_subclass(out, value)

    def _pack_subclass(self, out: bytearray, value: Any) -> None:
        # Subclasses (IntEnum, OrderedDict, str enums...) are rare; isinstance only here.
        if isinstance(value, bool):
            out.append(0xC3 if value else 0xC2)
        elif isinstance(value, int):
            _pack_int(out, int(value))
        elif isinstance(value, float):
            out += _FLOAT.pack(0xC1, value)
        elif isinstance(value, str):
            _pack_str(out, str(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            _pack_bytes(out, bytes(value))
        elif isinstance(value, dict):
            self._pack_dict(out, value)
        elif isinstance(value, (list, tuple)):
            self._pack_list(out, value)
        else:
            raise PackStreamError(f"cannot pack a value of type {type(value).__name__}")

    def _pack_list(self, out: bytearray, value: list[Any] | tuple[Any, ...]) -> None:
        n = len(value)
        if n < 0x10:
            out.append(0x90 | n)
        elif n < 0x100:
            out += _LEN8.pack(0xD4, n)
        elif n < 0x10000:
            out += _LEN16.pack(0xD5, n)
        elif n < 0x100000000:
            out += _LEN32.pack(0xD6, n)
        else:
            raise PackStreamError("list too long for PackStream")
        pack = self._pack
        for item in value:
            pack(out, item)

    def _pack_dict(self, out: bytearray, value: dict[Any, Any]) -> None:
        n = len(value)
        if n < 0x10:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += _LEN8.pack(0xD8, n)
        elif n < 0x10000:
            out += _LEN16.pack(0xD9, n)
        elif n < 0x100000000:
            out += _LEN32.pack(0xDA, n)
        else:
            raise PackStreamError("dictionary too large for PackStream")
        pack = self._pack
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise PackStreamError(
                        f"dictionary keys must be strings, got {type(key).__name__}"
                    )
                key = str(key)
            _pack_str(out, key)
            pack(out, item)

    def _pack_struct(self, out: bytearray, tag: int, fields: tuple[Any, ...]) -> None:
        n = len(fields)
        if n > 15:
            raise PackStreamError(f"a structure holds at most 15 fields, got {n}")
        if not 0 <= tag <= 0xFF:
            raise PackStreamError(f"structure tag {tag} is not a byte")
        out.append(0xB0 | n)
        out.append(tag)
        pack = self._pack
        for field in fields:
            pack(out, field)

    # bolt.values, in the shape of the negotiated version (bolt.md §4.1)

    def _node(self, out: bytearray, v: bv.Node) -> None:
        if self._element_ids:
            out += b"\xb4\x4e"
        else:
            out += b"\xb3\x4e"
        _pack_int(out, v.id)
        self._pack_list(out, v.labels)
        self._pack_dict(out, v.properties)
        if self._element_ids:
            _pack_str(out, v.element_id or str(v.id))

    def _relationship(self, out: bytearray, v: bv.Relationship) -> None:
        out += b"\xb8\x52" if self._element_ids else b"\xb5\x52"
        _pack_int(out, v.id)
        _pack_int(out, v.start_node_id)
        _pack_int(out, v.end_node_id)
        _pack_str(out, v.type)
        self._pack_dict(out, v.properties)
        if self._element_ids:
            _pack_str(out, v.element_id or str(v.id))
            _pack_str(out, v.start_node_element_id or str(v.start_node_id))
            _pack_str(out, v.end_node_element_id or str(v.end_node_id))

    def _unbound(self, out: bytearray, v: bv.UnboundRelationship) -> None:
        out += b"\xb4\x72" if self._element_ids else b"\xb3\x72"
        _pack_int(out, v.id)
        _pack_str(out, v.type)
        self._pack_dict(out, v.properties)
        if self._element_ids:
            _pack_str(out, v.element_id or str(v.id))

    def _path(self, out: bytearray, v: bv.Path) -> None:
        out += b"\xb3\x50"
        self._pack_list(out, v.nodes)
        self._pack_list(out, v.relationships)
        self._pack_list(out, v.indices)

    def _date(self, out: bytearray, v: bv.Date) -> None:
        out += b"\xb1\x44"
        _pack_int(out, v.days)

    def _time(self, out: bytearray, v: bv.Time) -> None:
        out += b"\xb2\x54"
        _pack_int(out, v.nanoseconds)
        _pack_int(out, v.tz_offset_seconds)

    def _local_time(self, out: bytearray, v: bv.LocalTime) -> None:
        out += b"\xb1\x74"
        _pack_int(out, v.nanoseconds)

    def _local_date_time(self, out: bytearray, v: bv.LocalDateTime) -> None:
        out += b"\xb2\x64"
        _pack_int(out, v.seconds)
        _pack_int(out, v.nanoseconds)

    def _date_time(self, out: bytearray, v: bv.DateTime) -> None:
        if self._utc:
            out += b"\xb3\x49"
            _pack_int(out, v.seconds)
        else:  # legacy 'F': the wall-clock seconds at that offset
            out += b"\xb3\x46"
            _pack_int(out, v.seconds + v.tz_offset_seconds)
        _pack_int(out, v.nanoseconds)
        _pack_int(out, v.tz_offset_seconds)

    def _date_time_zone_id(self, out: bytearray, v: bv.DateTimeZoneId) -> None:
        if self._utc:
            out += b"\xb3\x69"
            _pack_int(out, v.seconds)
        else:  # legacy 'f': wall-clock seconds in that zone at that instant
            out += b"\xb3\x66"
            _pack_int(out, v.seconds + _offset_at_utc(v.tz_id, v.seconds))
        _pack_int(out, v.nanoseconds)
        _pack_str(out, v.tz_id)

    def _duration(self, out: bytearray, v: bv.Duration) -> None:
        out += b"\xb4\x45"
        _pack_int(out, v.months)
        _pack_int(out, v.days)
        _pack_int(out, v.seconds)
        _pack_int(out, v.nanoseconds)

    def _point2d(self, out: bytearray, v: bv.Point2D) -> None:
        out += b"\xb3\x58"
        _pack_int(out, v.srid)
        out += _FLOAT.pack(0xC1, float(v.x))
        out += _FLOAT.pack(0xC1, float(v.y))

    def _point3d(self, out: bytearray, v: bv.Point3D) -> None:
        out += b"\xb4\x59"
        _pack_int(out, v.srid)
        out += _FLOAT.pack(0xC1, float(v.x))
        out += _FLOAT.pack(0xC1, float(v.y))
        out += _FLOAT.pack(0xC1, float(v.z))


def _pack_int(out: bytearray, v: int) -> None:
    # Smallest encoding always: decoders accept wider ones, but tiny ints are what Neo4j sends.
    if -0x10 <= v < 0x80:
        out.append(v & 0xFF)  # tiny int: 00..7F, F0..FF
    elif -0x80 <= v < 0x80:
        out += _INT8.pack(0xC8, v)
    elif -0x8000 <= v < 0x8000:
        out += _INT16.pack(0xC9, v)
    elif -0x80000000 <= v < 0x80000000:
        out += _INT32.pack(0xCA, v)
    elif _I64_MIN <= v <= _I64_MAX:
        out += _INT64.pack(0xCB, v)
    else:
        raise PackStreamError(f"integer {v} does not fit in 64 bits")


def _pack_str(out: bytearray, v: str) -> None:
    b = v.encode()
    n = len(b)
    if n < 0x10:
        out.append(0x80 | n)
    elif n < 0x100:
        out += _LEN8.pack(0xD0, n)
    elif n < 0x10000:
        out += _LEN16.pack(0xD1, n)
    elif n < 0x100000000:
        out += _LEN32.pack(0xD2, n)
    else:
        raise PackStreamError("string too long for PackStream")
    out += b


def _pack_bytes(out: bytearray, v: bytes | bytearray) -> None:
    n = len(v)
    if n < 0x100:
        out += _LEN8.pack(0xCC, n)
    elif n < 0x10000:
        out += _LEN16.pack(0xCD, n)
    elif n < 0x100000000:
        out += _LEN32.pack(0xCE, n)
    else:
        raise PackStreamError("byte array too long for PackStream")
    out += v


# -- unpacking --------------------------------------------------------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_S8 = struct.Struct(">b")
_S16 = struct.Struct(">h")
_S32 = struct.Struct(">i")
_S64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


class _Truncated(Exception):
    """Internal: a length ran past the end of the data (converted at the entry points)."""


def _decode(data: bytes, pos: int, depth: int, max_depth: int) -> tuple[Any, int]:
    """Decode one value at ``pos``: ``(value, position after it)``.

    Reading past the end raises IndexError / struct.error / _Truncated, converted to
    ``PackStreamError`` by the callers (``_run``) so the common path carries no checks.
    """
    m = data[pos]
    pos += 1
    if m < 0x80:  # tiny positive int
        return m, pos
    if m >= 0xF0:  # tiny negative int
        return m - 0x100, pos
    if m < 0x90:  # tiny string
        end = pos + (m & 0x0F)
        if end > len(data):
            raise _Truncated
        return data[pos:end].decode(), end
    if m < 0xA0:
        return _decode_list(data, pos, m & 0x0F, depth, max_depth)
    if m < 0xB0:
        return _decode_dict(data, pos, m & 0x0F, depth, max_depth)
    if m < 0xC0:
        return _decode_struct(data, pos, m & 0x0F, depth, max_depth)
    if m == 0xC0:
        return None, pos
    if m == 0xC1:
        return _F64.unpack_from(data, pos)[0], pos + 8
    if m == 0xC2:
        return False, pos
    if m == 0xC3:
        return True, pos
    if m == 0xC8:
        return _S8.unpack_from(data, pos)[0], pos + 1
    if m == 0xC9:
        return _S16.unpack_from(data, pos)[0], pos + 2
    if m == 0xCA:
        return _S32.unpack_from(data, pos)[0], pos + 4
    if m == 0xCB:
        return _S64.unpack_from(data, pos)[0], pos + 8
    if 0xD0 <= m <= 0xD2 or 0xCC <= m <= 0xCE:
        if m == 0xD0 or m == 0xCC:
            n = data[pos]
            pos += 1
        elif m == 0xD1 or m == 0xCD:
            n = _U16.unpack_from(data, pos)[0]
            pos += 2
        else:
            n = _U32.unpack_from(data, pos)[0]
            pos += 4
        end = pos + n
        if end > len(data):
            raise _Truncated
        if m >= 0xD0:
            return data[pos:end].decode(), end
        return data[pos:end], end
    if 0xD4 <= m <= 0xD6 or 0xD8 <= m <= 0xDA:
        if m == 0xD4 or m == 0xD8:
            n = data[pos]
            pos += 1
        elif m == 0xD5 or m == 0xD9:
            n = _U16.unpack_from(data, pos)[0]
            pos += 2
        else:
            n = _U32.unpack_from(data, pos)[0]
            pos += 4
        if m <= 0xD6:
            return _decode_list(data, pos, n, depth, max_depth)
        return _decode_dict(data, pos, n, depth, max_depth)
    raise PackStreamError(f"unknown PackStream marker 0x{m:02X}")


def _decode_list(data: bytes, pos: int, n: int, depth: int, max_depth: int) -> tuple[Any, int]:
    if depth >= max_depth:
        raise NestingTooDeep(f"values nested deeper than {max_depth} levels")
    if n > len(data) - pos:  # every item takes at least one byte
        raise _Truncated
    depth += 1
    items: list[Any] = []
    append = items.append
    for _ in range(n):
        m = data[pos]
        if m < 0x80:  # tiny ints dominate lists of ids and counts: skip the call
            append(m)
            pos += 1
        else:
            value, pos = _decode(data, pos, depth, max_depth)
            append(value)
    return items, pos


def _decode_dict(data: bytes, pos: int, n: int, depth: int, max_depth: int) -> tuple[Any, int]:
    if depth >= max_depth:
        raise NestingTooDeep(f"values nested deeper than {max_depth} levels")
    if n * 2 > len(data) - pos:  # every entry takes at least two bytes
        raise _Truncated
    depth += 1
    result = {}
    for _ in range(n):
        m = data[pos]
        if 0x80 <= m < 0x90:  # tiny string key: nearly every key in Bolt metadata
            end = pos + 1 + (m & 0x0F)
            if end > len(data):
                raise _Truncated
            key = data[pos + 1 : end].decode()
            pos = end
        else:
            key, pos = _decode(data, pos, depth, max_depth)
            if type(key) is not str:
                raise PackStreamError(f"dictionary key must be a string, got {type(key).__name__}")
        result[key], pos = _decode(data, pos, depth, max_depth)  # duplicate key: last wins
    return result, pos


def _decode_struct(data: bytes, pos: int, n: int, depth: int, max_depth: int) -> tuple[Any, int]:
    if depth >= max_depth:
        raise NestingTooDeep(f"values nested deeper than {max_depth} levels")
    tag = data[pos]
    pos += 1
    depth += 1
    fields = []
    for _ in range(n):
        value, pos = _decode(data, pos, depth, max_depth)
        fields.append(value)
    return Structure(tag, tuple(fields)), pos


def _run(data: bytes, pos: int, max_depth: int) -> tuple[Any, int]:
    """``_decode`` with every low-level failure turned into a ``PackStreamError``."""
    try:
        return _decode(data, pos, 0, max_depth)
    except (IndexError, struct.error, _Truncated):
        raise PackStreamError("truncated PackStream data") from None
    except UnicodeDecodeError:
        raise PackStreamError("string is not valid UTF-8") from None
    except RecursionError:
        raise NestingTooDeep("values nested too deeply") from None


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if type(data) is bytes else bytes(data)


def unpack(data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode exactly one value; trailing bytes are an error. Structures stay ``Structure``."""
    buf = _as_bytes(data)
    value, pos = _run(buf, 0, max_depth)
    if pos != len(buf):
        raise PackStreamError(f"{len(buf) - pos} trailing bytes after a PackStream value")
    return value


def unpack_all(
    data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[Any]:
    """Decode a sequence of values that fills ``data`` exactly."""
    unpacker = Unpacker(data, max_depth=max_depth)
    values = []
    while unpacker.remaining:
        values.append(unpacker.unpack())
    return values


class Unpacker:
    """Read values one after another from a buffer (e.g. the fields of a message)."""

    __slots__ = ("_data", "_max_depth", "position")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._data = _as_bytes(data)
        self._max_depth = max_depth
        self.position = offset

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self.position

    def unpack(self) -> Any:
        """The next value. Raises ``PackStreamError`` if the data ends inside it."""
        value, self.position = _run(self._data, self.position, self._max_depth)
        return value

    def structure_header(self) -> tuple[int, int]:
        """Read a structure marker and tag: ``(field count, tag)``; the fields follow."""
        data = self._data
        pos = self.position
        if pos + 2 > len(data):
            raise PackStreamError("truncated PackStream data")
        m = data[pos]
        if not 0xB0 <= m <= 0xBF:
            raise PackStreamError(f"expected a structure, found marker 0x{m:02X}")
        self.position = pos + 2
        return m & 0x0F, data[pos + 1]


# -- hydration: structures -> bolt.values -----------------------------------------------------

# Field-type signatures per tag, as Python types in order. Counts with alternatives list each
# accepted shape (4.x and 5.x graph structures); both shapes are accepted in every version
# because the field count says which one arrived (the Python driver does the same).
_INT = (int,)
_STR = (str,)
_LIST = (list,)
_DICT = (dict,)
_NUM = (float, int)


def _check(s: Structure, name: str, *shapes: tuple[tuple[type, ...], ...]) -> tuple[Any, ...]:
    fields = s.fields
    for shape in shapes:
        if len(shape) == len(fields):
            for value, allowed in zip(fields, shape, strict=True):
                if type(value) not in allowed:
                    raise PackStreamError(
                        f"{name} structure field has type {type(value).__name__}, expected "
                        + " or ".join(t.__name__ for t in allowed)
                    )
            return fields
    counts = " or ".join(str(len(shape)) for shape in shapes)
    raise PackStreamError(f"{name} structure needs {counts} fields, got {len(fields)}")


def _h_node(s: Structure, h: _Hydrator) -> bv.Node:
    f = _check(s, "Node", (_INT, _LIST, _DICT), (_INT, _LIST, _DICT, _STR))
    labels = f[1]
    if any(type(label) is not str for label in labels):
        raise PackStreamError("Node labels must be strings")
    return bv.Node(f[0], tuple(labels), h(f[2]), f[3] if len(f) == 4 else "")


def _h_relationship(s: Structure, h: _Hydrator) -> bv.Relationship:
    f = _check(
        s,
        "Relationship",
        (_INT, _INT, _INT, _STR, _DICT),
        (_INT, _INT, _INT, _STR, _DICT, _STR, _STR, _STR),
    )
    if len(f) == 8:
        return bv.Relationship(f[0], f[1], f[2], f[3], h(f[4]), f[5], f[6], f[7])
    return bv.Relationship(f[0], f[1], f[2], f[3], h(f[4]))


def _h_unbound(s: Structure, h: _Hydrator) -> bv.UnboundRelationship:
    f = _check(s, "UnboundRelationship", (_INT, _STR, _DICT), (_INT, _STR, _DICT, _STR))
    return bv.UnboundRelationship(f[0], f[1], h(f[2]), f[3] if len(f) == 4 else "")


def _h_path(s: Structure, h: _Hydrator) -> bv.Path:
    f = _check(s, "Path", (_LIST, _LIST, _LIST))
    nodes = tuple(h(n) for n in f[0])
    rels = tuple(h(r) for r in f[1])
    if not all(type(n) is bv.Node for n in nodes):
        raise PackStreamError("Path nodes must be Node structures")
    if not all(type(r) is bv.UnboundRelationship for r in rels):
        raise PackStreamError("Path relationships must be UnboundRelationship structures")
    if not all(type(i) is int for i in f[2]):
        raise PackStreamError("Path indices must be integers")
    return bv.Path(nodes, rels, tuple(f[2]))


def _h_date(s: Structure, h: _Hydrator) -> bv.Date:
    return bv.Date(*_check(s, "Date", (_INT,)))


def _h_time(s: Structure, h: _Hydrator) -> bv.Time:
    return bv.Time(*_check(s, "Time", (_INT, _INT)))


def _h_local_time(s: Structure, h: _Hydrator) -> bv.LocalTime:
    return bv.LocalTime(*_check(s, "LocalTime", (_INT,)))


def _h_local_date_time(s: Structure, h: _Hydrator) -> bv.LocalDateTime:
    return bv.LocalDateTime(*_check(s, "LocalDateTime", (_INT, _INT)))


def _h_date_time(s: Structure, h: _Hydrator) -> bv.DateTime:
    return bv.DateTime(*_check(s, "DateTime", (_INT, _INT, _INT)))


def _h_legacy_date_time(s: Structure, h: _Hydrator) -> bv.DateTime:
    local, nanos, offset = _check(s, "DateTime", (_INT, _INT, _INT))
    return bv.DateTime(local - offset, nanos, offset)


def _h_date_time_zone_id(s: Structure, h: _Hydrator) -> bv.DateTimeZoneId:
    return bv.DateTimeZoneId(*_check(s, "DateTimeZoneId", (_INT, _INT, _STR)))


def _h_legacy_date_time_zone_id(s: Structure, h: _Hydrator) -> bv.DateTimeZoneId:
    local, nanos, tz_id = _check(s, "DateTimeZoneId", (_INT, _INT, _STR))
    return bv.DateTimeZoneId(local - _offset_at_local(tz_id, local), nanos, tz_id)


def _h_duration(s: Structure, h: _Hydrator) -> bv.Duration:
    return bv.Duration(*_check(s, "Duration", (_INT, _INT, _INT, _INT)))


def _h_point2d(s: Structure, h: _Hydrator) -> bv.Point2D:
    srid, x, y = _check(s, "Point2D", (_INT, _NUM, _NUM))
    return bv.Point2D(srid, float(x), float(y))


def _h_point3d(s: Structure, h: _Hydrator) -> bv.Point3D:
    srid, x, y, z = _check(s, "Point3D", (_INT, _NUM, _NUM, _NUM))
    return bv.Point3D(srid, float(x), float(y), float(z))


_Hydrator = Callable[[Any], Any]

_HYDRATORS: dict[int, Callable[[Structure, _Hydrator], Any]] = {
    StructTag.NODE: _h_node,
    StructTag.RELATIONSHIP: _h_relationship,
    StructTag.UNBOUND_RELATIONSHIP: _h_unbound,
    StructTag.PATH: _h_path,
    StructTag.DATE: _h_date,
    StructTag.TIME: _h_time,
    StructTag.LOCAL_TIME: _h_local_time,
    StructTag.LOCAL_DATE_TIME: _h_local_date_time,
    StructTag.DATE_TIME: _h_date_time,
    StructTag.DATE_TIME_ZONE_ID: _h_date_time_zone_id,
    StructTag.LEGACY_DATE_TIME: _h_legacy_date_time,
    StructTag.LEGACY_DATE_TIME_ZONE_ID: _h_legacy_date_time_zone_id,
    StructTag.DURATION: _h_duration,
    StructTag.POINT_2D: _h_point2d,
    StructTag.POINT_3D: _h_point3d,
}


def _hydrate(value: Any) -> Any:
    t = type(value)
    if t is Structure:
        fn = _HYDRATORS.get(value.tag)
        return value if fn is None else fn(value, _hydrate)
    if t is list:
        # Copy on write: containers without structures (the usual case) come back as is.
        copy: list[Any] | None = None
        for i, item in enumerate(value):
            if type(item) in _CONTAINERS:
                new = _hydrate(item)
                if new is not item:
                    if copy is None:
                        copy = list(value)
                    copy[i] = new
        return value if copy is None else copy
    if t is dict:
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if type(item) in _CONTAINERS:
                new = _hydrate(item)
                if new is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
        return value if changed is None else changed
    return value


_CONTAINERS = frozenset({list, dict, Structure})


def hydrate(value: Any) -> Any:
    """Turn value-level structures (recursively) into ``bolt.values``; unknown tags stay.

    The tags say which shape arrived ('F' local vs 'I' UTC seconds, 3- vs 4-field Node), so
    decoding needs no version. Every ``DateTime`` comes back with UTC seconds. A known tag with
    the wrong shape raises ``PackStreamError``. Containers without structures are returned as
    the same objects (no copy).
    """
    return _hydrate(value)

"""Bolt, PackStream and WebSocket bytes for the fuzzer, written independently of ``bolt/``.

The fuzzer must be able to say things the proxy's own codec never would: lengths that lie,
reserved markers, structures with 40 fields, map keys that are not strings. So it has its own
small encoder over a value tree in which ``Raw`` bytes can stand anywhere, and its own decoder
for the captured driver traffic (``bolt/`` is the code under test, and is being rewritten).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"\x60\x60\xb0\x17"
MANIFEST_SLOT = b"\x00\x00\x01\xff"


@dataclass(frozen=True)
class Raw:
    """Bytes emitted verbatim where a value would be (a marker that lies, a reserved byte)."""

    data: bytes


@dataclass(frozen=True)
class Struct:
    """A PackStream structure: tag byte and fields (any number: over 15 is a lie too)."""

    tag: int
    fields: tuple[Any, ...]


# -- PackStream encoding --------------------------------------------------------------------------


def pack(value: Any) -> bytes:
    out = bytearray()
    _pack(out, value)
    return bytes(out)


def _pack_len(out: bytearray, n: int, tiny: int, m8: int | None, m16: int, m32: int) -> None:
    if n < 16:
        out.append(tiny | n)
    elif m8 is not None and n < 0x100:
        out += bytes((m8, n))
    elif n < 0x10000:
        out += struct.pack(">BH", m16, n)
    else:
        out += struct.pack(">BI", m32, n & 0xFFFFFFFF)


def _pack(out: bytearray, v: Any) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        if -16 <= v < 128:
            out += struct.pack(">b", v)
        elif -128 <= v < 128:
            out += struct.pack(">Bb", 0xC8, v)
        elif -(2**15) <= v < 2**15:
            out += struct.pack(">Bh", 0xC9, v)
        elif -(2**31) <= v < 2**31:
            out += struct.pack(">Bi", 0xCA, v)
        else:  # beyond 64 bits wraps: the fuzzer wants the bytes, not an exception
            out += struct.pack(">BQ", 0xCB, v & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(v, float):
        out += struct.pack(">Bd", 0xC1, v)
    elif isinstance(v, str):
        data = v.encode("utf-8", "surrogatepass")
        _pack_len(out, len(data), 0x80, 0xD0, 0xD1, 0xD2)
        out += data
    elif isinstance(v, (bytes, bytearray)):
        n = len(v)
        if n < 0x100:
            out += bytes((0xCC, n))
        elif n < 0x10000:
            out += struct.pack(">BH", 0xCD, n)
        else:
            out += struct.pack(">BI", 0xCE, n)
        out += v
    elif isinstance(v, Raw):
        out += v.data
    elif isinstance(v, (list, tuple)):
        _pack_len(out, len(v), 0x90, 0xD4, 0xD5, 0xD6)
        for item in v:
            _pack(out, item)
    elif isinstance(v, dict):
        _pack_len(out, len(v), 0xA0, 0xD8, 0xD9, 0xDA)
        for key, item in v.items():
            _pack(out, key)
            _pack(out, item)
    elif isinstance(v, Struct):
        out += bytes((0xB0 | (len(v.fields) & 0x0F), v.tag & 0xFF))
        for item in v.fields:
            _pack(out, item)
    else:
        raise TypeError(f"cannot pack {type(v).__name__}")


# -- PackStream decoding (for captured traffic only: trusted, well formed) ------------------------


class DecodeError(Exception):
    pass


def unpack(data: bytes) -> Any:
    value, pos = _unpack(data, 0)
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} bytes after the value")
    return value


def _unpack(data: bytes, pos: int) -> tuple[Any, int]:
    if pos >= len(data):
        raise DecodeError("truncated")
    m = data[pos]
    pos += 1
    if m < 0x80:
        return m, pos
    if m >= 0xF0:
        return m - 0x100, pos
    hi, lo = m & 0xF0, m & 0x0F
    if hi == 0x80:
        return _str(data, pos, lo)
    if hi == 0x90:
        return _list(data, pos, lo)
    if hi == 0xA0:
        return _map(data, pos, lo)
    if hi == 0xB0:
        tag = data[pos]
        fields, pos = _list(data, pos + 1, lo)
        return Struct(tag, tuple(fields)), pos
    fixed = {0xC1: ">d", 0xC8: ">b", 0xC9: ">h", 0xCA: ">i", 0xCB: ">q"}
    if m == 0xC0:
        return None, pos
    if m in (0xC2, 0xC3):
        return m == 0xC3, pos
    if m in fixed:
        fmt = fixed[m]
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    sizes = {
        0xCC: ">B",
        0xCD: ">H",
        0xCE: ">I",
        0xD0: ">B",
        0xD1: ">H",
        0xD2: ">I",
        0xD4: ">B",
        0xD5: ">H",
        0xD6: ">I",
        0xD8: ">B",
        0xD9: ">H",
        0xDA: ">I",
    }
    if m not in sizes:
        raise DecodeError(f"marker {m:02X}")
    fmt = sizes[m]
    n = struct.unpack_from(fmt, data, pos)[0]
    pos += struct.calcsize(fmt)
    if m <= 0xCE:
        return data[pos : pos + n], pos + n
    if m <= 0xD2:
        return _str(data, pos, n)
    if m <= 0xD6:
        return _list(data, pos, n)
    return _map(data, pos, n)


def _str(data: bytes, pos: int, n: int) -> tuple[str, int]:
    return data[pos : pos + n].decode("utf-8"), pos + n


def _list(data: bytes, pos: int, n: int) -> tuple[list[Any], int]:
    out = []
    for _ in range(n):
        item, pos = _unpack(data, pos)
        out.append(item)
    return out, pos


def _map(data: bytes, pos: int, n: int) -> tuple[dict[Any, Any], int]:
    out = {}
    for _ in range(n):
        key, pos = _unpack(data, pos)
        out[key], pos = _unpack(data, pos)
    return out, pos


# -- chunking -------------------------------------------------------------------------------------


def chunk(payload: bytes, size: int = 0xFFFF) -> bytes:
    out = bytearray()
    for pos in range(0, len(payload), size):
        part = payload[pos : pos + size]
        out += len(part).to_bytes(2, "big") + part
    return bytes(out + b"\x00\x00")


def dechunk(data: bytes) -> tuple[list[bytes], bytes]:
    """Whole message payloads in ``data`` (NOOPs dropped), and the incomplete rest."""
    messages: list[bytes] = []
    pos = start = 0
    parts: list[bytes] = []
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        if n == 0:
            if parts:
                messages.append(b"".join(parts))
                parts = []
            pos += 2
            start = pos
            continue
        if pos + 2 + n > len(data):
            break
        parts.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return messages, data[start:]


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


# -- WebSocket (client side, RFC 6455) ------------------------------------------------------------


def ws_frame(
    payload: bytes,
    *,
    opcode: int = 2,
    fin: bool = True,
    mask: bytes | None = b"\0" * 4,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame. ``mask=None``: unmasked (a client must mask). ``length``: a lying length."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(bit | n)
    elif n < 0x10000:
        head.append(bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + mask + masked


def ws_upgrade(
    host: str = "127.0.0.1:7687", *, key: str = "dGhlIHNhbXBsZSBub25jZQ==", extra: str = ""
) -> bytes:
    """The upgrade request a browser sends (headers as Chromium orders them)."""
    return (
        "GET / HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Connection: Upgrade\r\n"
        "Pragma: no-cache\r\n"
        "Cache-Control: no-cache\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0 Safari/537.36\r\n"
        "Upgrade: websocket\r\n"
        "Origin: http://localhost:8080\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        f"{extra}\r\n"
    ).encode("utf-8", "surrogateescape")

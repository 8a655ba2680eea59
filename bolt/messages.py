"""Bolt messages: typed requests and responses, and their payloads (bolt.md §5).

Every message is one PackStream structure whose tag is the message type. Payloads here are the
*dechunked* bytes (``bolt.chunking`` does the framing). Decoding checks what the spec pins down
— the tag exists in the negotiated version, the field count, the field types — and otherwise
follows Postel: unknown keys in ``extra`` dictionaries are kept and ignored (py2neo sends
``metadata``/``timeout`` where the spec says ``tx_metadata``/``tx_timeout``).

The hot relay path does not need any of this: ``peek_tag`` reads the tag from the second byte
without decoding, and responses can be forwarded as the bytes they arrived in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bolt.errors import ProtocolError
from bolt.packstream import Packer, Unpacker, hydrate
from bolt.status import code_of
from bolt.versions import (
    Version,
    has_logon,
    has_route_message,
    has_telemetry,
    route_has_extra,
)


class Tag(enum.IntEnum):
    """Message tags (Bolt "Message" spec, §5 table)."""

    HELLO = 0x01  # C: open the session: user_agent, routing, [auth <= 5.0]
    GOODBYE = 0x02  # C: close the connection; no response
    RESET = 0x0F  # C: abandon work and failures, back to READY
    RUN = 0x10  # C: query, parameters, extra
    BEGIN = 0x11  # C: open an explicit transaction
    COMMIT = 0x12  # C: commit the explicit transaction
    ROLLBACK = 0x13  # C: roll back the explicit transaction
    DISCARD = 0x2F  # C: throw away n records of stream qid (4.0+)
    PULL = 0x3F  # C: fetch n records of stream qid (4.0+)
    TELEMETRY = 0x54  # C: which driver API was used (5.4+)
    ROUTE = 0x66  # C: ask for a routing table (4.3+)
    LOGON = 0x6A  # C: authenticate (5.1+)
    LOGOFF = 0x6B  # C: drop the authentication (5.1+)
    SUCCESS = 0x70  # S: request done, with metadata
    RECORD = 0x71  # S: one row of a result
    IGNORED = 0x7E  # S: request skipped (FAILED / INTERRUPTED)
    FAILURE = 0x7F  # S: request failed, with code and message


_TAG_NAMES = {t.value: t.name for t in Tag}


def _extra_str(extra: dict[str, Any], key: str) -> str | None:
    value = extra.get(key)
    return value if isinstance(value, str) else None


class _TxExtra:
    """Accessors shared by BEGIN and RUN ``extra`` (absent or mistyped keys read as unset)."""

    extra: dict[str, Any]

    @property
    def db(self) -> str | None:
        return _extra_str(self.extra, "db")

    @property
    def mode(self) -> str:
        """'r' or 'w' (the spec default when absent)."""
        return "r" if self.extra.get("mode") == "r" else "w"

    @property
    def bookmarks(self) -> list[str]:
        value = self.extra.get("bookmarks")
        if not isinstance(value, list):
            return []
        return [b for b in value if isinstance(b, str)]

    @property
    def tx_metadata(self) -> dict[str, Any]:
        value = self.extra.get("tx_metadata")
        return value if isinstance(value, dict) else {}

    @property
    def tx_timeout(self) -> int | None:
        """Milliseconds, if given."""
        value = self.extra.get("tx_timeout")
        return value if type(value) is int else None

    @property
    def imp_user(self) -> str | None:
        return _extra_str(self.extra, "imp_user")


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    tag: ClassVar[Tag] = Tag.HELLO
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Logon:
    tag: ClassVar[Tag] = Tag.LOGON
    auth: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Logoff:
    tag: ClassVar[Tag] = Tag.LOGOFF


@dataclass(frozen=True)
class Telemetry:
    tag: ClassVar[Tag] = Tag.TELEMETRY
    api: int


@dataclass(frozen=True)
class Route:
    tag: ClassVar[Tag] = Tag.ROUTE
    routing: dict[str, Any] = field(default_factory=dict)
    bookmarks: list[str] = field(default_factory=list)
    db: str | None = None
    imp_user: str | None = None


@dataclass(frozen=True)
class Begin(_TxExtra):
    tag: ClassVar[Tag] = Tag.BEGIN
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run(_TxExtra):
    tag: ClassVar[Tag] = Tag.RUN
    query: str
    parameters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pull:
    tag: ClassVar[Tag] = Tag.PULL
    n: int = -1  # -1 = all
    qid: int = -1  # -1 = the most recent statement


@dataclass(frozen=True)
class Discard:
    tag: ClassVar[Tag] = Tag.DISCARD
    n: int = -1
    qid: int = -1


@dataclass(frozen=True)
class Commit:
    tag: ClassVar[Tag] = Tag.COMMIT


@dataclass(frozen=True)
class Rollback:
    tag: ClassVar[Tag] = Tag.ROLLBACK


@dataclass(frozen=True)
class Reset:
    tag: ClassVar[Tag] = Tag.RESET


@dataclass(frozen=True)
class Goodbye:
    tag: ClassVar[Tag] = Tag.GOODBYE


Request = (
    Hello
    | Logon
    | Logoff
    | Telemetry
    | Route
    | Begin
    | Run
    | Pull
    | Discard
    | Commit
    | Rollback
    | Reset
    | Goodbye
)


# -- responses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Success:
    tag: ClassVar[Tag] = Tag.SUCCESS
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    tag: ClassVar[Tag] = Tag.RECORD
    values: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Ignored:
    tag: ClassVar[Tag] = Tag.IGNORED


@dataclass(frozen=True)
class Failure:
    tag: ClassVar[Tag] = Tag.FAILURE
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        """The Neo4j code in either FAILURE shape (``code`` <=5.6, ``neo4j_code`` 5.7+)."""
        return code_of(self.metadata)

    @property
    def message(self) -> str:
        message = self.metadata.get("message")
        return message if isinstance(message, str) else ""


Response = Success | Record | Ignored | Failure


# -- decoding ---------------------------------------------------------------------------------


def peek_tag(payload: bytes | bytearray | memoryview) -> int:
    """The message tag of a payload without decoding it (for routing and relaying)."""
    if len(payload) < 2 or not 0xB0 <= payload[0] <= 0xBF:
        raise ProtocolError("a message must be a PackStream structure")
    return payload[1]


def run_query_span(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Where the query text's UTF-8 bytes are in the RUN payload ``data[start:end]``: ``(begin,
    stop)``; the parameters start at ``stop``. Nothing is decoded.

    Raises ``ProtocolError`` if the payload is not a RUN whose first field is a string.
    """
    if end is None:
        end = len(data)
    if end - start < 3 or data[start] != 0xB3 or data[start + 1] != Tag.RUN:
        raise ProtocolError("not a three-field RUN message")
    marker = data[start + 2]
    if 0x80 <= marker <= 0x8F:
        begin, size = start + 3, marker & 0x0F
    elif marker == 0xD0 and end - start >= 4:
        begin, size = start + 4, data[start + 3]
    elif marker == 0xD1 and end - start >= 5:
        begin, size = start + 5, int.from_bytes(data[start + 3 : start + 5], "big")
    elif marker == 0xD2 and end - start >= 7:
        begin, size = start + 7, int.from_bytes(data[start + 3 : start + 7], "big")
    else:
        raise ProtocolError("RUN query must be a string")
    if begin + size > end:
        raise ProtocolError("RUN query string is truncated")
    return begin, begin + size


def peek_run_query(data: bytes, start: int = 0, end: int | None = None) -> tuple[str, int]:
    """The query text of the RUN payload ``data[start:end]`` and the offset where its parameters
    start, without decoding the parameters (for classifying; the caller forwards the original
    bytes). Raises ``ProtocolError`` like ``run_query_span``, and for text that is not UTF-8.
    """
    begin, stop = run_query_span(data, start, end)
    try:
        return data[begin:stop].decode("utf-8"), stop
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"RUN query is not valid UTF-8: {exc}") from None


def _tag_name(tag: int) -> str:
    return _TAG_NAMES.get(tag, f"0x{tag:02X}")


def _read_fields(payload: bytes, expected: tuple[int, ...]) -> tuple[int, list[Any]]:
    """Tag and fields of a message payload, checking the field count is one of ``expected``."""
    reader = Unpacker(payload)
    count, tag = reader.structure_header()
    if count not in expected:
        raise ProtocolError(
            f"{_tag_name(tag)} message needs {' or '.join(map(str, expected))} fields, got {count}"
        )
    fields = [reader.unpack() for _ in range(count)]
    if reader.remaining:
        raise ProtocolError(f"{reader.remaining} trailing bytes after a {_tag_name(tag)} message")
    return tag, fields


def _field(value: Any, kind: type, name: str, msg: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if type(value) is not kind:
        raise ProtocolError(
            f"{msg} field {name!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _n_qid(extra: dict[str, Any], msg: str) -> tuple[int, int]:
    n = extra.get("n", -1)
    qid = extra.get("qid", -1)
    _field(n, int, "n", msg)
    _field(qid, int, "qid", msg)
    return n, qid


# Requests by tag: (first version that has it or None, accepted field counts).
_REQUEST_FIELDS: dict[int, tuple[int, ...]] = {
    Tag.HELLO: (1,),
    Tag.GOODBYE: (0,),
    Tag.RESET: (0,),
    Tag.RUN: (3,),
    Tag.BEGIN: (1,),
    Tag.COMMIT: (0,),
    Tag.ROLLBACK: (0,),
    Tag.DISCARD: (1,),
    Tag.PULL: (1,),
    Tag.TELEMETRY: (1,),
    Tag.ROUTE: (3,),
    Tag.LOGON: (1,),
    Tag.LOGOFF: (0,),
}


def request_defined(tag: int, version: Version) -> bool:
    """Whether request ``tag`` exists in ``version`` (LOGON/LOGOFF 5.1, TELEMETRY 5.4...)."""
    if tag not in _REQUEST_FIELDS:
        return False
    if tag == Tag.LOGON or tag == Tag.LOGOFF:
        return has_logon(version)
    if tag == Tag.TELEMETRY:
        return has_telemetry(version)
    if tag == Tag.ROUTE:
        return has_route_message(version)
    return True


def decode_request(payload: bytes | bytearray | memoryview, version: Version) -> Request:
    """Decode a client request for protocol ``version``.

    Raises ``ProtocolError`` (close the connection) for an unknown tag, a message that does not
    exist in ``version``, a wrong field count or type, or bad PackStream. RUN parameters come
    back hydrated (``bolt.values`` for temporal and spatial structures).
    """
    data = payload if type(payload) is bytes else bytes(payload)
    tag = peek_tag(data)
    expected = _REQUEST_FIELDS.get(tag)
    if expected is None:
        raise ProtocolError(f"unknown message tag 0x{tag:02X}")
    if not request_defined(tag, version):
        raise ProtocolError(f"{_tag_name(tag)} message is not defined in Bolt {version}")
    _, f = _read_fields(data, expected)
    name = _tag_name(tag)
    if tag == Tag.RUN:
        query = _field(f[0], str, "query", name)
        params = _field(f[1], dict, "parameters", name, nullable=True) or {}
        extra = _field(f[2], dict, "extra", name, nullable=True) or {}
        return Run(query, hydrate(params), extra)
    if tag == Tag.PULL:
        n, qid = _n_qid(_field(f[0], dict, "extra", name), name)
        return Pull(n, qid)
    if tag == Tag.DISCARD:
        n, qid = _n_qid(_field(f[0], dict, "extra", name), name)
        return Discard(n, qid)
    if tag == Tag.BEGIN:
        return Begin(_field(f[0], dict, "extra", name, nullable=True) or {})
    if tag == Tag.HELLO:
        return Hello(_field(f[0], dict, "extra", name))
    if tag == Tag.RESET:
        return Reset()
    if tag == Tag.COMMIT:
        return Commit()
    if tag == Tag.ROLLBACK:
        return Rollback()
    if tag == Tag.GOODBYE:
        return Goodbye()
    if tag == Tag.LOGON:
        return Logon(_field(f[0], dict, "auth", name))
    if tag == Tag.LOGOFF:
        return Logoff()
    if tag == Tag.TELEMETRY:
        return Telemetry(_field(f[0], int, "api", name))
    # ROUTE: routing context, bookmarks, then a db name (4.3) or extra{db, imp_user} (4.4+).
    # Both third-field shapes are accepted in every version: they cannot be confused.
    routing = _field(f[0], dict, "routing", name, nullable=True) or {}
    bookmarks = _field(f[1], list, "bookmarks", name, nullable=True) or []
    if not all(isinstance(b, str) for b in bookmarks):
        raise ProtocolError("ROUTE bookmarks must be strings")
    third = f[2]
    if third is None or type(third) is str:
        return Route(routing, bookmarks, third, None)
    if type(third) is dict:
        return Route(routing, bookmarks, _extra_str(third, "db"), _extra_str(third, "imp_user"))
    raise ProtocolError(f"ROUTE third field must be a db name or a map, got {type(third).__name__}")


def decode_response(
    payload: bytes | bytearray | memoryview, version: Version, *, hydrate_values: bool = True
) -> Response:
    """Decode a server response. RECORD values are hydrated unless ``hydrate_values=False``."""
    data = payload if type(payload) is bytes else bytes(payload)
    tag = peek_tag(data)
    if tag == Tag.RECORD:
        _, f = _read_fields(data, (1,))
        values = _field(f[0], list, "data", "RECORD")
        return Record(hydrate(values) if hydrate_values else values)
    if tag == Tag.SUCCESS:
        _, f = _read_fields(data, (1,))
        return Success(_field(f[0], dict, "metadata", "SUCCESS"))
    if tag == Tag.IGNORED:
        _read_fields(data, (0,))
        return Ignored()
    if tag == Tag.FAILURE:
        _, f = _read_fields(data, (1,))
        return Failure(_field(f[0], dict, "metadata", "FAILURE"))
    raise ProtocolError(f"unknown response tag 0x{tag:02X}")


# -- encoding ---------------------------------------------------------------------------------

IGNORED_PAYLOAD = b"\xb0\x7e"
_SUCCESS_HEADER = b"\xb1\x70"
_RECORD_HEADER = b"\xb1\x71"
_FAILURE_HEADER = b"\xb1\x7f"


def _struct(packer: Packer, tag: int, *fields: Any) -> bytes:
    out = bytearray((0xB0 | len(fields), tag))
    for value in fields:
        packer.pack_into(out, value)
    return bytes(out)


def encode_request(req: Request, version: Version, utc_patch: bool = False) -> bytes:
    """The payload (unchunked) of a request, shaped for ``version``."""
    if not request_defined(req.tag, version):
        raise ProtocolError(f"{req.tag.name} message is not defined in Bolt {version}")
    packer = Packer(version, utc_patch)
    if isinstance(req, Run):
        return _struct(packer, Tag.RUN, req.query, req.parameters, req.extra)
    if isinstance(req, (Pull, Discard)):
        extra: dict[str, Any] = {"n": req.n}
        if req.qid != -1:  # drivers leave out the default
            extra["qid"] = req.qid
        return _struct(packer, req.tag, extra)
    if isinstance(req, (Hello, Begin)):
        return _struct(packer, req.tag, req.extra)
    if isinstance(req, Logon):
        return _struct(packer, Tag.LOGON, req.auth)
    if isinstance(req, Telemetry):
        return _struct(packer, Tag.TELEMETRY, req.api)
    if isinstance(req, Route):
        if route_has_extra(version):
            route_extra: dict[str, Any] = {}
            if req.db is not None:
                route_extra["db"] = req.db
            if req.imp_user is not None:
                route_extra["imp_user"] = req.imp_user
            return _struct(packer, Tag.ROUTE, req.routing, req.bookmarks, route_extra)
        return _struct(packer, Tag.ROUTE, req.routing, req.bookmarks, req.db)
    return bytes((0xB0, req.tag))  # the field-less ones


def encode_success(metadata: dict[str, Any], packer: Packer) -> bytes:
    """SUCCESS payload."""
    out = bytearray(_SUCCESS_HEADER)
    packer.pack_into(out, metadata)
    return bytes(out)


def encode_record(values: list[Any] | tuple[Any, ...], packer: Packer) -> bytes:
    """RECORD payload; ``values`` may hold ``bolt.values``, shaped by the packer's version."""
    out = bytearray(_RECORD_HEADER)
    packer.pack_into(out, values)
    return bytes(out)


def encode_failure(metadata: dict[str, Any], packer: Packer) -> bytes:
    """FAILURE payload from ready metadata (``BoltError.failure(version)``, or a backend's
    FAILURE after ``normalize_failure``)."""
    out = bytearray(_FAILURE_HEADER)
    packer.pack_into(out, metadata)
    return bytes(out)


def encode_response(resp: Response, packer: Packer) -> bytes:
    """Payload of any response object."""
    if isinstance(resp, Record):
        return encode_record(resp.values, packer)
    if isinstance(resp, Success):
        return encode_success(resp.metadata, packer)
    if isinstance(resp, Failure):
        return encode_failure(resp.metadata, packer)
    if isinstance(resp, Ignored):
        return IGNORED_PAYLOAD
    raise TypeError(f"not a response: {resp!r}")

"""Parameters for FalkorDB: ``GRAPH.QUERY`` has no binary parameters.

They travel as Cypher literals in a ``CYPHER name=value ...`` prefix. The prefix takes only
literals (numbers, strings, bools, null, lists, maps); a function call or ``0.0/0.0`` there is a
syntax error (measured on 4.16). Values that need an expression -- temporal values, points, NaN
and infinities -- are therefore written into the query text in place of their ``$name`` tokens
(found with the Cypher lexer, so strings, comments and backquoted names are skipped), and the
column names FalkorDB derives from that text are mapped back to ``$name``. Types FalkorDB cannot
hold (bytes, zoned date-times and times, cartesian or 3D points, graph entities) are refused
with a ``BackendError`` naming the parameter and the type.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json.encoder
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bolt.status import TYPE_ERROR
from bolt.values import (
    Date,
    DateTime,
    DateTimeZoneId,
    Duration,
    LocalDateTime,
    LocalTime,
    Node,
    Path,
    Point2D,
    Point3D,
    Relationship,
    Time,
    UnboundRelationship,
)
from grammar import lexer
from proxy.backends.base import BackendError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NS_PER_SECOND = 1_000_000_000
SECONDS_PER_DAY = 86_400
WGS84_2D = 4326  # the only SRID FalkorDB's geographic points can be


_json_quote: Callable[[str], str] = json.encoder.encode_basestring  # C, ensure_ascii=False


class _Unsupported(Exception):
    """A parameter value FalkorDB cannot take; the message says what to do instead."""


def _quote(text: str) -> str:
    # Measured: inside "..." FalkorDB unescapes \\ and \" (and \n, \t, ...), keeps every other
    # byte as is (raw newlines and any UTF-8 are fine) and cannot hold NUL (C strings: the
    # query is cut there and fails to parse). Escaping only \ and " is therefore exact.
    # json's C quoting is the same text when it escaped nothing (no \, ", control character or
    # NUL), and three times faster: the common case.
    quoted = _json_quote(text)
    if "\\" not in quoted:
        return quoted
    if "\x00" in text:
        raise _Unsupported("a string containing NUL (U+0000) cannot be stored in FalkorDB")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(key: Any, what: str) -> str:
    # Backquote every map key and parameter name: any text is valid between backquotes
    # except a backquote itself, which FalkorDB cannot escape (`` is a syntax error).
    if not isinstance(key, str):
        raise _Unsupported(f"{what} must be strings, not {type(key).__name__}")
    if "`" in key or "\x00" in key:
        raise _Unsupported(f"{what} {key!r}: FalkorDB cannot take a backquote or NUL in a name")
    return f"`{key}`"


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian date ``days`` after 1970-01-01.

    Works for any year (0 and negative included), unlike ``datetime.date``; FalkorDB's
    ``date({year: 0, ...})`` is valid. Algorithm: H. Hinnant, "chrono-Compatible Low-Level
    Date Algorithms".
    """
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_expr(days: int) -> str:
    y, m, d = civil_from_days(days)
    # The map form, not date('YYYY-MM-DD'): FalkorDB's string parser rejects years outside
    # 0000-9999 and, for localdatetime, anything before 1970.
    return f"date({{year:{y},month:{m},day:{d}}})"


def _localdatetime_expr(seconds: int) -> str:
    days, sod = divmod(seconds, SECONDS_PER_DAY)
    y, mo, d = civil_from_days(days)
    h, rest = divmod(sod, 3600)
    mi, s = divmod(rest, 60)
    return f"localdatetime({{year:{y},month:{mo},day:{d},hour:{h},minute:{mi},second:{s}}})"


def _localtime_expr(nanoseconds: int) -> str:
    sod = nanoseconds // NS_PER_SECOND
    if not 0 <= sod < SECONDS_PER_DAY:
        raise _Unsupported(f"a LocalTime of {nanoseconds} ns is not a time of day")
    h, rest = divmod(sod, 3600)
    mi, s = divmod(rest, 60)
    return f"localtime({{hour:{h},minute:{mi},second:{s}}})"


class _NotLiteral(Exception):
    """The value needs an expression (temporal, point, NaN/infinity): inline the parameter."""


@functools.lru_cache(maxsize=4096)
def _key(key: Any) -> str:
    # Map keys repeat across the rows of a batch: quote each distinct one once.
    return _name(key, "map keys")


_heads: dict[tuple[Any, ...], str] = {}


def _map_head(keys: tuple[Any, ...]) -> str:
    """``{`a`:%s,`b`:%s}`` for maps with these keys in this order: the rows of an UNWIND
    batch share their keys, so each row is one ``%`` of its values."""
    head = "{" + ",".join(_key(k).replace("%", "%%") + ":%s" for k in keys) + "}"
    if len(_heads) >= 4096:
        _heads.clear()
    _heads[keys] = head
    return head


def _literal(value: Any) -> str:
    """``value`` as a Cypher literal for the ``CYPHER`` prefix. Raises ``_NotLiteral`` when
    only an expression can express it, ``_Unsupported`` when FalkorDB cannot hold it.

    This is the hot path for large parameter batches (``UNWIND $rows``): exact-type checks
    first, ``join`` over ``map`` for containers.
    """
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            # FalkorDB would silently clamp it to the int64 range (measured).
            raise _Unsupported(f"integer {value} does not fit in 64 bits")
        return str(value)
    if kind is float:
        if math.isfinite(value):
            return repr(value)  # round-trips, and FalkorDB parses every digit of it
        raise _NotLiteral
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is list or kind is tuple:
        return "[" + ",".join(map(_literal, value)) + "]"
    if kind is dict:
        head = _heads.get(keys := tuple(value))
        if head is None:
            head = _map_head(keys)
        return head % tuple([_quote(v) if type(v) is str else _literal(v) for v in value.values()])
    # Subclasses (IntEnum, OrderedDict, ...) as their base type; everything else is either
    # an expression or unsupported.
    if isinstance(value, bool):
        return "true" if value else "false"
    base: type[Any]
    for base in (int, float, str, list, dict):
        if isinstance(value, base):
            return _literal(base(value))
    if isinstance(value, tuple):
        return _literal(list(value))
    raise _NotLiteral


def _expression(value: Any) -> str:
    """``value`` as Cypher text that may contain function calls, for inlining into the query.

    Raises ``_Unsupported`` (with advice) for a type FalkorDB cannot hold.
    """
    kind = type(value)
    if kind is list or kind is tuple:
        return "[" + ",".join(map(_expression, value)) + "]"
    if kind is dict:
        return "{" + ",".join([_key(k) + ":" + _expression(v) for k, v in value.items()]) + "}"
    try:
        return _literal(value)
    except _NotLiteral:
        pass
    if isinstance(value, float):
        if math.isnan(value):
            return "(0.0/0.0)"  # FalkorDB evaluates these to NaN and +-inf (measured)
        return "(1.0/0.0)" if value > 0 else "(-1.0/0.0)"
    if isinstance(value, list | tuple):
        return _expression(list(value))
    if isinstance(value, dict):
        return _expression(dict(value))
    if isinstance(value, Date):
        return _date_expr(value.days)
    if isinstance(value, LocalDateTime):
        # FalkorDB keeps whole seconds (it drops fractions from its own literals too).
        return _localdatetime_expr(value.seconds)
    if isinstance(value, LocalTime):
        return _localtime_expr(value.nanoseconds)
    if isinstance(value, Duration):
        # FalkorDB has no sub-second durations; nanoseconds are dropped.
        seconds = value.seconds + value.nanoseconds // NS_PER_SECOND
        return f"duration({{months:{value.months},days:{value.days},seconds:{seconds}}})"
    if isinstance(value, Point2D):
        if value.srid != WGS84_2D:
            raise _Unsupported(
                f"a point with SRID {value.srid}: FalkorDB points are WGS-84 "
                "latitude/longitude only (SRID 4326)"
            )
        if not (math.isfinite(value.x) and math.isfinite(value.y)):
            raise _Unsupported("a point with a NaN or infinite coordinate")
        return f"point({{latitude:{value.y!r},longitude:{value.x!r}}})"
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            raise _Unsupported(_no_zone("a time-zone-aware datetime"))
        return _localdatetime_expr(_naive_epoch_seconds(value))
    if isinstance(value, _dt.date):
        return _date_expr(value.toordinal() - _EPOCH_ORDINAL)
    if isinstance(value, _dt.time):
        if value.tzinfo is not None and value.utcoffset() is not None:
            raise _Unsupported(_no_zone("a time-zone-aware time"))
        sod = value.hour * 3600 + value.minute * 60 + value.second
        return _localtime_expr(sod * NS_PER_SECOND)
    if isinstance(value, _dt.timedelta):
        return f"duration({{days:{value.days},seconds:{value.seconds}}})"
    raise _Unsupported(_unsupported_type_message(value))


_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def _naive_epoch_seconds(value: _dt.datetime) -> int:
    days = value.toordinal() - _EPOCH_ORDINAL
    return days * SECONDS_PER_DAY + value.hour * 3600 + value.minute * 60 + value.second


def _no_zone(what: str) -> str:
    return (
        f"{what} cannot be a parameter: FalkorDB has no time zones; send a local "
        "date-time, or the epoch seconds as an integer"
    )


def _unsupported_type_message(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        # Not silently a list of integers: that would change the type on a round trip.
        return "a byte array cannot be a parameter: FalkorDB has no byte array type"
    if isinstance(value, DateTime | DateTimeZoneId):
        return _no_zone("a DateTime with a time zone")
    if isinstance(value, Time):
        return (
            "a Time with a UTC offset cannot be a parameter: FalkorDB has only localtime; "
            "send a LocalTime"
        )
    if isinstance(value, Point3D):
        return "a 3D point cannot be a parameter: FalkorDB points are 2D (latitude, longitude)"
    if isinstance(value, Node | Relationship | UnboundRelationship | Path):
        return f"a {type(value).__name__} cannot be a parameter; pass its id or properties"
    return f"a {type(value).__name__} cannot be a parameter"


def _inline(query: str, exprs: dict[str, str]) -> str:
    """``query`` with each ``$name`` in ``exprs`` replaced by its expression (the lexer skips
    strings, comments and backquoted names, so a ``$name`` inside them stays)."""

    def replace(match: re.Match[str]) -> str:
        if match.lastgroup == "param":
            name = lexer.param_name(match)
            if name is not None and name in exprs:
                return exprs[name]
        return match.group(0)

    return lexer.TOKEN.sub(replace, query)


@dataclass(frozen=True, slots=True)
class PreparedQuery:
    """The text to send, and the inlined parameters (expression text -> ``$name``) whose
    expression text must be turned back into ``$name`` in column names."""

    text: str
    inlined: tuple[tuple[str, str], ...] = ()


def prepare_query(query: str, params: dict[str, Any] | None) -> PreparedQuery:
    """Put ``params`` into the query as FalkorDB needs them (see the module docstring).

    Raises ``BackendError`` (``Neo.ClientError.Statement.TypeError``) for a value FalkorDB
    cannot take, naming the parameter and saying what to send instead.
    """
    if not params:
        return PreparedQuery(query)
    prefix: list[str] = ["CYPHER"]
    exprs: dict[str, str] = {}
    for name, value in params.items():
        try:
            quoted = _name(name, "parameter names")
            try:
                prefix.append(f"{quoted}={_literal(value)}")
            except _NotLiteral:
                exprs[name] = _expression(value)
        except _Unsupported as exc:
            raise BackendError(TYPE_ERROR, f"parameter ${name}: {exc}") from None
        except RecursionError:
            raise BackendError(TYPE_ERROR, f"parameter ${name} is nested too deeply") from None
    text = _inline(query, exprs) if exprs else query
    if len(prefix) > 1:
        text = " ".join(prefix) + " " + text
    inlined = tuple((expr, f"${name}") for name, expr in exprs.items())
    return PreparedQuery(text, inlined)

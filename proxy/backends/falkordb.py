"""FalkorDB over RESP: run Cypher with ``GRAPH.QUERY --compact`` and return typed Bolt values.

The proxy's own Bolt session drives this backend (FalkorDB's Bolt port is too fragile to relay
to; see DESIGN.md). Four jobs, each a section below:

1. **Parameters.** ``GRAPH.QUERY`` has no binary parameters: they travel as Cypher literals in
   a ``CYPHER name=value ...`` prefix. The prefix takes only literals (numbers, strings, bools,
   null, lists, maps); a function call or ``0.0/0.0`` there is a syntax error (measured on
   4.16). Values that need an expression -- temporal values, points, NaN and infinities -- are
   therefore written into the query text in place of their ``$name`` tokens (strings, comments
   and backquoted names are skipped), and the column names FalkorDB derives from that text are
   mapped back to ``$name``. Types FalkorDB cannot hold (bytes, zoned date-times and times,
   cartesian or 3D points, graph entities) are refused with a ``BackendError`` naming the type.
2. **Compact results.** Labels, relationship types and property keys come as ids into per-graph
   lists that ``db.labels()``, ``db.relationshipTypes()`` and ``db.propertyKeys()`` return. The
   lists only grow while a graph lives, but a graph can be deleted and rebuilt with other ids,
   so every query carries the schema ``version`` it was decoded against; FalkorDB refuses (and
   does not run) a query sent with a stale version, and we refresh and resend.
3. **Statistics** become Bolt summary counters and the Neo4j query type.
4. **Errors** are plain text; ``classify_error`` maps them to Neo4j status codes.

FalkorDB facts this relies on (4.16, measured): doubles are printed with 15 significant digits
(``0.1 + 0.2`` comes back as ``0.3``); points are stored as float32 (latitude/longitude only);
temporal values have whole-second precision and no time zone; ``localtime`` comes back as
seconds since 1900-01-01 (only the time of day is meaningful); a duration comes back as the
epoch offset of 1970-01-01 plus the duration, so months and days are recovered by calendar
arithmetic, exactly as FalkorDB's own ``toString`` does (``P40D`` reads back as ``P1M9D``);
``EXPLAIN <query>`` sent to ``GRAPH.QUERY`` *runs* the query, so EXPLAIN goes to
``GRAPH.EXPLAIN`` instead.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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
from proxy.backends.base import BackendError, BackendUnavailable, QueryResult, QueryType

if TYPE_CHECKING:
    from proxy.backends.base import QueryBackend
from proxy.backends.resp import (
    RespConnectionError,
    RespError,
    RespPool,
    RespTimeoutError,
)

log = logging.getLogger(__name__)

# Neo4j status codes used below (Neo4j "Status codes" reference).
SYNTAX_ERROR = "Neo.ClientError.Statement.SyntaxError"
SEMANTIC_ERROR = "Neo.ClientError.Statement.SemanticError"
TYPE_ERROR = "Neo.ClientError.Statement.TypeError"
ARGUMENT_ERROR = "Neo.ClientError.Statement.ArgumentError"
ARITHMETIC_ERROR = "Neo.ClientError.Statement.ArithmeticError"
PARAMETER_MISSING = "Neo.ClientError.Statement.ParameterMissing"
ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"
EXTERNAL_RESOURCE = "Neo.ClientError.Statement.ExternalResourceFailed"
PROCEDURE_NOT_FOUND = "Neo.ClientError.Procedure.ProcedureNotFound"
CONSTRAINT_FAILED = "Neo.ClientError.Schema.ConstraintValidationFailed"
SCHEMA_RULE_EXISTS = "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"
INDEX_NOT_FOUND = "Neo.ClientError.Schema.IndexNotFound"
CONSTRAINT_NOT_FOUND = "Neo.ClientError.Schema.ConstraintNotFound"
DATABASE_NOT_FOUND = "Neo.ClientError.Database.DatabaseNotFound"
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
TIMED_OUT = "Neo.ClientError.Transaction.TransactionTimedOut"
OUT_OF_MEMORY = "Neo.TransientError.General.MemoryPoolOutOfMemoryError"
RESOURCE_EXHAUSTED = "Neo.TransientError.Request.ResourceExhaustion"
UNKNOWN_ERROR = "Neo.DatabaseError.General.UnknownError"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NS_PER_SECOND = 1_000_000_000
_SECONDS_PER_DAY = 86_400
_WGS84_2D = 4326  # the only SRID FalkorDB's geographic points can be


# ============================================================================================
# 1. Parameters
# ============================================================================================


class _Unsupported(Exception):
    """A parameter value FalkorDB cannot take; the message says what to do instead."""


def _quote(text: str) -> str:
    # Measured: inside "..." FalkorDB unescapes \\ and \" (and \n, \t, ...), keeps every other
    # byte as is (raw newlines and any UTF-8 are fine) and cannot hold NUL (C strings: the
    # query is cut there and fails to parse). Escaping only \ and " is therefore exact.
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
    days, sod = divmod(seconds, _SECONDS_PER_DAY)
    y, mo, d = civil_from_days(days)
    h, rest = divmod(sod, 3600)
    mi, s = divmod(rest, 60)
    return f"localdatetime({{year:{y},month:{mo},day:{d},hour:{h},minute:{mi},second:{s}}})"


def _localtime_expr(nanoseconds: int) -> str:
    sod = nanoseconds // _NS_PER_SECOND
    if not 0 <= sod < _SECONDS_PER_DAY:
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
        if not _INT64_MIN <= value <= _INT64_MAX:
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
        return "{" + ",".join([_key(k) + ":" + _literal(v) for k, v in value.items()]) + "}"
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
        seconds = value.seconds + value.nanoseconds // _NS_PER_SECOND
        return f"duration({{months:{value.months},days:{value.days},seconds:{seconds}}})"
    if isinstance(value, Point2D):
        if value.srid != _WGS84_2D:
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
        return _localtime_expr(sod * _NS_PER_SECOND)
    if isinstance(value, _dt.timedelta):
        return f"duration({{days:{value.days},seconds:{value.seconds}}})"
    raise _Unsupported(_unsupported_type_message(value))


_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def _naive_epoch_seconds(value: _dt.datetime) -> int:
    days = value.toordinal() - _EPOCH_ORDINAL
    return days * _SECONDS_PER_DAY + value.hour * 3600 + value.minute * 60 + value.second


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


# Tokens that may contain "$name" without being a parameter, and parameters themselves.
# Cypher strings take backslash escapes; FalkorDB cannot escape a backquote inside `...`.
_TOKEN = re.compile(
    r"""
      '(?:[^'\\]|\\.)*'
    | "(?:[^"\\]|\\.)*"
    | `[^`]*`
    | //[^\n]*
    | /\*.*?\*/
    | \$(?:`(?P<quoted>[^`]*)`|(?P<plain>\w+))
    """,
    re.S | re.X,
)


def _inline(query: str, exprs: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("plain")
        if name is None:
            name = match.group("quoted")
        if name is not None and name in exprs:
            return exprs[name]
        return match.group(0)

    return _TOKEN.sub(replace, query)


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


_EXPLAIN = re.compile(r"\A(?:\s+|//[^\n]*|/\*.*?\*/)*EXPLAIN\b", re.S | re.I)


# ============================================================================================
# 2. Compact results
# ============================================================================================

# FalkorDB value type tags in compact results (falkordb client: ResultSetScalarTypes).
_T_NULL = 1
_T_STRING = 2
_T_INTEGER = 3
_T_BOOLEAN = 4
_T_DOUBLE = 5
_T_ARRAY = 6
_T_EDGE = 7
_T_NODE = 8
_T_PATH = 9
_T_MAP = 10
_T_POINT = 11
_T_VECTORF32 = 12
_T_DATETIME = 13
_T_DATE = 14
_T_TIME = 15
_T_DURATION = 16


class _UnknownSchemaId(Exception):
    """A label/type/key id beyond the cached lists: refresh the schema and decode again."""


@dataclass
class _Schema:
    """Per-graph id -> name lists, the schema version they belong to, and a refresh lock."""

    labels: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    version: int | None = None  # None: not known yet, send queries without a version
    generation: int = 0  # bumped by every refresh
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def reset(self) -> None:
        self.labels, self.types, self.keys = [], [], []
        self.version = None
        self.generation += 1


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def decode_duration(value: int) -> Duration:
    """FalkorDB's duration (seconds from the epoch to epoch + duration) as months/days/secs.

    The calendar split mirrors FalkorDB's own ``toString``; a negative duration is split as
    its absolute value and negated, so ``duration({days: -1})`` reads back as -1 day.
    """
    sign = -1 if value < 0 else 1
    days, seconds = divmod(abs(value), _SECONDS_PER_DAY)
    year, month, day = civil_from_days(days)
    months = (year - 1970) * 12 + month - 1
    return Duration(sign * months, sign * (day - 1), sign * seconds, 0)


class _Decoder:
    """Turns compact cells into Python and ``bolt.values`` objects using one schema snapshot."""

    __slots__ = ("keys", "labels", "types")

    def __init__(self, schema: _Schema) -> None:
        self.labels = schema.labels
        self.types = schema.types
        self.keys = schema.keys

    def rows(self, raw_rows: list[Any]) -> list[list[Any]]:
        value = self.value
        return [[value(cell[0], cell[1]) for cell in row] for row in raw_rows]

    def value(self, kind: int, raw: Any) -> Any:
        # Most frequent types first.
        if kind == _T_INTEGER:
            return raw
        if kind == _T_STRING:
            return raw.decode("utf-8", "replace")
        if kind == _T_NULL:
            return None
        if kind == _T_DOUBLE:
            return float(raw)  # also parses "inf", "-inf", "-nan"
        if kind == _T_BOOLEAN:
            return raw == b"true"
        if kind == _T_NODE:
            return self.node(raw)
        if kind == _T_EDGE:
            return self.relationship(raw)
        if kind == _T_ARRAY:
            value = self.value
            return [value(cell[0], cell[1]) for cell in raw]
        if kind == _T_MAP:
            value = self.value
            return {
                raw[i].decode("utf-8", "replace"): value(raw[i + 1][0], raw[i + 1][1])
                for i in range(0, len(raw), 2)
            }
        if kind == _T_PATH:
            return self.path(raw)
        if kind == _T_POINT:
            return Point2D(_WGS84_2D, float(raw[1]), float(raw[0]))  # raw is [lat, lon]
        if kind == _T_VECTORF32:
            return [float(x) for x in raw]  # Bolt (before 6.0) has no vector type
        if kind == _T_DATETIME:
            return LocalDateTime(raw, 0)
        if kind == _T_DATE:
            return Date(raw // _SECONDS_PER_DAY)
        if kind == _T_TIME:
            return LocalTime((raw % _SECONDS_PER_DAY) * _NS_PER_SECOND)
        if kind == _T_DURATION:
            return decode_duration(raw)
        raise BackendError(UNKNOWN_ERROR, f"FalkorDB sent a value of unknown type {kind}")

    def properties(self, raw: list[Any]) -> dict[str, Any]:
        keys = self.keys
        value = self.value
        try:
            return {keys[p[0]]: value(p[1], p[2]) for p in raw}
        except IndexError:
            raise _UnknownSchemaId from None

    def node(self, raw: list[Any]) -> Node:
        node_id, label_ids, props = raw
        labels = self.labels
        try:
            names = tuple([labels[i] for i in label_ids])
        except IndexError:
            raise _UnknownSchemaId from None
        return Node(node_id, names, self.properties(props), str(node_id))

    def relationship(self, raw: list[Any]) -> Relationship:
        rel_id, type_id, start, end, props = raw
        try:
            rel_type = self.types[type_id]
        except IndexError:
            raise _UnknownSchemaId from None
        return Relationship(
            rel_id, start, end, rel_type, self.properties(props), str(rel_id), str(start), str(end)
        )

    def path(self, raw: list[Any]) -> Path:
        # raw is [[ARRAY, node cells], [ARRAY, edge cells]], both in path order. Edge i joins
        # path node i and node i+1; Bolt's index is negative when it points from i+1 to i.
        path_nodes = [self.node(cell[1]) for cell in raw[0][1]]
        path_rels = [self.relationship(cell[1]) for cell in raw[1][1]]
        nodes: list[Node] = []
        node_index: dict[int, int] = {}
        for node in path_nodes:
            if node.id not in node_index:
                node_index[node.id] = len(nodes)
                nodes.append(node)
        rels: list[UnboundRelationship] = []
        rel_index: dict[int, int] = {}
        indices: list[int] = []
        for i, rel in enumerate(path_rels):
            if rel.id not in rel_index:
                rels.append(UnboundRelationship(rel.id, rel.type, rel.properties, rel.element_id))
                rel_index[rel.id] = len(rels)  # 1-based
            forward = rel.start_node_id == path_nodes[i].id
            indices.append(rel_index[rel.id] if forward else -rel_index[rel.id])
            indices.append(node_index[path_nodes[i + 1].id])
        return Path(tuple(nodes), tuple(rels), tuple(indices))


# ============================================================================================
# 3. Statistics
# ============================================================================================

_STAT_KEYS: dict[bytes, str] = {
    b"Nodes created": "nodes-created",
    b"Nodes deleted": "nodes-deleted",
    b"Relationships created": "relationships-created",
    b"Relationships deleted": "relationships-deleted",
    b"Properties set": "properties-set",
    # Neo4j counts removing a property (REMOVE n.p, SET n.p = null) as setting it.
    b"Properties removed": "properties-set",
    b"Labels added": "labels-added",
    b"Labels removed": "labels-removed",
    b"Indices created": "indexes-added",
    b"Indices deleted": "indexes-removed",
    b"Constraints created": "constraints-added",
    b"Constraints deleted": "constraints-removed",
}
_SCHEMA_STATS = frozenset(
    ("indexes-added", "indexes-removed", "constraints-added", "constraints-removed")
)


def parse_stats(lines: Iterable[Any]) -> dict[str, Any]:
    """FalkorDB's "Key: value" lines as Bolt summary counters (non-zero only)."""
    stats: dict[str, Any] = {}
    for line in lines:
        if not isinstance(line, bytes):
            continue
        key, _, rest = line.partition(b": ")
        name = _STAT_KEYS.get(key)
        if name is None:
            continue  # "Cached execution", "Query internal execution time"
        try:
            count = int(rest.split(b" ", 1)[0])
        except ValueError:
            continue
        if count:
            stats[name] = stats.get(name, 0) + count
    if stats:
        stats["contains-updates"] = True
    return stats


def query_type(stats: dict[str, Any], has_columns: bool) -> QueryType:
    """Neo4j's query type from what the query did: "s" schema, "w"/"rw" writes, "r" reads.

    Neo4j decides from the plan; FalkorDB tells us only what happened, so a writing query
    that happened to change nothing reports "r".
    """
    if not stats:
        return "r"
    if not _SCHEMA_STATS.isdisjoint(stats):
        return "s"
    return "rw" if has_columns else "w"


# ============================================================================================
# 4. Errors
# ============================================================================================

_ERROR_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.I), code)
    for p, code in [
        (r"^errMsg: Invalid input|^Invalid input|Error: could not parse query", SYNTAX_ERROR),
        (r"^'.*' (is )?not defined$", SYNTAX_ERROR),  # Neo4j: Variable `m` not defined
        (r"^Unknown function", SYNTAX_ERROR),
        (r"^Invalid constraint command", SYNTAX_ERROR),
        (r"^Error: ", SYNTAX_ERROR),  # duplicate columns, empty query, several statements
        (r"^Missing parameters", PARAMETER_MISSING),
        (r"^Procedure `.*` is not registered", PROCEDURE_NOT_FOUND),
        (r"division by zero", ARITHMETIC_ERROR),
        (r"constraint violation", CONSTRAINT_FAILED),
        (r"^Type mismatch|^Property values can only be|unhandled type", TYPE_ERROR),
        (r"^Query timed out", TIMED_OUT),
        (r"is already indexed|^Constraint already exists", SCHEMA_RULE_EXISTS),
        (r"^(ERR )?Unable to drop index", INDEX_NOT_FOUND),
        (r"^Unable to drop constraint", CONSTRAINT_NOT_FOUND),
        (r"RO_QUERY is to be executed only on read-only queries", ACCESS_MODE),
        (r"empty key", DATABASE_NOT_FOUND),
        (r"^Error opening CSV", EXTERNAL_RESOURCE),
        (r"^Max pending queries exceeded", RESOURCE_EXHAUSTED),
        (r"mem consumption exceeded|^Out of memory|^OOM ", OUT_OF_MEMORY),
        (r"^NOAUTH|^WRONGPASS|^NOPERM", UNAUTHORIZED),
        (
            r"^Only directed relationships|^Exactly one relationship type|"
            r"can't be redeclared|^Cannot merge|^Cannot use the same|^Delete type mismatch",
            SEMANTIC_ERROR,
        ),
        (
            r"^ArgumentError|must be a (non-negative|positive)|should be within|"
            r"^Failed to parse|^A point map|components map|must be specified|"
            r"^Received \d+ arguments|^Expected \d+ parameters",
            ARGUMENT_ERROR,
        ),
    ]
]
# Redis-level states in which a retry later can succeed.
_UNAVAILABLE = re.compile(r"^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b")


def classify_error(message: str) -> BackendError:
    """A FalkorDB error text as a ``BackendError`` with the matching Neo4j status code.

    The message is kept as FalkorDB wrote it; unrecognised errors get
    ``Neo.DatabaseError.General.UnknownError``.
    """
    if _UNAVAILABLE.match(message):
        return BackendUnavailable(f"FalkorDB is not ready: {message}")
    if message.lower().startswith("unknown command"):
        return BackendError(
            UNKNOWN_ERROR, f"the server does not have the FalkorDB module loaded: {message}"
        )
    for pattern, code in _ERROR_RULES:
        if pattern.search(message):
            return BackendError(code, message)
    return BackendError(UNKNOWN_ERROR, message)


# ============================================================================================
# The backend
# ============================================================================================


class ServerProcess(Protocol):
    """A FalkorDB server the backend starts and stops (``EmbeddedFalkorDB``)."""

    @property
    def host(self) -> str | None: ...

    @property
    def port(self) -> int | None: ...

    @property
    def unix_path(self) -> str | None: ...

    @property
    def password(self) -> str | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# A stale schema version is answered with [error "version mismatch", current version] and the
# query does not run; resend at most this many times before giving up (schema churning).
_VERSION_RETRIES = 5


class FalkorDBBackend:
    """``QueryBackend`` for FalkorDB over RESP (TCP or a Unix socket).

    Graph names are the Bolt database names, lower-cased (Neo4j database names are
    case-insensitive); an empty name means ``default_graph``. ``query_timeout`` (seconds) is
    sent to FalkorDB as the query's TIMEOUT, and the client waits a little longer before it
    gives up on the connection.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        unix_path: str | None = None,
        default_graph: str = "neo4j",
        pool_size: int = 4,
        query_timeout: float | None = None,
        connect_timeout: float = 5.0,
        server: ServerProcess | None = None,
        password: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._unix_path = unix_path
        self.default_graph = default_graph.lower()
        self._pool_size = pool_size
        self._query_timeout = query_timeout
        self._connect_timeout = connect_timeout
        self._server = server
        self._password = password
        self._pool: RespPool | None = None
        self._schemas: dict[str, _Schema] = {}
        self.description = self._describe()

    def _describe(self) -> str:
        where = f"unix:{self._unix_path}" if self._unix_path else f"{self._host}:{self._port}"
        return f"FalkorDB at {where}" + (" (embedded)" if self._server is not None else "")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the owned server (if any), open the pool, and check that FalkorDB answers.

        Raises ``BackendUnavailable`` when it cannot be reached, ``BackendError`` when the
        server is not FalkorDB.
        """
        if self._pool is not None:
            return
        if self._server is not None:
            await self._server.start()
            self._host = self._server.host or self._host
            self._port = self._server.port or self._port
            self._unix_path = self._server.unix_path
            self._password = self._server.password
            self.description = self._describe()
        pool = RespPool(
            self._host,
            self._port,
            unix_path=self._unix_path,
            size=self._pool_size,
            connect_timeout=self._connect_timeout,
            password=self._password,
        )
        try:
            await pool.start()
            await pool.execute("GRAPH.LIST", timeout=self._connect_timeout)
        except RespError as exc:
            pool.close()
            raise classify_error(exc.message) from None
        except RespConnectionError as exc:
            pool.close()
            raise BackendUnavailable(f"{self.description} is unreachable: {exc}") from None
        self._pool = pool
        # Neo4j's default database always exists; FalkorDB creates a graph on its first
        # write. Create the default graph now, so that EXPLAIN, read-only queries and
        # SHOW DATABASES behave from the first connection on.
        await self.run(self.default_graph, "RETURN 1", {})
        log.info("connected to %s (%d connections)", self.description, pool.size)

    async def close(self) -> None:
        """Close the connections (queries in flight fail) and stop an owned server."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if self._server is not None:
            await self._server.stop()

    # -- queries -------------------------------------------------------------------------------

    def graph_name(self, graph: str | None) -> str:
        return graph.lower() if graph else self.default_graph

    async def run(
        self,
        graph: str,
        query: str,
        params: dict[str, Any] | None = None,
        *,
        read_only: bool = False,
    ) -> QueryResult:
        """Run one query; see ``QueryBackend.run``. ``EXPLAIN`` returns the plan, no rows."""
        name = self.graph_name(graph)
        explain = _EXPLAIN.match(query)
        if explain is not None:
            body = prepare_query(query[explain.end() :], params)
            return await self._explain(name, body.text)
        prepared = prepare_query(query, params)
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._schemas[name] = _Schema()
        command = "GRAPH.RO_QUERY" if read_only else "GRAPH.QUERY"
        extra: list[Any] = []
        if self._query_timeout is not None:
            extra += ["timeout", max(1, int(self._query_timeout * 1000))]
        for _ in range(_VERSION_RETRIES):
            args = [command, name, prepared.text, "--compact", *extra]
            if schema.version is not None:
                args += ["version", schema.version]
            seen = schema.generation
            reply = await self._call(*args)
            current = _version_mismatch(reply)
            if current is None:
                break
            await self._refresh(name, schema, seen, current)
        else:
            # The schema changed under every attempt; run once without the check and let
            # decoding refresh on demand.
            reply = await self._call(command, name, prepared.text, "--compact", *extra)
        return await self._result(name, schema, reply, prepared)

    async def list_graphs(self) -> list[str]:
        """Names of the graphs that exist now (``GRAPH.LIST``)."""
        reply = await self._call("GRAPH.LIST")
        return [_text(item) for item in reply or []]

    # -- internals -----------------------------------------------------------------------------

    async def _call(self, *args: Any) -> Any:
        pool = self._pool
        if pool is None:
            raise BackendUnavailable(f"{self.description}: backend not started")
        timeout = None if self._query_timeout is None else self._query_timeout + 5.0
        try:
            reply = await pool.execute(*args, timeout=timeout)
        except RespError as exc:
            raise classify_error(exc.message) from None
        except RespTimeoutError as exc:
            raise BackendUnavailable(
                f"{self.description} did not answer in time ({exc}); the query may have run"
            ) from None
        except RespConnectionError as exc:
            raise BackendUnavailable(
                f"{self.description} is unreachable ({exc}); a query in flight may have run"
            ) from None
        if isinstance(reply, list):
            for item in reply:
                if isinstance(item, RespError) and item.message != "version mismatch":
                    # A run-time error reported after the header (FalkorDB puts it last).
                    raise classify_error(item.message)
        return reply

    async def _result(
        self, name: str, schema: _Schema, reply: Any, prepared: PreparedQuery
    ) -> QueryResult:
        if not isinstance(reply, list) or not reply:
            raise BackendError(UNKNOWN_ERROR, f"unexpected reply from FalkorDB: {reply!r:.200}")
        if len(reply) == 1:  # statistics only: the query has no RETURN
            stats = parse_stats(reply[0])
            return QueryResult([], [], stats, query_type(stats, False))
        header, raw_rows, raw_stats = reply[0], reply[1], reply[-1]
        fields = [_text(column[1]) for column in header]
        if prepared.inlined:
            fields = [_restore_names(f, prepared.inlined) for f in fields]
        rows: list[list[Any]] | None = None
        for attempt in range(3):
            try:
                rows = _Decoder(schema).rows(raw_rows)
                break
            except _UnknownSchemaId:
                # New labels/types/keys (this query or a concurrent writer made them).
                await self._refresh(name, schema, schema.generation, None, force=attempt > 0)
        if rows is None:
            raise BackendError(
                UNKNOWN_ERROR, f"graph {name!r}: result uses schema ids FalkorDB does not list"
            )
        stats = parse_stats(raw_stats)
        return QueryResult(fields, rows, stats, query_type(stats, True))

    async def _refresh(
        self,
        name: str,
        schema: _Schema,
        seen: int,
        version: int | None,
        *,
        force: bool = False,
    ) -> None:
        """Reload the id lists of ``name`` as one consistent snapshot with its version.

        ``seen`` is the generation the caller decoded with: if another task refreshed since,
        this one waits for it and returns. ``version`` is the current version if known.
        """
        async with schema.lock:
            if schema.generation != seen and not force:
                return
            guess = version if version is not None else (schema.version or 0)
            for _ in range(_VERSION_RETRIES):
                lists = await self._schema_lists(name, guess)
                if isinstance(lists, int):
                    guess = lists  # the schema changed; this is its version now
                    continue
                if lists is None:  # graph deleted meanwhile
                    schema.reset()
                    return
                schema.labels, schema.types, schema.keys = lists
                schema.version = guess
                schema.generation += 1
                log.debug(
                    "graph %r schema version %d: %d labels, %d types, %d keys",
                    name,
                    guess,
                    len(lists[0]),
                    len(lists[1]),
                    len(lists[2]),
                )
                return
            raise BackendUnavailable(f"graph {name!r}: schema kept changing while being read")

    async def _schema_lists(
        self, name: str, version: int
    ) -> tuple[list[str], list[str], list[str]] | int | None:
        # The three procedures pipelined on one connection (one round trip), each pinned to
        # `version` so that the three lists are guaranteed to belong together. RO_QUERY so
        # that a refresh never creates a graph.
        pool = self._pool
        if pool is None:
            raise BackendUnavailable(f"{self.description}: backend not started")
        try:
            conn = await pool.connection()
            replies = await asyncio.gather(
                *(
                    conn.execute("GRAPH.RO_QUERY", name, proc, "--compact", "version", version)
                    for proc in (
                        "CALL db.labels()",
                        "CALL db.relationshipTypes()",
                        "CALL db.propertyKeys()",
                    )
                ),
                return_exceptions=True,
            )
        except RespConnectionError as exc:
            raise BackendUnavailable(f"{self.description} is unreachable ({exc})") from None
        lists: list[list[str]] = []
        for reply in replies:
            if isinstance(reply, RespError):
                if "empty key" in reply.message:
                    return None
                raise classify_error(reply.message)
            if isinstance(reply, RespConnectionError):
                raise BackendUnavailable(f"{self.description} is unreachable ({reply})")
            if isinstance(reply, BaseException):
                raise reply
            current = _version_mismatch(reply)
            if current is not None:
                return current
            lists.append([_text(row[0][1]) for row in reply[1]])
        return lists[0], lists[1], lists[2]

    async def _explain(self, name: str, text: str) -> QueryResult:
        reply = await self._call("GRAPH.EXPLAIN", name, text)
        lines = [reply] if isinstance(reply, bytes | str) else list(reply or [])
        plan = explain_plan([_text(line) for line in lines])
        ops = _operators(plan)
        writes = bool(ops & _WRITE_OPERATORS)
        schema_op = any(op.startswith(("Create Index", "Drop Index")) for op in ops)
        kind: QueryType = (
            "s" if schema_op else ("rw" if writes and "Results" in ops else "w" if writes else "r")
        )
        return QueryResult([], [], {}, kind, plan)


_WRITE_OPERATORS = frozenset(("Create", "Merge", "MergeCreate", "Delete", "Update", "Foreach"))


def explain_plan(lines: list[str]) -> dict[str, Any]:
    """``GRAPH.EXPLAIN`` lines (children indented by 4 spaces) as a Bolt plan map."""
    root: dict[str, Any] | None = None
    stack: list[tuple[int, dict[str, Any]]] = []
    for line in lines:
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 4
        operator, _, details = line.strip().partition(" | ")
        node: dict[str, Any] = {
            "operatorType": operator,
            "arguments": {"details": details} if details else {},
            "identifiers": [],
            "children": [],
        }
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1]["children"].append(node)
        elif root is None:
            root = node
        stack.append((depth, node))
    return root or {"operatorType": "Empty", "arguments": {}, "identifiers": [], "children": []}


def _operators(plan: dict[str, Any]) -> set[str]:
    found = {plan["operatorType"]}
    for child in plan["children"]:
        found |= _operators(child)
    return found


def _version_mismatch(reply: Any) -> int | None:
    # [RespError("version mismatch"), current version]: the query did not run.
    if (
        isinstance(reply, list)
        and len(reply) == 2
        and isinstance(reply[0], RespError)
        and reply[0].message == "version mismatch"
        and isinstance(reply[1], int)
    ):
        return reply[1]
    return None


def _restore_names(column: str, inlined: tuple[tuple[str, str], ...]) -> str:
    for expr, name in inlined:
        if expr in column:
            column = column.replace(expr, name)
    return column


if TYPE_CHECKING:
    _conforms: QueryBackend = FalkorDBBackend()  # mypy checks the protocol here

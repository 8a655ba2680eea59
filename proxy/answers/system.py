"""Answers to the queries clients send on their own, for backends that cannot answer them.

cypher-shell, Neo4j Browser, py2neo and the drivers run a fixed set of procedures and SHOW
commands when they connect (see shared/reference/bolt.md §10). Neo4j answers them itself;
FalkorDB does not know them, so the proxy does. The routing table is always the proxy's:
it must name the proxy, or ``neo4j://`` clients would go around it.

Only the shapes clients actually send are matched: ``CALL proc(args) [YIELD cols] [WHERE
col = literal]`` and ``SHOW DATABASE(S) ...`` with the same optional tail. Anything more
elaborate is forwarded and the backend's error reaches the client unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bolt.errors import ClientError
from bolt.status import SYNTAX_ERROR
from proxy import NEO4J_COMPAT_VERSION
from proxy.answers.router import LocalHandler, QueryContext
from proxy.backends.base import QueryResult

ROUTING_TTL_SECONDS = 300

TAIL = r"(?:\s+YIELD\s+(?P<yield>.+?))?(?:\s+WHERE\s+(?P<where>.+?))?\s*;?\s*$"
_CALL = re.compile(
    r"^\s*CALL\s+(?P<proc>[A-Za-z_][\w.]*)\s*\((?P<args>[^()]*)\)" + TAIL, re.IGNORECASE | re.DOTALL
)
_SHOW_DB = re.compile(
    r"^\s*SHOW\s+(?:(?P<which>DEFAULT|HOME)\s+DATABASE|DATABASES|DATABASE\s+(?P<name>[`\w.-]+))"
    + TAIL,
    re.IGNORECASE | re.DOTALL,
)
_SHOW_LIST = re.compile(
    r"^\s*SHOW\s+(?:ALL\s+|BUILT\s+IN\s+|USER\s+DEFINED\s+)?"
    r"(?P<what>PROCEDURES|FUNCTIONS)" + TAIL,
    re.IGNORECASE | re.DOTALL,
)
_SHOW_USER = re.compile(r"^\s*SHOW\s+CURRENT\s+USER" + TAIL, re.IGNORECASE | re.DOTALL)
_YIELD_ITEM = re.compile(r"^\s*(?P<col>\w+)(?:\s+AS\s+(?P<alias>\w+))?\s*$", re.IGNORECASE)
_WHERE = re.compile(r"^\s*(?P<col>\w+)\s*=\s*(?:'(?P<s>[^']*)'|\"(?P<d>[^\"]*)\"|\$(?P<p>\w+))\s*$")
_BROWSER_META = re.compile(
    r"^\s*CALL\s+db\.labels\(\)\s+YIELD\s+label\s+RETURN\s+\{\s*name\s*:\s*'labels'.*"
    r"db\.relationshipTypes\(\).*db\.propertyKeys\(\)",
    re.IGNORECASE | re.DOTALL,
)


class UnsupportedClause(ValueError):
    """The query looked like ours but uses a form we do not answer; forward it instead."""


@dataclass(frozen=True)
class Tail:
    yield_items: list[tuple[str, str]] | None  # (column, alias); None = every column
    where: tuple[str, str | None, str | None] | None  # (column, literal, parameter name)


def parse_tail(match: re.Match[str]) -> Tail:
    items: list[tuple[str, str]] | None = None
    text = match.group("yield")
    if text and text.strip() != "*":
        items = []
        for part in text.split(","):
            found = _YIELD_ITEM.match(part)
            if not found:
                raise UnsupportedClause(part)
            items.append((found.group("col"), found.group("alias") or found.group("col")))
    where = None
    if match.group("where"):
        found = _WHERE.match(match.group("where"))
        if not found:
            raise UnsupportedClause(match.group("where"))
        literal = found.group("s") if found.group("s") is not None else found.group("d")
        where = (found.group("col"), literal, found.group("p"))
    return Tail(items, where)


def project(fields: list[str], rows: list[list[Any]], tail: Tail, ctx: QueryContext) -> QueryResult:
    """Apply ``YIELD cols`` and ``WHERE col = value`` to a whole local result."""
    if tail.where is not None:
        column, literal, parameter = tail.where
        if column not in fields:
            raise ClientError(SYNTAX_ERROR, f"Variable `{column}` not defined")
        wanted = ctx.parameters.get(parameter) if parameter else literal
        index = fields.index(column)
        rows = [row for row in rows if row[index] == wanted]
    if tail.yield_items is None:
        return QueryResult(list(fields), rows)
    indexes = []
    for column, _alias in tail.yield_items:
        if column not in fields:
            raise ClientError(SYNTAX_ERROR, f"Unknown procedure output: `{column}`")
        indexes.append(fields.index(column))
    return QueryResult(
        [alias for _c, alias in tail.yield_items], [[row[i] for i in indexes] for row in rows]
    )


def routing_servers(address: str) -> list[dict[str, Any]]:
    return [{"addresses": [address], "role": role} for role in ("WRITE", "READ", "ROUTE")]


Procedure = Callable[[QueryContext], "ProcedureResult"]


@dataclass(frozen=True)
class ProcedureResult:
    fields: list[str]
    rows: list[list[Any]]


def _ping(ctx: QueryContext) -> ProcedureResult:
    return ProcedureResult(["success"], [[True]])


def _components(ctx: QueryContext) -> ProcedureResult:
    return ProcedureResult(
        ["name", "versions", "edition"], [["Neo4j Kernel", [NEO4J_COMPAT_VERSION], "community"]]
    )


def _current_user(ctx: QueryContext) -> ProcedureResult:
    return ProcedureResult(["username", "roles", "flags"], [[ctx.user, ["admin"], []]])


def _client_config(ctx: QueryContext) -> ProcedureResult:
    return ProcedureResult(["name", "value"], [])


def _routing_table(ctx: QueryContext) -> ProcedureResult:
    return ProcedureResult(
        ["ttl", "servers"], [[ROUTING_TTL_SECONDS, routing_servers(ctx.advertised_address)]]
    )


# Procedures the proxy answers for backends without them. The routing procedures are in
# RELAY_PROCEDURES as well: the routing table must always name the proxy.
RELAY_PROCEDURES: dict[str, Procedure] = {
    "dbms.routing.getroutingtable": _routing_table,
    "dbms.cluster.routing.getroutingtable": _routing_table,
}
SYSTEM_PROCEDURES: dict[str, Procedure] = {
    **RELAY_PROCEDURES,
    "db.ping": _ping,
    "dbms.components": _components,
    "dbms.showcurrentuser": _current_user,
    "dbms.clientconfig": _client_config,
}


class ProcedureHandler:
    """``CALL proc(...) [YIELD ...] [WHERE ...]`` for the procedures in a table."""

    keywords: tuple[str, ...] = ("CALL",)

    def __init__(self, name: str, table: dict[str, Procedure], *, relay: bool) -> None:
        self.name = name
        self.table = table
        self.relay = relay

    def match(self, query: str) -> tuple[Procedure, Tail] | None:
        found = _CALL.match(query)
        if not found:
            return None
        procedure = self.table.get(found.group("proc").lower())
        if procedure is None:
            return None
        try:
            return procedure, parse_tail(found)
        except UnsupportedClause:
            return None

    async def run(self, parsed: tuple[Procedure, Tail], ctx: QueryContext) -> QueryResult:
        procedure, tail = parsed
        result = procedure(ctx)
        return project(result.fields, result.rows, tail, ctx)


SHOW_DATABASES_FIELDS = [
    "name",
    "type",
    "aliases",
    "access",
    "address",
    "role",
    "writer",
    "requestedStatus",
    "currentStatus",
    "statusMessage",
    "default",
    "home",
    "constituents",
]


class ShowDatabasesHandler:
    """``SHOW DATABASES``: one row per FalkorDB graph, plus ``neo4j`` and ``system``."""

    name = "show-databases"
    keywords: tuple[str, ...] = ("SHOW",)
    relay = False

    def __init__(self, default_graph: str = "neo4j") -> None:
        self.default_graph = default_graph

    def match(self, query: str) -> tuple[str | None, str | None, Tail] | None:
        found = _SHOW_DB.match(query)
        if not found:
            return None
        try:
            tail = parse_tail(found)
        except UnsupportedClause:
            return None
        name = found.group("name")
        return (found.group("which"), name.strip("`").lower() if name else None, tail)

    async def run(
        self, parsed: tuple[str | None, str | None, Tail], ctx: QueryContext
    ) -> QueryResult:
        which, only, tail = parsed
        assert ctx.backend is not None
        graphs = {g.lower() for g in await ctx.backend.list_graphs()}
        graphs.add(self.default_graph)
        rows: list[list[Any]] = []
        for name in ["system", *sorted(graphs - {"system"})]:
            is_default = name == self.default_graph
            rows.append(
                [
                    name,
                    "system" if name == "system" else "standard",
                    [],
                    "read-write",
                    ctx.advertised_address,
                    "primary",
                    True,
                    "online",
                    "online",
                    "",
                    is_default,
                    is_default,
                    [],
                ]
            )
        if which is not None:
            rows = [row for row in rows if row[10]]
        if only is not None:
            rows = [row for row in rows if row[0] == only]
        return project(SHOW_DATABASES_FIELDS, rows, tail, ctx)


class ShowListHandler:
    """``SHOW PROCEDURES|FUNCTIONS``: FalkorDB's own procedures, nothing it cannot run."""

    name = "show-procedures"
    keywords: tuple[str, ...] = ("SHOW",)
    relay = False

    def match(self, query: str) -> tuple[str, Tail] | None:
        found = _SHOW_LIST.match(query)
        if not found:
            return None
        try:
            return found.group("what").upper(), parse_tail(found)
        except UnsupportedClause:
            return None

    async def run(self, parsed: tuple[str, Tail], ctx: QueryContext) -> QueryResult:
        what, tail = parsed
        rows: list[list[Any]] = []
        if what == "PROCEDURES" and ctx.backend is not None:
            listed = await ctx.backend.run(ctx.db, "CALL dbms.procedures()", {})
            name_index = listed.fields.index("name") if "name" in listed.fields else 0
            rows = [[row[name_index], "", f"{row[name_index]}()"] for row in listed.rows]
        return project(["name", "description", "signature"], rows, tail, ctx)


class ShowCurrentUserHandler:
    name = "show-current-user"
    keywords: tuple[str, ...] = ("SHOW",)
    relay = False

    def match(self, query: str) -> Tail | None:
        found = _SHOW_USER.match(query)
        if not found:
            return None
        try:
            return parse_tail(found)
        except UnsupportedClause:
            return None

    async def run(self, parsed: Tail, ctx: QueryContext) -> QueryResult:
        fields = ["user", "roles", "passwordChangeRequired", "suspended", "home"]
        return project(fields, [[ctx.user, ["admin"], False, False, None]], parsed, ctx)


class BrowserMetaHandler:
    """Neo4j Browser's labels / relationship types / property keys query (one UNION)."""

    name = "browser-meta"
    keywords: tuple[str, ...] = ("CALL",)
    relay = False

    def match(self, query: str) -> bool | None:
        return True if _BROWSER_META.match(query) else None

    async def run(self, parsed: bool, ctx: QueryContext) -> QueryResult:
        assert ctx.backend is not None
        rows = []
        for name, procedure in (
            ("labels", "db.labels"),
            ("relationshipTypes", "db.relationshipTypes"),
            ("propertyKeys", "db.propertyKeys"),
        ):
            listed = await ctx.backend.run(ctx.db, f"CALL {procedure}()", {})
            rows.append([{"name": name, "data": [row[0] for row in listed.rows][:1000]}])
        return QueryResult(["result"], rows)


def relay_handlers() -> list[LocalHandler]:
    """Handlers that apply whatever the backend is."""
    return [ProcedureHandler("routing", RELAY_PROCEDURES, relay=True)]


def query_backend_handlers(default_graph: str = "neo4j") -> list[LocalHandler]:
    """Handlers for a backend that is not Neo4j (FalkorDB): the connect-time system queries."""
    return [
        BrowserMetaHandler(),
        ProcedureHandler("system-procedures", SYSTEM_PROCEDURES, relay=False),
        ShowDatabasesHandler(default_graph),
        ShowListHandler(),
        ShowCurrentUserHandler(),
    ]

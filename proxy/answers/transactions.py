"""``SHOW TRANSACTIONS`` and ``TERMINATE TRANSACTIONS``, for backends that have neither (FalkorDB).

Neo4j Browser's ``:queries`` frame runs ``SHOW TRANSACTIONS YIELD currentQuery, username,
metaData, parameters, status, elapsedTime, database, transactionId`` and its "kill" button
``TERMINATE TRANSACTIONS "id"``. The proxy answers from what it knows runs on each of its
connections (``proxy.session.registry``): an open explicit transaction, or an auto-commit query
being run or streamed. In front of a Bolt backend the backend answers these itself.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from bolt.errors import ClientError
from bolt.status import SYNTAX_ERROR
from bolt.values import Duration
from proxy.answers.router import QueryContext
from proxy.answers.system import TAIL, Tail, UnsupportedClause, parse_tail, project
from proxy.backends.base import QueryResult
from proxy.session.registry import Activity, Session

_IDS = r"(?P<ids>(?:'[^']*'|\"[^\"]*\"|\$\w+)(?:\s*,\s*(?:'[^']*'|\"[^\"]*\"|\$\w+))*)"
_SHOW = re.compile(rf"^\s*SHOW\s+TRANSACTIONS?(?:\s+{_IDS})?" + TAIL, re.IGNORECASE | re.DOTALL)
_TERMINATE = re.compile(
    rf"^\s*TERMINATE\s+TRANSACTIONS?\s+{_IDS}" + TAIL, re.IGNORECASE | re.DOTALL
)
_ID = re.compile(r"'([^']*)'|\"([^\"]*)\"|\$(\w+)")

# What Neo4j 5 returns without YIELD, then what YIELD * adds that the proxy can know.
DEFAULT_FIELDS = [
    "database",
    "transactionId",
    "currentQueryId",
    "connectionId",
    "clientAddress",
    "username",
    "currentQuery",
    "startTime",
    "status",
    "elapsedTime",
]
ALL_FIELDS = [
    *DEFAULT_FIELDS,
    "metaData",
    "parameters",
    "currentQueryStartTime",
    "protocol",
    "currentQueryStatus",
    "statusDetails",
    "currentQueryElapsedTime",
    "outerTransactionId",
]
TERMINATE_FIELDS = ["transactionId", "username", "message"]


def _ids(text: str | None, ctx: QueryContext) -> list[str] | None:
    if not text:
        return None
    found: list[str] = []
    for single, double, parameter in _ID.findall(text):
        if parameter:
            value = ctx.parameters.get(parameter)
            values = value if isinstance(value, list) else [value]
            found += [v for v in values if isinstance(v, str)]
        else:
            found.append(single or double)
    return found


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _elapsed(since: float) -> Duration:
    nanos = max(0, int((time.monotonic() - since) * 1_000_000_000))
    return Duration(0, 0, nanos // 1_000_000_000, nanos % 1_000_000_000)


def _row(session: Session, activity: Activity) -> list[Any]:
    status = (
        "Running"
        if activity.terminated is None
        else (f"Terminated with reason: {activity.terminated}")
    )
    started = _iso(activity.started)
    return [
        activity.database,
        activity.transaction_id,
        activity.query_id,
        session.connection_id,
        session.client_address,
        session.user,
        activity.query,
        started,
        status,
        _elapsed(activity.clock),
        activity.metadata,
        activity.parameters,
        started,
        "bolt",
        "running" if activity.query else "",
        "",
        _elapsed(activity.clock),
        "",
    ]


class ShowTransactionsHandler:
    name = "show-transactions"
    keywords: tuple[str, ...] = ("SHOW",)
    relay = False

    def match(self, query: str) -> tuple[str | None, Tail, bool] | None:
        found = _SHOW.match(query)
        if not found:
            return None
        try:
            tail = parse_tail(found)
        except UnsupportedClause:
            return None
        return found.group("ids"), tail, found.group("yield") is not None

    async def run(self, parsed: tuple[str | None, Tail, bool], ctx: QueryContext) -> QueryResult:
        ids_text, tail, yielded = parsed
        wanted = _ids(ids_text, ctx)
        rows = []
        for session in ctx.registry.sessions() if ctx.registry is not None else []:
            activity = session.activity()
            if activity is None:
                continue
            if wanted is not None and activity.transaction_id not in wanted:
                continue
            rows.append(_row(session, activity))
        if not yielded:
            count = len(DEFAULT_FIELDS)
            return QueryResult(list(DEFAULT_FIELDS), [row[:count] for row in rows])
        return project(ALL_FIELDS, rows, tail, ctx)


class TerminateTransactionsHandler:
    name = "terminate-transactions"
    keywords: tuple[str, ...] = ("TERMINATE",)
    relay = False

    def match(self, query: str) -> tuple[str, Tail] | None:
        found = _TERMINATE.match(query)
        if not found:
            return None
        try:
            return found.group("ids"), parse_tail(found)
        except UnsupportedClause:
            return None

    async def run(self, parsed: tuple[str, Tail], ctx: QueryContext) -> QueryResult:
        ids_text, tail = parsed
        wanted = _ids(ids_text, ctx) or []
        if not wanted:
            raise ClientError(SYNTAX_ERROR, "TERMINATE TRANSACTIONS needs transaction ids")
        sessions = ctx.registry.sessions() if ctx.registry is not None else []
        rows: list[list[Any]] = []
        for transaction_id in wanted:
            for session in sessions:
                activity = session.activity()
                if activity is not None and activity.transaction_id == transaction_id:
                    rows.append([transaction_id, session.user, session.terminate(transaction_id)])
                    break
            else:
                rows.append([transaction_id, None, "Transaction not found."])
        return project(TERMINATE_FIELDS, rows, tail, ctx)

"""SHOW TRANSACTIONS / TERMINATE TRANSACTIONS on query backends, from the session registry
(proxy/answers/transactions.py); the real thing, through Neo4j Browser's own queries, is in
conformance/test_browser_replay.py."""

from __future__ import annotations

from typing import Any

from bolt.values import Duration
from proxy.answers.router import QueryContext
from proxy.answers.transactions import (
    DEFAULT_FIELDS,
    ShowTransactionsHandler,
    TerminateTransactionsHandler,
)
from proxy.session.registry import Activity, Registry


class FakeSession:
    """What the registry needs from a session: who, where, and what runs."""

    def __init__(self, connection_id: str, activity: Activity | None) -> None:
        self.connection_id = connection_id
        self.client_address = "127.0.0.1:5000"
        self.user = "ann"
        self.current = activity

    def activity(self) -> Activity | None:
        return self.current

    def terminate(self, transaction_id: str) -> str:
        assert self.current is not None
        self.current.terminated = "Terminated by user"
        return "Transaction terminated."


def context(registry: Registry, **parameters: Any) -> QueryContext:
    return QueryContext(
        db="neo4j", user="ann", parameters=parameters, advertised_address="x:1", registry=registry
    )


async def test_show_and_terminate() -> None:
    registry = Registry()
    running = registry.new_activity("neo4j", explicit=True, metadata={"app": "t"})
    running.query, running.parameters = "MATCH (n) RETURN n", {"x": 1}
    registry.add(FakeSession("bolt-1", running))
    registry.add(FakeSession("bolt-2", None))  # connected, running nothing
    show = ShowTransactionsHandler()
    result = await show.run(show.match("SHOW TRANSACTIONS"), context(registry))
    assert result.fields == DEFAULT_FIELDS
    (row,) = result.rows
    assert row[:7] == [
        "neo4j",
        running.transaction_id,
        running.query_id,
        "bolt-1",
        "127.0.0.1:5000",
        "ann",
        "MATCH (n) RETURN n",
    ]
    assert row[8] == "Running" and isinstance(row[9], Duration)
    yielded = show.match("SHOW TRANSACTIONS YIELD metaData, parameters, transactionId")
    result = await show.run(yielded, context(registry))
    assert result.rows == [[{"app": "t"}, {"x": 1}, running.transaction_id]]
    terminate = TerminateTransactionsHandler()
    parsed = terminate.match(f'TERMINATE TRANSACTIONS "{running.transaction_id}", "nope"')
    result = await terminate.run(parsed, context(registry))
    assert result.rows == [
        [running.transaction_id, "ann", "Transaction terminated."],
        ["nope", None, "Transaction not found."],
    ]
    by_parameter = show.match("SHOW TRANSACTIONS $ids")
    result = await show.run(by_parameter, context(registry, ids=[running.transaction_id]))
    assert result.rows[0][8] == "Terminated with reason: Terminated by user"


def test_other_show_commands_are_not_matched() -> None:
    assert ShowTransactionsHandler().match("SHOW DATABASES") is None
    assert TerminateTransactionsHandler().match("TERMINATE TRANSACTIONS") is None

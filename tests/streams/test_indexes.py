"""Index advice for pattern streams (``proxy.streams.indexes``): which nodes a pattern MERGEs,
which of them an index serves, and the WARNING that START logs for the others. The end-to-end
case (a real proxy on FalkorDB) is in ``test_mapping_streams.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from grammar.pattern import parse_pattern
from proxy.streams.indexes import (
    create_index_statement,
    indexed_pairs,
    merge_keys,
    missing,
    warn_missing,
)


def test_merge_keys_of_node_and_relationship_patterns() -> None:
    patterns = [
        parse_pattern("(:Person:Customer{!id, name})"),
        parse_pattern("(:Person{!id})-[:BOUGHT{price}]->(:Product{!sku: productId, !shop})"),
        parse_pattern("User{!userId, *}"),
    ]
    assert merge_keys(patterns) == [
        (("Person", "Customer"), ("id",)),
        (("Person",), ("id",)),
        (("Product",), ("sku", "shop")),  # the graph's names, not the message's fields
        (("User",), ("userId",)),
    ]


def test_indexed_pairs_reads_falkordb_and_neo4j_rows() -> None:
    falkordb = [["Person", ["id"], "NODE"], ["R", ["x"], "RELATIONSHIP"]]
    neo4j = [[["Product"], ["sku", "shop"], "NODE"], [None, None, "NODE"]]  # a lookup index
    assert indexed_pairs(falkordb) == {("Person", "id")}
    assert indexed_pairs(neo4j) == {("Product", "sku"), ("Product", "shop")}


def test_missing_needs_one_label_and_one_key() -> None:
    keys = [
        (("Person", "Customer"), ("id",)),
        (("Product",), ("sku", "shop")),
        (("User",), ("userId",)),
    ]
    indexed = {("Customer", "id"), ("Product", "shop"), ("User", "name")}
    assert missing(keys, indexed) == [(("User",), ("userId",))]
    assert missing(keys, set()) == keys


def test_create_index_statement_quotes_names() -> None:
    assert create_index_statement(("Person",), ("id",)) == "CREATE INDEX FOR (n:Person) ON (n.id)"
    assert (
        create_index_statement(("My Label",), ("a`b",))
        == "CREATE INDEX FOR (n:`My Label`) ON (n.`a``b`)"
    )
    assert create_index_statement(("1st",), ("x",)) == "CREATE INDEX FOR (n:`1st`) ON (n.x)"


async def _rows(rows: Any) -> Any:
    if isinstance(rows, Exception):
        raise rows
    return rows


def test_warn_missing_logs_one_warning_per_unserved_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = [(("Person",), ("id",)), (("Org",), ("code",))]
    with caplog.at_level(logging.INFO, logger="boltstream.streams"):
        lacking = asyncio.run(warn_missing("people", keys, _rows([["Org", ["code"], "NODE"]])))
    assert lacking == [(("Person",), ("id",))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stream people: no index on :Person(id)" in warnings[0]
    assert warnings[0].endswith("create one: CREATE INDEX FOR (n:Person) ON (n.id)")


def test_warn_missing_says_so_when_every_node_is_served(caplog: pytest.LogCaptureFixture) -> None:
    keys = [(("Person",), ("id",))]
    with caplog.at_level(logging.INFO, logger="boltstream.streams"):
        assert asyncio.run(warn_missing("p", keys, _rows([["Person", ["id"], "NODE"]]))) == []
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "every node its pattern MERGEs has an index" in caplog.records[0].getMessage()


def test_warn_missing_is_silent_when_the_backend_cannot_list_indexes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = [(("Person",), ("id",))]
    with caplog.at_level(logging.INFO, logger="boltstream.streams"):
        assert asyncio.run(warn_missing("p", keys, _rows(RuntimeError("no SHOW INDEXES")))) == []
        assert asyncio.run(warn_missing("p", keys, _rows(None))) == []
    assert not caplog.records

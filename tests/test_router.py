"""The classification seam: which handler answers a query, and that it cannot be stalled."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.answers.router import QueryContext, Router
from proxy.backends.base import QueryResult


class Probe:
    name = "probe"
    keywords = ("CALL",)
    relay = True

    def match(self, query: str) -> Any | None:
        return "hit" if "probe" in query else None

    async def run(self, parsed: Any, ctx: QueryContext) -> QueryResult:
        return QueryResult([], [])


class FalkorOnly(Probe):
    name = "falkor-only"
    relay = False


@pytest.mark.parametrize("query", ["CALL probe()", "  call probe()", "// c\n/* d */ CALL probe()"])
def test_first_keyword_after_comments_selects_handlers(query: str) -> None:
    found = Router([Probe()], relay=True).classify(query)
    assert found is not None and found.handler.name == "probe" and found.parsed == "hit"


@pytest.mark.parametrize("query", ["MATCH (n) RETURN n", "CALL other()", "", "   ", "(x)"])
def test_everything_else_is_forwarded(query: str) -> None:
    assert Router([Probe()], relay=True).classify(query) is None


def test_relay_router_leaves_out_query_backend_handlers() -> None:
    assert Router([FalkorOnly()], relay=True).classify("CALL probe()") is None
    assert Router([FalkorOnly()], relay=False).classify("CALL probe()") is not None


@pytest.mark.timeout(5)
def test_many_comments_do_not_stall_the_classifier() -> None:
    # The old first-word pattern backtracked exponentially here (1.3 s at 24 comments).
    assert Router([Probe()], relay=True).classify("/**/" * 200 + "(") is None

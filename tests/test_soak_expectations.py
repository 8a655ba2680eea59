"""What ``bench/soak.py`` expects of the graph when the producer resent a message (Tansu has
no idempotent producer; the 10-minute run saw 10 records twice in a topic)."""

from __future__ import annotations

from bench.soak import manual_edges


def test_an_edge_joins_every_copy_of_its_nodes() -> None:
    assert manual_edges([b"1", b"2", b"1 2"]) == 1
    # "1" sent twice: the edges after it match both nodes.
    assert manual_edges([b"1", b"2", b"1 2", b"1", b"1 2", b"2 1"]) == 1 + 2 + 2
    assert manual_edges([b"3 4"]) == 0  # no node yet: MATCH finds nothing

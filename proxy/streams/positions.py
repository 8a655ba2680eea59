"""Where an exactly-once stream is: its positions, stored in the graph with the data.

A stream with ``DELIVERY EXACTLY ONCE`` keeps, for each (topic, partition) it reads, the offset
of the next message to apply, in a node of the graph it writes to::

    (:__BoltstreamPosition {key: '["stream","topic",0]', stream: 'stream', topic: 'topic',
                            partition: 0, next: 1234})

and every write of a batch updates those nodes in the same atomic unit as the batch's own
writes (a Bolt transaction; on FalkorDB one query, ``compose.py``). On FalkorDB a write adds a
node instead of updating one (see ``FENCE_TAIL`` for why), so a partition can have several,
up to ``PRUNE_EVERY``: its position is the largest ``next``. A starting stream, and a
consumer that is given a partition by a rebalance, seeks to the stored positions, so whatever
crashed where, a message is applied once: before the unit committed, neither its data nor the
position moved; after, both did.

**The fence.** Each write says which positions it expects to find (what it last wrote or
read) and updates them only if they are exactly that; otherwise the unit changes nothing and
the writer raises ``FenceLost`` with what it found. That stops the duplicates a stale writer
would make: a proxy whose partition moved to another member during a rebalance, or a second
proxy running the same stream. ``FenceLost`` whose found positions are exactly the ones this
write would have set means the unit was already applied (an earlier attempt that timed out
did commit): the write succeeded. Anything else: the caller re-reads the positions, seeks
there and carries on.

The label starts with ``__Boltstream``: boltstream reserves it (and ``__boltstream`` names of
variables and parameters). ``DROP STREAM`` leaves the nodes, so a stream created again under
the same name resumes where it was. Mind that a query matching every node (``MATCH (n)``) sees
them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LABEL = "__BoltstreamPosition"
PREFIX = "__boltstream"  # reserved for names of variables and parameters
TopicPartition = tuple[str, int]
ABSENT = -1  # the expected position of a partition that has no node yet

Query = tuple[str, dict[str, Any]]


def position_key(stream: str, topic: str, partition: int) -> str:
    """The ``key`` property: unambiguous whatever the names hold."""
    return json.dumps([stream, topic, partition], ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Fence:
    """What a write of stream ``stream`` expects to find and sets: for each partition it
    touches, the stored next offset (``None``: no node yet) and the next offset after it."""

    stream: str
    expected: Mapping[TopicPartition, int | None]
    next: Mapping[TopicPartition, int]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "key": position_key(self.stream, topic, partition),
                "topic": topic,
                "partition": partition,
                "expected": ABSENT
                if self.expected.get((topic, partition)) is None
                else self.expected[(topic, partition)],
                "next": offset,
            }
            for (topic, partition), offset in sorted(self.next.items())
        ]

    def moves_back(self) -> bool:
        """Whether this write sets a position before the one it expects (a SET OFFSET)."""
        return any(
            (at := self.expected.get(tp)) is not None and offset < at
            for tp, offset in self.next.items()
        )

    def already_applied(self, found: Mapping[TopicPartition, int]) -> bool:
        """Whether ``found`` (the stored positions) says this very write is in the graph."""
        return all(found.get(tp) == offset for tp, offset in self.next.items())


class FenceLost(Exception):
    """The stored positions are not what the write expected: nothing was written.
    ``found``: the positions stored now (for this stream)."""

    def __init__(self, found: Mapping[TopicPartition, int]) -> None:
        super().__init__(f"the stream's positions in the graph moved: {dict(found)}")
        self.found = dict(found)


# The fence as Cypher: count the positions that are as expected; go on (with one row) only if
# all are, then set them. Written so that no backend can push the check into the match (the
# comparison sits inside an aggregation), and so that a failed check leaves zero rows: every
# clause after it runs on nothing. A partition's position is the largest ``next`` of its nodes
# (on FalkorDB there can be several: see FENCE_TAIL).
#
# On a Bolt backend, one lookup per partition (a uniqueness constraint on ``key`` makes each
# an index seek):
_CHECK = (
    f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"OPTIONAL MATCH ({PREFIX}_n:{LABEL} {{key: {PREFIX}_p.key}}) "
    f"WITH {PREFIX}_p.key AS {PREFIX}_k, {PREFIX}_p.expected AS {PREFIX}_e, "
    f"max({PREFIX}_n.next) AS {PREFIX}_at "
    f"WITH sum(CASE WHEN coalesce({PREFIX}_at, {ABSENT}) = {PREFIX}_e "
    f"THEN 1 ELSE 0 END) AS {PREFIX}_ok "
)
# On FalkorDB (no index on the label: boltstream creates none), one scan of the label for the
# whole fence: a lookup per partition scans every position node once per partition, which
# with 100 partitions of up to PRUNE_EVERY nodes took 221 ms a write, the single scan 6 ms.
_CHECK_ONE_SCAN = (
    f"OPTIONAL MATCH ({PREFIX}_n:{LABEL}) WHERE {PREFIX}_n.stream = ${PREFIX}_stream "
    f"WITH {PREFIX}_n.key AS {PREFIX}_k, max({PREFIX}_n.next) AS {PREFIX}_at "
    f"WITH collect([{PREFIX}_k, {PREFIX}_at]) AS {PREFIX}_found "
    f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"WITH {PREFIX}_p, [{PREFIX}_f IN {PREFIX}_found WHERE {PREFIX}_f[0] = {PREFIX}_p.key "
    f"| {PREFIX}_f[1]] AS {PREFIX}_at "
    f"WITH sum(CASE WHEN coalesce({PREFIX}_at[0], {ABSENT}) = {PREFIX}_p.expected "
    f"THEN 1 ELSE 0 END) AS {PREFIX}_ok "
)
WRITTEN = f"{PREFIX}_written"
# One statement of its own (Bolt: the first of the batch's transaction): one row, the number
# of positions set (as many as the fence has) or 0.
FENCE_STATEMENT = (
    _CHECK + f"WHERE {PREFIX}_ok = size(${PREFIX}_positions) "
    f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"MERGE ({PREFIX}_n:{LABEL} {{key: {PREFIX}_p.key}}) "
    f"SET {PREFIX}_n.stream = ${PREFIX}_stream, {PREFIX}_n.topic = {PREFIX}_p.topic, "
    f"{PREFIX}_n.partition = {PREFIX}_p.partition, {PREFIX}_n.next = {PREFIX}_p.next "
    f"RETURN count(*) AS {WRITTEN}"
)
# The end of a composed query (FalkorDB, compose.py), after the batch's writes: if the fence
# does not hold, a division by zero undoes the whole query (the divisor is computed, so it
# cannot be folded away when the query is planned). Takes one row in.
#
# On FalkorDB a write CREATEs a new position node instead of setting the old one: FalkorDB
# (4.16) makes the first change to an existing node after nodes with labels were created cost
# time in proportion to the whole graph (measured: 0.8 ms on an idle graph, 30 ms at 1.1
# million nodes, 55 ms at 1.65 million, for one SET of one node), where a CREATE costs what it
# costs on an empty graph. So each write adds a node per partition, the largest ``next`` is the
# position, and ``PRUNE`` (run every ``PRUNE_EVERY`` writes, not in the atomic unit) deletes
# the ones behind it. A write that moves a position back (``ALTER STREAM ... SET OFFSET``)
# deletes the partition's nodes first, in the same query (``FENCE_TAIL_BACK``).
_FENCE_THEN = (
    _CHECK_ONE_SCAN
    + f"WITH {PREFIX}_ok, 1 / (CASE WHEN {PREFIX}_ok = size(${PREFIX}_positions) THEN 1 "
    f"ELSE 0 END) AS {PREFIX}_fence "
)
_CREATE = (
    f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"CREATE ({PREFIX}_n:{LABEL} {{key: {PREFIX}_p.key, stream: ${PREFIX}_stream, "
    f"topic: {PREFIX}_p.topic, partition: {PREFIX}_p.partition, next: {PREFIX}_p.next}}) "
    f"RETURN count(*) AS {WRITTEN}"
)
FENCE_TAIL = _FENCE_THEN + _CREATE
FENCE_TAIL_BACK = (
    _FENCE_THEN + f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"OPTIONAL MATCH ({PREFIX}_o:{LABEL} {{key: {PREFIX}_p.key}}) DELETE {PREFIX}_o "
    f"WITH count(*) AS {PREFIX}_gone " + _CREATE
)
FENCE_FAILED = "Division by zero"  # how FalkorDB reports a failed FENCE_TAIL
PRUNE = (
    f"UNWIND ${PREFIX}_positions AS {PREFIX}_p "
    f"MATCH ({PREFIX}_n:{LABEL} {{key: {PREFIX}_p.key}}) "
    f"WHERE {PREFIX}_n.next < {PREFIX}_p.next DELETE {PREFIX}_n"
)
PRUNE_EVERY = 64  # fenced writes: a partition has at most this many position nodes


def fence_tail(fence: Fence) -> str:
    """The end of a composed query that checks and sets ``fence``'s positions (FalkorDB)."""
    return FENCE_TAIL_BACK if fence.moves_back() else FENCE_TAIL


def prune_statement(fence: Fence) -> Query:
    """Deletes the position nodes behind those ``fence`` set (FalkorDB)."""
    return PRUNE, fence_parameters(fence)


READ_POSITIONS = (
    f"MATCH (n:{LABEL}) WHERE n.stream = $stream "
    "RETURN n.topic AS topic, n.partition AS partition, max(n.next) AS next"
)


def fence_parameters(fence: Fence) -> dict[str, Any]:
    return {f"{PREFIX}_positions": fence.rows(), f"{PREFIX}_stream": fence.stream}


def fence_statement(fence: Fence) -> Query:
    return FENCE_STATEMENT, fence_parameters(fence)


def positions_from_rows(rows: Iterable[Iterable[Any]]) -> dict[TopicPartition, int]:
    """``READ_POSITIONS`` rows -> {(topic, partition): next}; rows of another shape are
    ignored (a user may have written anything under the label)."""
    found: dict[TopicPartition, int] = {}
    for row in rows:
        topic, partition, offset = [*list(row), None, None, None][:3]
        if isinstance(topic, str) and type(partition) is int and type(offset) is int:
            found[(topic, partition)] = offset
    return found


def next_offsets(messages: Sequence[Any]) -> dict[TopicPartition, int]:
    """(topic, partition) -> the offset after the last of ``messages`` there (they come in
    the order they were consumed: a partition's offsets grow)."""
    offsets: dict[TopicPartition, int] = {}
    for message in reversed(messages):
        key = (message.topic(), message.partition())
        if key not in offsets:
            offsets[key] = message.offset() + 1
    return offsets

"""The cluster catalog's rules, on an in-memory log shared by several members (no broker):
log order decides, the first CREATE of a name wins, tombstones drop, records of a newer
version are shown unreadable, counters add up over members, silent members hold nothing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from proxy.streams.catalog import MemberStatus, StreamExists
from proxy.streams.cluster import CATALOG_FORMAT, ClusterCatalog, ClusterSettings
from proxy.streams.definition import StreamDefinition, TransformRef
from tests.streams.memlog import SharedLog


def member(log: SharedLog, name: str, **settings: Any) -> ClusterCatalog:
    catalog = ClusterCatalog(
        ClusterSettings(name="c1", bootstrap="unused:9092", member=name, **settings)
    )
    log.join(catalog)
    return catalog


def definition(name: str, topic: str = "t") -> StreamDefinition:
    return StreamDefinition(
        name=name,
        uri="127.0.0.1:9092",
        topic=topic,
        transform=TransformRef("file:///x.py", "def stream(b): return []", "0" * 64),
        batch_interval_ms=100,
        batch_size=10,
        consumer_group=name,
        owner="alice",
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_change_on_one_member_reaches_the_others() -> None:
    log = SharedLog()
    one, two = member(log, "a:1"), member(log, "b:1")
    heard: list[str] = []
    two.subscribe(heard.append)
    await one.insert(definition("s1"))
    await settle()
    record = await two.get("s1")
    assert record is not None and record.definition == definition("s1")
    assert record.state.status == "stopped"
    assert await two.update("s1", status="running", limit_batches=3)
    await settle()
    seen = await one.get("s1")
    assert seen is not None and (seen.state.status, seen.state.limit_batches) == ("running", 3)
    altered = definition("s1", topic="other")
    assert await one.replace(altered)
    await settle()
    record = await two.get("s1")
    assert record is not None and record.definition == altered
    assert record.state.status == "running"  # the state stays through an ALTER
    assert await two.delete("s1")
    await settle()
    assert await one.get("s1") is None and await one.all() == []
    assert heard == ["s1", "s1", "s1", "s1"]
    assert not await one.update("s1", status="stopped")


async def test_the_first_create_in_the_log_wins() -> None:
    log = SharedLog()
    one, two = member(log, "a:1"), member(log, "b:1")
    # Member a's CREATE reached the log, but member b has not read it yet when it creates.
    log.append(
        one.catalog_topic,
        json.dumps(["s1", "first"]).encode(),
        json.dumps(
            {
                "format": CATALOG_FORMAT,
                "stream": "s1",
                "incarnation": "first",
                "definition": json.loads(definition("s1", topic="mine").to_json()),
                "state": {"status": "stopped", "limit_batches": None, "last_error": None},
                "created_at": 1.0,
                "at": 1.0,
                "by": "a:1",
            }
        ).encode(),
    )
    with pytest.raises(StreamExists):
        await two.insert(definition("s1", topic="theirs"))
    await settle()
    for catalog in (one, two):
        record = await catalog.get("s1")
        assert record is not None and record.definition is not None
        assert record.definition.topic == "mine"
    # The loser's record is followed by its tombstone (compaction cannot bring it back).
    keys = [(json.loads(k or b"null"), v is None) for _t, _o, k, v in log.records]
    loser = [k for k, _ in keys if k != ["s1", "first"]]
    assert len(loser) == 2 and keys[-1] == (loser[0], True)
    # A member that starts now reads the same outcome from the log.
    late = member(log, "c:1")
    log.deliver()
    await settle()
    record = await late.get("s1")
    assert record is not None and record.definition is not None
    assert record.definition.topic == "mine"


async def test_a_record_of_a_newer_version_is_shown_unreadable_and_droppable() -> None:
    log = SharedLog()
    one = member(log, "a:1")
    for name, document in {
        "newer": {"format": CATALOG_FORMAT + 1, "state": {"status": "running"}},
        "newdef": {
            "format": CATALOG_FORMAT,
            "definition": {**json.loads(definition("newdef").to_json()), "version": 99},
            "state": {"status": "stopped"},
        },
    }.items():
        log.append(
            one.catalog_topic, json.dumps([name, "x"]).encode(), json.dumps(document).encode()
        )
    log.append(one.catalog_topic, b"not json", b"{}")  # another program's record: skipped
    log.deliver()
    await settle()
    records = {r.name: r for r in await one.all()}
    assert set(records) == {"newer", "newdef"}
    assert records["newer"].definition is None
    assert "format 2, written by a newer boltstream" in (records["newer"].unreadable or "")
    assert records["newdef"].definition is None
    assert "version 99" in (records["newdef"].unreadable or "")
    assert await one.delete("newer")
    await settle()
    assert [r.name for r in await one.all()] == ["newdef"]


async def test_counters_add_up_over_members_and_silent_members_hold_nothing() -> None:
    log = SharedLog()
    one, two = member(log, "a:1", member_timeout=0.5), member(log, "b:1", member_timeout=0.5)
    await one.insert(definition("s1"))
    await settle()
    assert one.members("s1") == {}  # stopped: nobody holds it
    await one.update("s1", status="running")
    await settle()
    await one.add_progress({"s1": (10, 1)})
    await two.add_progress({"s1": (5, 2, 1, 1)})
    await one.heartbeat({"s1": MemberStatus([("t", 0), ("t", 1)])})
    await two.heartbeat({"s1": MemberStatus([("t", 2)], last_error="slow")})
    await settle()
    for catalog in (one, two):
        record = await catalog.get("s1")
        assert record is not None
        state = record.state
        assert (state.messages_processed, state.batches_processed) == (15, 3)
        assert (state.messages_dead_lettered, state.messages_skipped) == (1, 1)
        assert catalog.members("s1") == {
            "a:1": MemberStatus([("t", 0), ("t", 1)]),
            "b:1": MemberStatus([("t", 2)], "slow"),
        }
    # Member b falls silent (kill -9): after member_timeout it holds nothing; its counters stay.
    time.sleep(0.6)
    await one.heartbeat({"s1": MemberStatus([("t", 0), ("t", 1), ("t", 2)])})
    await settle()
    assert one.members("s1") == {"a:1": MemberStatus([("t", 0), ("t", 1), ("t", 2)])}
    record = await one.get("s1")
    assert record is not None and record.state.messages_processed == 15
    # Member a restarts: its counters go on from what it last published.
    again = member(log, "a:1")
    log.deliver()
    await settle()
    record = await again.get("s1")
    assert record is not None and record.state.messages_processed == 15
    # DROP forgets the status of the stream; a new stream of that name starts from zero.
    await again.delete("s1")
    await settle()
    await again.insert(definition("s1"))
    await settle()
    record = await one.get("s1")
    assert record is not None and record.state.messages_processed == 0
    assert one.members("s1") == {}

"""Engines of two members on one shared catalog (in memory, no broker; runners replaced by
stand-ins): what one member's clauses change, the other follows: START runs the stream on
both, a new definition (ALTER) restarts it, STOP and DROP stop it on both; SHOW's holders name
each member's partitions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy.streams.definition import StreamDefinition, TransformRef
from proxy.streams.engine import StreamEngine
from proxy.streams.retry import Health
from proxy.streams.runner import Progress
from proxy.streams.transform import TransformPolicy
from tests.streams.memlog import LogCatalog, SharedLog


class FakeRunner:
    def __init__(self, definition: StreamDefinition, partition: int) -> None:
        self.definition = definition
        self.name = definition.name
        self.source = SimpleNamespace(assignment=lambda: [(definition.topic, partition)])
        self.health = Health()
        self.progress = Progress()
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


class FakeWriter:
    description = "nothing"

    async def close(self) -> None:
        pass


def definition(name: str, topic: str = "t") -> StreamDefinition:
    return StreamDefinition(
        name=name,
        uri="127.0.0.1:9092",
        topic=topic,
        transform=TransformRef("file:///x.py", "def stream(b): return []", "0" * 64),
        batch_interval_ms=100,
        batch_size=10,
        consumer_group=name,
    )


async def settle(log: SharedLog) -> None:
    import asyncio

    for _ in range(10):
        log.deliver()
        await asyncio.sleep(0)


@pytest.fixture
async def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    log = SharedLog()
    found = []
    for index, member in enumerate(("a:1", "b:1")):
        engine = StreamEngine(
            tmp_path / member,
            FakeWriter(),  # type: ignore[arg-type]
            TransformPolicy.default(tmp_path),
            catalog=LogCatalog(log, member),
            member=member,
        )

        def launch(
            definition: StreamDefinition,
            record: Any,
            limit: int | None,
            engine: StreamEngine = engine,
            partition: int = index,
        ) -> None:
            engine._runners[definition.name] = FakeRunner(definition, partition)  # type: ignore[assignment]

        monkeypatch.setattr(engine, "_launch", launch)
        await engine.start()
        found.append(engine)
    yield log, found
    for engine in found:
        await engine.stop()


async def test_members_follow_each_others_clauses(engines: Any) -> None:
    log, (one, two) = engines
    await one.catalog.insert(definition("s1"))
    await settle(log)
    await two.start_stream("s1")
    await settle(log)
    first = {engine.member: engine._runners["s1"] for engine in (one, two)}
    assert set(first) == {"a:1", "b:1"}

    # Holders: this member's own partitions at once, the other's from its heartbeat.
    await one.catalog.heartbeat(one._running_here())
    await settle(log)
    assert two.holders("s1") == {"a:1": [("t", 0)], "b:1": [("t", 1)]}

    # A new definition (what ALTER writes): every member restarts the stream with it.
    altered = definition("s1", topic="other")
    await one.catalog.replace(altered)
    await settle(log)
    for engine in (one, two):
        assert first[engine.member].stopped
        assert engine._runners["s1"].definition == altered

    await one.stop_stream("s1")
    await settle(log)
    assert "s1" not in one._runners and "s1" not in two._runners
    record = await two.catalog.get("s1")
    assert record is not None and record.state.status == "stopped"
    assert two.holders("s1") == {}

    await one.start_stream("s1")
    await settle(log)
    running = two._runners["s1"]
    await one.drop("s1")
    await settle(log)
    assert running.stopped and "s1" not in two._runners
    assert await two.catalog.get("s1") is None


async def test_a_member_that_starts_later_runs_what_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engines: Any
) -> None:
    log, (one, _two) = engines
    await one.catalog.insert(definition("s2"))
    await one.start_stream("s2")
    late = StreamEngine(
        tmp_path / "c",
        FakeWriter(),  # type: ignore[arg-type]
        TransformPolicy.default(tmp_path),
        catalog=LogCatalog(log, "c:1"),
        member="c:1",
    )
    launched: list[str] = []
    monkeypatch.setattr(late, "_launch", lambda d, r, limit: launched.append(d.name))
    await late.start()  # reads the log from the beginning
    try:
        await settle(log)
        assert launched == ["s2"]
    finally:
        await late.stop()

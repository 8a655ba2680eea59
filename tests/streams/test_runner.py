"""The runner's pipeline without services: fakes for Kafka (formed batches, commits), the
transform (round trips) and the writer (a transactional graph with positions), as
test_executors.py does for the applier. Batch formation itself: test_batch_former.py; the
real thing with Kafka and the databases: the other tests of this folder."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from proxy.backends.base import QueryResult
from proxy.streams.batching import Batch
from proxy.streams.definition import Delivery, StreamDefinition, TransformRef
from proxy.streams.positions import Fence, FenceLost, TopicPartition
from proxy.streams.producer import Failed, Record
from proxy.streams.retry import Backoff
from proxy.streams.runner import (
    Counts,
    Ended,
    Progress,
    RunEnd,
    RunnerSettings,
    RunObserver,
    StreamRunner,
)
from proxy.streams.transform import FailureKind, TransformFailed
from proxy.streams.writers import NotAtomic, PermanentWriteError, TransientWriteError

pytestmark = pytest.mark.timeout(30)

Query = tuple[str, dict[str, Any]]
CREATE = "CREATE (:M {v: $v})"


class Message:
    def __init__(self, value: bytes, offset: int, partition: int = 0, topic: str = "t") -> None:
        self._value, self._offset, self._partition, self._topic = value, offset, partition, topic

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)

    def error(self) -> None:
        return None


class FakeSource:
    """Formed batches pushed by the test; commits recorded and answered (at once, or when the
    test says)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.fatal: str | None = None
        self.formed: deque[Batch] = deque()
        self.held = 0  # handed over, not released: the consumer's bound (in batches here)
        self.bound = 10**9
        self.more = asyncio.Event()
        self.next_offset: dict[int, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.auto_ack = True
        self.unanswered: list[Any] = []
        self.on_committed: Callable[[list[Any]], None] = lambda tokens: None
        self.released = 0
        self.reseeks: list[dict[TopicPartition, int | None]] = []
        self.closed = False
        self.assigned: list[TopicPartition] = [("t", 0)]

    def push(self, *batches: list[str], partition: int = 0) -> None:
        for values in batches:
            messages = []
            for value in values:
                offset = self.next_offset.get(partition, 0)
                self.next_offset[partition] = offset + 1
                messages.append(Message(value.encode(), offset, partition))
            self.formed.append(Batch(messages, self.epoch, sum(len(v) for v in values)))
        self.more.set()

    def start(self) -> None:
        pass

    async def opened(self) -> None:
        pass

    async def batches(self, max_messages: int) -> list[Batch]:
        while not self.waiting():
            if self.closed:
                return []
            self.more.clear()
            await self.more.wait()
        return self.ready(max_messages)

    def waiting(self) -> bool:
        """A batch may be handed over: there is one, and the bound allows it."""
        return bool(self.formed) and self.held < self.bound

    def ready(self, max_messages: int) -> list[Batch]:
        if not self.waiting():
            return []
        taken = [self.formed.popleft()]
        count = len(taken[0])
        while (
            self.formed
            and count + len(self.formed[0]) <= max_messages
            and self.held + len(taken) < self.bound
        ):
            count += len(self.formed[0])
            taken.append(self.formed.popleft())
        self.held += len(taken)
        return taken

    def release(self, batch: Batch) -> None:
        self.released += 1
        self.held -= 1
        self.more.set()

    def commit(self, offsets: dict[TopicPartition, int], token: Any) -> None:
        self.commits.append(dict(offsets))
        if self.auto_ack:
            self.on_committed([token])
        else:
            self.unanswered.append(token)

    def answer(self) -> None:
        tokens, self.unanswered = self.unanswered, []
        self.on_committed(tokens)

    async def reseek(self, positions: dict[TopicPartition, int | None], epoch: int) -> None:
        self.reseeks.append(dict(positions))
        if epoch == self.epoch:
            self.epoch += 1
            self.formed.clear()

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    async def drain_commits(self, timeout: float) -> bool:
        return True

    async def close(self, grace: float = 5.0) -> None:
        self.closed = True
        self.more.set()


def values_of(batch: list[bytes]) -> list[Query]:
    out: list[Query] = []
    for item in batch:
        if item == b"boom":
            raise TransformFailed(FailureKind.EXCEPTION, "transform raised ValueError: boom")
        out.append((CREATE, {"v": item.decode()}))
    return out


class FakeTransform:
    """``stream`` is ``values_of``; records each round trip's number of batches."""

    metadata = False  # reads values, as a ``stream(batch)`` script does

    def __init__(self, fn: Callable[[list[bytes]], list[Query]] = values_of) -> None:
        self.fn = fn
        self.round_trips: list[int] = []
        self.calls: list[list[bytes]] = []
        self.worker = 0
        self.gate: asyncio.Event | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def run(self, batch: list[bytes]) -> list[Query]:
        self.calls.append(batch)
        return self.fn(batch)

    async def submit(self, batches: list[list[bytes]]) -> Any:
        self.round_trips.append(len(batches))
        return (self.worker, batches)

    async def collect(self, submitted: Any) -> list[list[Query] | TransformFailed] | None:
        worker, batches = submitted
        if worker != self.worker:
            return None  # sent to a worker that a failure replaced: never ran
        if self.gate is not None:
            await self.gate.wait()
        results: list[list[Query] | TransformFailed] = []
        for batch in batches:
            self.calls.append(batch)
            try:
                results.append(self.fn(batch))
            except TransformFailed as failure:
                results.append(failure)
                self.worker += 1  # replaced, as the real runner does after any failure
                break
        return results


class FakeGraph:
    """A transactional graph: a write is applied whole or not at all. Values in ``bad`` are
    refused (permanently); ``transient`` failures come first; ``positions`` are the stored
    positions an exactly-once write is fenced by."""

    description = "fake graph"

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.writes: list[tuple[int, bool, Fence | None]] = []  # (queries, atomic, fence)
        self.bad: set[str] = set()
        self.transient = 0
        self.refuse_atomic = False
        self.gate: asyncio.Event | None = None
        self.positions: dict[TopicPartition, int] = {}

    async def write_batch(
        self,
        queries: list[Query],
        owner: str | None,
        *,
        group: bool = True,
        atomic: bool = False,
        fence: Fence | None = None,
    ) -> None:
        self.writes.append((len(queries), atomic, fence))
        if self.gate is not None:
            await self.gate.wait()
        if self.transient:
            self.transient -= 1
            raise TransientWriteError("the backend is away")
        if atomic and self.refuse_atomic:
            raise NotAtomic("cannot")
        if fence is not None and any(
            self.positions.get(tp) != fence.expected.get(tp) for tp in fence.next
        ):
            if fence.already_applied(self.positions):
                return
            raise FenceLost(self.positions)
        for index, (_text, params) in enumerate(queries):
            if params.get("v") in self.bad:
                raise PermanentWriteError(
                    f"no {params['v']}",
                    code="Neo.ClientError.X",
                    detail=f"no {params['v']}",
                    index=None if group else index,
                    rolled_back=True,
                )
        self.applied += [params["v"] for _text, params in queries]
        if fence is not None:
            self.positions.update(fence.next)

    async def read_positions(self, stream: str, owner: str | None) -> dict[TopicPartition, int]:
        return dict(self.positions)

    async def read(self, query: str, params: dict[str, Any], owner: str | None) -> QueryResult:
        return QueryResult([], [])

    async def close(self) -> None:
        pass


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def deliver(self, records: list[Record]) -> list[Failed | None]:
        self.records += records
        return [None] * len(records)

    async def close(self) -> None:
        pass


DEFINITION = StreamDefinition(
    name="s",
    uri="k:9092",
    topic="t",
    transform=TransformRef("/x/t.py", "", ""),
    batch_interval_ms=100,
    batch_size=3,
    consumer_group="s",
)


class Recorder(RunObserver):
    """What a run reported (the metrics' view)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.stages: list[str] = []
        self.failures: list[str] = []

    def batch_size(self, messages: int) -> None:
        self.sizes.append(messages)

    def stage(self, stage: str, seconds: float) -> None:
        assert seconds >= 0
        self.stages.append(stage)

    def failure(self, kind: str) -> None:
        self.failures.append(kind)


class Rig:
    """A runner over the fakes."""

    def __init__(
        self,
        *,
        limit: int | None = None,
        round_trip: int = 10000,
        slow_after: float = 5.0,
        **definition: Any,
    ) -> None:
        self.source = FakeSource()
        self.transform = FakeTransform()
        self.graph = FakeGraph()
        self.producer = FakeProducer()
        self.definition = replace(DEFINITION, **definition)
        self.limit = limit
        self.round_trip = round_trip
        self.slow_after = slow_after
        self.progress = Progress()
        self.runner: StreamRunner | None = None
        self.observer = Recorder()
        self.applied: dict[tuple[str, int], tuple[int, float]] = {}

    def start(self) -> StreamRunner:
        def make_source(
            runner: StreamRunner, on_committed: Callable[[list[Any]], None]
        ) -> FakeSource:
            self.source.on_committed = on_committed
            return self.source

        self.runner = StreamRunner(
            self.definition,
            writer=self.graph,
            transform=self.transform,
            make_source=make_source,
            make_producer=lambda: self.producer,
            settings=RunnerSettings(
                stop_grace=5.0,
                backoff=Backoff(0.001, 0.004),
                max_round_trip=self.round_trip,
                slow_after=self.slow_after,
            ),
            progress=self.progress,
            limit=self.limit,
            applied=self.applied,
            observer=self.observer,
        )
        return self.runner

    async def ended(self) -> Ended:
        assert self.runner is not None
        return await asyncio.wait_for(self.runner.task, 10)


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.002)


def asynctest(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


# -- batches, round trips, combined writes ------------------------------------------------------


@asynctest
async def test_waiting_batches_share_a_transform_round_trip_and_a_write() -> None:
    rig = Rig()
    rig.source.push(["a", "b", "c"], ["d", "e", "f"], ["g"])  # behind: three batches waiting
    runner = rig.start()
    await until(lambda: len(rig.graph.applied) == 7)
    # One stream() call per batch, as formed; the three in one round trip.
    assert rig.transform.calls == [[b"a", b"b", b"c"], [b"d", b"e", b"f"], [b"g"]]
    assert rig.transform.round_trips == [3]
    # One atomic write of all three, then one commit of the offset after them.
    assert [(n, atomic) for n, atomic, _fence in rig.graph.writes] == [(7, True)]
    assert rig.graph.applied == list("abcdefg")
    assert rig.source.commits == [{("t", 0): 7}]
    assert rig.progress.totals == Counts(messages=7, batches=3)
    await runner.stop()
    assert (await rig.ended()).how is RunEnd.STOPPED


@asynctest
async def test_a_caught_up_stream_writes_batch_by_batch_in_order() -> None:
    rig = Rig()
    runner = rig.start()
    for number in range(5):
        rig.source.push([f"m{number}"], partition=number % 2)
        await until(lambda number=number: len(rig.graph.applied) == number + 1)
    assert rig.graph.applied == [f"m{n}" for n in range(5)]
    assert [n for n, _atomic, _fence in rig.graph.writes] == [1] * 5
    assert rig.source.commits == [
        {("t", 0): 1},
        {("t", 1): 1},
        {("t", 0): 2},
        {("t", 1): 2},
        {("t", 0): 3},
    ]
    await runner.stop()


@asynctest
async def test_round_trips_and_writes_are_bounded() -> None:
    rig = Rig(round_trip=4)
    rig.source.push(*[[f"{b}.{i}" for i in range(3)] for b in range(5)])
    runner = rig.start()
    await until(lambda: len(rig.graph.applied) == 15)
    # At most 4 messages per round trip and per write, but at least one batch each.
    assert all(trips == 1 for trips in rig.transform.round_trips)
    assert all(n <= 3 for n, _atomic, _fence in rig.graph.writes)
    await runner.stop()


@asynctest
async def test_a_refused_combined_write_falls_back_to_batches_and_messages() -> None:
    """SKIP: the combined write is refused (one bad message), then each batch alone: the good
    batches are applied once each, the bad batch message by message, the bad message skipped."""
    rig = Rig(error_policy="skip")
    rig.graph.bad = {"e"}
    rig.source.push(["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 9)
    assert sorted(rig.graph.applied) == sorted("abcdfghi")
    assert len(rig.graph.applied) == 8  # nothing twice
    assert (
        rig.graph.applied.index("d") < rig.graph.applied.index("f") < rig.graph.applied.index("g")
    )
    assert rig.progress.totals == Counts(messages=9, batches=3, skipped=1)
    assert rig.source.commits[-1] == {("t", 0): 9}
    await runner.stop()


@asynctest
async def test_stop_policy_writes_the_batches_before_the_failing_one() -> None:
    rig = Rig()  # ON ERROR STOP
    rig.graph.bad = {"e"}
    rig.source.push(["a", "b", "c"], ["d", "e", "f"], ["g"])
    rig.start()
    ended = await rig.ended()
    assert ended.how is RunEnd.FAILED
    assert ended.error is not None and "no e" in ended.error
    # The batch before, once; the failing batch up to the failing message (so that skipping
    # exactly that message loses nothing); nothing after.
    assert rig.graph.applied == ["a", "b", "c", "d"]
    assert rig.source.commits == [{("t", 0): 3}, {("t", 0): 4}]
    assert ended.at == ("t", 0, 4) and "partition 0 offset 4" in ended.error


@asynctest
async def test_writes_that_cannot_be_one_unit_go_batch_by_batch() -> None:
    rig = Rig()
    rig.graph.refuse_atomic = True
    rig.source.push(["a"], ["b"], ["c"])
    runner = rig.start()
    await until(lambda: len(rig.graph.applied) == 3)
    assert rig.graph.applied == ["a", "b", "c"]
    assert [(n, atomic) for n, atomic, _fence in rig.graph.writes] == [
        (3, True),
        (1, False),
        (1, False),
        (1, False),
    ]
    await runner.stop()


# -- commits --------------------------------------------------------------------------------------


@asynctest
async def test_commits_leave_the_write_path_and_come_in_order() -> None:
    """The writer goes on while the broker has not answered a commit; counters count what the
    broker answered."""
    rig = Rig()
    rig.source.auto_ack = False
    runner = rig.start()
    rig.source.push(["a"])
    await until(lambda: len(rig.graph.applied) == 1)
    rig.source.push(["b"])
    await until(lambda: len(rig.graph.applied) == 2)
    assert rig.source.commits == [{("t", 0): 1}, {("t", 0): 2}]
    assert rig.progress.totals == Counts()  # not answered yet
    rig.source.answer()
    assert rig.progress.totals == Counts(messages=2, batches=2)
    await runner.stop()


# -- backpressure -------------------------------------------------------------------------------


@asynctest
async def test_backpressure_reaches_the_consumer() -> None:
    """The graph is slow: the batches handed over and not written stay within the consumer's
    bound (here 4 batches), the rest waits with the consumer, and nothing runs ahead."""
    rig = Rig(round_trip=3)
    rig.source.bound = 4
    rig.graph.gate = asyncio.Event()  # nothing is written
    runner = rig.start()
    for number in range(20):
        rig.source.push([f"{number}.{i}" for i in range(3)])
    await asyncio.sleep(0.2)
    assert rig.source.held == 4 and len(rig.transform.round_trips) == 4
    assert len(rig.source.formed) == 16
    rig.graph.gate.set()
    await until(lambda: len(rig.graph.applied) == 60)
    assert rig.graph.applied == [f"{n}.{i}" for n in range(20) for i in range(3)]
    await runner.stop()


# -- stopping in every phase ----------------------------------------------------------------------


@asynctest
async def test_stop_while_waiting_for_messages() -> None:
    rig = Rig()
    runner = rig.start()
    await asyncio.sleep(0.05)
    await runner.stop()
    assert (await rig.ended()).how is RunEnd.STOPPED
    assert rig.source.closed


@asynctest
async def test_stop_during_a_transform_writes_nothing() -> None:
    rig = Rig()
    rig.transform.gate = asyncio.Event()
    runner = rig.start()
    rig.source.push(["a"])
    await until(lambda: rig.transform.round_trips)
    await runner.stop()
    assert (await rig.ended()).how is RunEnd.STOPPED
    assert rig.graph.applied == [] and rig.source.commits == []


@asynctest
async def test_stop_during_a_write_lets_it_finish_and_commit() -> None:
    rig = Rig()
    rig.graph.gate = asyncio.Event()
    runner = rig.start()
    rig.source.push(["a"], ["b"])
    await until(lambda: rig.graph.writes)
    stopping = asyncio.ensure_future(runner.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the write
    rig.graph.gate.set()
    await stopping
    assert (await rig.ended()).how is RunEnd.STOPPED
    assert rig.graph.applied == ["a", "b"]
    assert rig.source.commits == [{("t", 0): 2}]


@asynctest
async def test_stop_during_retries_commits_nothing() -> None:
    rig = Rig()
    rig.graph.transient = 10**9  # the backend never comes back
    runner = rig.start()
    rig.source.push(["a"])
    assert runner.health is not None
    await until(lambda: "retrying" in (runner.health.last_error or ""))
    assert runner.health.detail().startswith("transient outage: writing to the graph (retrying")
    await runner.stop()
    assert (await rig.ended()).how is RunEnd.STOPPED
    assert rig.graph.applied == [] and rig.source.commits == []


# -- retries and what they look like ------------------------------------------------------


@asynctest
async def test_transient_failures_are_retried_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="boltstream.streams")
    rig = Rig()
    rig.graph.transient = 25
    runner = rig.start()
    rig.source.push(["a"])
    await until(lambda: rig.graph.applied == ["a"])
    assert runner.health.last_error == (
        "writing to the graph: the backend is away (transient; recovered after 25 retries)"
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "boltstream.streams"]
    assert len([line for line in lines if "failed, retrying" in line]) == 1
    assert len([line for line in lines if "recovered after 25 retries" in line]) == 1
    assert len(lines) == 2  # not a line per attempt
    await runner.stop()


@pytest.mark.parametrize("behind", [False, True], ids=["caught-up", "behind"])
@asynctest
async def test_a_write_with_no_answer_shows_while_it_waits(
    caplog: pytest.LogCaptureFixture, behind: bool
) -> None:
    """A backend that answers nothing (stopped, hung) neither fails nor succeeds: after
    ``slow_after`` the stream's last_error says it waits, once in the log too, and the late
    answer ends it like a recovery. Behind: several batches waiting take the combined-write
    path, which says so too (it used to wait in silence)."""
    caplog.set_level(logging.INFO, logger="boltstream.streams")
    rig = Rig(slow_after=0.05)
    rig.graph.gate = asyncio.Event()
    if behind:
        rig.source.push(["a"], ["b"], ["c"])
    runner = rig.start()
    if not behind:
        rig.source.push(["a"])
    await until(lambda: runner.health.last_error is not None)
    assert [atomic for _n, atomic, _fence in rig.graph.writes] == [behind]
    assert runner.health.last_error == (
        "writing to the graph: no answer for 0.05 s (transient; waiting)"
    )
    assert runner.health.detail().startswith("transient outage: writing to the graph (waiting for")
    await asyncio.sleep(0.2)  # still one line, however long it waits
    rig.graph.gate.set()
    await until(lambda: rig.graph.applied == (["a", "b", "c"] if behind else ["a"]))
    error = runner.health.last_error or ""
    assert error.startswith("writing to the graph: no answer for ")
    assert error.endswith(" s (transient; recovered: answered late)")
    assert runner.health.detail() == "healthy"
    lines = [r.getMessage() for r in caplog.records if r.name == "boltstream.streams"]
    assert len(lines) == 2
    assert lines[0] == "stream s: writing to the graph: no answer for 0.05 s, waiting"
    assert lines[1].startswith("stream s: writing to the graph answered after ")
    await runner.stop()


# -- LIMIT, transform failures, epochs --------------------------------------------------


@asynctest
async def test_limit_writes_exactly_n_batches() -> None:
    rig = Rig(limit=2)
    rig.source.push(["a"], ["b"], ["c"], ["d"])
    rig.start()
    assert (await rig.ended()).how is RunEnd.FINISHED
    assert rig.graph.applied == ["a", "b"]
    assert rig.source.commits[-1] == {("t", 0): 2}


@asynctest
async def test_a_failing_transform_stops_after_the_batches_before_it() -> None:
    rig = Rig()
    rig.source.push(["a"], ["boom"], ["c"])
    rig.start()
    ended = await rig.ended()
    assert ended.how is RunEnd.FAILED and ended.error is not None
    assert "transform raised ValueError: boom" in ended.error
    assert rig.graph.applied == ["a"] and rig.source.commits == [{("t", 0): 1}]
    # The user transform raised on a batch: each message alone told which one it was.
    assert ended.at == ("t", 0, 1) and "topic 't' partition 0 offset 1" in ended.error


@asynctest
async def test_a_failing_transform_with_dead_letters_isolates_the_message() -> None:
    rig = Rig(error_policy="dead_letter", dead_letter_topic="dlq")
    rig.source.push(["a"], ["b", "boom", "c"], ["d"])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 5)
    assert rig.graph.applied == ["a", "b", "c", "d"]
    assert [r.value for r in rig.producer.records] == [b"boom"]
    assert rig.progress.totals == Counts(messages=5, batches=3, dead_lettered=1)
    await runner.stop()


@asynctest
async def test_rounds_sent_behind_a_failed_one_are_transformed_again_in_order() -> None:
    """Two rounds in flight; the first fails at its second batch: the worker is replaced, so
    the second round never ran; it is sent again, after the failed batch was taken apart."""
    rig = Rig(error_policy="skip", round_trip=2)
    rig.source.push(["a"], ["boom"], ["c"], ["d"])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 4)
    assert rig.graph.applied == ["a", "c", "d"]
    assert rig.transform.round_trips == [2, 2, 2]  # [a, boom], [c, d] (void), [c, d] again
    assert rig.transform.calls == [[b"a"], [b"boom"], [b"boom"], [b"c"], [b"d"]]
    assert rig.progress.totals == Counts(messages=4, batches=4, skipped=1)
    await runner.stop()


@asynctest
async def test_batches_of_an_older_epoch_are_dropped() -> None:
    rig = Rig()
    rig.source.push(["old"])
    rig.source.epoch += 1  # a rebalance after it was formed
    rig.source.push(["new"])
    runner = rig.start()
    await until(lambda: rig.graph.applied == ["new"])
    await runner.stop()


# -- exactly once ---------------------------------------------------------------------------------


@asynctest
async def test_exactly_once_writes_are_fenced_by_the_positions() -> None:
    rig = Rig(delivery=Delivery.EXACTLY_ONCE)
    runner = rig.start()
    rig.source.push(["a", "b"])
    await until(lambda: rig.graph.applied == ["a", "b"])
    rig.source.push(["c"], ["d"])
    await until(lambda: len(rig.graph.applied) == 4)
    fences = [fence for _n, _atomic, fence in rig.graph.writes]
    assert fences[0] == Fence("s", {("t", 0): None}, {("t", 0): 2})
    assert fences[-1] == Fence("s", {("t", 0): 2}, {("t", 0): 4})
    assert rig.graph.positions == {("t", 0): 4}
    await runner.stop()


@asynctest
async def test_a_lost_fence_drops_what_is_in_flight_and_seeks_to_the_graph() -> None:
    """Another member wrote this partition meanwhile: nothing of ours is written twice; the
    consumer goes back to where the graph says."""
    rig = Rig(delivery=Delivery.EXACTLY_ONCE)
    rig.graph.positions = {("t", 0): 0}
    runner = rig.start()
    runner.known[("t", 0)] = 0  # as the consumer's assignment read it
    rig.graph.positions[("t", 0)] = 5  # someone else applied offsets 0..4
    rig.source.push(["a", "b"])
    await until(lambda: rig.source.reseeks)
    assert rig.source.reseeks == [{("t", 0): 5}]
    assert rig.graph.applied == [] and runner.known == {("t", 0): 5}
    assert rig.source.commits == []
    await runner.stop()


@asynctest
async def test_a_write_found_already_applied_is_not_repeated() -> None:
    rig = Rig(delivery=Delivery.EXACTLY_ONCE)
    rig.graph.positions = {("t", 0): 2}  # an earlier attempt committed, its answer was lost
    runner = rig.start()
    runner.known[("t", 0)] = None
    rig.source.push(["a", "b"])
    await until(lambda: rig.source.commits)
    assert rig.graph.applied == [] and rig.source.reseeks == []
    assert rig.source.commits == [{("t", 0): 2}]
    await runner.stop()


@asynctest
async def test_exactly_once_skips_move_the_position_too() -> None:
    """A batch whose last message is skipped still moves the stored position past it."""
    rig = Rig(delivery=Delivery.EXACTLY_ONCE, error_policy="skip")
    rig.graph.bad = {"c"}
    runner = rig.start()
    rig.source.push(["a", "b", "c"])
    await until(lambda: rig.source.commits)
    assert rig.graph.applied == ["a", "b"]
    assert rig.graph.positions == {("t", 0): 3}
    await runner.stop()


@asynctest
async def test_a_run_reports_batches_stages_failures_and_what_it_applied() -> None:
    rig = Rig(error_policy="skip")
    rig.graph.bad = {"e"}
    rig.source.push(["a", "b"], ["c", "d", "e"])
    runner = rig.start()
    await until(lambda: rig.progress.totals.messages == 5)
    await until(lambda: "commit" in rig.observer.stages)
    assert sorted(rig.observer.sizes) == [2, 3]
    assert {"transform", "write", "commit"} <= set(rig.observer.stages)
    assert rig.observer.failures == ["message"]  # e, skipped
    offset, when = rig.applied[("t", 0)]
    assert offset == 4 and when > 0
    await runner.stop()


# -- the next write prepared while the graph runs the current one --------------------------------


class PreparingGraph(FakeGraph):
    """A writer that prepares writes, as ``FalkorDBWriter`` does: ``prepare`` records what it
    was given; ``write_prepared`` applies exactly that (as ``write_batch`` would)."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[list[Query], Fence | None]] = []
        self.sent_prepared = 0

    def prepare(self, queries: list[Query], *, fence: Fence | None = None) -> Any:
        self.prepared.append((list(queries), fence))
        return (list(queries), fence)

    async def write_prepared(self, prepared: Any) -> None:
        queries, fence = prepared
        self.sent_prepared += 1
        await self.write_batch(queries, None, group=True, atomic=True, fence=fence)


def preparing_rig(**definition: Any) -> Rig:
    rig = Rig(**definition)
    rig.graph = PreparingGraph()
    return rig


@asynctest
async def test_the_next_write_is_prepared_while_the_graph_runs_the_current_one() -> None:
    rig = preparing_rig(delivery=Delivery.EXACTLY_ONCE)
    graph = rig.graph
    assert isinstance(graph, PreparingGraph)
    graph.gate = asyncio.Event()  # the first write waits: the others queue up meanwhile
    runner = rig.start()
    rig.source.push(["a", "b", "c"])
    await until(lambda: len(graph.writes) == 1)
    rig.source.push(["d", "e", "f"], ["g"])
    await until(lambda: rig.transform.round_trips == [1, 2])
    await asyncio.sleep(0.05)  # the write stage is still waiting for the first write
    graph.gate.set()
    await until(lambda: len(graph.applied) == 7)
    assert graph.applied == list("abcdefg")
    # The second write was the one prepared during the first, with the fence that follows it.
    assert graph.sent_prepared == 1
    queries, fence = graph.prepared[-1]
    assert [params["v"] for _text, params in queries] == list("defg")
    assert fence is not None and fence.expected == {("t", 0): 3} and fence.next == {("t", 0): 7}
    assert graph.positions == {("t", 0): 7}
    await until(lambda: rig.source.commits == [{("t", 0): 3}, {("t", 0): 7}])
    await runner.stop()


@asynctest
async def test_a_prepared_write_is_dropped_when_the_one_before_it_fails() -> None:
    """The current write fails (one batch at a time then, and one message is bad): what was
    prepared assumed it would succeed, so the next write is planned again, and the graph is
    as if every batch had been written alone."""
    rig = preparing_rig(error_policy="skip", delivery=Delivery.EXACTLY_ONCE)
    graph = rig.graph
    assert isinstance(graph, PreparingGraph)
    graph.bad = {"b"}
    graph.gate = asyncio.Event()
    runner = rig.start()
    rig.source.push(["a", "b", "c"])
    await until(lambda: len(graph.writes) == 1)
    rig.source.push(["d", "e", "f"])
    await until(lambda: rig.transform.round_trips == [1, 1])
    await asyncio.sleep(0.05)
    graph.gate.set()
    await until(lambda: graph.applied == ["a", "c", "d", "e", "f"])
    assert graph.sent_prepared == 0  # prepared with a fence at 3, but "b" made it go alone
    assert graph.positions == {("t", 0): 6}
    await until(lambda: rig.source.commits[-1] == {("t", 0): 6})
    await runner.stop()


@asynctest
async def test_a_writer_that_prepares_writes_every_batch_once_in_order() -> None:
    """Many small batches arriving while writes are slow: every message once, in order."""
    rig = preparing_rig(delivery=Delivery.EXACTLY_ONCE)
    graph = rig.graph
    assert isinstance(graph, PreparingGraph)
    runner = rig.start()
    sent: list[str] = []
    for round_ in range(40):
        batch = [f"m{round_}-{i}" for i in range(3)]
        sent += batch
        rig.source.push(batch)
        await asyncio.sleep(0.001 * (round_ % 3))
    await until(lambda: len(graph.applied) == len(sent))
    assert graph.applied == sent
    assert graph.positions == {("t", 0): len(sent)}
    await runner.stop()

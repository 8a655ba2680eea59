"""``TopicAdmin``'s cache of Kafka admin clients: bounded, and nothing kept for an address that
does not answer (fuzz corpus: create-stream-unreachable-brokers). No broker needed: the
addresses here answer nothing."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from confluent_kafka import KafkaException

from proxy.streams.kafka import TopicAdmin


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(admin: TopicAdmin, before: int, *, within: float = 10.0) -> int:
    """Descriptors held more than ``before`` once dropped clients are destroyed."""
    deadline = time.monotonic() + within
    grown = open_fds() - before
    while grown > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        grown = open_fds() - before
    return grown


async def test_an_address_that_does_not_answer_keeps_no_client() -> None:
    admin = TopicAdmin({})
    before = open_fds()
    for port in range(1, 6):
        with pytest.raises(KafkaException):
            await admin.topics(f"127.0.0.1:{port}", timeout=0.3)
    assert admin.held() == 0
    assert await settle(admin, before) <= 0


async def test_the_cache_is_bounded_and_idle_clients_go() -> None:
    admin = TopicAdmin({})
    before = open_fds()
    for port in range(1, 11):
        admin._admin(f"127.0.0.1:{port}")
    assert admin.held() == TopicAdmin.MAX_ADMINS
    admin.ADMIN_IDLE = 0.0
    await asyncio.sleep(0.01)
    admin._admin("127.0.0.1:1")  # the others were idle too long
    assert admin.held() == 1
    admin.forget("127.0.0.1:1")
    assert await settle(admin, before) <= 0


async def test_a_lag_lookup_nobody_waits_for_any_more_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lookup whose callers all timed out fails later (the broker does not answer): its
    failure is read, not left for asyncio to log as an ERROR with a traceback (soak)."""
    import gc
    import logging

    from proxy.streams.definition import MappingSpec, StreamDefinition

    definition = StreamDefinition(
        name="lagged",
        uri="127.0.0.1:1",  # nothing answers there
        topic="t",
        transform=None,
        batch_interval_ms=100,
        batch_size=10,
        consumer_group="lagged",
        mapping=MappingSpec("cypher", template="RETURN 1"),
    )
    admin = TopicAdmin({})
    with caplog.at_level(logging.ERROR):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(admin.lag(definition, {"t": 1}, 0.5, False), 0.05)
        while admin._lag_inflight:  # the lookup itself ends with the broker's timeout
            await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    admin.close()


async def test_a_forgotten_stream_keeps_no_lag_probe() -> None:
    """DROP (and ALTER) forget the stream's lag probe: a consumer's threads, pipes and sockets
    were kept for every dropped stream until 16 others pushed it out (long fuzz run: 26 pipes
    more after every stream was dropped)."""
    from proxy.streams.definition import MappingSpec, StreamDefinition

    def definition(name: str) -> StreamDefinition:
        return StreamDefinition(
            name=name,
            uri="127.0.0.1:1",  # nothing answers there
            topic="t",
            transform=None,
            batch_interval_ms=100,
            batch_size=10,
            consumer_group=name,
            mapping=MappingSpec("cypher", template="RETURN 1"),
        )

    admin = TopicAdmin({})
    before = open_fds()
    for name in ("a", "b", "c"):
        admin._probe(definition(name))
    assert admin.probes() == 3
    assert open_fds() > before  # each probe holds descriptors: the check below can fail
    admin.forget_stream("b")
    assert admin.probes() == 2
    admin.forget_stream("a")
    admin.forget_stream("c")
    assert admin.probes() == 0
    assert await settle(admin, before) <= 0
    admin.close()

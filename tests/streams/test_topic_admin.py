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

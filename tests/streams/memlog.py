"""An in-memory stand-in for a cluster's two Kafka topics, shared by several
``ClusterCatalog`` members in one test (no broker): records are handed to every member in log
order, at each ``flush`` or ``deliver``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from proxy.streams.cluster import ClusterCatalog, ClusterSettings


class _Message:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class SharedLog:
    """Both topics of one cluster, in memory. ``produce`` appends (and acknowledges); every
    member is handed the records in log order, at each ``flush`` or ``deliver``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes | None, bytes | None]] = []
        self.offsets: dict[str, int] = {}
        self.members: list[tuple[ClusterCatalog, list[int]]] = []
        self.lock = threading.Lock()

    def join(self, catalog: ClusterCatalog) -> None:
        catalog._loop = asyncio.get_running_loop()
        catalog._producer = _Producer(self)
        self.members.append((catalog, [0]))

    def append(self, topic: str, key: bytes | None, value: bytes | None) -> int:
        with self.lock:
            offset = self.offsets.get(topic, 0)
            self.offsets[topic] = offset + 1
            self.records.append((topic, offset, key, value))
            return offset

    def deliver(self) -> None:
        with self.lock:
            for catalog, index in self.members:
                fresh = self.records[index[0] :]
                index[0] = len(self.records)
                if fresh:
                    assert catalog._loop is not None
                    catalog._loop.call_soon_threadsafe(catalog._apply, list(fresh))


class _Producer:
    def __init__(self, log: SharedLog) -> None:
        self.log = log

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None = None, on_delivery: Any = None
    ) -> None:
        offset = self.log.append(topic, key, value)
        if on_delivery is not None:
            on_delivery(None, _Message(offset))

    def flush(self, timeout: float = 0) -> int:
        self.log.deliver()
        return 0

    def poll(self, timeout: float = 0) -> int:
        self.log.deliver()
        return 0


class LogCatalog(ClusterCatalog):
    """A member whose ``open`` joins ``log`` instead of a broker."""

    def __init__(self, log: SharedLog, member: str, **settings: Any) -> None:
        super().__init__(
            ClusterSettings(name="c1", bootstrap="unused:9092", member=member, **settings)
        )
        self.log = log

    async def open(self) -> None:
        self.log.join(self)

    async def sync(self, timeout: float = 1.0) -> bool:
        self.log.deliver()
        for _ in range(3):
            await asyncio.sleep(0)
        return True

    async def close(self) -> None:
        self._producer = None

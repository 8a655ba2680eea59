"""A FalkorDB that stops answering (SIGSTOP, a hang, its host gone) keeps the connection open:
without a limit a query would wait for ever. ``reply_timeout`` (``backend_query_timeout``)
turns that into a transient ``BackendUnavailable`` (a stream retries it, a client is told).
The server here is a socket that answers nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from bolt.status import DATABASE_UNAVAILABLE
from proxy.backends.base import BackendUnavailable
from proxy.backends.falkordb import FalkorDBBackend
from proxy.backends.resp import RespPool

pytestmark = pytest.mark.timeout(20)


class Mute(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass  # stopped: reads, never answers


async def test_a_backend_that_stops_answering_fails_the_query_in_time() -> None:
    server = await asyncio.get_running_loop().create_server(Mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = FalkorDBBackend("127.0.0.1", port, reply_timeout=0.5, pool_size=1)
    # start() would also run a first query; only its pool is wanted here.
    backend._pool = RespPool("127.0.0.1", port, size=1)
    await backend._pool.start()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as failure:
            await backend.run("neo4j", "RETURN 1", {})
        assert time.monotonic() - started < 5
        assert failure.value.code == DATABASE_UNAVAILABLE
        assert "did not answer in time" in str(failure.value)
    finally:
        await backend.close()
        server.close()

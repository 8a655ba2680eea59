"""``RespConnection`` against a scripted server on a real socket (no Redis needed): a reply
larger than ``_FEED_SLICE`` is parsed a slice per turn of the event loop, whole and in order,
other work runs between the slices, and a reply that arrives just before the server closes
is still delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.backends import resp
from proxy.backends.resp import RespConnection, RespConnectionError

ROWS = 20_000
ROW = b"*1\r\n*2\r\n:3\r\n:%d\r\n"
# [[1, "x"]], ROWS rows of one integer cell, stats: a graph result's shape, ~0.4 MB.
REPLY = (
    b"*3\r\n*1\r\n*2\r\n:1\r\n$1\r\nx\r\n*%d\r\n" % ROWS
    + b"".join(ROW % i for i in range(ROWS))
    + b"*1\r\n$2\r\nok\r\n"
)


async def scripted(answer: Callable[[asyncio.StreamWriter], None]) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            answer(writer)
            await writer.drain()
            if writer.is_closing():
                break

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def big_server() -> AsyncIterator[int]:
    async for port in scripted(lambda writer: writer.write(REPLY)):
        yield port


async def test_a_large_reply_is_parsed_in_slices_with_other_work_between(big_server: int) -> None:
    assert len(REPLY) > 4 * resp._FEED_SLICE
    conn = await RespConnection.open("127.0.0.1", big_server)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    reply = await conn.execute("GRAPH.QUERY", "g", "UNWIND ...")
    done.set()
    await task
    header, rows, stats = reply
    assert header == ((1, b"x"),) and stats == (b"ok",)
    assert len(rows) == ROWS and rows[0] == ((3, 0),) and rows[-1] == ((3, ROWS - 1),)
    # The loop turned while the reply was parsed: at least once per slice after the first.
    assert ticks >= len(REPLY) // resp._FEED_SLICE - 1
    # And the connection reads again afterwards: a second reply comes whole too.
    assert (await conn.execute("GRAPH.QUERY", "g", "again"))[1][-1] == ((3, ROWS - 1),)
    conn.close()


async def test_a_large_reply_just_before_the_server_closes_is_delivered() -> None:
    def answer_and_close(writer: asyncio.StreamWriter) -> None:
        writer.write(REPLY)
        writer.close()

    async for port in scripted(answer_and_close):
        conn = await RespConnection.open("127.0.0.1", port)
        reply = await conn.execute("GRAPH.QUERY", "g", "UNWIND ...")
        assert len(reply[1]) == ROWS
        with pytest.raises(RespConnectionError):
            await conn.execute("PING")

"""A small asyncio RESP2 client: one connection, a fixed-size pool, and a resumable parser.

Why not redis-py: the proxy needs only "send a command, get the reply", pipelined, with every
waiter failed the moment a connection dies, and a parser fast enough for 100k-row graph
results. That is a few hundred lines and keeps the dependency surface at zero.

Shape (the asyncpg pattern): ``RespConnection`` is an ``asyncio.Protocol``. ``data_received``
is the only reader of the socket; it feeds ``RespParser`` and resolves the futures waiting in
``_pending`` strictly in order, because Redis answers the commands of one connection in the
order they were sent. ``execute`` writes the command and appends its future in the same
synchronous step, so concurrent callers can never get each other's replies. A read larger
than ``_FEED_SLICE`` is parsed a slice per turn of the event loop, the socket unread
meanwhile, so that a large reply shares the loop with other connections.

Spec: "Redis serialization protocol (RESP) specification", RESP2 types ``+ - : $ *``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import socket
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

_CRLF = b"\r\n"

# RESP2 type bytes (spec: "RESP protocol description").
_SIMPLE = 43  # '+'
_ERROR = 45  # '-'
_INTEGER = 58  # ':'
_BULK = 36  # '$'
_ARRAY = 42  # '*'

# A reply line ("+OK", an integer, a length prefix) longer than this is a protocol error rather
# than something to keep buffering for: real replies put their bulk data behind a length.
_MAX_LINE = 64 * 1024

_conn_ids = itertools.count(1)

# Bytes of a reply parsed per turn of the event loop (about 1,500 rows of a graph result: a few
# milliseconds), so that one large reply does not hold other connections up.
_FEED_SLICE = 32 * 1024


class RespError(Exception):
    """An error reply from the server (``-ERR ...``). The connection stays usable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RespConnectionError(ConnectionError):
    """The connection could not be opened, or was lost; any command in flight has an unknown
    outcome (it may or may not have run on the server)."""


class RespProtocolError(RespConnectionError):
    """The server sent bytes that are not RESP2. The connection is closed."""


class RespTimeoutError(RespConnectionError, TimeoutError):
    """No reply within the timeout. The connection is closed: replies come in order, so every
    later command on it would wait behind the slow one anyway."""


class RespParser:
    """Turns RESP2 bytes into Python values: ``bytes`` (bulk), ``str`` (simple string),
    ``int``, ``tuple`` (array), ``None`` (null bulk or null array) and ``RespError`` (error
    replies, returned as values so that an error nested in an array does not lose its
    siblings).

    Arrays are tuples, not lists, for the garbage collector's sake: a tuple that holds only
    numbers, bytes and other such tuples is untracked by the cyclic collector at its first
    pass, a list never is. A million-row graph reply is about three million arrays; as lists,
    every full collection while it was alive walked them all (0.3 to 0.9 s with the event
    loop stopped, measured with ``bench/bystander.py``); as tuples, the collector forgets
    them.

    Resumable: ``feed`` never re-parses what it already turned into values, so a reply that
    arrives in many chunks costs O(size). Incomplete input is kept as a tail plus a count of
    bytes still needed, so a large bulk string is joined once, not once per chunk.
    """

    __slots__ = ("_chunks", "_have", "_items", "_left", "_need", "_stack")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []  # unparsed input, oldest first
        self._have = 0  # total length of _chunks
        self._need = 1  # do not try to parse until _have reaches this
        # The innermost array being filled and how many items it still lacks; the arrays
        # around it wait on _stack as (items, left) pairs.
        self._items: list[Any] | None = None
        self._left = 0
        self._stack: list[tuple[list[Any], int]] = []

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes; return the complete top-level replies they finish, oldest first."""
        self._chunks.append(data)
        self._have += len(data)
        if self._have < self._need:
            return []
        buf = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        replies, pos, need = self._parse(buf)
        tail = buf[pos:] if pos < len(buf) else b""
        self._chunks = [tail] if tail else []
        self._have = len(tail)
        self._need = need
        return replies

    def _parse(self, buf: bytes) -> tuple[list[Any], int, int]:
        # Hot loop (about a million elements for a 100k-row graph result): locals only, the
        # innermost array kept in locals, no per-byte Python work (find() and slicing are C).
        out: list[Any] = []
        stack = self._stack
        items = self._items
        left = self._left
        n = len(buf)
        pos = 0
        need = 1
        find = buf.find
        while pos < n:
            end = find(_CRLF, pos)
            if end < 0:
                if n - pos > _MAX_LINE:
                    raise RespProtocolError("RESP line too long")
                need = n - pos + 1
                break
            kind = buf[pos]
            value: Any
            if kind == _ARRAY:
                count = int(buf[pos + 1 : end])
                pos = end + 2
                if count > 0:
                    if items is not None:
                        stack.append((items, left))
                    items = []
                    left = count
                    continue
                value = () if count == 0 else None
            elif kind == _INTEGER:
                value = int(buf[pos + 1 : end])
                pos = end + 2
            elif kind == _BULK:
                length = int(buf[pos + 1 : end])
                if length < 0:
                    value = None
                    pos = end + 2
                else:
                    stop = end + 2 + length
                    if stop + 2 > n:
                        need = stop + 2 - pos
                        break
                    value = buf[end + 2 : stop]
                    pos = stop + 2
            elif kind == _SIMPLE:
                value = buf[pos + 1 : end].decode("utf-8", "replace")
                pos = end + 2
            elif kind == _ERROR:
                value = RespError(buf[pos + 1 : end].decode("utf-8", "replace"))
                pos = end + 2
            else:
                raise RespProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")
            # Attach the value to the innermost open array; close every array it completes.
            if items is None:
                out.append(value)
                continue
            items.append(value)
            left -= 1
            while left == 0:
                value = tuple(items)
                if stack:
                    items, left = stack.pop()
                    items.append(value)
                    left -= 1
                else:
                    items = None
                    out.append(value)
                    break
        self._items = items
        self._left = left
        return out, pos, need


def encode_command(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings. ``str`` is sent as UTF-8."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} as a RESP argument")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


class RespConnection(asyncio.Protocol):
    """One pipelined connection. Create with ``await RespConnection.open(...)``.

    Many ``execute`` calls may be in flight at once; each gets its own reply. When the
    connection dies every waiter gets ``RespConnectionError`` and later calls fail at once;
    open a new connection (``RespPool`` does this for you).
    """

    def __init__(self, address: str) -> None:
        self.id = next(_conn_ids)
        self.address = address
        self._transport: asyncio.Transport | None = None
        self._parser = RespParser()
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._closed: RespConnectionError | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._backlog: collections.deque[bytes] = collections.deque()  # read, not yet parsed
        self._feeding = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        unix_path: str | None = None,
        connect_timeout: float | None = 5.0,
        password: str | None = None,
    ) -> RespConnection:
        """Connect over TCP, or over the Unix socket ``unix_path`` when given, and
        authenticate with ``password`` (``AUTH``) when one is given.

        Raises ``RespConnectionError`` (with the address) when the server cannot be reached
        or refuses the password.
        """
        loop = asyncio.get_running_loop()
        address = unix_path if unix_path is not None else f"{host}:{port}"
        conn = cls(address)
        try:
            async with asyncio.timeout(connect_timeout):
                if unix_path is not None:
                    await loop.create_unix_connection(lambda: conn, unix_path)
                else:
                    await loop.create_connection(lambda: conn, host, port)
        except TimeoutError as exc:
            raise RespConnectionError(f"connecting to {address} timed out") from exc
        except OSError as exc:
            raise RespConnectionError(f"cannot connect to {address}: {exc}") from exc
        if password is not None:
            try:
                await conn.execute("AUTH", password, timeout=connect_timeout)
            except RespError as exc:
                conn.close()
                # Never the password itself: only what the server said.
                raise RespConnectionError(
                    f"{address} refused the password: {exc.message}"
                ) from None
            except BaseException:
                conn.close()
                raise
        return conn

    # -- asyncio.Protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they behave as one.
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Commands are small writes answered one by one; Nagle would hold them back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("resp#%d connected to %s", self.id, self.address)

    def data_received(self, data: bytes) -> None:
        if len(data) <= _FEED_SLICE and not self._backlog:
            self._feed(data)
            return
        # A large reply: parse it a slice per turn of the event loop (a 256 KB read of a graph
        # result is about 12,000 rows, 20 to 120 ms of parsing: other connections would wait
        # that long), and read no more until the backlog is parsed.
        self._backlog.extend(data[i : i + _FEED_SLICE] for i in range(0, len(data), _FEED_SLICE))
        if not self._feeding and self._transport is not None:
            self._feeding = True
            self._transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._feed_backlog)

    def _feed_backlog(self) -> None:
        if self._backlog and self._closed is None:
            self._feed(self._backlog.popleft())
        if self._backlog and self._closed is None:
            asyncio.get_running_loop().call_soon(self._feed_backlog)
            return
        self._feeding = False
        self._backlog.clear()
        if self._closed is None and self._transport is not None:
            self._transport.resume_reading()

    def _feed(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except (RespProtocolError, ValueError) as exc:
            self._fail(RespProtocolError(f"bad reply from {self.address}: {exc}"))
            return
        pending = self._pending
        for reply in replies:
            if not pending:
                self._fail(RespProtocolError(f"unsolicited reply from {self.address}"))
                return
            fut = pending.popleft()
            if fut.done():  # the caller gave up (cancelled); the reply still used its slot
                continue
            if isinstance(reply, RespError):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        while self._backlog and self._closed is None:  # replies that arrived before the end
            self._feed(self._backlog.popleft())
        reason = f": {exc}" if exc else " (closed by the server)"
        self._fail(RespConnectionError(f"connection to {self.address} lost{reason}"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- public API ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._pending)

    async def execute(self, *args: Any, timeout: float | None = None) -> Any:
        """Send one command and return its reply.

        Raises ``RespError`` for an error reply (the connection stays usable),
        ``RespTimeoutError`` when ``timeout`` seconds pass (the connection is closed), and
        ``RespConnectionError`` when the connection is or becomes unusable.
        """
        fut = self.send(*args)
        if self._write_paused:
            try:
                await self._drain()
            except BaseException:
                # The reply future fails too (or is abandoned); consume it so asyncio does
                # not report an exception nobody retrieved.
                if fut.done() and not fut.cancelled():
                    fut.exception()
                else:
                    fut.cancel()
                raise
        if timeout is None:
            return await fut
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()
            error = RespTimeoutError(f"no reply from {self.address} within {timeout:g} s")
            self._fail(error)
            raise error from None

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Write one command now and return the future of its reply (for pipelining by hand:
        several ``send`` calls then awaiting the futures costs one round trip)."""
        if self._closed is not None:
            raise self._closed
        assert self._transport is not None
        payload = encode_command(args)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Append and write in one synchronous step: this is what keeps replies in order.
        self._pending.append(fut)
        self._transport.write(payload)
        return fut

    def close(self) -> None:
        """Close now; commands in flight fail with ``RespConnectionError``. Idempotent."""
        self._fail(RespConnectionError(f"connection to {self.address} closed by the client"))

    # -- internals -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        # Backpressure for large commands (big parameter batches): wait until the transport's
        # buffer falls below its low-water mark, or the connection dies.
        if self._closed is not None:
            raise self._closed
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _fail(self, error: RespConnectionError) -> None:
        if self._closed is not None:
            return
        self._closed = error
        log.debug("resp#%d closing: %s", self.id, error)
        if self._transport is not None:
            self._transport.close()
        pending, self._pending = self._pending, collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._drain_waiters = []


class RespPool:
    """A fixed number of connections to one server, opened lazily and reopened after loss.

    Each command goes to the connection with the fewest commands in flight (ties rotate), so
    independent queries run in parallel on the server (FalkorDB runs read queries on a thread
    pool) while a burst still pipelines instead of queueing behind one slow query.
    Nothing is retried: after a lost connection the outcome of a write is unknown.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        unix_path: str | None = None,
        size: int = 4,
        connect_timeout: float | None = 5.0,
        password: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.connect_timeout = connect_timeout
        self._password = password
        self._slots: list[RespConnection | None] = [None] * size
        self._connecting: list[asyncio.Task[RespConnection] | None] = [None] * size
        self._next = 0
        self._closed = False

    @property
    def address(self) -> str:
        return self.unix_path if self.unix_path is not None else f"{self.host}:{self.port}"

    @property
    def size(self) -> int:
        return len(self._slots)

    async def start(self) -> None:
        """Open every connection now (fail fast on a wrong address)."""
        await asyncio.gather(*(self._connect(i) for i in range(len(self._slots))))

    async def connection(self) -> RespConnection:
        """The least busy open connection, opening one when a slot is empty or dead."""
        if self._closed:
            raise RespConnectionError(f"pool for {self.address} is closed")
        slots = self._slots
        size = len(slots)
        start = self._next
        self._next = (start + 1) % size
        best: RespConnection | None = None
        empty: int | None = None
        for k in range(size):
            i = (start + k) % size
            conn = slots[i]
            if conn is None or conn.closed:
                if empty is None:
                    empty = i
                continue
            if best is None or conn.pending < best.pending:
                best = conn
                if conn.pending == 0:
                    break
        if best is not None and (best.pending == 0 or empty is None):
            return best
        assert empty is not None
        try:
            return await self._connect(empty)
        except RespConnectionError:
            if best is None:
                raise
            return best  # a busy live connection beats failing the command

    async def execute(self, *args: Any, timeout: float | None = None) -> Any:
        """``RespConnection.execute`` on the least busy connection."""
        conn = await self.connection()
        return await conn.execute(*args, timeout=timeout)

    def close(self) -> None:
        """Close every connection; commands in flight fail. Idempotent."""
        self._closed = True
        for task in self._connecting:
            if task is not None:
                task.cancel()
        for conn in self._slots:
            if conn is not None:
                conn.close()
        self._slots = [None] * len(self._slots)

    async def _connect(self, i: int) -> RespConnection:
        # One connect per slot at a time: concurrent callers share the same attempt.
        task = self._connecting[i]
        if task is None:
            task = asyncio.ensure_future(
                RespConnection.open(
                    self.host,
                    self.port,
                    unix_path=self.unix_path,
                    connect_timeout=self.connect_timeout,
                    password=self._password,
                )
            )
            # Read the outcome even if every caller gave up, so asyncio never warns about it.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._connecting[i] = task
        try:
            conn = await asyncio.shield(task)
        finally:
            if self._connecting[i] is task and task.done():
                self._connecting[i] = None
        if self._closed:
            conn.close()
            raise RespConnectionError(f"pool for {self.address} is closed")
        self._slots[i] = conn
        return conn

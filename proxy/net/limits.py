"""Time limits on every stage of a connection the client controls, and the connection limit.

A connection that stalls holds a descriptor (two, in a relay) for as long as the proxy lets
it; anyone who can reach the port could then exhaust them. So each stage the client drives
has a limit (``ConnectionLimits``), and one ``Watch`` per accepted socket enforces the limit
of the stage it is in:

* ``first byte``: from accept to the first byte;
* ``TLS handshake``: from the ClientHello to an agreed TLS session;
* ``upgrade request``: from ``GET`` to a complete WebSocket upgrade request;
* ``Bolt handshake``: from the magic to an agreed version;
* ``authentication``: from the agreed version to a session that has passed HELLO (and LOGON
  on 5.1+), authenticated;
* ``idle``: an authenticated session with nothing in flight (no request unanswered) that
  receives nothing. While something is in flight the watch looks again every quarter of the
  limit (at most every second), and idleness counts from the last time it saw work.

Apart from the stages, the watch limits how long the client may leave its answers unread
(``write_stall``): while the socket's write buffer is above its high-water mark (the
transport called ``pause_writing``; the session then sends nothing more, and a relay stops
reading its backend), the watch looks at the buffer every quarter of the limit (at most every
second) and at the kernel's send queue behind it (bytes the client has not acknowledged,
``TIOCOUTQ``; the kernel's buffer can hold megabytes, and a client that reads slowly empties
it long before the proxy's buffer moves). Any shrinking of the two is progress: a slow reader
is never cut off. A buffer that has not
shrunk for the whole limit closes the connection (a reset: the kernel is not left trying to
deliver the rest) with one WARNING naming it, and what it held
(a whole result, in a local session; the backend connection, in a relay) is let go. Neo4j
aborts a connection whose output has been throttled for 15 minutes in all, progress or not
(``internal.dbms.bolt.outbound_buffer_throttle.max_duration``, at least 30 s); here only time
without progress counts, so the default can be shorter: 60 s.

The layers (``proxy.net.layers``) and the listener move the watch from stage to stage; the
watch needs no help from the hot path: its one timer fires at the stage's deadline, and for
the last two stages it then asks the session whether it authenticated, is busy, or read
something since (``Watched``), and waits again if so. A stage that runs out closes the
connection with one INFO line naming the stage and the limit (a stalled client is not an
error of the proxy's).

Past ``max_connections`` a new connection is still read, within the same limits, so that its
client hears why: it goes through the Bolt handshake, and its first request gets a FAILURE
``Neo.TransientError.Request.ResourceExhaustion`` naming the limit, then the connection
closes (``listener.Refusal``). Past the limit by more than ``REFUSING_AT_ONCE`` more, a
connection is closed at once, unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import termios
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("boltstream")

# Connections past the limit that may be in the middle of hearing their refusal at once.
REFUSING_AT_ONCE = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds per stage (0: no limit) and the most connections served at once (0: none)."""

    first_byte: float = 10.0
    tls_handshake: float = 10.0
    upgrade_request: float = 10.0
    bolt_handshake: float = 10.0
    authentication: float = 30.0  # Neo4j's unauthenticated connection timeout is 30 s too
    idle: float = 3600.0  # drivers retire a pooled connection after 1 h (max lifetime)
    write_stall: float = 60.0  # answers waiting, and the client reads none of them
    max_connections: int = 1000


def unsent(transport: asyncio.Transport) -> int:
    """Bytes written to ``transport`` that its peer has not taken yet: the transport's own
    buffer and, on Linux, the socket's send queue (sent but not acknowledged)."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            size += struct.unpack("i", queued)[0]
        except (OSError, ValueError, AttributeError):
            pass  # not a TCP socket here (a test's pipe), or not Linux
    return size


def reset(transport: asyncio.Transport) -> None:
    """Close ``transport`` with a TCP reset (linger 0): what was not delivered is dropped,
    not left to the kernel to keep trying."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Watched(Protocol):
    """What the watch asks a session once it has one."""

    last_read: float  # time.monotonic() of the last bytes received
    connection_id: str

    def authenticated(self) -> bool: ...

    def in_flight(self) -> bool: ...


class Counter:
    """Connections open on one server (the watch counts itself in and out)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.refusing = 0
        self.refused = 0  # in total, for the log and tests


class Watch:
    """One accepted socket's stage and its deadline."""

    __slots__ = (
        "_counted",
        "busy_seen",
        "counter",
        "deadline",
        "limit",
        "over_limit",
        "peer",
        "session",
        "stage",
        "timer",
        "transport",
        "unread",
        "unread_since",
        "write_timer",
    )

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.stage = "first byte"
        self.limit = 0.0
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.session: Watched | None = None
        self.peer: Any = None
        self.over_limit = False
        self.busy_seen = 0.0  # when the idle stage last found the session busy
        self._counted = False
        # While the client does not read (write_blocked .. write_unblocked): the smallest
        # write buffer seen, when it was last seen to shrink, and the timer that looks again.
        self.write_timer: asyncio.TimerHandle | None = None
        self.unread = 0
        self.unread_since = 0.0

    @property
    def limits(self) -> ConnectionLimits:
        return self.counter.limits

    def attach(self, transport: asyncio.Transport) -> bool:
        """A socket was accepted: count it and start the first-byte limit. False when it is
        to be closed at once (far past the connection limit)."""
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        counter = self.counter
        self._counted = True
        counter.open += 1
        most = counter.limits.max_connections
        if most and counter.open > most:
            counter.refused += 1
            if counter.refusing >= REFUSING_AT_ONCE:
                log.warning(
                    "connection from %s closed unread: %d connections open (max_connections %d)",
                    self.peer,
                    counter.open - 1,
                    most,
                )
                transport.abort()
                return False
            counter.refusing += 1
            self.over_limit = True
        self.enter("first byte", self.limits.first_byte)
        return True

    def enter(self, stage: str, limit: float) -> None:
        """The connection is now in ``stage``, which may last ``limit`` seconds (0: forever)."""
        self.stage = stage
        self.limit = limit
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if limit > 0 and self.transport is not None:
            loop = asyncio.get_running_loop()
            self.deadline = loop.time() + limit
            self.timer = loop.call_at(self.deadline, self._expired)

    def agreed(self, session: Watched) -> None:
        """The Bolt version is agreed and ``session`` serves the connection."""
        self.session = session
        self.enter("authentication", self.limits.authentication)

    def _expired(self) -> None:
        self.timer = None
        session = self.session
        if session is not None:
            if self.stage == "authentication" and session.authenticated():
                self._idle_from(session.last_read)
                return
            if self.stage == "idle":
                now = time.monotonic()
                if session.in_flight():
                    # Idleness counts from the end of the work: look again soon.
                    self.busy_seen = now
                    self.timer = asyncio.get_running_loop().call_later(
                        min(self.limit / 4, 1.0), self._expired
                    )
                    return
                since = max(session.last_read, self.busy_seen)
                if now - since < self.limit:
                    self._idle_from(since)
                    return
        what = {
            "first byte": "no first byte",
            "TLS handshake": "no TLS handshake",
            "upgrade request": "no complete WebSocket upgrade request",
            "Bolt handshake": "no Bolt handshake",
            "authentication": "no HELLO/LOGON",
            "idle": "idle (nothing received, nothing in flight)",
        }[self.stage]
        log.info("connection from %s: %s within %g s; closing", self.peer, what, self.limit)
        if self.transport is not None:
            self.transport.abort()

    def _idle_from(self, since: float) -> None:
        """Idle stage with its deadline ``limits.idle`` after ``since`` (monotonic time)."""
        limit = self.limits.idle
        self.stage = "idle"
        self.limit = limit
        if limit > 0 and self.transport is not None:
            loop = asyncio.get_running_loop()
            left = max(0.0, since + limit - time.monotonic())
            self.timer = loop.call_later(left, self._expired)

    # -- the client reads its answers -------------------------------------------------------

    def write_blocked(self) -> None:
        """The socket's write buffer passed its high-water mark (``pause_writing``)."""
        limit = self.limits.write_stall
        if limit <= 0 or self.transport is None or self.write_timer is not None:
            return
        self.unread = unsent(self.transport)
        self.unread_since = time.monotonic()
        self._look_at_writes_later()

    def write_unblocked(self) -> None:
        """The buffer fell below its low-water mark (``resume_writing``): the client reads."""
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _look_at_writes_later(self) -> None:
        every = min(self.limits.write_stall / 4, 1.0)
        self.write_timer = asyncio.get_running_loop().call_later(every, self._look_at_writes)

    def _look_at_writes(self) -> None:
        self.write_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        waiting = unsent(transport)
        now = time.monotonic()
        if waiting < self.unread:  # the client took some: progress
            self.unread = waiting
            self.unread_since = now
        elif now - self.unread_since >= self.limits.write_stall:
            session = self.session
            log.warning(
                "[%s] connection from %s: the client read none of its answers for %g s "
                "(%d bytes waiting); closing",
                session.connection_id if session is not None else "-",
                self.peer,
                self.limits.write_stall,
                waiting,
            )
            reset(transport)
            return
        self._look_at_writes_later()

    def closed(self) -> None:
        """The socket is gone (idempotent)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.write_unblocked()
        if self._counted:
            self._counted = False
            self.counter.open -= 1
            if self.over_limit:
                self.counter.refusing -= 1
        self.session = None

"""Transports under Bolt: TLS and WebSocket on the same port as plain Bolt.

Neo4j serves raw Bolt, Bolt over TLS, and Bolt over WebSocket (what browsers and so Neo4j
Browser speak) on one port, telling them apart by the first bytes (bolt.md §1). So does the
proxy: ``Sniffer`` is the first protocol on every accepted socket, and on the first bytes
it stacks a layer and hands the bytes on:

* ``16 03``: a TLS ClientHello. A ``TLSLayer`` decrypts (``ssl.MemoryBIO``: the ClientHello
  has already been read from the socket, so ``loop.start_tls`` cannot be used) and a new
  ``Sniffer`` looks at the plaintext: WebSocket or Bolt (``bolt+s://``, ``wss://``).
* ``GET``: HTTP. An Upgrade request becomes a ``WebSocketLayer`` (wsproto, RFC 6455): Bolt
  bytes travel in binary messages, in any framing — a Bolt message may span frames and a
  frame may hold several messages — so the layer passes payload bytes on as they come and
  sends each write as one binary message (the handshake reply must be one message: the JS
  driver parses it from one ``onmessage``). A plain GET gets Neo4j's discovery document on
  ``/``, and ``/metrics`` and ``/health/*`` on their paths (``net.http``).
* ``OPTIONS``: a browser's CORS preflight (``HttpLayer``), answered by ``net.http``.
* anything else goes to the Bolt handshake as it is (which refuses what is not Bolt).

Each layer is a protocol for the transport below and a transport for the protocol above,
with the subset of the transport interface the sessions use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from proxy.net.http import MAX_REQUEST_HEAD, HttpService, respond
from proxy.net.limits import Watch

log = logging.getLogger("boltstream")

TLS_RECORD_HANDSHAKE = 0x16
WS_MAX_MESSAGE = 1 << 24  # payload bytes buffered by wsproto for one fragmented message


class Layer(asyncio.Protocol, asyncio.Transport):
    """A protocol for the transport below that is a transport for the protocol above."""

    def __init__(self, upper: asyncio.BaseProtocol, watch: Watch | None = None) -> None:
        asyncio.Transport.__init__(self)
        self.lower: Any = None
        self.upper = upper
        self.watch = watch
        self._closing = False
        self._paused_writing = False

    # -- as a protocol (for the transport below) ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.lower = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.watch is not None:
            self.watch.closed()
        self.upper.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if isinstance(self.upper, asyncio.Protocol):
            return self.upper.eof_received()
        return None

    def pause_writing(self) -> None:
        self._paused_writing = True
        self.upper.pause_writing()

    def resume_writing(self) -> None:
        self._paused_writing = False
        self.upper.resume_writing()

    def deliver(self, data: bytes) -> None:
        """Bytes for the protocol above."""
        if data and isinstance(self.upper, asyncio.Protocol):
            self.upper.data_received(data)

    # -- as a transport (for the protocol above) ---------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self._closing or self.lower is None or self.lower.is_closing()

    def close(self) -> None:
        if not self._closing and self.lower is not None:
            self._closing = True
            self.lower.close()

    def abort(self) -> None:
        self._closing = True
        if self.lower is not None:
            self.lower.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.lower.get_extra_info(name, default) if self.lower is not None else default

    def pause_reading(self) -> None:
        if self.lower is not None:
            self.lower.pause_reading()

    def resume_reading(self) -> None:
        if self.lower is not None:
            self.lower.resume_reading()

    def is_reading(self) -> bool:
        return bool(self.lower is not None and self.lower.is_reading())

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.upper = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.upper

    def get_write_buffer_size(self) -> int:
        return int(self.lower.get_write_buffer_size()) if self.lower is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return tuple(self.lower.get_write_buffer_limits())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.lower.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        self.close()


class TLSLayer(Layer):
    """TLS on an already-accepted socket, fed through memory BIOs."""

    def __init__(
        self, upper: asyncio.BaseProtocol, context: ssl.SSLContext, watch: Watch | None = None
    ) -> None:
        super().__init__(upper, watch)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.handshaken = False
        self.pending: list[bytes] = []  # writes from above before the handshake finished

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshaken:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except ssl.SSLError as exc:
                log.warning(
                    "TLS handshake failed from %s: %s",
                    self.get_extra_info("peername"),
                    exc.reason or exc,
                )
                self._flush()
                self.close()
                return
            self.handshaken = True
            self.upper.connection_made(self)
            for data_out in self.pending:
                self.write(data_out)
            self.pending.clear()
        plain = bytearray()
        while True:
            try:
                piece = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._flush()
                self.close()
                break
            except ssl.SSLError as exc:
                log.warning("TLS error from %s: %s", self.get_extra_info("peername"), exc)
                self.close()
                break
            if not piece:
                break
            plain += piece
        self._flush()
        self.deliver(bytes(plain))

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.lower is not None and not self.lower.is_closing():
            self.lower.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.handshaken:
            self.pending.append(bytes(data))
            return
        if self.is_closing():
            return
        self.tls.write(data)
        self._flush()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.tls
        if name == "peercert":
            return self.tls.getpeercert()
        return super().get_extra_info(name, default)

    def close(self) -> None:
        if not self._closing and self.handshaken:
            with contextlib.suppress(ssl.SSLError):
                self.tls.unwrap()
            self._flush()
        super().close()


class WebSocketLayer(Layer):
    """Bolt over WebSocket (RFC 6455) with wsproto; a plain GET gets the discovery document."""

    def __init__(
        self,
        upper: asyncio.BaseProtocol,
        discovery: Callable[[], dict[str, Any]],
        watch: Watch | None = None,
        http: HttpService | None = None,
    ) -> None:
        super().__init__(upper, watch)
        self.ws = WSConnection(ConnectionType.SERVER)
        self.discovery = discovery
        self.http = http
        self.open = False
        self._head = bytearray()  # the HTTP request, until the upgrade is accepted

    def data_received(self, data: bytes) -> None:
        if not self.open and len(self._head) < MAX_REQUEST_HEAD:
            self._head += data[: MAX_REQUEST_HEAD - len(self._head)]
        try:
            self.ws.receive_data(data)
            events = list(self.ws.events())
        except RemoteProtocolError as exc:
            self._not_a_websocket(exc)
            return
        except (UnicodeError, ValueError) as exc:
            # wsproto lets a few malformed requests through as these (a Host header that is not
            # IDNA, for one): still the client's fault, answered 400 and closed.
            self._bad_request(exc)
            return
        payload = bytearray()
        for event in events:
            if isinstance(event, Request):
                # No subprotocol unless the client asked; then echo the first one it offered
                # (browsers abort on one they did not ask for). No extensions.
                subprotocol = event.subprotocols[0] if event.subprotocols else None
                self.lower.write(self.ws.send(AcceptConnection(subprotocol=subprotocol)))
                self.open = True
                self.upper.connection_made(self)
            elif isinstance(event, BytesMessage):
                payload += event.data
            elif isinstance(event, TextMessage):
                log.warning(
                    "WebSocket text message from %s: Bolt needs binary messages",
                    self.get_extra_info("peername"),
                )
                self._close_ws(1003, "Bolt over WebSocket uses binary messages")
                return
            elif isinstance(event, Ping):
                self.lower.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.ws.state.name not in ("CLOSED", "LOCAL_CLOSING"):
                    self.lower.write(self.ws.send(event.response()))
                self._closing = True
                self.lower.close()
        if payload:
            self.deliver(bytes(payload))

    def _not_a_websocket(self, exc: RemoteProtocolError) -> None:
        """A plain HTTP request: answer it like Neo4j does (discovery), or with metrics or
        health (``net.http``), then close."""
        hint = exc.event_hint
        plain = isinstance(hint, RejectConnection) and hint.status_code == 400 and not self.open
        head = bytes(self._head).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        if plain and self.http is not None:
            self._closing = True
            self._answer_task = asyncio.get_running_loop().create_task(self._answer(head))
            return
        body = json.dumps(self.discovery()).encode()
        if plain:
            # CORS open, so a Browser page served from elsewhere can read it (discoveryURL).
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Access-Control-Allow-Origin: *\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                b"Connection: close\r\n\r\n"
            )
            self.lower.write(head + body)
        else:
            log.info("bad WebSocket traffic from %s: %s", self.get_extra_info("peername"), exc)
            if hint is not None:
                try:
                    self.lower.write(self.ws.send(hint))
                    if isinstance(hint, RejectConnection) and hint.has_body:
                        self.lower.write(self.ws.send(RejectData(data=b"")))
                except Exception:  # the connection is being dropped anyway
                    pass
        self._closing = True
        self.lower.close()

    async def _answer(self, head: bytes) -> None:
        assert self.http is not None
        try:
            await respond(self.http, head, self.lower.write)
        finally:
            self.lower.close()

    def _bad_request(self, exc: Exception) -> None:
        log.warning(
            "bad HTTP request from %s: %s: %s",
            self.get_extra_info("peername"),
            type(exc).__name__,
            str(exc)[:200],
        )
        if not self.open:
            self.lower.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        self._closing = True
        self.lower.close()

    def _close_ws(self, code: int, reason: str) -> None:
        try:
            self.lower.write(self.ws.send(CloseConnection(code=code, reason=reason)))
        finally:
            self._closing = True
            self.lower.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing() or not self.open:
            return
        self.lower.write(self.ws.send(BytesMessage(data=bytes(data))))

    def close(self) -> None:
        if not self._closing and self.open and self.lower is not None:
            # The peer may be closing already; the socket goes either way.
            with contextlib.suppress(Exception):
                self.lower.write(self.ws.send(CloseConnection(code=1000)))
        super().close()


class HttpLayer(asyncio.Protocol):
    """An HTTP request that is no GET (a browser's CORS preflight, ``OPTIONS``): read its
    head, answer it (``net.http``), close."""

    def __init__(self, http: HttpService | None) -> None:
        self.http = http
        self.transport: Any = None
        self.head = bytearray()
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0 and len(self.head) < MAX_REQUEST_HEAD:
            return
        self.answered = True
        head = bytes(self.head[: end + 4] if end >= 0 else self.head)
        service = self.http or HttpService(dict)
        self.task = asyncio.get_running_loop().create_task(self._answer(service, head))

    async def _answer(self, service: HttpService, head: bytes) -> None:
        try:
            await respond(service, head, self.transport.write)
        finally:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        pass


_HTTP_METHODS = (b"GET ", b"OPTIONS ")


class Sniffer(asyncio.Protocol):
    """The first protocol on an accepted socket: picks TLS, WebSocket or Bolt from the first
    bytes, stacks the layer, and passes the bytes to ``make_bolt()``'s protocol."""

    def __init__(
        self,
        make_bolt: Callable[[], asyncio.Protocol],
        *,
        tls: ssl.SSLContext | None,
        discovery: Callable[[], dict[str, Any]],
        under_tls: bool = False,
        watch: Watch | None = None,
        http: HttpService | None = None,
    ) -> None:
        self.make_bolt = make_bolt
        self.tls = tls
        self.discovery = discovery
        self.under_tls = under_tls
        self.watch = watch
        self.http = http
        self.transport: Any = None
        self.first = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        watch = self.watch
        if watch is not None:
            if self.under_tls:
                watch.enter("first byte", watch.limits.first_byte)
            else:
                watch.attach(self.transport)

    def data_received(self, data: bytes) -> None:
        self.first += data
        if any(len(self.first) < len(m) and m.startswith(self.first) for m in _HTTP_METHODS):
            return  # wait for enough to tell "GET " or "OPTIONS " from the rest
        head = bytes(self.first)
        self.first.clear()
        protocol: asyncio.Protocol
        if head[0] == TLS_RECORD_HANDSHAKE and not self.under_tls:
            if self.tls is None:
                log.warning(
                    "TLS connection from %s, but TLS is not configured (--tls-cert)",
                    self.transport.get_extra_info("peername"),
                )
                self.transport.close()
                return
            inner = Sniffer(
                self.make_bolt,
                tls=None,
                discovery=self.discovery,
                under_tls=True,
                watch=self.watch,
                http=self.http,
            )
            layer: Layer = TLSLayer(inner, self.tls, self.watch)
            protocol = layer
            if self.watch is not None:
                self.watch.enter("TLS handshake", self.watch.limits.tls_handshake)
        elif head.startswith(b"GET "):
            layer = WebSocketLayer(self.make_bolt(), self.discovery, self.watch, self.http)
            protocol = layer
            if self.watch is not None:
                self.watch.enter("upgrade request", self.watch.limits.upgrade_request)
        elif head.startswith(b"OPTIONS "):
            protocol = HttpLayer(self.http)
        else:
            bolt = self.make_bolt()
            self.transport.set_protocol(bolt)
            bolt.connection_made(self.transport)
            bolt.data_received(head)
            return
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watch is not None:
            self.watch.closed()

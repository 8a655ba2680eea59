"""The proxy's side of a connection to a Bolt backend: connect, handshake, then hand the socket
to a ``RelaySession``."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Protocol

from bolt.errors import HandshakeError
from bolt.handshake import client_proposal, parse_server_choice
from bolt.versions import Version
from proxy.config import BackendURI

CONNECT_TIMEOUT = 10.0


class BackendUnreachable(Exception):
    """The Bolt backend could not be connected to or refused every version we speak."""


class BackendListener(Protocol):
    """What a backend socket reports to (the relay session)."""

    def on_backend_data(self, data: bytes) -> None: ...

    def on_backend_lost(self, exc: Exception | None) -> None: ...

    def on_backend_blocked(self, blocked: bool) -> None: ...


class BackendProtocol(asyncio.Protocol):
    """The backend socket: collects the 4-byte handshake reply, then feeds its listener."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.listener: BackendListener | None = None
        self.reply = bytearray()
        self.replied: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.early = bytearray()  # bytes after the reply that arrive before the listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.listener is not None:
            self.listener.on_backend_data(data)
            return
        if not self.replied.done():
            self.reply += data
            if len(self.reply) >= 4:
                self.early += self.reply[4:]
                self.replied.set_result(bytes(self.reply[:4]))
            return
        self.early += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.replied.done():
            self.replied.set_exception(ConnectionError("backend closed during the handshake"))
        if self.listener is not None:
            self.listener.on_backend_lost(exc)

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.on_backend_blocked(True)

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.on_backend_blocked(False)

    def attach(self, listener: BackendListener) -> None:
        """From now on, bytes go to ``listener`` (including those that came early)."""
        self.listener = listener
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            listener.on_backend_data(early)


@dataclass
class BackendLink:
    transport: asyncio.Transport
    protocol: BackendProtocol
    version: Version | None


async def open_backend(uri: BackendURI, versions: list[Version]) -> BackendLink:
    """Connect and handshake, offering ``versions``; the version is None if none was agreed."""
    context: ssl.SSLContext | None = None
    if uri.tls:
        context = ssl.create_default_context()
        if uri.raw.split(":", 1)[0].endswith("+ssc"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(BackendProtocol, uri.host, uri.port, ssl=context),
            CONNECT_TIMEOUT,
        )
    except (OSError, TimeoutError) as exc:
        raise BackendUnreachable(f"cannot connect to {uri.raw}: {exc or 'timed out'}") from exc
    try:
        transport.write(client_proposal(versions))
        reply = await asyncio.wait_for(protocol.replied, CONNECT_TIMEOUT)
        version = parse_server_choice(reply)
    except (OSError, TimeoutError, HandshakeError) as exc:
        transport.close()
        raise BackendUnreachable(f"Bolt handshake with {uri.raw} failed: {exc!r}") from exc
    if version is None:
        transport.close()
    return BackendLink(transport, protocol, version)

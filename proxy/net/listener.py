"""The listener: accepts connections, does the Bolt handshake, starts one session each.

Each accepted socket goes through ``proxy.net.layers.Sniffer`` (TLS, WebSocket or plain Bolt)
and then ``_Handshaker``, a protocol that feeds the sans-IO ``ServerHandshake``. Once the
versions are settled the socket is handed over, as its protocol, to a session around a
``ServerConnection``: a ``RelaySession`` in front of a Bolt backend, or a ``LocalSession`` in
front of a query backend (FalkorDB).

A connection's problems stay with that connection: a bad handshake, a protocol violation or an
unexpected exception in its session closes it, logs one line with its connection id, and
leaves every other session alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from dataclasses import replace
from typing import Any

from bolt.connection import ServerConnection
from bolt.errors import HandshakeError, ProtocolError, TransientError
from bolt.handshake import NO_VERSION, ServerHandshake
from bolt.status import RESOURCE_EXHAUSTED
from bolt.versions import SUPPORTED_VERSIONS, Version
from proxy import NEO4J_COMPAT_VERSION
from proxy.answers.router import LocalHandler, Router
from proxy.answers.system import query_backend_handlers, relay_handlers
from proxy.answers.transactions import ShowTransactionsHandler, TerminateTransactionsHandler
from proxy.backends.base import QueryBackend
from proxy.config import Config
from proxy.metrics import PROXY
from proxy.net.backend import BackendLink, BackendUnreachable, open_backend
from proxy.net.http import HttpService
from proxy.net.layers import Sniffer, TLSLayer, WebSocketLayer
from proxy.net.limits import Counter, Watch
from proxy.session.auth import Authenticator
from proxy.session.core import Session
from proxy.session.local import LocalEnv, LocalSession
from proxy.session.registry import Registry
from proxy.session.relay import RelayEnv, RelaySession

log = logging.getLogger("boltstream")


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['cid']}] {msg}" if self.extra else msg, kwargs


class _Handshaker(asyncio.Protocol):
    """A new connection until its Bolt version is agreed."""

    def __init__(self, server: BoltServer, watch: Watch) -> None:
        self.server = server
        self.watch = watch  # the connection's time limits (the Bolt handshake's, now)
        self.handshake = ServerHandshake()
        self.transport: asyncio.Transport | None = None
        self.cid = server.next_id()
        self.log = ConnectionLog(log, {"cid": self.cid})
        self.started = False  # the offer is complete and the session is being set up
        self.agreed: asyncio.Future[Version | None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.watch.enter("Bolt handshake", self.watch.limits.bolt_handshake)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.agreed is not None and not self.agreed.done():
            self.agreed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.handshake.receive_data(data)
            if not self.started:
                offer = self.handshake.offer()
                if offer is not None:
                    self.started = True
                    task = asyncio.get_running_loop().create_task(self.server.start_session(self))
                    self.server.track(task)
            elif self.agreed is not None and self.handshake.done and not self.agreed.done():
                self.agreed.set_result(self.handshake.version)
        except HandshakeError as exc:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self.log.warning("bad handshake from %s: %s", peer, exc)
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.watch.closed()
        if self.agreed is not None and not self.agreed.done():
            self.agreed.set_result(None)

    async def respond(self, versions: list[Version], *, use_manifest: bool) -> Version | None:
        """Send the reply; wait for the client's pick if the manifest was used."""
        assert self.transport is not None
        if self.lost:
            return None
        reply = self.handshake.respond(versions, use_manifest=use_manifest)
        self.transport.write(reply)
        if not self.handshake.done:
            self.agreed = asyncio.get_running_loop().create_future()
            try:
                self.handshake.receive_data(b"")
            except HandshakeError as exc:
                self.log.warning("handshake failed: %s", exc)
                return None
            if self.handshake.done:
                self.agreed.set_result(self.handshake.version)
            version = await self.agreed
        else:
            version = self.handshake.version
        return version


class BoltServer:
    """Serves Bolt on one address in front of one backend."""

    def __init__(
        self,
        config: Config,
        *,
        query_backend: QueryBackend | None,
        extra_handlers: list[LocalHandler] | None = None,
    ) -> None:
        self.config = config
        self.query_backend = query_backend
        self.registry = Registry()
        # HTTP on the Bolt port: discovery, metrics, health (the app adds its checks).
        self.http = HttpService(self.discovery)
        handlers = [*(extra_handlers or []), *relay_handlers()]
        self.relay_env: RelayEnv | None = None
        self.local_env: LocalEnv | None = None
        if query_backend is None:
            self.relay_env = RelayEnv(
                router=Router(handlers, relay=True),
                advertised_address=config.advertised,
                max_message_size=config.max_message_size,
                registry=self.registry,
                backend=config.backend_uri,
            )
        else:
            graph = config.backend_uri.graph if config.backend_uri.kind == "falkordb" else "neo4j"
            handlers += [
                *query_backend_handlers(graph),
                ShowTransactionsHandler(),
                TerminateTransactionsHandler(),
            ]
            self.local_env = LocalEnv(
                router=Router(handlers, relay=False),
                advertised_address=config.advertised,
                max_message_size=config.max_message_size,
                registry=self.registry,
                default_db=graph,
                backend=query_backend,
                authenticator=Authenticator(config.users()),
            )
        self.connections = Counter(config.connection_limits())
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def discovery(self) -> dict[str, Any]:
        """What Neo4j answers to a plain HTTP GET on its Bolt port (Browser reads it)."""
        env = self.relay_env or self.local_env
        address = env.advertised_address if env is not None else self.config.advertised
        return {
            "bolt_direct": f"bolt://{address}",
            "bolt_routing": f"neo4j://{address}",
            "neo4j_version": NEO4J_COMPAT_VERSION,
            "neo4j_edition": "community",
        }

    def next_id(self) -> str:
        return f"bolt-{next(self._ids)}"

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        host, port = self.config.listen_address
        loop = asyncio.get_running_loop()
        tls = self.config.tls_context()

        def accept() -> Sniffer:
            watch = Watch(self.connections)
            return Sniffer(
                lambda: _Handshaker(self, watch),
                tls=tls,
                discovery=self.discovery,
                watch=watch,
                http=self.http,
            )

        self._server = await loop.create_server(
            accept,
            host,
            port,
            reuse_address=True,
        )
        if port == 0 and not self.config.advertised_address:
            # A picked port: routing tables must name the port we actually got.
            advertised = replace(self.config, listen=f"{host}:{self.address[1]}").advertised
            for env in (self.relay_env, self.local_env):
                if env is not None:
                    env.advertised_address = advertised

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def start_session(self, conn: _Handshaker) -> None:
        transport = _transport_of(conn.transport)
        PROXY.connections.labels(transport).inc()
        PROXY.connections_opened.labels(transport).inc()
        try:
            await self._session(conn)
        except asyncio.CancelledError:
            pass
        except Exception:
            conn.log.exception("session failed; closing this connection only")
        finally:
            PROXY.connections.labels(transport).dec()
            if conn.transport is not None:
                conn.transport.close()

    async def _session(self, conn: _Handshaker) -> None:
        assert conn.transport is not None
        offer = conn.handshake.offer()
        assert offer is not None
        clog = conn.log
        relay = self.relay_env
        link: BackendLink | None = None
        if conn.watch.over_limit:
            # Past max_connections: no backend; the client hears why at its first request.
            version = await conn.respond(list(SUPPORTED_VERSIONS), use_manifest=True)
            if version is not None:
                refusal = Refusal(conn, version, self.config.max_message_size, self.connections)
                conn.transport.set_protocol(refusal)
                refusal.start(conn.handshake.leftover())
                await refusal.finished
            return
        if relay is None:
            version = await conn.respond(list(SUPPORTED_VERSIONS), use_manifest=True)
        else:
            offered = set(offer.versions())
            wanted = [v for v in SUPPORTED_VERSIONS if v in offered]
            if not wanted:
                clog.info(
                    "client offers no version we speak: %s", [str(v) for v in offer.versions()]
                )
                conn.transport.write(NO_VERSION)
                return
            try:
                link = await open_backend(relay.backend, wanted)
            except BackendUnreachable as exc:
                PROXY.backend_errors.inc()
                clog.error("%s", exc)
                conn.transport.write(NO_VERSION)
                return
            if link.version is None:
                clog.warning(
                    "backend %s accepts none of %s", relay.backend.raw, [str(v) for v in wanted]
                )
                conn.transport.write(NO_VERSION)
                return
            # A legacy reply: the backend was not offered the manifest, so a manifest-style
            # HELLO SUCCESS (protocol_version) cannot come from it.
            version = await conn.respond([link.version], use_manifest=False)
        if version is None:
            if link is not None:
                link.transport.close()
            if not conn.lost:
                clog.info(
                    "no common Bolt version with the client (offered %s)",
                    [str(v) for v in offer.versions()],
                )
            return
        clog.debug("Bolt %s agreed", version)
        leftover = conn.handshake.leftover()
        connection = ServerConnection(version, max_message_size=self.config.max_message_size)
        session: Session
        if link is not None:
            assert relay is not None
            session = RelaySession(
                conn.transport, link, connection, relay, connection_id=conn.cid, log=clog
            )
        else:
            assert self.local_env is not None
            session = LocalSession(
                conn.transport,
                connection,
                self.local_env,
                connection_id=conn.cid,
                manifest_used=conn.handshake.manifest_used,
                log=clog,
            )
        session.watch = conn.watch
        conn.watch.agreed(session)
        conn.transport.set_protocol(session)
        if conn.lost:
            session.close("client left during the handshake")
        elif leftover:
            session.data_received(leftover)
        await session.wait_closed()


class Refusal(asyncio.Protocol):
    """A connection past ``max_connections``, its Bolt version agreed: its first request gets
    a FAILURE that says why (a TransientError: drivers may retry later), then it closes."""

    def __init__(
        self, conn: _Handshaker, version: Version, max_message_size: int, counter: Counter
    ) -> None:
        self.conn = conn
        self.transport = conn.transport
        self.bolt = ServerConnection(version, max_message_size=max_message_size)
        self.counter = counter
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self, leftover: bytes) -> None:
        watch = self.conn.watch
        watch.enter("authentication", watch.limits.authentication)
        if self.conn.lost:
            self._done()
        elif leftover:
            self.data_received(leftover)

    def data_received(self, data: bytes) -> None:
        if self.finished.done():
            return
        try:
            self.bolt.receive_data(data)
            request = self.bolt.next_request()
        except ProtocolError:
            request = None
            self._close()
            return
        if request is None:
            return
        most = self.counter.limits.max_connections
        self.conn.log.warning(
            "connection refused: %d connections open (max_connections %d)",
            self.counter.open - 1,
            most,
        )
        error = TransientError(
            f"boltstream serves at most {most} connections at once (max_connections), and "
            "that many are open: try again later.",
            code=RESOURCE_EXHAUSTED,
        )
        assert self.transport is not None
        self.transport.write(self.bolt.failure(error))
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.watch.closed()
        self._done()

    def _done(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


def _transport_of(transport: Any) -> str:
    """``bolt``, ``tls``, ``websocket`` or ``websocket+tls``: what a client connected over."""
    if isinstance(transport, WebSocketLayer):
        return "websocket+tls" if isinstance(transport.lower, TLSLayer) else "websocket"
    if isinstance(transport, TLSLayer):
        return "tls"
    return "bolt"

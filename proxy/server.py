"""The asyncio server: accepts connections, does the Bolt handshake, runs one session each.

A connection's problems stay with that connection: a bad handshake, a protocol violation or
an unexpected exception in its session closes it, logs one line with its connection id, and
leaves every other session alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import replace
from typing import Any

from bolt.errors import HandshakeError
from bolt.handshake import ServerHandshake
from bolt.versions import SUPPORTED_VERSIONS, Version
from proxy.auth import Authenticator
from proxy.backends.base import QueryBackend
from proxy.config import Config
from proxy.local_session import LocalSession, SessionEnv
from proxy.relay import BackendUnreachable, RelayEnv, RelaySession, open_backend
from proxy.router import LocalHandler, Router
from proxy.system import query_backend_handlers, relay_handlers
from proxy.wire import BoltWire, tune_socket

log = logging.getLogger("boltstream")
HANDSHAKE_TIMEOUT = 30.0


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['cid']}] {msg}" if self.extra else msg, kwargs


class BoltServer:
    """Serves Bolt on one address in front of one backend."""

    def __init__(self, config: Config, *, query_backend: QueryBackend | None,
                 extra_handlers: list[LocalHandler] | None = None) -> None:
        self.config = config
        self.query_backend = query_backend
        handlers = [*(extra_handlers or []), *relay_handlers()]
        self.relay_env: RelayEnv | None = None
        self.local_env: SessionEnv | None = None
        if query_backend is None:
            self.relay_env = RelayEnv(backend=config.backend_uri,
                                      router=Router(handlers, relay=True),
                                      advertised_address=config.advertised,
                                      max_message_size=config.max_message_size)
        else:
            graph = config.backend_uri.graph if config.backend_uri.kind == "falkordb" else "neo4j"
            handlers += query_backend_handlers(graph)
            self.local_env = SessionEnv(backend=query_backend,
                                        router=Router(handlers, relay=False),
                                        authenticator=Authenticator(config.users()),
                                        advertised_address=config.advertised,
                                        default_db=graph)
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        host, port = self.config.listen_address
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True,
                                                  limit=1024 * 1024)
        if port == 0 and not self.config.advertised_address:
            # A picked port: routing tables must name the port we actually got.
            advertised = replace(self.config, listen=f"{host}:{self.address[1]}").advertised
            for env in (self.relay_env, self.local_env):
                if env is not None:
                    env.advertised_address = advertised

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        cid = f"bolt-{next(self._ids)}"
        clog = ConnectionLog(log, {"cid": cid})
        peer = writer.get_extra_info("peername")
        clog.debug("connection from %s", peer)
        tune_socket(writer)
        try:
            await self._converse(reader, writer, cid, clog)
        except asyncio.CancelledError:
            pass
        except Exception:
            clog.exception("session failed; closing this connection only")
        finally:
            self._sessions.discard(task)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        cid: str, clog: ConnectionLog) -> None:
        handshake = ServerHandshake()
        try:
            offer = None
            while offer is None:
                data = await asyncio.wait_for(reader.read(64), HANDSHAKE_TIMEOUT)
                if not data:
                    return
                handshake.receive_data(data)
                offer = handshake.offer()
        except HandshakeError as exc:
            clog.warning("bad handshake from %s: %s", writer.get_extra_info("peername"), exc)
            return
        except TimeoutError:
            clog.info("no Bolt handshake within %.0f s; closing", HANDSHAKE_TIMEOUT)
            return

        relay = self.relay_env
        backend_io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        if relay is None:
            versions = list(SUPPORTED_VERSIONS)
            reply = handshake.respond(versions)
        else:
            wanted = [v for v in SUPPORTED_VERSIONS if v in set(offer.versions())]
            if not wanted:
                clog.info("client offers no version we speak: %s", offer.versions())
                writer.write(handshake.respond([]))
                return
            try:
                b_reader, b_writer, agreed = await open_backend(relay.backend, wanted)
            except BackendUnreachable as exc:
                clog.error("%s", exc)
                writer.write(b"\x00\x00\x00\x00")
                return
            if agreed is None:
                clog.warning("backend %s accepts none of %s", relay.backend.raw,
                             [str(v) for v in wanted])
                writer.write(handshake.respond([]))
                return
            backend_io = (b_reader, b_writer)
            # A legacy reply: the backend was not offered the manifest, so a manifest-style
            # HELLO SUCCESS (protocol_version) cannot come from it.
            reply = handshake.respond([agreed], use_manifest=False)
        writer.write(reply)
        try:
            while not handshake.done:
                data = await asyncio.wait_for(reader.read(64), HANDSHAKE_TIMEOUT)
                if not data:
                    return
                handshake.receive_data(data)
        except (HandshakeError, TimeoutError) as exc:
            clog.warning("handshake failed: %s", exc)
            return
        version: Version | None = handshake.version
        if version is None:
            clog.info("no common Bolt version with the client (offered %s)",
                      [str(v) for v in offer.versions()])
            return
        clog.debug("Bolt %s agreed", version)
        wire = BoltWire(reader, writer, max_message_size=self.config.max_message_size, log=clog)
        wire.feed(handshake.leftover())
        if backend_io is None:
            assert self.local_env is not None
            session = LocalSession(wire, version, self.local_env, connection_id=cid,
                                   manifest_used=handshake.manifest_used, log=clog)
            await session.serve()
        else:
            assert relay is not None
            b_reader, b_writer = backend_io
            backend_wire = BoltWire(b_reader, b_writer,
                                    max_message_size=max(relay.max_message_size, 64 << 20),
                                    log=clog)
            await RelaySession(wire, backend_wire, version, relay, log=clog).serve()
        await wire.close()

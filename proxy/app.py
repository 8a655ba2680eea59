"""The application: builds the backend, the stream engine and the Bolt server from a ``Config``
and runs them until SIGINT or SIGTERM (``serve``; the command line is ``proxy.cli``).

What goes where: ``proxy.net`` accepts connections (TLS, WebSocket, the Bolt handshake) and
connects to Bolt backends; ``proxy.session`` holds the per-connection sessions; ``proxy.answers``
what the proxy answers itself; ``proxy.backends`` the query backends (FalkorDB); and
``proxy.streams`` the Kafka stream engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace

from bolt.versions import SUPPORTED_VERSIONS
from proxy import __version__, metrics
from proxy.backends.base import QueryBackend
from proxy.backends.embedded import make_private_dir
from proxy.config import Config, parse_address
from proxy.net.backend import BackendUnreachable, open_backend
from proxy.net.http import serve_http
from proxy.net.listener import BoltServer
from proxy.streams.access import StreamAccess
from proxy.streams.catalog import CatalogError
from proxy.streams.cluster import ClusterCatalog, ClusterSettings
from proxy.streams.engine import EngineSettings, StreamEngine
from proxy.streams.handler import StreamClauseHandler
from proxy.streams.transform import TransformPolicy
from proxy.streams.transform_worker import collect_rarely
from proxy.streams.writers import BoltWriter, FalkorDBWriter, GraphWriter

log = logging.getLogger("boltstream")
# The ready line is printed whatever --log-level says: scripts and users wait for it.
ready_log = logging.getLogger("boltstream.ready")
ready_log.setLevel(logging.INFO)


class StartupError(Exception):
    pass


async def serve(config: Config) -> int:
    uri = config.backend_uri
    query_backend: QueryBackend | None = None
    embedded = None
    supervisor: asyncio.Task[None] | None = None  # restarts the embedded FalkorDB
    engine: StreamEngine | None = None
    http_server: asyncio.Server | None = None
    description = ""
    try:
        try:  # the stream catalog lives here whatever the backend; the database's data too
            make_private_dir(config.data_dir)
        except OSError as exc:
            raise StartupError(
                f"cannot create the data directory {config.data_dir}: {exc.strerror or exc}"
            ) from exc
        if uri.kind == "embedded":
            from proxy.backends.embedded import EmbeddedError, EmbeddedFalkorDB

            # Unix socket only, with a generated password: nothing reaches the graph
            # without going through the proxy's authentication.
            embedded = EmbeddedFalkorDB(config.data_dir, fsync=config.fsync, tcp_port=None)
            try:
                await embedded.start()
            except EmbeddedError as exc:
                raise StartupError(str(exc)) from exc
            query_backend = embedded.make_backend(reply_timeout=config.reply_timeout)
            description = f"embedded FalkorDB (data in {config.data_dir.resolve()})"
            supervisor = asyncio.create_task(embedded.supervise())
        elif uri.kind == "falkordb":
            from proxy.backends.falkordb import FalkorDBBackend

            query_backend = FalkorDBBackend(
                uri.host, uri.port, default_graph=uri.graph, reply_timeout=config.reply_timeout
            )
            description = f"FalkorDB at {uri.host}:{uri.port}, graph {uri.graph}"
        else:
            await _check_bolt_backend(config)
            description = f"Bolt server at {uri.raw}"
        if query_backend is not None:
            try:
                await query_backend.start()
            except Exception as exc:  # any failure to reach it is fatal at startup
                raise StartupError(f"cannot reach the backend: {exc}") from exc
        engine = _stream_engine(config, query_backend)
        default_db = uri.graph if uri.kind == "falkordb" else "neo4j"
        server = BoltServer(
            config,
            query_backend=query_backend,
            extra_handlers=[StreamClauseHandler(engine, default_db=default_db)],
        )
        metrics.serve_streams(engine)
        server.http.ping = _backend_ping(config, query_backend, default_db)
        server.http.problems = engine.problems
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from exc
        host, port = server.address
        # The name SHOW STREAMS' holders give this proxy (and, in a cluster, its member name).
        engine.member = config.cluster_member or _member_name(config, port)
        if isinstance(engine.catalog, ClusterCatalog):
            engine.catalog.member = engine.member
            if uri.kind == "embedded":
                log.warning(
                    "cluster %s with the embedded FalkorDB: each member writes the partitions "
                    "it holds to its own graph; give every member the same --backend",
                    config.cluster,
                )
        try:
            await engine.start()
        except CatalogError as exc:
            await server.close()
            raise StartupError(str(exc)) from exc
        if config.metrics_listen:
            metrics_host, metrics_port = parse_address(config.metrics_listen)
            try:
                http_server = await serve_http(server.http, metrics_host, metrics_port)
            except OSError as exc:
                await server.close()
                raise StartupError(
                    f"cannot listen on {config.metrics_listen}: {exc.strerror or exc}"
                ) from exc
            log.info("metrics and health also on http://%s", config.metrics_listen)
        host, port = server.address
        authenticator = server.local_env.authenticator if server.local_env else None
        auth = (
            "auth: passed through to the backend"
            if authenticator is None
            else authenticator.description
        )
        if authenticator is not None and authenticator.plaintext_users():
            log.warning(
                "%d user(s) configured with a plain-text password: store a hash with "
                "`boltstream passwd USERS_FILE USER` (README: Security)",
                len(authenticator.plaintext_users()),
            )
        _freeze_startup_objects()
        ready_log.info(
            "boltstream %s ready on bolt://%s:%d (WebSocket too%s), backend: %s, %s",
            __version__,
            host,
            port,
            "; TLS: bolt+s:// and wss://" if config.tls_cert else "; TLS off",
            description,
            auth,
        )
        await _wait_for_signal()
        log.info("shutting down")
        if http_server is not None:
            http_server.close()
        await engine.stop()
        await server.close()
        return 0
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if supervisor is not None:  # first: the server is about to be stopped on purpose
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
        if query_backend is not None:
            with contextlib.suppress(Exception):
                await query_backend.close()
        if embedded is not None:
            await embedded.stop()


def _freeze_startup_objects() -> None:
    """Hide what start-up made (modules, classes, the grammar: about 45,000 objects that live
    as long as the process) from the cyclic garbage collector, and make its collections rarer
    (``transform_worker.collect_rarely``, as the transform workers do)."""
    collect_rarely()
    log.debug("garbage collector: %d start-up objects frozen", gc.get_freeze_count())


def _stream_engine(config: Config, query_backend: QueryBackend | None) -> StreamEngine:
    """The stream engine: it writes to the FalkorDB graph the proxy serves, or through the
    Bolt driver with the service account; its catalog lives in the data dir."""
    writer: GraphWriter
    uri = config.backend_uri
    roles_of = None
    default_database: str | None = None
    if query_backend is not None:
        default_database = uri.graph if uri.kind == "falkordb" else "neo4j"
        writer = FalkorDBWriter(query_backend, default_database)
        # FalkorDB has no users: names count only when the proxy checks passwords.
        enforced = bool(config.users())
    else:
        auth = (config.backend_user, config.service_password()) if config.backend_user else None
        if auth is None:
            log.warning(
                "no backend_user configured: stream batches go to %s without credentials", uri.raw
            )
        bolt_writer = BoltWriter(uri.raw, auth, config.backend_database or None)
        writer, roles_of, enforced = bolt_writer, bolt_writer.roles_of, True
    settings = EngineSettings(
        kafka_config=config.kafka_client_config,
        group_prefix=config.stream_group_prefix,
        transform_timeout=config.transform_timeout,
        bootstrap_servers=config.kafka_bootstrap_servers,
        transformations_dir=config.transformations_path,
    )
    catalog = None
    if config.cluster:  # the member's name is set once the listener has its port
        catalog = ClusterCatalog(
            ClusterSettings(
                name=config.cluster,
                bootstrap=config.cluster_bootstrap,
                member=config.cluster_member,
                kafka_config=config.kafka_client_config,
                replication=config.cluster_replication,
            )
        )
    access = StreamAccess(enforced=enforced, admins=config.stream_admin_names(), roles_of=roles_of)
    return StreamEngine(
        config.data_dir,
        writer,
        transform_policy(config),
        settings,
        catalog=catalog,
        access=access,
        default_database=default_database,
        observe=metrics.StreamObserver,
    )


def _backend_ping(
    config: Config, query_backend: QueryBackend | None, graph: str
) -> Callable[[], Awaitable[None]]:
    """Readiness: the backend answers a query (FalkorDB) or a Bolt handshake."""

    async def ping() -> None:
        if query_backend is not None:
            await query_backend.run(graph, "RETURN 1", {}, read_only=True)
            return
        link = await open_backend(config.backend_uri, list(SUPPORTED_VERSIONS))
        link.transport.close()

    return ping


def _member_name(config: Config, port: int) -> str:
    """The advertised address; by default the listen host with the port the listener got
    (``--listen HOST:0``), the machine's name for a wildcard host (members on several
    machines must not all call themselves localhost)."""
    if config.advertised_address:
        return config.advertised
    host, _port = config.listen_address
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def transform_policy(config: Config) -> TransformPolicy:
    """The safe default, with the configured hosts and/or directories in place of its own."""
    policy = TransformPolicy.default(config.data_dir)
    given = TransformPolicy.from_strings(
        config.transform_allowed_hosts, config.transform_allowed_dirs
    )
    if config.transform_allowed_hosts.strip():
        policy = replace(
            policy, allowed_hosts=given.allowed_hosts, allow_any_host=given.allow_any_host
        )
    if config.transform_allowed_dirs.strip():
        policy = replace(policy, allowed_dirs=given.allowed_dirs)
    return policy


async def _check_bolt_backend(config: Config) -> None:
    try:
        link = await open_backend(config.backend_uri, list(SUPPORTED_VERSIONS))
    except BackendUnreachable as exc:
        raise StartupError(str(exc)) from exc
    link.transport.close()
    if link.version is None:
        raise StartupError(
            f"{config.backend_uri.raw} speaks none of the Bolt versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

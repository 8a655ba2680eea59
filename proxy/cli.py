"""``boltstream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from bolt.versions import SUPPORTED_VERSIONS
from proxy import __version__
from proxy.backends.base import QueryBackend
from proxy.backends.embedded import make_private_dir
from proxy.config import Config, ConfigError, load_config
from proxy.relay import BackendUnreachable, open_backend
from proxy.server import BoltServer
from proxy.streams.catalog import CatalogError
from proxy.streams.engine import EngineSettings, StreamEngine
from proxy.streams.handler import StreamClauseHandler
from proxy.streams.transform import TransformPolicy
from proxy.streams.writers import BoltWriter, FalkorDBWriter, GraphWriter

log = logging.getLogger("boltstream")
# The ready line is printed whatever --log-level says: scripts and users wait for it.
ready_log = logging.getLogger("boltstream.ready")
ready_log.setLevel(logging.INFO)

SERVE_HELP = """\
Serve Bolt on --listen and forward every query the proxy does not answer itself to the
backend. Every option can also be set in a TOML config file (--config, keys as below with
dashes or underscores, optionally under a [boltstream] table) or in the environment as
BOLTSTREAM_<OPTION> (for example BOLTSTREAM_BACKEND, BOLTSTREAM_DATA_DIR). Precedence:
command line > environment > config file > defaults.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boltstream", description=(
        "A Bolt proxy that adds Kafka stream clauses to Cypher, in front of Neo4j, Memgraph "
        "or FalkorDB."))
    parser.add_argument("--version", action="version", version=f"boltstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the proxy", description=SERVE_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to serve Bolt on (default 127.0.0.1:7687; port 0 picks a "
                       "free port, printed in the ready line)")
    serve.add_argument("--backend", metavar="URI",
                       help="the graph: bolt://host:port, bolt+s://, neo4j:// (Neo4j, "
                       "Memgraph, FalkorDB's Bolt port), falkordb://host:port[/graph] (an "
                       "existing FalkorDB over its own protocol), or leave out to run an "
                       "embedded FalkorDB (default)")
    serve.add_argument("--data-dir", metavar="DIR",
                       help="where the embedded FalkorDB keeps its data (default "
                       "./boltstream-data; append-only file on, fsync per write)")
    serve.add_argument("--advertised-address", metavar="HOST:PORT",
                       help="the address routing tables give to neo4j:// clients (default: the "
                       "listen address, with 0.0.0.0 shown as localhost)")
    serve.add_argument("--config", metavar="FILE", type=Path, help="TOML file with settings")
    serve.add_argument("--auth", metavar="USER:PASSWORD",
                       help="for FalkorDB backends, which have no users: accept only this user "
                       "(default: accept any credentials). Bolt backends check credentials "
                       "themselves")
    serve.add_argument("--users-file", metavar="FILE",
                       help="like --auth, one USER:PASSWORD per line")
    serve.add_argument("--fsync", choices=("always", "everysec", "no"),
                       help="embedded FalkorDB appendfsync policy (default always)")
    serve.add_argument("--max-message-size", metavar="BYTES", type=int,
                       help="largest Bolt request accepted (default 16 MiB)")
    serve.add_argument("--tls-cert", metavar="FILE",
                       help="PEM certificate (chain): turns on bolt+s:// and wss:// on the same "
                       "port as plain Bolt and ws:// (a self-signed one works with bolt+ssc://)")
    serve.add_argument("--tls-key", metavar="FILE",
                       help="PEM private key for --tls-cert (if not in the same file)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                       help="default info")
    streams = serve.add_argument_group("streams")
    streams.add_argument("--backend-user", metavar="USER",
                         help="service account that stream batches are written with (Bolt "
                         "backends; batches run as the stream's owner where the backend can "
                         "impersonate)")
    streams.add_argument("--backend-password", metavar="PASSWORD",
                         help="its password; better --backend-password-file or "
                         "BOLTSTREAM_BACKEND_PASSWORD: a command line is visible to every "
                         "local user (ps, /proc)")
    streams.add_argument("--backend-password-file", metavar="FILE",
                         help="a file whose first line is that password (make it readable "
                         "by the proxy's user only)")
    streams.add_argument("--transform-allowed-hosts", metavar="HOSTS",
                         help="comma-separated hosts transforms may be fetched from over "
                         "http(s): names, *.domain, IP addresses, loopback, or * for any "
                         "(default: loopback)")
    streams.add_argument("--transform-allowed-dirs", metavar="DIRS",
                         help="comma-separated directories transform files may be read from "
                         "(default: DATA_DIR/transforms and the working directory)")
    streams.add_argument("--transform-timeout", metavar="SECONDS", type=float,
                         help="longest a transform may take for one batch before the stream "
                         "stops with an error (default 30)")
    streams.add_argument("--kafka-client-config", metavar="KEY=VALUE,...",
                         help="librdkafka settings for every Kafka client of the proxy "
                         "(security.protocol, sasl.*, session.timeout.ms, ...)")
    streams.add_argument("--stream-group-prefix", metavar="PREFIX",
                         help="consumer group id of a stream = PREFIX + stream name "
                         "(default: no prefix)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, overrides={
            "listen": args.listen, "backend": args.backend, "data_dir": args.data_dir,
            "advertised_address": args.advertised_address, "auth": args.auth,
            "users_file": args.users_file, "fsync": args.fsync,
            "max_message_size": args.max_message_size, "log_level": args.log_level,
            "tls_cert": args.tls_cert, "tls_key": args.tls_key,
            "backend_user": args.backend_user, "backend_password": args.backend_password,
            "backend_password_file": args.backend_password_file,
            "transform_allowed_hosts": args.transform_allowed_hosts,
            "transform_allowed_dirs": args.transform_allowed_dirs,
            "kafka_client_config": args.kafka_client_config,
            "transform_timeout": args.transform_timeout,
            "stream_group_prefix": args.stream_group_prefix,
        })
    except ConfigError as exc:
        print(f"boltstream: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.backend_password:
        log.warning("--backend-password is visible to every local user (ps, /proc); use "
                    "--backend-password-file or BOLTSTREAM_BACKEND_PASSWORD instead")
    # Everything the proxy and its embedded database write (catalog, AOF, logs, sockets) is
    # for the proxy's user only.
    os.umask(0o077)
    try:
        return _run(serve(config))
    except KeyboardInterrupt:
        return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (about twice the relay throughput), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


class StartupError(Exception):
    pass


async def serve(config: Config) -> int:
    uri = config.backend_uri
    query_backend: QueryBackend | None = None
    embedded = None
    engine: StreamEngine | None = None
    description = ""
    try:
        try:  # the stream catalog lives here whatever the backend; the database's data too
            make_private_dir(config.data_dir)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {config.data_dir}: "
                               f"{exc.strerror or exc}") from exc
        if uri.kind == "embedded":
            from proxy.backends.embedded import EmbeddedError, EmbeddedFalkorDB

            # Unix socket only, with a generated password: nothing reaches the graph
            # without going through the proxy's authentication.
            embedded = EmbeddedFalkorDB(config.data_dir, fsync=config.fsync, tcp_port=None)
            try:
                await embedded.start()
            except EmbeddedError as exc:
                raise StartupError(str(exc)) from exc
            query_backend = embedded.make_backend()
            description = f"embedded FalkorDB (data in {config.data_dir.resolve()})"
        elif uri.kind == "falkordb":
            from proxy.backends.falkordb import FalkorDBBackend

            query_backend = FalkorDBBackend(uri.host, uri.port, default_graph=uri.graph)
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
        server = BoltServer(config, query_backend=query_backend,
                            extra_handlers=[StreamClauseHandler(engine)])
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from exc
        try:
            await engine.start()
        except CatalogError as exc:
            await server.close()
            raise StartupError(str(exc)) from exc
        host, port = server.address
        auth = ("auth: passed through to the backend" if query_backend is None
                else server.local_env.authenticator.description if server.local_env else "")
        ready_log.info("boltstream %s ready on bolt://%s:%d (WebSocket too%s), backend: %s, %s",
                       __version__, host, port,
                       "; TLS: bolt+s:// and wss://" if config.tls_cert else "; TLS off",
                       description, auth)
        await _wait_for_signal()
        log.info("shutting down")
        await engine.stop()
        await server.close()
        return 0
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if engine is not None:
            with contextlib.suppress(Exception):
                await engine.stop()
        if query_backend is not None:
            with contextlib.suppress(Exception):
                await query_backend.close()
        if embedded is not None:
            await embedded.stop()


def _stream_engine(config: Config, query_backend: QueryBackend | None) -> StreamEngine:
    """The stream engine: it writes to the FalkorDB graph the proxy serves, or through the
    Bolt driver with the service account; its catalog lives in the data dir."""
    writer: GraphWriter
    uri = config.backend_uri
    refusal = None
    if query_backend is not None:
        writer = FalkorDBWriter(query_backend, uri.graph if uri.kind == "falkordb" else "neo4j")
    else:
        auth = (config.backend_user, config.service_password()) if config.backend_user else None
        if auth is None:
            log.warning("no backend_user configured: stream batches go to %s without "
                        "credentials", uri.raw)
        writer = BoltWriter(uri.raw, auth)
    settings = EngineSettings(kafka_config=config.kafka_client_config,
                              group_prefix=config.stream_group_prefix,
                              transform_timeout=config.transform_timeout,
                              exactly_once_refusal=refusal)
    return StreamEngine(config.data_dir, writer, transform_policy(config), settings)


def transform_policy(config: Config) -> TransformPolicy:
    """The safe default, with the configured hosts and/or directories in place of its own."""
    policy = TransformPolicy.default(config.data_dir)
    given = TransformPolicy.from_strings(config.transform_allowed_hosts,
                                         config.transform_allowed_dirs)
    if config.transform_allowed_hosts.strip():
        policy = replace(policy, allowed_hosts=given.allowed_hosts,
                         allow_any_host=given.allow_any_host)
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
        raise StartupError(f"{config.backend_uri.raw} speaks none of the Bolt versions "
                           f"{', '.join(map(str, SUPPORTED_VERSIONS))}")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())

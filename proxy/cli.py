"""``boltstream`` command line: parse the options, load the settings, run ``proxy.app.serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from proxy import __version__, app
from proxy.config import ConfigError, load_config
from proxy.session.auth import hash_password

log = logging.getLogger("boltstream")

SERVE_HELP = """\
Serve Bolt on --listen and forward every query the proxy does not answer itself to the
backend. Every option can also be set in a TOML config file (--config, keys as below with
dashes or underscores, optionally under a [boltstream] table) or in the environment as
BOLTSTREAM_<OPTION> (for example BOLTSTREAM_BACKEND, BOLTSTREAM_DATA_DIR). Precedence:
command line > environment > config file > defaults.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boltstream",
        description=(
            "A Bolt proxy that adds Kafka stream clauses to Cypher, in front of Neo4j, Memgraph "
            "or FalkorDB."
        ),
    )
    parser.add_argument("--version", action="version", version=f"boltstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the proxy",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to serve Bolt on (default 127.0.0.1:7687; port 0 picks a "
        "free port, printed in the ready line)",
    )
    serve.add_argument(
        "--backend",
        metavar="URI",
        help="the graph: bolt://host:port, bolt+s://, neo4j:// (Neo4j, "
        "Memgraph, FalkorDB's Bolt port), falkordb://host:port[/graph] (an "
        "existing FalkorDB over its own protocol), or leave out to run an "
        "embedded FalkorDB (default)",
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the embedded FalkorDB keeps its data (default "
        "./boltstream-data; append-only file on, fsync per write)",
    )
    serve.add_argument(
        "--advertised-address",
        metavar="HOST:PORT",
        help="the address routing tables give to neo4j:// clients (default: the "
        "listen address, with 0.0.0.0 shown as localhost)",
    )
    serve.add_argument("--config", metavar="FILE", type=Path, help="TOML file with settings")
    serve.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="for FalkorDB backends, which have no users: accept only this user "
        "(default: accept any credentials). Bolt backends check credentials "
        "themselves",
    )
    serve.add_argument(
        "--users-file",
        metavar="FILE",
        help="like --auth, one USER:PASSWORD or USER:PASSWORD:ROLE per line (ROLE admin or "
        "user; admins may operate every stream, users their own)",
    )
    serve.add_argument(
        "--fsync",
        choices=("always", "everysec", "no"),
        help="embedded FalkorDB appendfsync policy (default always)",
    )
    serve.add_argument(
        "--max-message-size",
        metavar="BYTES",
        type=int,
        help="largest Bolt request accepted (default 16 MiB)",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate (chain): turns on bolt+s:// and wss:// on the same "
        "port as plain Bolt and ws:// (a self-signed one works with bolt+ssc://)",
    )
    serve.add_argument(
        "--tls-key", metavar="FILE", help="PEM private key for --tls-cert (if not in the same file)"
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="default info"
    )
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        help="most client connections served at once; past it a client's first request gets "
        "a TransientError saying so (default 1000, 0: no limit)",
    )
    serve.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=float,
        help="close an authenticated connection with nothing in flight that sends nothing for "
        "this long (default 3600, 0: never). The limits on the stages before it are settings "
        "too (README: Connection limits)",
    )
    streams = serve.add_argument_group("streams")
    streams.add_argument(
        "--backend-user",
        metavar="USER",
        help="service account that stream batches are written with (Bolt "
        "backends; batches run as the stream's owner where the backend can "
        "impersonate)",
    )
    streams.add_argument(
        "--backend-password",
        metavar="PASSWORD",
        help="its password; better --backend-password-file or "
        "BOLTSTREAM_BACKEND_PASSWORD: a command line is visible to every "
        "local user (ps, /proc)",
    )
    streams.add_argument(
        "--backend-password-file",
        metavar="FILE",
        help="a file whose first line is that password (make it readable by the proxy's user only)",
    )
    streams.add_argument(
        "--backend-database",
        metavar="NAME",
        help="the database of a Bolt backend that stream batches go to (default: the "
        "server's default database; name it where that can change, e.g. ArcadeDB "
        "without arcadedb.bolt.defaultDatabase)",
    )
    streams.add_argument(
        "--transform-allowed-hosts",
        metavar="HOSTS",
        help="comma-separated hosts transforms may be fetched from over "
        "http(s): names, *.domain, IP addresses, loopback, or * for any "
        "(default: loopback)",
    )
    streams.add_argument(
        "--transform-allowed-dirs",
        metavar="DIRS",
        help="comma-separated directories transform files may be read from "
        "(default: DATA_DIR/transforms and the working directory)",
    )
    streams.add_argument(
        "--transform-timeout",
        metavar="SECONDS",
        type=float,
        help="longest a transform may take for one batch before the stream "
        "stops with an error (default 30)",
    )
    streams.add_argument(
        "--kafka-client-config",
        metavar="KEY=VALUE,...",
        help="librdkafka settings for every Kafka client of the proxy "
        "(security.protocol, sasl.*, session.timeout.ms, ...)",
    )
    streams.add_argument(
        "--kafka-bootstrap-servers",
        metavar="HOST:PORT,...",
        help="brokers of a CREATE KAFKA STREAM without BOOTSTRAP_SERVERS (as Memgraph's flag)",
    )
    streams.add_argument(
        "--transformations-dir",
        metavar="DIR",
        help="where TRANSFORM module.procedure finds module.py, a Memgraph transformation "
        "module (default: DATA_DIR/transformations)",
    )
    streams.add_argument(
        "--stream-group-prefix",
        metavar="PREFIX",
        help="consumer group id of a stream = PREFIX + stream name (default: no prefix)",
    )
    streams.add_argument(
        "--stream-admins",
        metavar="USERS",
        help="comma-separated users who may operate every stream (besides the users file's "
        "admins and, on Neo4j, the backend's admins)",
    )
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="also serve GET /metrics and /health/* on this address (they are always on the "
        "Bolt port too)",
    )
    cluster = serve.add_argument_group(
        "cluster", "several proxies sharing one set of streams (see README, Clusters)"
    )
    cluster.add_argument(
        "--cluster",
        metavar="NAME",
        help="join cluster NAME: the stream catalog is shared through the Kafka topic "
        "__boltstream_NAME_catalog, and running streams run on every member (default: this "
        "proxy stands alone, catalog in DATA_DIR)",
    )
    cluster.add_argument(
        "--cluster-bootstrap",
        metavar="HOST:PORT,...",
        help="the Kafka broker(s) that keep the cluster's catalog and status topics",
    )
    cluster.add_argument(
        "--cluster-member",
        metavar="NAME",
        help="this proxy's name in the cluster, unique and stable across restarts "
        "(default: its advertised host:port)",
    )
    cluster.add_argument(
        "--cluster-replication",
        metavar="N",
        type=int,
        help="replication factor of the topics the cluster creates (default: the broker's)",
    )
    passwd = commands.add_parser(
        "passwd",
        help="set a user's password in a users file (stored as an scrypt hash)",
        description="Write USER's entry in FILE (created 0600 if missing; other lines kept) "
        "with the password hashed by scrypt. The password is asked twice on the terminal, or "
        "read from the first line of standard input with --password-stdin; never pass it as "
        "an argument (ps shows arguments to every local user).",
    )
    passwd.add_argument("users_file", metavar="FILE", type=Path, help="the users file")
    passwd.add_argument("user", metavar="USER", help="the user name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "passwd":
        return passwd(args.users_file, args.user, from_stdin=args.password_stdin)
    try:
        config = load_config(
            args.config,
            overrides={
                "listen": args.listen,
                "backend": args.backend,
                "data_dir": args.data_dir,
                "advertised_address": args.advertised_address,
                "auth": args.auth,
                "users_file": args.users_file,
                "stream_admins": args.stream_admins,
                "metrics_listen": args.metrics_listen,
                "fsync": args.fsync,
                "max_message_size": args.max_message_size,
                "log_level": args.log_level,
                "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
                "backend_user": args.backend_user,
                "backend_password": args.backend_password,
                "backend_password_file": args.backend_password_file,
                "backend_database": args.backend_database,
                "transform_allowed_hosts": args.transform_allowed_hosts,
                "transform_allowed_dirs": args.transform_allowed_dirs,
                "kafka_client_config": args.kafka_client_config,
                "transform_timeout": args.transform_timeout,
                "stream_group_prefix": args.stream_group_prefix,
                "kafka_bootstrap_servers": args.kafka_bootstrap_servers,
                "transformations_dir": args.transformations_dir,
                "max_connections": args.max_connections,
                "idle_timeout": args.idle_timeout,
                "cluster": args.cluster,
                "cluster_bootstrap": args.cluster_bootstrap,
                "cluster_member": args.cluster_member,
                "cluster_replication": args.cluster_replication,
            },
        )
    except ConfigError as exc:
        print(f"boltstream: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.backend_password:
        log.warning(
            "--backend-password is visible to every local user (ps, /proc); use "
            "--backend-password-file or BOLTSTREAM_BACKEND_PASSWORD instead"
        )
    # Everything the proxy and its embedded database write (catalog, AOF, logs, sockets) is
    # for the proxy's user only.
    os.umask(0o077)
    # A crash in native code (librdkafka, uvloop, OpenSSL) leaves the Python stack of every
    # thread in the log: the long fuzz run saw one SIGSEGV it could not reproduce, and no
    # trace of where.
    faulthandler.enable(all_threads=True)
    try:
        return _run(app.serve(config))
    except KeyboardInterrupt:
        return 0


def passwd(users_file: Path, user: str, *, from_stdin: bool) -> int:
    """``boltstream passwd``: set ``user``'s hashed password in ``users_file``."""
    if not user or ":" in user or user != user.strip() or "#" in user[:1]:
        print(
            "boltstream: a user name must be non-empty, without ':' or spaces around it",
            file=sys.stderr,
        )
        return 2
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"New password for {user}: ")
        if getpass.getpass("Again: ") != password:
            print("boltstream: the passwords differ; nothing written", file=sys.stderr)
            return 1
    if not password:
        print("boltstream: empty password; nothing written", file=sys.stderr)
        return 1
    try:
        write_user(users_file, user, hash_password(password))
    except OSError as exc:
        print(f"boltstream: cannot write {users_file}: {exc}", file=sys.stderr)
        return 1
    print(f"boltstream: password of {user} set in {users_file} (scrypt)", file=sys.stderr)
    return 0


def write_user(users_file: Path, user: str, stored: str) -> None:
    """Replace (or add) ``user``'s line, keeping every other line; atomically, mode 0600."""
    try:
        lines = users_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    entry = f"{user}:{stored}"
    kept = [line for line in lines if line.strip().partition(":")[0] != user]
    replaced = len(kept) != len(lines)
    if replaced:  # in place of the first old entry
        at = next(i for i, line in enumerate(lines) if line.strip().partition(":")[0] == user)
        kept.insert(at, entry)
    else:
        kept.append(entry)
    temp = users_file.with_name(f".{users_file.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write("\n".join(kept) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, users_file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (about twice the relay throughput), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


if __name__ == "__main__":
    sys.exit(main())

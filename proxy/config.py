"""The proxy's settings: one typed object, filled from defaults, a TOML file, the environment
(``BOLTSTREAM_*``) and the command line, in increasing order of precedence.
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.net.limits import ConnectionLimits
from proxy.session.auth import check_stored


class ConfigError(Exception):
    """A setting that cannot be used; the message says which and why."""


def parse_address(text: str, *, default_port: int = 7687) -> tuple[str, int]:
    """``host:port``, ``:port``, ``host`` or ``[v6]:port`` -> (host, port)."""
    text = text.strip()
    if not text:
        raise ConfigError("empty address")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    host = host or "127.0.0.1"
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad port in address {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port out of range in address {text!r}")
    return host, port


@dataclass(frozen=True)
class BackendURI:
    """Where the graph lives. ``kind`` is ``embedded``, ``falkordb`` or ``bolt``."""

    kind: str
    host: str = ""
    port: int = 0
    graph: str = "neo4j"
    tls: bool = False
    raw: str = ""

    @classmethod
    def parse(cls, uri: str | None) -> BackendURI:
        if not uri or uri == "embedded":
            return cls(kind="embedded", raw="embedded")
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if not parts.hostname:
            raise ConfigError(f"backend URI {uri!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"backend URI {uri!r} has a bad port") from None
        if scheme in ("bolt", "neo4j", "bolt+s", "neo4j+s", "bolt+ssc", "neo4j+ssc"):
            return cls(
                kind="bolt",
                host=parts.hostname,
                port=port or 7687,
                tls=scheme.endswith(("+s", "+ssc")),
                raw=uri,
            )
        if scheme in ("falkordb", "redis"):
            graph = parts.path.strip("/") or "neo4j"
            return cls(
                kind="falkordb", host=parts.hostname, port=port or 6379, graph=graph, raw=uri
            )
        raise ConfigError(
            f"unknown backend scheme {scheme!r} in {uri!r}: use bolt://, bolt+s://, neo4j://, "
            "falkordb://host:port[/graph], or leave --backend out for the embedded FalkorDB"
        )


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:7687"
    backend: str = "embedded"
    data_dir: Path = Path("./boltstream-data")
    advertised_address: str = ""
    auth: str = ""  # USER:PASSWORD for backends without users of their own
    users_file: Path | None = None
    max_message_size: int = 16 * 1024 * 1024
    log_level: str = "info"
    fsync: str = "always"  # embedded FalkorDB appendfsync policy
    # TLS for clients (bolt+s://, bolt+ssc://, wss://) on the same port as plain Bolt.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Streams: the service account stream batches are written with (Bolt backends only; the
    # password is never logged, shown or stored in the stream catalog).
    backend_user: str = ""
    backend_password: str = field(default="", repr=False)
    # The same password read from a file (its first line): keeps it out of `ps` and the
    # environment of child processes. Takes precedence over backend_password.
    backend_password_file: Path | None = None
    # The database stream batches go to on a Bolt backend (empty: the server's default for the
    # service account). Named, every write, position and read of every stream goes to that
    # one database whatever connection carries it (see README, "Writing to the graph").
    backend_database: str = ""
    transform_allowed_hosts: str = ""  # comma-separated; empty: the default (loopback)
    transform_allowed_dirs: str = ""  # comma-separated; empty: the default (see README)
    transform_timeout: float = 30.0  # seconds a transform may take per batch
    kafka_client_config: dict[str, str] = field(default_factory=dict)  # librdkafka settings
    stream_group_prefix: str = ""  # consumer group id = prefix + stream name
    # Memgraph 2.x: CREATE KAFKA STREAM without BOOTSTRAP_SERVERS reads from these (Memgraph's
    # --kafka-bootstrap-servers); TRANSFORM module.procedure loads module.py from this
    # directory (Memgraph's --query-modules-directory; default DATA_DIR/transformations).
    kafka_bootstrap_servers: str = ""
    transformations_dir: Path | None = None

    @property
    def transformations_path(self) -> Path:
        return self.transformations_dir or self.data_dir / "transformations"

    # Time limits (seconds, 0: none) on the stages of a connection the client controls, and
    # the most connections served at once (proxy.net.limits; README "Connection limits").
    first_byte_timeout: float = 10.0
    tls_handshake_timeout: float = 10.0
    upgrade_request_timeout: float = 10.0
    bolt_handshake_timeout: float = 10.0
    authentication_timeout: float = 30.0
    idle_timeout: float = 3600.0
    # A client whose answers wait unread (the write buffer full, not shrinking) this long.
    write_stall_timeout: float = 60.0
    max_connections: int = 1000
    # Seconds the proxy waits for FalkorDB's reply to one query (0: for ever); past it the
    # query fails with a TransientError and a stream retries it (README: Outages).
    backend_query_timeout: float = 300.0
    # A cluster of proxies sharing one stream catalog (a compacted topic on this broker).
    cluster: str = ""  # its name; empty: this proxy stands alone (SQLite catalog)
    cluster_bootstrap: str = ""  # the Kafka broker(s) holding the cluster's topics
    cluster_member: str = ""  # this proxy's name in it; empty: its advertised host:port
    cluster_replication: int = -1  # of the topics the cluster creates; -1: broker default
    # Users with the admin role for streams (comma-separated), besides the users file's
    # admins and, on Bolt backends that tell, the backend's admins (README "Operating streams").
    stream_admins: str = ""
    # GET /metrics and /health/* on a port of their own too ("" : only on the Bolt port).
    metrics_listen: str = ""

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_address(self.listen)

    @property
    def backend_uri(self) -> BackendURI:
        return BackendURI.parse(self.backend)

    @property
    def advertised(self) -> str:
        """The ``host:port`` routing tables name: what clients should dial to reach us."""
        if self.advertised_address:
            host, port = parse_address(self.advertised_address)
        else:
            host, port = self.listen_address
            if host in ("0.0.0.0", "::", ""):
                host = "localhost"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None when TLS is not configured."""
        if self.tls_cert is None and self.tls_key is None:
            return None
        if self.tls_cert is None:
            raise ConfigError("--tls-key needs --tls-cert")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate {self.tls_cert}: {exc}") from None
        return context

    @property
    def reply_timeout(self) -> float | None:
        return self.backend_query_timeout or None

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            first_byte=self.first_byte_timeout,
            tls_handshake=self.tls_handshake_timeout,
            upgrade_request=self.upgrade_request_timeout,
            bolt_handshake=self.bolt_handshake_timeout,
            authentication=self.authentication_timeout,
            idle=self.idle_timeout,
            write_stall=self.write_stall_timeout,
            max_connections=self.max_connections,
        )

    def users(self) -> dict[str, str]:
        """Configured users (name -> password). Empty means: accept any credentials."""
        return {user: password for user, (password, _role) in self._users().items()}

    def user_roles(self) -> dict[str, str]:
        """Configured users (name -> role: ``admin`` or ``user``)."""
        return {user: role for user, (_password, role) in self._users().items()}

    def stream_admin_names(self) -> frozenset[str]:
        """Users with the admin role for streams: the users file's admins and
        ``stream_admins``."""
        named = {name.strip() for name in self.stream_admins.split(",") if name.strip()}
        return frozenset(
            named | {user for user, role in self.user_roles().items() if role == "admin"}
        )

    def _users(self) -> dict[str, tuple[str, str]]:
        """name -> (scrypt hash or plain password, role). A users file line is ``USER:PASSWORD``
        (an ordinary user) or ``USER:PASSWORD:ROLE`` with ROLE ``admin`` or ``user``: a
        password may hold colons, so only a last field that is a role is taken as one."""
        found: dict[str, tuple[str, str]] = {}
        if self.auth:
            user, sep, password = self.auth.partition(":")
            if not sep or not user:
                raise ConfigError("--auth must be USER:PASSWORD")
            found[user] = (password, "user")
        if self.users_file:
            try:
                lines = self.users_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read users file {self.users_file}: {exc}") from None
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                user, sep, password = line.partition(":")
                if not sep or not user:
                    raise ConfigError(
                        f"{self.users_file}:{number}: expected USER:HASH (boltstream passwd) "
                        "or USER:PASSWORD, optionally followed by :ROLE"
                    )
                role = "user"
                rest, colon, last = password.rpartition(":")
                if colon and last in ("admin", "user"):
                    password, role = rest, last
                problem = check_stored(password)
                if problem is not None:
                    raise ConfigError(f"{self.users_file}:{number}: {problem}")
                found[user] = (password, role)
        return found

    def validate(self) -> Config:
        self.listen_address  # noqa: B018 - raises ConfigError when malformed
        self.backend_uri  # noqa: B018
        self.users()
        self.tls_context()
        if self.advertised_address:
            parse_address(self.advertised_address)
        if self.fsync not in ("always", "everysec", "no"):
            raise ConfigError("fsync must be always, everysec or no")
        if self.max_message_size < 1024:
            raise ConfigError("max_message_size must be at least 1024 bytes")
        for name in _TIMEOUTS:
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be 0 (no limit) or a positive number of seconds")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be 0 (no limit) or a positive integer")
        if not self.transform_timeout > 0:
            raise ConfigError("transform_timeout must be a positive number of seconds")
        if self.backend_database and self.backend_uri.kind != "bolt":
            raise ConfigError(
                "backend_database names a database of a Bolt backend; FalkorDB streams write "
                "to the graph of the backend URI (falkordb://host:port/graph)"
            )
        self.service_password()
        if self.cluster:
            if not _CLUSTER_NAME.fullmatch(self.cluster):
                raise ConfigError(
                    "cluster name must be 1 to 100 letters, digits, '.', '_' or '-' "
                    f"(it names Kafka topics), not {self.cluster!r}"
                )
            if not self.cluster_bootstrap.strip():
                raise ConfigError(
                    "--cluster needs --cluster-bootstrap HOST:PORT (the Kafka broker that "
                    "keeps the cluster's catalog)"
                )
        elif self.cluster_bootstrap or self.cluster_member:
            raise ConfigError("--cluster-bootstrap and --cluster-member need --cluster NAME")
        if self.cluster_replication == 0 or self.cluster_replication < -1:
            raise ConfigError("cluster_replication must be -1 (the broker's default) or >= 1")
        return self

    def service_password(self) -> str:
        """The stream service account's password: the first line of ``backend_password_file``
        when set, else ``backend_password``."""
        if self.backend_password_file is None:
            return self.backend_password
        try:
            text = self.backend_password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read backend_password_file {self.backend_password_file}: {exc}"
            ) from None
        lines = text.splitlines()
        return lines[0] if lines else ""


_FIELD_NAMES = {f.name for f in fields(Config)}
_TIMEOUTS = (
    "first_byte_timeout",
    "tls_handshake_timeout",
    "upgrade_request_timeout",
    "bolt_handshake_timeout",
    "authentication_timeout",
    "idle_timeout",
    "write_stall_timeout",
    "backend_query_timeout",
)
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def parse_kafka_config(text: str) -> dict[str, str]:
    """``key=value,key=value`` (librdkafka settings) -> dict."""
    found: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"kafka_client_config: expected key=value, not {item.strip()!r}")
        found[key.strip()] = value.strip()
    return found


def _coerce(name: str, value: Any) -> Any:
    if name == "kafka_client_config":
        if isinstance(value, dict):
            return {str(k): _kafka_value(v) for k, v in value.items()}
        return parse_kafka_config(str(value))
    if name in ("transform_allowed_hosts", "transform_allowed_dirs") and isinstance(value, list):
        return ",".join(str(item) for item in value)
    if name in (
        "data_dir",
        "users_file",
        "tls_cert",
        "tls_key",
        "backend_password_file",
        "transformations_dir",
    ):
        return Path(str(value)) if value not in (None, "") else None
    if name == "transform_timeout" or name in _TIMEOUTS:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if name in ("max_message_size", "max_connections", "cluster_replication"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, not {value!r}") from None
    return str(value)


def _kafka_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_config(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < TOML file < ``BOLTSTREAM_*`` environment < explicit overrides (CLI flags)."""
    values: dict[str, Any] = {}
    env = os.environ if env is None else env
    file = file or (Path(env["BOLTSTREAM_CONFIG"]) if env.get("BOLTSTREAM_CONFIG") else None)
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        section = data.get("boltstream", data)
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in _FIELD_NAMES:
                raise ConfigError(f"config file {file}: unknown setting {key!r}")
            values[name] = _coerce(name, value)
    for name in _FIELD_NAMES:
        env_value = env.get("BOLTSTREAM_" + name.upper())
        if env_value:
            values[name] = _coerce(name, env_value)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
    return replace(Config(), **values).validate()

"""Settings: defaults < TOML file < BOLTSTREAM_* environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import BackendURI, ConfigError, load_config, parse_address


def test_defaults() -> None:
    config = load_config(env={})
    assert config.listen_address == ("127.0.0.1", 7687)
    assert config.backend_uri.kind == "embedded"
    assert config.data_dir == Path("./boltstream-data")
    assert config.advertised == "127.0.0.1:7687"
    assert config.users() == {}


def test_precedence(tmp_path: Path) -> None:
    file = tmp_path / "b.toml"
    file.write_text(
        'listen = "127.0.0.1:1000"\ndata-dir = "/from/file"\nbackend = "falkordb://db:6380/g"\n'
    )
    env = {"BOLTSTREAM_LISTEN": "127.0.0.1:2000", "BOLTSTREAM_DATA_DIR": "/from/env"}
    config = load_config(file, env=env, overrides={"listen": "127.0.0.1:3000", "auth": None})
    assert config.listen == "127.0.0.1:3000"  # command line wins
    assert config.data_dir == Path("/from/env")  # environment beats the file
    assert config.backend_uri == BackendURI("falkordb", "db", 6380, "g", raw="falkordb://db:6380/g")


def test_config_file_from_environment_and_table(tmp_path: Path) -> None:
    file = tmp_path / "b.toml"
    file.write_text('[boltstream]\nadvertised_address = "proxy.example:7000"\n')
    config = load_config(env={"BOLTSTREAM_CONFIG": str(file)})
    assert config.advertised == "proxy.example:7000"


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope = 1\n", "unknown setting"),
        ('listen = "host:port"\n', "bad port"),
        ('backend = "http://x"\n', "unknown backend scheme"),
        ('auth = "nocolon"\n', "USER:PASSWORD"),
        ("listen = [\n", "not valid TOML"),
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "b.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(file, env={})


def test_backend_uris() -> None:
    assert BackendURI.parse("bolt://h").port == 7687
    assert BackendURI.parse("bolt+s://h:1").tls
    assert BackendURI.parse("neo4j://h:2").kind == "bolt"
    assert BackendURI.parse("falkordb://h").graph == "neo4j"
    assert BackendURI.parse(None).kind == "embedded"


def test_addresses_and_advertised() -> None:
    assert parse_address(":9") == ("127.0.0.1", 9)
    assert parse_address("[::1]:9") == ("::1", 9)
    assert load_config(env={}, overrides={"listen": "0.0.0.0:7687"}).advertised == "localhost:7687"


def test_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# comment\nalice:s3cret:with:colons\nbob:pw\n")
    config = load_config(env={}, overrides={"users_file": str(users), "auth": "carol:x"})
    assert config.users() == {"alice": "s3cret:with:colons", "bob": "pw", "carol": "x"}


def test_backend_password_from_a_file_env_or_flag(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\nignored second line\n")
    config = load_config(
        env={
            "BOLTSTREAM_BACKEND_PASSWORD_FILE": str(secret),
            "BOLTSTREAM_BACKEND_PASSWORD": "other",
        }
    )
    assert config.service_password() == "s3cret"  # the file wins
    assert load_config(env={"BOLTSTREAM_BACKEND_PASSWORD": "envpw"}).service_password() == "envpw"
    assert "s3cret" not in repr(config) and "envpw" not in repr(config)
    with pytest.raises(ConfigError, match="backend_password_file"):
        load_config(env={}, overrides={"backend_password_file": str(tmp_path / "missing")})


def test_connection_limits_from_file_and_environment(tmp_path: Path) -> None:
    config = load_config(env={"BOLTSTREAM_IDLE_TIMEOUT": "60", "BOLTSTREAM_MAX_CONNECTIONS": "5"})
    limits = config.connection_limits()
    assert (limits.idle, limits.max_connections, limits.first_byte) == (60.0, 5, 10.0)
    path = tmp_path / "c.toml"
    path.write_text("authentication_timeout = 0\n")  # 0: no limit
    assert load_config(path, env={}).connection_limits().authentication == 0.0
    for name, value in (("bolt_handshake_timeout", "-1"), ("max_connections", "-2")):
        with pytest.raises(ConfigError, match=name):
            load_config(env={"BOLTSTREAM_" + name.upper(): value})


def test_cluster_settings() -> None:
    config = load_config(
        env={"BOLTSTREAM_CLUSTER_BOOTSTRAP": "k:9092"},
        overrides={"cluster": "prod-1", "cluster_replication": "3"},
    )
    assert (config.cluster, config.cluster_bootstrap, config.cluster_replication) == (
        "prod-1",
        "k:9092",
        3,
    )
    assert load_config(env={}).cluster == ""  # stands alone by default


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"cluster": "a b"}, "cluster name must be"),
        ({"cluster": "x" * 101, "cluster_bootstrap": "k:1"}, "cluster name must be"),
        ({"cluster": "prod"}, "needs --cluster-bootstrap"),
        ({"cluster_bootstrap": "k:1"}, "need --cluster NAME"),
        ({"cluster": "p", "cluster_bootstrap": "k:1", "cluster_replication": "0"}, "-1"),
    ],
)
def test_bad_cluster_settings_say_what_is_wrong(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=overrides)


def test_backend_database_names_the_bolt_database_streams_write_to() -> None:
    bolt = {"BOLTSTREAM_BACKEND": "bolt://h:7687"}
    assert load_config(env=bolt).backend_database == ""  # the server's default
    assert load_config(env={**bolt, "BOLTSTREAM_BACKEND_DATABASE": "g"}).backend_database == "g"
    assert load_config(env=bolt, overrides={"backend_database": "x"}).backend_database == "x"
    with pytest.raises(ConfigError, match="Bolt backend; FalkorDB streams write to the graph"):
        load_config(env={}, overrides={"backend_database": "x"})  # embedded FalkorDB


def test_users_file_roles(tmp_path: Path) -> None:
    """A third field is a role (admin or user); USER:PASSWORD lines are ordinary users, and a
    password may still hold colons (a last field that is not a role is part of it)."""
    users = tmp_path / "users"
    users.write_text("root:secret:admin\nalice:pw:user\nbob:pw\neve:a:b:c\n")
    config = load_config(
        env={}, overrides={"users_file": str(users), "stream_admins": " ops , carol "}
    )
    assert config.users() == {"root": "secret", "alice": "pw", "bob": "pw", "eve": "a:b:c"}
    assert config.user_roles() == {"root": "admin", "alice": "user", "bob": "user", "eve": "user"}
    assert config.stream_admin_names() == {"root", "ops", "carol"}

"""The stream settings: command line, environment, TOML; the transform allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.app import transform_policy
from proxy.config import ConfigError, load_config


def test_stream_settings_from_file_environment_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "b.toml"
    file.write_text(
        '[boltstream]\nbackend-user = "svc"\nbackend-password = "from-file"\n'
        'transform-allowed-hosts = ["loopback", "*.example.com"]\n'
        'transform-timeout = 5\nstream-group-prefix = "bs-"\n'
        '[boltstream.kafka_client_config]\n"session.timeout.ms" = 7000\n'
        '"enable.partition.eof" = false\n'
    )
    env = {
        "BOLTSTREAM_BACKEND_PASSWORD": "from-env",
        "BOLTSTREAM_KAFKA_CLIENT_CONFIG": "security.protocol=SASL_SSL, sasl.mechanism=PLAIN",
    }
    config = load_config(file, env=env, overrides={"transform_allowed_dirs": "/a,/b"})
    assert config.backend_user == "svc"
    assert config.backend_password == "from-env"
    assert config.transform_allowed_hosts == "loopback,*.example.com"
    assert config.transform_allowed_dirs == "/a,/b"
    assert config.transform_timeout == 5.0
    assert config.stream_group_prefix == "bs-"
    assert config.kafka_client_config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
    }
    assert "from-env" not in repr(config)  # the password never reaches a log line
    assert load_config(file, env={}).kafka_client_config == {
        "session.timeout.ms": "7000",
        "enable.partition.eof": "false",
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kafka_client_config": "nokeyvalue"}, "expected key=value"),
        ({"transform_timeout": "soon"}, "number of seconds"),
        ({"transform_timeout": "0"}, "positive"),
    ],
)
def test_bad_stream_settings(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=overrides)


def test_transform_policy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    default = transform_policy(load_config(env={}, overrides={"data_dir": str(data)}))
    assert default.allows_host("localhost") and not default.allows_host("example.com")
    assert default.allows_path((data / "transforms" / "t.py").resolve())
    assert not default.allows_path((data / "streams.sqlite3").resolve())
    given = transform_policy(
        load_config(
            env={},
            overrides={
                "data_dir": str(data),
                "transform_allowed_hosts": "*.example.com",
                "transform_allowed_dirs": str(tmp_path / "mine"),
            },
        )
    )
    assert given.allows_host("cdn.example.com") and not given.allows_host("localhost")
    assert given.allows_path((tmp_path / "mine" / "t.py").resolve())
    assert not given.allows_path((data / "transforms" / "t.py").resolve())
    assert not given.allows_path((data / "streams.sqlite3").resolve())


def test_memgraph_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    default = load_config(env={}, overrides={"data_dir": str(data)})
    assert default.kafka_bootstrap_servers == ""
    assert default.transformations_path == data / "transformations"
    given = load_config(
        env={"BOLTSTREAM_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"},
        overrides={"data_dir": str(data), "transformations_dir": str(tmp_path / "modules")},
    )
    assert given.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert given.transformations_path == tmp_path / "modules"

"""Real client programs driven through a real proxy (embedded FalkorDB) and a real
Kafka-compatible broker (Tansu), both started here on loopback."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("conformance.scenario", "conformance.replay")

from conformance.harness import (  # noqa: E402
    CLIENTS,
    ClientRun,
    StreamSetup,
    build_venv,
    ensure_js_client,
)
from tests.streams.broker import Broker  # noqa: E402
from tests.streams.conftest import MANUAL_TRANSFORM_FILE  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402

# A new consumer group forms in about session.timeout.ms / 2 on Tansu: 1 s instead of 3 s for
# each START STREAM (set as a user would, with --kafka-client-config).
KAFKA_CONFIG = "session.timeout.ms=2000,heartbeat.interval.ms=500"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The proxy's data directory, with the manual's transform in ``transforms/`` (a folder
    the proxy allows by default)."""
    folder = tmp_path_factory.mktemp("conformance")
    (folder / "transforms").mkdir()
    shutil.copy(MANUAL_TRANSFORM_FILE, folder / "transforms" / "transform.py")
    return folder


@pytest.fixture(scope="session")
def proxy(data_dir: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(
        "--data-dir",
        str(data_dir),
        "--kafka-client-config",
        KAFKA_CONFIG,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def tls_proxy(
    tmp_path_factory: pytest.TempPathFactory,
    data_dir: Path,
) -> Iterator[ProxyProcess]:
    """A second proxy with TLS on (``--tls-cert``/``--tls-key``, a certificate for 127.0.0.1
    and localhost from a throwaway CA): bolt+s://, bolt+ssc:// and wss:// on its one port. It
    loads the transform from the first proxy's folder, allowed with --transform-allowed-dirs."""
    import trustme

    folder = tmp_path_factory.mktemp("conformance-tls")
    cert = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    with ProxyProcess(
        "--data-dir",
        str(folder / "data"),
        "--kafka-client-config",
        KAFKA_CONFIG,
        "--tls-cert",
        str(cert_file),
        "--tls-key",
        str(key_file),
        "--transform-allowed-dirs",
        str(data_dir / "transforms"),
    ) as server:
        yield server


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    server = Broker().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stream_setup(broker: Broker, data_dir: Path) -> StreamSetup:
    return StreamSetup(broker, data_dir / "transforms" / "transform.py")


@pytest.fixture(scope="session")
def client_runs() -> dict[str, ClientRun]:
    """Each client program runs the scenario once; its per-step tests read the report."""
    return {}


@pytest.fixture(scope="session")
def main_python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def neo4j5_python() -> str:
    """The legacy ``neo4j-driver`` 5.28 installs the same ``neo4j`` package as 6.x: own venv."""
    return str(build_venv("neo4j5", CLIENTS / "requirements-neo4j5.txt"))


@pytest.fixture(scope="session")
def node() -> str:
    return ensure_js_client()

"""Real services for the integration tests: FalkorDB and the proxy, started here on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.arcadedb import ArcadeDB
from tests.support import FalkorDBProcess, ProxyProcess


@pytest.fixture(scope="session")
def falkordb_bolt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalkorDBProcess]:
    """FalkorDB with its own Bolt port, the second real Bolt server the relay is proven on."""
    server = FalkorDBProcess(tmp_path_factory.mktemp("falkordb-bolt"), bolt=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    data: Path = tmp_path_factory.mktemp("embedded")
    with ProxyProcess("--data-dir", str(data), "--fsync", "everysec") as proxy:
        yield proxy


@pytest.fixture(scope="session")
def relay_proxy(falkordb_bolt: FalkorDBProcess) -> Iterator[ProxyProcess]:
    with ProxyProcess(
        "--backend", f"bolt://127.0.0.1:{falkordb_bolt.bolt_port}", auth=("falkordb", "")
    ) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def arcadedb_proxy(
    arcadedb: ArcadeDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """The relay in front of ArcadeDB: a Bolt 5.4 server with real transactions."""
    with ProxyProcess(
        "--backend",
        arcadedb.bolt_uri,
        "--data-dir",
        str(tmp_path_factory.mktemp("arcadedb-proxy")),
        auth=arcadedb.auth,
    ) as proxy:
        yield proxy


@pytest.fixture(params=["embedded", "relay", "arcadedb"])
def proxy(request: pytest.FixtureRequest) -> ProxyProcess:
    """The proxy on the embedded FalkorDB, relaying to FalkorDB's Bolt port, and relaying to
    ArcadeDB."""
    return request.getfixturevalue(f"{request.param}_proxy")

"""Real client programs driven through a real proxy (embedded FalkorDB), started here."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("conformance.scenario", "conformance.replay")

from conformance.harness import CLIENTS, ClientRun, build_venv, ensure_js_client  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with ProxyProcess("--data-dir", str(tmp_path_factory.mktemp("conformance"))) as server:
        yield server


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

"""Fixtures every test package may use, and the ``services`` marker.

A test is marked ``services`` when it needs a real service started for it: FalkorDB, the
Kafka-compatible broker, ArcadeDB, the proxy itself, Node.js or Chromium. Everything under
``tests/integration/`` and ``conformance/`` does; elsewhere, a test that uses one of the fixtures
below does, and so does every test of a module that starts a service in its own code.
``./scripts/test --quick`` runs the others (``-m "not services"``), in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.arcadedb import arcadedb

__all__ = ["arcadedb"]

ROOT = Path(__file__).resolve().parent.parent
SERVICE_DIRS = (ROOT / "tests" / "integration", ROOT / "conformance")
# Fixtures that start a real service (directly or through the fixtures they use).
SERVICE_FIXTURES = frozenset(
    {
        "arcadedb",
        "broker",
        "topic",
        "falkordb_server",
        "streams_proxy",
        "graph_server",
        "arcade",
        "backend",
    }
)
# What starts one in a module's own code (getfixturevalue: a fixture chosen at run time).
SERVICE_CALLS = (
    "ProxyProcess(",
    "FalkorDBProcess(",
    "EmbeddedFalkorDB(",
    "embedded_falkordb(",
    "ArcadeDB(",
    "Broker(",
    "getfixturevalue(",
)
_starts_services: dict[Path, bool] = {}


def _module_starts_services(path: Path) -> bool:
    found = _starts_services.get(path)
    if found is None:
        text = path.read_text(encoding="utf-8") if path.suffix == ".py" else ""
        found = _starts_services[path] = any(call in text for call in SERVICE_CALLS)
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    services = pytest.mark.services
    for item in items:
        path = Path(str(item.fspath))
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            any(path.is_relative_to(folder) for folder in SERVICE_DIRS)
            or fixtures & SERVICE_FIXTURES
            or _module_starts_services(path)
        ):
            item.add_marker(services)

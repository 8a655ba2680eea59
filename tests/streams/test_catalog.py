"""The stream catalog: SQLite in the data dir, one transaction per change."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.streams.catalog import CATALOG_FILE, Catalog, CatalogError, StreamExists, StreamRecord

pytestmark = pytest.mark.timeout(30)

RECORD = StreamRecord(name="s", uri="localhost:9092", topic="t", transform_uri="/x/t.py",
                      transform_code="def stream(b):\n    return []\n", transform_sha256="ab",
                      batch_interval_ms=100, batch_size=10, consumer_group="s", owner="alice",
                      status="stopped")


def test_records_survive_reopening(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        stored = await catalog.insert(RECORD)
        assert stored.created_at > 0
        with pytest.raises(StreamExists):
            await catalog.insert(replace(RECORD, uri="other:1"))
        await catalog.insert(replace(RECORD, name="a", owner=None))
        assert await catalog.update("s", status="running", limit_batches=3)
        assert not await catalog.update("missing", status="running")
        await catalog.add_progress({"s": (25, 3), "a": (0, 0)})
        await catalog.close()

        catalog = Catalog(tmp_path)
        await catalog.open()
        records = await catalog.all()
        assert [r.name for r in records] == ["a", "s"]
        s = await catalog.get("s")
        assert s is not None
        assert (s.status, s.limit_batches, s.messages_processed, s.batches_processed,
                s.uri, s.transform_code) == ("running", 3, 25, 3, "localhost:9092",
                                             RECORD.transform_code)
        assert records[0].owner is None
        assert await catalog.delete("s")
        assert not await catalog.delete("s")
        assert await catalog.get("s") is None
        await catalog.close()

    asyncio.run(scenario())


def test_bad_updates_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.insert(RECORD)
        with pytest.raises(ValueError):
            await catalog.update("s", status="paused")
        with pytest.raises(ValueError):
            await catalog.update("s", name="t")
        with pytest.raises(ValueError):
            await catalog.update("s", password="x")
        with pytest.raises(CatalogError, match="CHECK constraint"):
            await catalog.update("s", batch_size=0)  # nothing changes
        s = await catalog.get("s")
        assert s is not None and s.batch_size == 10
        await catalog.close()

    asyncio.run(scenario())


def test_a_newer_catalog_is_not_touched(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.close()
        with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
        with pytest.raises(CatalogError, match="newer boltstream"):
            await Catalog(tmp_path).open()
        (tmp_path / "blocked").write_text("a file where the data dir should be")
        with pytest.raises(CatalogError, match="cannot open the stream catalog"):
            await Catalog(tmp_path / "blocked").open()

    asyncio.run(scenario())

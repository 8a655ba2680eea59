"""The stream catalog: SQLite in the data dir, one transaction per change."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.streams.catalog import CATALOG_FILE, Catalog, CatalogError, StreamExists, StreamRecord

pytestmark = pytest.mark.timeout(30)

RECORD = StreamRecord(
    name="s",
    uri="localhost:9092",
    topic="t",
    transform_uri="/x/t.py",
    transform_code="def stream(b):\n    return []\n",
    transform_sha256="ab",
    batch_interval_ms=100,
    batch_size=10,
    consumer_group="s",
    owner="alice",
    status="stopped",
)


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
        assert (
            s.status,
            s.limit_batches,
            s.messages_processed,
            s.batches_processed,
            s.uri,
            s.transform_code,
        ) == ("running", 3, 25, 3, "localhost:9092", RECORD.transform_code)
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


# The catalog as the first release wrote it (schema 1), verbatim.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE streams (
    name               TEXT PRIMARY KEY,
    uri                TEXT NOT NULL,
    topic              TEXT NOT NULL,
    transform_uri      TEXT NOT NULL,
    transform_code     TEXT NOT NULL,
    transform_sha256   TEXT NOT NULL,
    batch_interval_ms  INTEGER NOT NULL CHECK (batch_interval_ms > 0),
    batch_size         INTEGER NOT NULL CHECK (batch_size > 0),
    consumer_group     TEXT NOT NULL,
    owner              TEXT,
    status             TEXT NOT NULL CHECK (status IN ('stopped', 'running', 'error')),
    limit_batches      INTEGER,
    last_error         TEXT,
    messages_processed INTEGER NOT NULL DEFAULT 0,
    batches_processed  INTEGER NOT NULL DEFAULT 0,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO streams VALUES ('old', 'k:9092', 't', '/x/t.py', 'code', 'ab', 100, 10, 'old',
                            'alice', 'running', NULL, NULL, 42, 7, 1.0, 2.0);
"""


def test_a_version_1_catalog_is_migrated_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        db.executescript(SCHEMA_1)

    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        old = await catalog.get("old")
        assert old is not None
        # What it did before error policies existed: stop on errors.
        assert (old.status, old.messages_processed, old.batches_processed, old.owner) == (
            "running",
            42,
            7,
            "alice",
        )
        assert (
            old.error_policy,
            old.dead_letter_topic,
            old.messages_dead_lettered,
            old.messages_skipped,
        ) == ("stop", None, 0, 0)
        await catalog.insert(
            replace(RECORD, name="new", error_policy="dead_letter", dead_letter_topic="dlq")
        )
        await catalog.add_progress({"new": (5, 1, 2, 0), "old": (1, 1)})
        with pytest.raises(ValueError):
            await catalog.update("new", error_policy="ignore")
        await catalog.close()

        catalog = Catalog(tmp_path)  # a second open changes nothing
        await catalog.open()
        new, old = await catalog.get("new"), await catalog.get("old")
        assert new is not None and old is not None
        assert (
            new.error_policy,
            new.dead_letter_topic,
            new.messages_processed,
            new.messages_dead_lettered,
        ) == ("dead_letter", "dlq", 5, 2)
        assert (old.messages_processed, old.batches_processed) == (43, 8)
        await catalog.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE streams SET error_policy = 'x'")

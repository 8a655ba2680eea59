"""The stream catalog: SQLite in the data dir, one transaction per change; the definition a
versioned JSON document, apart from the state; older catalogs migrated in place."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.streams.catalog import (
    CATALOG_FILE,
    Catalog,
    CatalogError,
    StreamExists,
    StreamState,
)
from proxy.streams.definition import (
    DefinitionError,
    Delivery,
    StreamDefinition,
    TransformRef,
)

pytestmark = pytest.mark.timeout(30)

DEFINITION = StreamDefinition(
    name="s",
    uri="localhost:9092",
    topic="t",
    transform=TransformRef("/x/t.py", "def stream(b):\n    return []\n", "ab"),
    batch_interval_ms=100,
    batch_size=10,
    consumer_group="s",
    owner="alice",
)


def test_records_survive_reopening(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        stored = await catalog.insert(DEFINITION)
        assert stored.state.created_at > 0 and stored.state.status == "stopped"
        with pytest.raises(StreamExists):
            await catalog.insert(replace(DEFINITION, uri="other:1"))
        await catalog.insert(
            replace(DEFINITION, name="a", owner=None, delivery=Delivery.EXACTLY_ONCE)
        )
        assert await catalog.update("s", status="running", limit_batches=3)
        assert not await catalog.update("missing", status="running")
        await catalog.add_progress({"s": (25, 3), "a": (0, 0)})
        await catalog.close()

        catalog = Catalog(tmp_path)
        await catalog.open()
        records = await catalog.all()
        assert [r.name for r in records] == ["a", "s"]
        s = await catalog.get("s")
        assert s is not None and s.definition is not None
        assert s.definition == DEFINITION  # the whole definition, as created
        assert (
            s.state.status,
            s.state.limit_batches,
            s.state.messages_processed,
            s.state.batches_processed,
        ) == ("running", 3, 25, 3)
        a = records[0].definition
        assert a is not None and a.owner is None and a.delivery is Delivery.EXACTLY_ONCE
        assert await catalog.delete("s")
        assert not await catalog.delete("s")
        assert await catalog.get("s") is None
        await catalog.close()

    asyncio.run(scenario())


def test_the_definition_is_one_json_document_never_shown_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.insert(DEFINITION)
        await catalog.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(streams)")]
        (text,) = db.execute("SELECT definition FROM streams").fetchone()
    assert "definition" in columns and "uri" not in columns and "batch_size" not in columns
    document = json.loads(text)
    assert (
        document["version"] == 1  # a transform stream on the default database
        and document["database"] is None
        and document["delivery"] == "at_least_once"
    )
    assert StreamDefinition.from_json(text) == DEFINITION
    # Later definitions will hold credentials: repr names the stream only.
    assert repr(DEFINITION) == "StreamDefinition(name='s')"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"version": 99}', "newer boltstream"),
        ('{"version": 1, "name": "s"}', "lacks or mistypes"),
    ],
)
def test_unreadable_definitions_are_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(DefinitionError, match=problem):
        StreamDefinition.from_json(text)


def test_bad_updates_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.insert(DEFINITION)
        with pytest.raises(ValueError):
            await catalog.update("s", status="paused")
        with pytest.raises(ValueError):
            await catalog.update("s", name="t")
        with pytest.raises(ValueError):
            await catalog.update("s", password="x")
        with pytest.raises(ValueError):
            await catalog.update("s", batch_size=1)  # the definition never changes
        with pytest.raises(CatalogError, match="CHECK constraint"):
            await catalog.update("s", limit_batches=0)  # nothing changes
        s = await catalog.get("s")
        assert s is not None and s.state.limit_batches is None
        await catalog.close()

    asyncio.run(scenario())


def test_a_newer_catalog_is_not_touched(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.close()
        with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
        before = (tmp_path / CATALOG_FILE).read_bytes()
        with pytest.raises(CatalogError, match="newer boltstream"):
            await Catalog(tmp_path).open()
        assert (tmp_path / CATALOG_FILE).read_bytes() == before
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

# What schema 2 added (the second release), verbatim, and a stream it wrote.
SCHEMA_2 = (
    SCHEMA_1.replace("INSERT INTO meta VALUES ('schema', '1');", "")
    + """
ALTER TABLE streams ADD COLUMN error_policy TEXT NOT NULL DEFAULT 'stop'
    CHECK (error_policy IN ('stop', 'skip', 'dead_letter'));
ALTER TABLE streams ADD COLUMN dead_letter_topic TEXT;
ALTER TABLE streams ADD COLUMN messages_dead_lettered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN messages_skipped INTEGER NOT NULL DEFAULT 0;
INSERT INTO meta VALUES ('schema', '2');
INSERT INTO streams VALUES ('deps', 'k:9092', 'depc', 'builtin:depc', 'depc code', 'cd', 50,
                            5, 'bs-deps', NULL, 'error', 3, 'poison', 9, 2, 3.0, 4.0,
                            'dead_letter', 'depc.dlq', 4, 1);
"""
)


def test_a_version_1_catalog_is_migrated_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        db.executescript(SCHEMA_1)

    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        old = await catalog.get("old")
        assert old is not None and old.definition is not None
        # What it did before error policies and delivery guarantees existed.
        assert (
            old.state.status,
            old.state.messages_processed,
            old.state.batches_processed,
            old.definition.owner,
        ) == ("running", 42, 7, "alice")
        assert (
            old.definition.error_policy,
            old.definition.dead_letter_topic,
            old.state.messages_dead_lettered,
            old.state.messages_skipped,
        ) == ("stop", None, 0, 0)
        assert old.definition.delivery is Delivery.AT_LEAST_ONCE
        assert old.definition.transform == TransformRef("/x/t.py", "code", "ab")
        await catalog.insert(
            replace(DEFINITION, name="new", error_policy="dead_letter", dead_letter_topic="dlq")
        )
        await catalog.add_progress({"new": (5, 1, 2, 0), "old": (1, 1)})
        await catalog.close()

        catalog = Catalog(tmp_path)  # a second open changes nothing
        await catalog.open()
        new, old = await catalog.get("new"), await catalog.get("old")
        assert new is not None and old is not None and new.definition is not None
        assert (
            new.definition.error_policy,
            new.definition.dead_letter_topic,
            new.state.messages_processed,
            new.state.messages_dead_lettered,
        ) == ("dead_letter", "dlq", 5, 2)
        assert (old.state.messages_processed, old.state.batches_processed) == (43, 8)
        await catalog.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE streams SET status = 'x'")


def test_a_version_2_catalog_is_migrated_in_one_transaction(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        db.executescript(SCHEMA_2)

    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        deps, old = await catalog.get("deps"), await catalog.get("old")
        assert deps is not None and deps.definition is not None
        assert deps.definition == StreamDefinition(
            name="deps",
            uri="k:9092",
            topic="depc",
            transform=TransformRef("builtin:depc", "depc code", "cd"),
            batch_interval_ms=50,
            batch_size=5,
            consumer_group="bs-deps",
            owner=None,
            error_policy="dead_letter",
            dead_letter_topic="depc.dlq",
            delivery=Delivery.AT_LEAST_ONCE,
        )
        assert deps.state == StreamState(
            status="error",
            limit_batches=3,
            last_error="poison",
            messages_processed=9,
            batches_processed=2,
            messages_dead_lettered=4,
            messages_skipped=1,
            created_at=3.0,
            updated_at=4.0,
        )
        assert old is not None and old.state.status == "running"
        await catalog.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert tables == {"meta", "streams"}


def test_a_failed_migration_leaves_the_old_catalog(tmp_path: Path) -> None:
    """A version-2 row the migration cannot turn into a definition (here a batch size of 0,
    which schema 2's CHECK would refuse, forced past it) fails the open, and the catalog is
    left as it was: version 2, every row there."""
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        db.executescript(SCHEMA_2)
        db.execute("PRAGMA ignore_check_constraints = 1")
        db.execute("UPDATE streams SET batch_size = 0 WHERE name = 'deps'")
    before = (tmp_path / CATALOG_FILE).read_bytes()

    async def scenario() -> None:
        with pytest.raises(CatalogError):
            await Catalog(tmp_path).open()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
        assert db.execute("SELECT count(*) FROM streams").fetchone() == (2,)
        assert "uri" in [row[1] for row in db.execute("PRAGMA table_info(streams)")]
    assert len(before) > 0


def test_alter_replaces_the_definition_and_keeps_the_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        await catalog.insert(DEFINITION, StreamState(messages_processed=7))
        await catalog.update("s", status="error", failed_at=("t", 2, 41))
        altered = replace(DEFINITION, batch_size=500, database="other")
        assert await catalog.replace(altered)
        record = await catalog.get("s")
        assert record is not None and record.definition == altered
        assert record.state.messages_processed == 7 and record.state.status == "error"
        assert record.state.failed_at == ("t", 2, 41)
        await catalog.update("s", failed_at=None)
        record = await catalog.get("s")
        assert record is not None and record.state.failed_at is None
        await catalog.close()

    asyncio.run(scenario())


def test_a_version_3_catalog_gains_failed_at(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '3');
            CREATE TABLE streams (
                name TEXT PRIMARY KEY, definition TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('stopped', 'running', 'error')),
                limit_batches INTEGER, last_error TEXT,
                messages_processed INTEGER NOT NULL DEFAULT 0,
                batches_processed INTEGER NOT NULL DEFAULT 0,
                messages_dead_lettered INTEGER NOT NULL DEFAULT 0,
                messages_skipped INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL, updated_at REAL NOT NULL);
            """
        )
        old = json.loads(DEFINITION.to_json())
        old["version"] = 1
        del old["database"]
        db.execute(
            "INSERT INTO streams (name, definition, status, created_at, updated_at) "
            "VALUES ('s', ?, 'error', 0, 0)",
            (json.dumps(old),),
        )

    async def scenario() -> None:
        catalog = Catalog(tmp_path)
        await catalog.open()
        record = await catalog.get("s")
        assert record is not None and record.definition == DEFINITION
        assert record.definition.database is None and record.state.failed_at is None
        await catalog.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / CATALOG_FILE) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)

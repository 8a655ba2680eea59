"""The stream catalog: every stream's definition and state, in SQLite in the data dir.

One row per stream. The *definition* (what ``CREATE STREAM`` said, the transform's code pinned
at CREATE, the owner, the delivery guarantee: ``definition.StreamDefinition``) is stored whole
as a versioned JSON document, next to the columns the catalog queries (``name``, ``status``).
The *state* is what changes while the stream lives: the status (``stopped``, ``running`` or
``error``), the remaining ``LIMIT`` batches, the last error and counters (messages, batches,
dead-lettered and skipped messages).

Offsets are not here: they live in the Kafka consumer group, where the broker keeps them and
where other proxies running the same stream see them; a stream with ``DELIVERY EXACTLY ONCE``
keeps its positions in the graph itself, next to the data (``positions.py``).

Every change is one SQLite transaction (WAL journal, ``synchronous=FULL``), so a ``kill -9``
leaves either the old or the new state, never half of one. Status changes are written when
they happen; counters are written by the engine from time to time (they are informational,
and a crash may lose the last second of them).

Schema versions: 1 (the first release), 2 (error policy and the dead-letter/skip counters), 3
(the definition as one JSON document, apart from the state). Opening an older catalog migrates
it in place, in one transaction (streams created before a feature existed get what they did
before it: ``error_policy`` stop, delivery at least once, zero counters). A catalog of a newer
version than this code knows is refused, untouched.

SQLite calls block, so the catalog runs them on one private thread and exposes coroutines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

from proxy.streams.definition import (
    POLICIES,
    DefinitionError,
    PolicyKind,
    StreamDefinition,
    TransformRef,
)

__all__ = [
    "CATALOG_FILE",
    "POLICIES",
    "SCHEMA_VERSION",
    "STATUSES",
    "Catalog",
    "CatalogError",
    "MemberStatus",
    "PolicyKind",
    "Status",
    "StreamCatalog",
    "StreamExists",
    "StreamRecord",
    "StreamState",
]

Status = Literal["stopped", "running", "error"]
STATUSES: tuple[Status, ...] = ("stopped", "running", "error")
CATALOG_FILE = "streams.sqlite3"
SCHEMA_VERSION = 4
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    name                   TEXT PRIMARY KEY,
    definition             TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('stopped', 'running', 'error')),
    limit_batches          INTEGER CHECK (limit_batches IS NULL OR limit_batches > 0),
    last_error             TEXT,
    messages_processed     INTEGER NOT NULL DEFAULT 0,
    batches_processed      INTEGER NOT NULL DEFAULT 0,
    messages_dead_lettered INTEGER NOT NULL DEFAULT 0,
    messages_skipped       INTEGER NOT NULL DEFAULT 0,
    created_at             REAL NOT NULL,
    updated_at             REAL NOT NULL,
    failed_at              TEXT
);
"""
# Version 3 -> 4: where a stream failed (JSON [topic, partition, offset]), for ALTER STREAM ...
# SKIP FAILED MESSAGE.
_MIGRATE_3_TO_4 = "ALTER TABLE streams ADD COLUMN failed_at TEXT"

# Version 1 -> 2: the columns after updated_at. (ADD COLUMN keeps existing rows, with the
# defaults: a stream created before error policies existed stops on errors, as it did.)
_MIGRATE_1_TO_2 = """
ALTER TABLE streams ADD COLUMN error_policy TEXT NOT NULL DEFAULT 'stop'
    CHECK (error_policy IN ('stop', 'skip', 'dead_letter'));
ALTER TABLE streams ADD COLUMN dead_letter_topic TEXT;
ALTER TABLE streams ADD COLUMN messages_dead_lettered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE streams ADD COLUMN messages_skipped INTEGER NOT NULL DEFAULT 0;
"""
_V2_COLUMNS = (
    "name",
    "uri",
    "topic",
    "transform_uri",
    "transform_code",
    "transform_sha256",
    "batch_interval_ms",
    "batch_size",
    "consumer_group",
    "owner",
    "status",
    "limit_batches",
    "last_error",
    "messages_processed",
    "batches_processed",
    "created_at",
    "updated_at",
    "error_policy",
    "dead_letter_topic",
    "messages_dead_lettered",
    "messages_skipped",
)
_STATE_COLUMNS = (
    "status",
    "limit_batches",
    "last_error",
    "messages_processed",
    "batches_processed",
    "messages_dead_lettered",
    "messages_skipped",
    "created_at",
    "updated_at",
    "failed_at",
)
_COLUMNS = ("name", "definition", *_STATE_COLUMNS)
_SETTABLE = frozenset(("status", "limit_batches", "last_error", "failed_at"))
Position = tuple[str, int, int]  # (topic, partition, offset) of one message


class CatalogError(Exception):
    """The catalog could not be opened or written."""


class StreamExists(CatalogError):
    """A stream of that name is already recorded."""


@dataclass(frozen=True)
class StreamState:
    """What changes while a stream exists. ``limit_batches``: batches left of ``START ...
    LIMIT n``; ``last_error``: why it failed (status ``error``) or what it last retried."""

    status: Status = "stopped"
    limit_batches: int | None = None
    last_error: str | None = None
    messages_processed: int = 0
    batches_processed: int = 0
    messages_dead_lettered: int = 0
    messages_skipped: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    failed_at: Position | None = None  # the message a failed stream stopped at


@dataclass(frozen=True)
class StreamRecord:
    """One stream as recorded: its definition, and its state. ``definition`` is None when
    the stored document cannot be read (``unreadable`` says why): such a stream can be shown
    and dropped, not run."""

    name: str
    definition: StreamDefinition | None
    state: StreamState
    unreadable: str | None = None


@dataclass(frozen=True)
class MemberStatus:
    """What one proxy does with a running stream: the partitions it holds, its last error."""

    partitions: list[tuple[str, int]]
    last_error: str | None = None


class StreamCatalog(Protocol):
    """What the engine needs of a catalog: every clause that changes a stream goes through
    ``insert``, ``delete``, ``update`` (state) or ``replace`` (definition, ALTER). ``Catalog``
    keeps one proxy's streams in SQLite; ``cluster.ClusterCatalog`` a cluster's in Kafka
    (``shared``: other proxies change it too, and ``subscribe`` hears of it)."""

    shared: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def all(self) -> list[StreamRecord]: ...
    async def get(self, name: str) -> StreamRecord | None: ...
    async def insert(
        self, definition: StreamDefinition, state: StreamState | None = None
    ) -> StreamRecord: ...
    async def delete(self, name: str) -> bool: ...
    async def update(self, name: str, /, **changes: Any) -> bool: ...
    async def replace(self, definition: StreamDefinition) -> bool: ...
    async def add_progress(self, progress: Mapping[str, tuple[int, ...]]) -> None: ...
    async def heartbeat(self, running: Mapping[str, MemberStatus]) -> None: ...
    def subscribe(self, callback: Callable[[str], None]) -> None: ...
    async def sync(self, timeout: float = 1.0) -> bool: ...
    def members(self, name: str) -> dict[str, MemberStatus]: ...


class Catalog:
    """The SQLite-backed catalog of one proxy. Open with ``await catalog.open()``; close when
    done."""

    shared = False

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / CATALOG_FILE
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="stream-catalog")

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._db is None:
                raise CatalogError("the stream catalog is not open")
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise CatalogError(f"stream catalog {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                with _transaction(db):
                    _prepare(db, self.path)
            except BaseException:
                db.close()
                raise
            self._db = db
            _owner_only(self.path)

        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, connect)
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open the stream catalog {self.path}: {exc}") from exc
        except OSError as exc:
            raise CatalogError(f"cannot open the stream catalog {self.path}: {exc}") from exc

    async def close(self) -> None:
        def close() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)

    # -- reads -------------------------------------------------------------------------------

    async def all(self) -> list[StreamRecord]:
        def read(db: sqlite3.Connection) -> list[StreamRecord]:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM streams ORDER BY name")
            return [_record(row) for row in rows.fetchall()]

        return await self._call(read)

    async def get(self, name: str) -> StreamRecord | None:
        def read(db: sqlite3.Connection) -> StreamRecord | None:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM streams WHERE name = ?", (name,)
            ).fetchone()
            return _record(row) if row is not None else None

        return await self._call(read)

    # -- writes ------------------------------------------------------------------------------

    async def insert(
        self, definition: StreamDefinition, state: StreamState | None = None
    ) -> StreamRecord:
        """Record a new stream (stopped, unless ``state`` says otherwise); ``StreamExists``
        when the name is taken (nothing changes)."""
        now = time.time()
        given = state or StreamState()
        values = (
            definition.name,
            definition.to_json(),
            given.status,
            given.limit_batches,
            given.last_error,
            given.messages_processed,
            given.batches_processed,
            given.messages_dead_lettered,
            given.messages_skipped,
            now,
            now,
            _position_text(given.failed_at),
        )

        def write(db: sqlite3.Connection) -> None:
            try:
                with _transaction(db):
                    db.execute(
                        f"INSERT INTO streams ({', '.join(_COLUMNS)}) VALUES "
                        f"({', '.join('?' for _ in _COLUMNS)})",
                        values,
                    )
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                    raise StreamExists(definition.name) from None
                raise

        await self._call(write)
        return _record(values)

    async def delete(self, name: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                return db.execute("DELETE FROM streams WHERE name = ?", (name,)).rowcount > 0

        return await self._call(write)

    async def update(self, name: str, /, **changes: Any) -> bool:
        """Change the state of one stream: ``status``, ``limit_batches``, ``last_error`` (one
        transaction). False if it does not exist. The definition changes with ``replace``."""
        unknown = set(changes) - _SETTABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if "failed_at" in changes:
            changes["failed_at"] = _position_text(changes["failed_at"])
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"bad status {changes['status']!r}")
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{column} = ?" for column in changes)

        def write(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cursor = db.execute(
                    f"UPDATE streams SET {assignments} WHERE name = ?", (*changes.values(), name)
                )
                return cursor.rowcount > 0

        return await self._call(write)

    async def replace(self, definition: StreamDefinition) -> bool:
        """A new definition for an existing stream (ALTER); its state stays. False if it does
        not exist."""
        text = definition.to_json()

        def write(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cursor = db.execute(
                    "UPDATE streams SET definition = ?, updated_at = ? WHERE name = ?",
                    (text, time.time(), definition.name),
                )
                return cursor.rowcount > 0

        return await self._call(write)

    async def heartbeat(self, running: Mapping[str, MemberStatus]) -> None:
        """Nothing to tell: no other proxy reads this catalog."""

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Nothing changes this catalog but this proxy."""

    async def sync(self, timeout: float = 1.0) -> bool:
        """Always up to date: every write is this proxy's own."""
        return True

    def members(self, name: str) -> dict[str, MemberStatus]:
        """Nobody else runs this proxy's streams (the engine knows its own)."""
        return {}

    async def add_progress(self, progress: Mapping[str, tuple[int, ...]]) -> None:
        """Add to several streams' counters, in one transaction: per stream a tuple (messages,
        batches) or (messages, batches, dead-lettered, skipped)."""
        if not progress:
            return

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                for name, counts in progress.items():
                    messages, batches, dead, skipped = (*counts, 0, 0)[:4]
                    db.execute(
                        "UPDATE streams SET messages_processed = messages_processed + ?, "
                        "batches_processed = batches_processed + ?, "
                        "messages_dead_lettered = messages_dead_lettered + ?, "
                        "messages_skipped = messages_skipped + ? WHERE name = ?",
                        (messages, batches, dead, skipped, name),
                    )

        await self._call(write)


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or migrate an older one to it (inside the caller's transaction)."""
    has_meta = (
        db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        is not None
    )
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() if has_meta else None
    version = int(row[0]) if row is not None else None
    if version is not None and version > SCHEMA_VERSION:
        raise CatalogError(
            f"stream catalog {path} was written by a newer boltstream "
            f"(schema {version}, this one reads {SCHEMA_VERSION})"
        )
    if version is not None and version < SCHEMA_VERSION:
        if version == 1:
            for statement in _MIGRATE_1_TO_2.split(";"):
                if statement.strip():
                    db.execute(statement)
        if version <= 2:
            _migrate_2_to_3(db)  # creates the current table
        else:
            db.execute(_MIGRATE_3_TO_4)
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    if version is None:
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    elif version < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Each version-2 row becomes a definition document plus its state (same transaction)."""
    rows = db.execute(f"SELECT {', '.join(_V2_COLUMNS)} FROM streams").fetchall()
    db.execute("ALTER TABLE streams RENAME TO streams_v2")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for row in rows:
        old = dict(zip(_V2_COLUMNS, row, strict=True))
        definition = StreamDefinition(
            name=old["name"],
            uri=old["uri"],
            topic=old["topic"],
            transform=TransformRef(
                old["transform_uri"], old["transform_code"], old["transform_sha256"]
            ),
            batch_interval_ms=old["batch_interval_ms"],
            batch_size=old["batch_size"],
            consumer_group=old["consumer_group"],
            owner=old["owner"],
            error_policy=old["error_policy"],
            dead_letter_topic=old["dead_letter_topic"],
        )
        try:
            StreamDefinition.from_json(definition.to_json())
        except DefinitionError as exc:  # rolls the whole migration back
            raise CatalogError(f"stream {old['name']!r} cannot be migrated: {exc}") from None
        db.execute(
            f"INSERT INTO streams ({', '.join(_COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in _COLUMNS)})",
            (
                old["name"],
                definition.to_json(),
                old["status"],
                old["limit_batches"],
                old["last_error"],
                old["messages_processed"],
                old["batches_processed"],
                old["messages_dead_lettered"],
                old["messages_skipped"],
                old["created_at"],
                old["updated_at"],
                None,
            ),
        )
    db.execute("DROP TABLE streams_v2")


def _owner_only(path: Path) -> None:
    """The catalog holds stream definitions (and, later, credentials): owner only, also for
    a catalog an older version created readable by everyone. New files get it from the
    proxy's umask (077)."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except FileNotFoundError:
            continue


class _transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def _position_text(position: Position | None) -> str | None:
    return None if position is None else json.dumps(list(position), ensure_ascii=False)


def _position_of(text: Any) -> Position | None:
    """A stored ``failed_at``; None for anything that is not [topic, partition, offset]."""
    if not isinstance(text, str):
        return None
    try:
        topic, partition, offset = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(topic, str) and type(partition) is int and type(offset) is int:
        return (topic, partition, offset)
    return None


def _record(row: tuple[Any, ...]) -> StreamRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["failed_at"] = _position_of(values["failed_at"])
    values["status"] = cast(Status, values["status"])
    state = StreamState(**{column: values[column] for column in _STATE_COLUMNS})
    try:
        return StreamRecord(values["name"], StreamDefinition.from_json(values["definition"]), state)
    except DefinitionError as exc:
        return StreamRecord(values["name"], None, state, unreadable=str(exc))

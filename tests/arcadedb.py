"""A real Bolt database with real transactions for the tests: ArcadeDB, from the
``arcadedb-embedded`` package (it bundles ArcadeDB, a JRE and the Bolt plugin).

FalkorDB's own Bolt port cannot roll back and crashes on messages over about 4 KB, so tests of
what needs transactions (the relay's rollback and bookmarks, the Bolt stream writer,
exactly-once delivery) run against ArcadeDB too. Measured here: it starts in about 3 s, speaks
Bolt 5.4, reports ``Neo4j/5.26.0 compatible (ArcadeDB ...)``, runs openCypher with errors that
carry Neo4j codes, and a rolled-back CREATE leaves nothing.

The server runs in a child process of its own (it holds a JVM in the process that starts it)
with its own working directory (it writes ``log/`` and JVM crash files there), dies with the
test run (``PR_SET_PDEATHSIG``), and listens on loopback. Users authenticate as ``root``.
Each test that writes should use a database of its own: ``arcadedb.create_database(name)``.

The Bolt default database is pinned to ``neo4j`` (``arcadedb.bolt.defaultDatabase``). Without
it, ArcadeDB gives a connection that names no database (and one that names ``neo4j`` or
``system``) the *first database it lists* (hash order), chosen when the connection runs its
first query and kept for the connection's life. Each database a test creates can become that
first one: connections opened before it then read and write ``neo4j`` while those opened
after it use the new database. That split a proxy's stream writer (pooled connections, opened
early) from the clients reading through the proxy (new connections): the tutorial test on
ArcadeDB saw its stream commit two messages and find no node, whenever an earlier test had
created a database that came first.

    def test_something(arcadedb: ArcadeDB) -> None:
        db = arcadedb.create_database("t_something")
        with neo4j.GraphDatabase.driver(arcadedb.bolt_uri, auth=arcadedb.auth) as driver:
            driver.execute_query("CREATE (:N)", database_=db)
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

PASSWORD = "arcadedb-test-pw"
START_TIMEOUT = 90.0  # a cold JVM on a busy 2-core machine

# Runs in the child: start the server (Bolt default database "neo4j": see the module
# docstring), create "neo4j", then serve commands on stdin
# ("create NAME" -> "created NAME" / "error ...") until stdin closes.
_LAUNCHER = textwrap.dedent("""
    import ctypes, signal, sys
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the test run
    from arcadedb_embedded.server import ArcadeDBServer
    root, password, bolt, http = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    server = ArcadeDBServer(root_path=root, root_password=password, config={
        "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        "bolt_port": bolt, "http_port": http, "bolt_defaultDatabase": "neo4j"})
    server.start()
    server.create_database("neo4j")
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, name = line.strip().partition(" ")
        try:
            if command == "create":
                server.create_database(name)
                print("created", name, flush=True)
            else:
                print("error unknown command", command, flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, str(exc).replace(chr(10), " "), flush=True)
    server.stop()
""")


class ArcadeDB:
    """One ArcadeDB server in a child process; ``start()``, ``stop()``, ``create_database``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.bolt_port = free_port()
        self.http_port = free_port()
        self.auth = ("root", PASSWORD)
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def start(self) -> ArcadeDB:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(self.workdir / "root"),
                PASSWORD,
                str(self.bolt_port),
                str(self.http_port),
            ],
            cwd=self.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.workdir / "server.log", "w"),  # noqa: SIM115 - the child owns it
            text=True,
            bufsize=1,
        )
        self._expect("ready", START_TIMEOUT)
        return self

    def _expect(self, word: str, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        found: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            found.append(self.proc.stdout.readline())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        line = found[0].strip() if found else ""
        if not line.startswith(word):
            self.stop()
            log = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ArcadeDB: expected {word!r}, got {line!r}; log:\n{log}")
        return line

    def create_database(self, prefix: str = "db") -> str:
        """A new empty database; its name (letters, digits and _ of ``prefix``, made unique)."""
        clean = "".join(c if c.isalnum() else "_" for c in prefix)[:40] or "db"
        name = f"{clean}_{os.getpid()}_{next(self._names)}"
        with self._lock:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(f"create {name}\n")
            self.proc.stdin.flush()
            self._expect("created", 60)
        return name

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()  # the launcher stops the server and exits
                proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(5)


def arcadedb_missing() -> str | None:
    try:
        import arcadedb_embedded  # noqa: F401
    except ImportError:
        return "arcadedb-embedded is not installed (./scripts/setup test installs it)"
    return None


@pytest.fixture(scope="session")
def arcadedb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArcadeDB]:
    """One ArcadeDB for the test session (about 3 s to start; 90 s allowed on a busy machine).
    Fails, never skips, when the package is missing: the suite installs it."""
    missing = arcadedb_missing()
    if missing is not None:
        pytest.fail(missing)
    server = ArcadeDB(tmp_path_factory.mktemp("arcadedb")).start()
    try:
        yield server
    finally:
        server.stop()

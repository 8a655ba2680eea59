"""``boltstream serve`` as a user runs it: flags, ready line, failures, shutdown, crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import neo4j
import pytest

from tests.support import ROOT, ProxyProcess

pytestmark = pytest.mark.timeout(60)


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_help_explains_every_flag() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in (
        "--listen",
        "--backend",
        "--data-dir",
        "--advertised-address",
        "--config",
        "--auth",
        "BOLTSTREAM_",
    ):
        assert flag in result.stdout


def test_port_taken_exits_with_a_readable_message(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "cannot listen on" in result.stderr


def test_unreachable_backend_exits_with_a_readable_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    result = run_cli("serve", "--listen", "127.0.0.1:0", "--backend", f"bolt://127.0.0.1:{port}")
    assert result.returncode != 0
    assert "cannot connect" in result.stderr


def test_bad_flag_value_exits_2() -> None:
    result = run_cli("serve", "--listen", "nohost:notaport")
    assert result.returncode == 2
    assert "bad port" in result.stderr


def test_ready_line_and_auth(tmp_path: Path) -> None:
    with ProxyProcess("--data-dir", str(tmp_path), "--auth", "alice:wonder") as proxy:
        line = proxy.wait_for_log("ready on")
        assert "embedded FalkorDB" in line and "1 configured user" in line
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "wonder")) as driver:
            driver.verify_connectivity()
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "nope")) as driver:
            with pytest.raises(neo4j.exceptions.AuthError):
                driver.verify_connectivity()


def test_sigterm_stops_proxy_and_embedded_database(tmp_path: Path) -> None:
    proxy = ProxyProcess("--data-dir", str(tmp_path)).start()
    assert proxy.proc is not None
    children = children_of(proxy.proc.pid)
    assert children, "the embedded FalkorDB should be a child of the proxy"
    assert proxy.stop(signal.SIGTERM) == 0
    assert all(wait_gone(pid) for pid in children)


def test_no_orphan_and_no_lost_write_after_a_crash(tmp_path: Path) -> None:
    proxy = ProxyProcess("--data-dir", str(tmp_path)).start()
    assert proxy.proc is not None
    children = children_of(proxy.proc.pid)
    with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("neo4j", "x")) as driver:
        driver.execute_query("CREATE (:Survivor {n: 7})")
    # Crash both: the proxy with SIGKILL (its child must not outlive it) ...
    proxy.stop(signal.SIGKILL)
    assert children and all(wait_gone(pid) for pid in children)
    # ... and the acknowledged write is still there after a restart on the same data.
    with ProxyProcess("--data-dir", str(tmp_path)) as again:
        with neo4j.GraphDatabase.driver(again.bolt_uri, auth=("neo4j", "x")) as driver:
            records, _, _ = driver.execute_query("MATCH (n:Survivor) RETURN n.n AS n")
    assert [r["n"] for r in records] == [7]


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports a process listens on: its socket inodes matched against /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_embedded_database_is_reachable_only_through_the_proxy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ProxyProcess("--data-dir", str(data), "--auth", "alice:wonder") as proxy:
        assert proxy.proc is not None
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("alice", "wonder")) as driver:
            driver.execute_query("CREATE (:Secret {v: 1})")
            with driver.session() as session:
                session.run("SHOW STREAMS").consume()  # the catalog exists
        (server,) = children_of(proxy.proc.pid)
        # No TCP listener: the only way in is the Unix socket ...
        assert listening_tcp_ports(server) == set()
        socket_path = data / "falkordb.sock"
        assert socket_path.is_socket()
        # ... which wants a password that is neither on its command line nor left on disk.
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(socket_path))
            sock.sendall(b"*3\r\n$11\r\nGRAPH.QUERY\r\n$5\r\nneo4j\r\n$8\r\nMATCH(n)\r\n")
            assert sock.recv(100).startswith(b"-NOAUTH")
        cmdline = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
        assert b"requirepass" not in cmdline and not any(b"secret" in a for a in cmdline[2:])
        assert not (data / "falkordb-secret.conf").exists()
        # Everything in the data dir is the proxy user's only.
        assert (data.stat().st_mode & 0o777) == 0o700
        for path in data.rglob("*"):
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
        assert (data / "streams.sqlite3").exists()
        assert any((data / "appendonlydir").iterdir())


def test_an_existing_data_dir_open_to_others_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    with ProxyProcess("--data-dir", str(data)) as proxy:
        assert (data.stat().st_mode & 0o777) == 0o700
        proxy.wait_for_log("now 0700")


def test_backend_password_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    done = run_cli(
        "serve",
        "--backend",
        "bolt://127.0.0.1:1",
        "--backend-user",
        "svc",
        "--backend-password",
        "hunter2",
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 1  # nothing listens there
    assert "visible to every local user" in done.stderr
    assert "hunter2" not in done.stderr


def test_a_crash_in_native_code_leaves_every_threads_stack_in_the_log(tmp_path: Path) -> None:
    # The long fuzz run saw the proxy die of SIGSEGV once, with nothing in its log to say
    # where; faulthandler writes the Python stack of every thread to stderr (the log).
    proxy = ProxyProcess("--data-dir", str(tmp_path / "data")).start()
    assert proxy.proc is not None
    os.kill(proxy.proc.pid, signal.SIGSEGV)
    assert proxy.proc.wait(timeout=30) == -signal.SIGSEGV
    proxy.wait_for_log(r"Fatal Python error: Segmentation fault")
    proxy.wait_for_log(r"(Current thread|Thread) 0x[0-9a-f]+")
    proxy.stop()

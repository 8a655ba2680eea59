"""``boltstream serve`` as a user runs it: flags, ready line, failures, shutdown, crashes."""

from __future__ import annotations

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
    return subprocess.run([sys.executable, "-m", "proxy.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


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
    for flag in ("--listen", "--backend", "--data-dir", "--advertised-address", "--config",
                 "--auth", "BOLTSTREAM_"):
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

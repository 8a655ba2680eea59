"""The JavaScript neo4j-driver inside headless Chromium (Debian's ``chromium``), speaking Bolt
over WebSocket as Neo4j Browser does, running the conformance scenario:
``python browser_client.py < scenario.json``.

It serves ``conformance/js/browser.html``, the driver's browser build (``bundle`` in the
scenario options, a path under ``conformance/js/node_modules``), ``runner.mjs`` and the scenario
from an HTTP server on loopback, starts Chromium on that page with its own user-data dir, and
prints every record the page POSTs back: the same JSON lines as the other client programs. It
ends when the page reports ``done`` (or ``fatal``), or after ``browser_timeout`` seconds, and
then stops Chromium and everything it started. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

JS = Path(__file__).resolve().parent.parent / "js"
CHROMIUM = "/usr/bin/chromium"
# Headless, and no traffic of its own: without the background-networking flags Chromium keeps
# trying to reach Google's services, which this closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",
]
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
}


class Page:
    """The HTTP side: what the page loads, and what it reports."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        bundle = (JS / "node_modules" / scenario["bundle"]).resolve()
        assert bundle.is_relative_to(JS / "node_modules") and bundle.is_file(), bundle
        self.files = {
            "/": JS / "browser.html",
            "/runner.mjs": JS / "runner.mjs",
            "/driver.js": bundle,
        }
        self.scenario = json.dumps(scenario).encode()
        self.finished = threading.Event()
        self.done = False
        self.lock = threading.Lock()

    def record(self, record: dict[str, Any]) -> None:
        with self.lock:
            if "page_error" in record or "fatal" in record:
                sys.stderr.write(f"page: {record}\n")
                sys.stderr.flush()
            else:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
            if "done" in record or "fatal" in record:
                self.done = "done" in record
                self.finished.set()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/scenario.json":
                    self._send(200, page.scenario, TYPES[".json"])
                elif path in page.files:
                    file = page.files[path]
                    self._send(200, file.read_bytes(), TYPES.get(file.suffix, "text/plain"))
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(204, b"", "text/plain")
                page.record(json.loads(body))

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _die_with_parent() -> None:
    """In the child before exec: its own process group (stopped as one), and SIGKILL when this
    program dies, however it dies (prctl PR_SET_PDEATHSIG)."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Chromium and its helpers (zygote, renderer, ...), which share its process group."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    scenario = json.load(sys.stdin)
    chromium = scenario.get("chromium", CHROMIUM)
    if not os.access(chromium, os.X_OK):
        sys.stderr.write(
            f"{chromium} is missing: ./scripts/setup test installs Debian's chromium\n"
        )
        return 1
    page = Page(scenario)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), page.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    timeout = float(scenario.get("browser_timeout", 100))
    with tempfile.TemporaryDirectory(prefix="conformance-chromium-") as profile:
        log_path = Path(profile) / "chromium.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    chromium,
                    *FLAGS,
                    f"--user-data-dir={Path(profile) / 'user-data'}",
                    *scenario.get("chromium_flags", []),
                    url,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        try:
            while not page.finished.wait(0.2):
                if proc.poll() is not None:
                    sys.stderr.write(f"chromium exited with {proc.returncode} early\n")
                    break
                if time.monotonic() > deadline:
                    sys.stderr.write(f"the page did not finish in {timeout} s\n")
                    break
        finally:
            _stop(proc)
            server.shutdown()
            if not page.done:
                tail = log_path.read_text(errors="replace")[-3000:]
                sys.stderr.write(f"--- chromium's log (end) ---\n{tail}\n")
    return 0 if page.done else 1


if __name__ == "__main__":
    sys.exit(main())

"""A structure-aware fuzzer for the proxy's front end: Bolt over TCP, WebSocket and TLS.

    .venv/bin/python -m bench.fuzz --seconds 60 --seed 1
    .venv/bin/python -m bench.fuzz --inputs 100000 --transport all --save-dir /tmp/fuzz-finds
    .venv/bin/python -m bench.fuzz --seed 1 --show 4242      # the bytes of input 4242
    .venv/bin/python -m bench.fuzz --replay tests/fuzz_corpus/some-finding.json
    .venv/bin/python -m bench.fuzz --capture      # record bench/fuzz_seeds.json again

It starts its own proxy (``boltstream serve`` on an embedded FalkorDB, with a throwaway TLS
certificate from trustme, so one port takes all three transports) and a Kafka-compatible
broker for the stream clauses, keeps a bystander session (the official driver) running
queries the whole time, and sends inputs from ``bench.fuzzgen`` (mutations of what the
drivers really send: ``bench/fuzz_seeds.json``) over many connections at once.

What it watches, and reports at the end:

* the proxy process exiting (a crash), and its log: every ERROR line and every traceback,
  grouped by a signature (exception and innermost frame, or the message with its numbers
  blanked), with an example of each kind; the most frequent WARNING lines too;
* the bystander: every error it sees, and whether it stalls (no answer for 20 s);
* connections the proxy keeps after the client has gone: proxy-side sockets in CLOSE_WAIT
  (the client closed, the proxy never did), found by client port in ``/proc/net/tcp``, and
  socket descriptors of the proxy that no socket table knows any more (closed by a reset,
  never released);
* RSS and open file descriptors (by kind) of the proxy before and after;
* with ``--idle-probe S``, which stages of a connection (nothing sent, half a handshake, no
  HELLO, ...) the proxy still holds after S seconds.

Then triage: for each kind of trouble, the inputs that were in flight when it happened are
replayed, in halves, until one alone reproduces it; that input is minimised (segments
dropped, bytes cut) and saved to ``--save-dir`` in the corpus format of
``tests/fuzz_corpus/``. Trouble that needs a race (a close arriving before the session has
started) may not reproduce alone: the report says so, and the example in the log says what
happened.

Inputs are a pure function of (seeds file, ``--seed``, index): the same seed sends the same
bytes; what the proxy does with them concurrently can differ between runs, triage can not.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import faulthandler
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fuzzgen import TRANSPORTS, Generator, Input, Segment
from bench.fuzzseeds import BROKER_PLACEHOLDER, DEFAULT_SEEDS, Seeds, capture

QUIET = 0.05  # a drain stops after this long without bytes from the proxy
DRAIN_MAX = 3.0  # and after this long in any case
LEAK_AFTER = 15.0  # a proxy socket in CLOSE_WAIT this long after the client closed: leaked
STALL_AFTER = 20.0  # the bystander without an answer this long: the proxy is stuck
FD_GROWTH = 16  # more descriptors than this after the run (and the drops): reported

_PY_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")  # "file.py:12: RuntimeWarning: ..."
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<rest>.*)$")


# -- the proxy's log ------------------------------------------------------------------------------


@dataclass
class LogEvent:
    """An ERROR/CRITICAL line or a traceback, with the lines that belong to it."""

    at: float  # time.monotonic() when its first line arrived
    level: str
    lines: list[str]
    signature: str = ""

    @property
    def has_traceback(self) -> bool:
        return any(line.startswith("Traceback (most recent call last)") for line in self.lines)

    def finish(self) -> None:
        self.signature = signature_of(self.lines)


def _blank(text: str) -> str:
    text = re.sub(r"\[bolt-\d+\]", "[bolt-N]", text)
    text = re.sub(r"\('?[\d.:a-f]+'?, \d+\)", "(ADDR)", text)
    text = re.sub(r"0x[0-9A-Fa-f]+", "0xN", text)
    text = re.sub(r"b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"", "b'…'", text)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "'…'", text)
    return re.sub(r"\d+", "N", text)


def signature_of(lines: list[str]) -> str:
    """What kind of trouble: exception type and innermost frame, or the blanked message."""
    if _PY_WARNING.match(lines[0]):  # "path.py:12: RuntimeWarning: message"
        rest = lines[0].partition(": ")[2]
        # Where it was emitted is left out: a never-awaited coroutine is reported wherever
        # the garbage collector happened to run.
        return re.sub(r"[0-9]+", "N", rest)[:160]
    if lines[0].startswith("Exception ignored in"):  # "...: <coroutine object X at 0x...>"
        what = re.sub(r" at 0x[0-9a-f]+", "", lines[0])
        return f"{what}: {lines[-1][:100]}"
    frames = [line.strip() for line in lines if line.strip().startswith('File "')]
    exc_lines = [
        line
        for line in lines[1:]
        if re.match(
            r"^[A-Za-z_][\w.]*(Error|Exception|"
            r"Exit|Interrupt|Warning)\b",
            line,
        )
    ]
    if frames or exc_lines:
        where = ""
        if frames:
            found = re.match(r'File "(?P<f>[^"]+)", line \d+, in (?P<fn>\S+)', frames[-1])
            if found:
                where = f"{Path(found['f']).name}:{found['fn']}"
        last = exc_lines[-1] if exc_lines else lines[-1]
        exc = last.split(":", 1)
        text = exc[0] + (":" + _blank(exc[1])[:100] if len(exc) > 1 else "")
        return f"{text} @ {where}"
    head = lines[0]
    found = _TIMESTAMP.match(head)
    message = found["rest"] if found else head
    return _blank(message)[:160]


class LogWatch(collections.deque[str]):
    """Stands in for ``ProxyProcess.lines``: keeps the tail, and files every ERROR and
    traceback as a ``LogEvent`` as the lines arrive (from the proxy's stderr thread)."""

    def __init__(self) -> None:
        super().__init__(maxlen=3000)
        self.lock = threading.Lock()
        self.events: list[LogEvent] = []
        self.levels: collections.Counter[str] = collections.Counter()
        self.warnings: collections.Counter[str] = collections.Counter()
        self.warning_examples: dict[str, str] = {}
        self._open: LogEvent | None = None
        self.total = 0

    def append(self, line: str) -> None:
        super().append(line)
        now = time.monotonic()
        with self.lock:
            self.total += 1
            found = _TIMESTAMP.match(line)
            if line.startswith("RuntimeWarning: Enable tracemalloc"):
                return  # the hint after a never-awaited coroutine's warning, nothing more
            if found is None and _PY_WARNING.match(line):  # warnings.warn() on stderr
                self._close()
                self._open = LogEvent(now, "PYWARNING", [line])
                return
            if line.startswith("Exception ignored in"):  # sys.unraisablehook on stderr
                self._close()
                self._open = LogEvent(now, "UNRAISABLE", [line])
                return
            if found is None:  # a continuation: traceback lines and the like
                if self._open is not None:
                    self._open.lines.append(line)
                elif line.startswith(("Traceback", "Exception in", "Fatal Python")):
                    self._open = LogEvent(now, "TRACEBACK", [line])
                return
            self._close()
            level = found["level"]
            self.levels[level] += 1
            if level in ("ERROR", "CRITICAL"):
                self._open = LogEvent(now, level, [line])
            elif level == "WARNING":
                key = _blank(found["rest"])[:120]
                self.warnings[key] += 1
                self.warning_examples.setdefault(key, line)
                self._open = LogEvent(now, level, [line])  # kept only if a traceback follows

    def _close(self) -> None:
        event, self._open = self._open, None
        if event is None:
            return
        if event.level == "WARNING" and not event.has_traceback:
            return
        event.finish()
        self.events.append(event)

    def flush(self) -> None:
        with self.lock:
            self._close()

    def snapshot(self) -> int:
        self.flush()
        return len(self.events)

    def since(self, mark: int) -> list[LogEvent]:
        self.flush()
        with self.lock:
            return list(self.events[mark:])


# -- the proxy process, seen from /proc -----------------------------------------------------------

TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


@dataclass
class ProcStats:
    rss_kb: int
    fds: int
    sockets: int
    client_conns: dict[int, str]  # client port -> state, of proxy-side sockets on the Bolt port
    orphans: int  # socket descriptors no socket table knows (closed, never released)
    fd_kinds: dict[str, int] = field(default_factory=dict)  # socket, pipe, anon_inode, file

    def conns_in(self, state: str, exclude: set[int] | None = None) -> list[int]:
        return [p for p, s in self.client_conns.items() if s == state and p not in (exclude or ())]


def _socket_tables() -> tuple[dict[int, tuple[int, int, int]], set[int]]:
    """inode -> (local port, remote port, state) for TCP; every inode in any socket table."""
    tcp: dict[int, tuple[int, int, int]] = {}
    known: set[int] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/net/{name}") as f:
            next(f)
            for line in f:
                parts = line.split()
                local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
                tcp[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                    int(state, 16),
                )
                known.add(inode)
    for name in ("unix", "udp", "udp6", "raw", "raw6", "netlink", "packet"):
        with contextlib.suppress(OSError), open(f"/proc/net/{name}") as f:
            header = next(f).split()
            col = (
                header.index("Inode")
                if "Inode" in header
                else (header.index("inode") if "inode" in header else -1)
            )
            for line in f:
                parts = line.split()
                with contextlib.suppress(ValueError, IndexError):
                    # /proc/net/unix's header has one column fewer than its rows have fields.
                    known.add(int(parts[col if name != "unix" else 6]))
    return tcp, known


def proc_stats(pid: int, port: int) -> ProcStats:
    rss = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    inodes: list[int] = []
    fds = 0
    kinds: collections.Counter[str] = collections.Counter()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                kinds[target.split(":")[0] if ":" in target else "file"] += 1
                if target.startswith("socket:["):
                    inodes.append(int(target[8:-1]))
    tcp, known = _socket_tables()
    conns: dict[int, str] = {}
    orphans = 0
    for inode in inodes:
        if inode in tcp:
            local, remote, state = tcp[inode]
            if local == port and state != 10:
                conns[remote] = TCP_STATES.get(state, str(state))
        elif inode not in known:
            orphans += 1
    return ProcStats(rss, fds, len(inodes), conns, orphans, dict(kinds))


# -- the bystander --------------------------------------------------------------------------------


class Bystander:
    """A real driver session running queries throughout, counting every error it sees."""

    def __init__(self, uri: str, auth: tuple[str, str]) -> None:
        self.uri = uri
        self.auth = auth
        self.queries = 0
        self.errors: list[tuple[float, str]] = []
        self.last_ok = time.monotonic()
        self.max_latency = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Bystander:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import neo4j

        i = 0
        while not self._stop.is_set():
            try:
                with (
                    neo4j.GraphDatabase.driver(
                        self.uri, auth=self.auth, connection_timeout=10
                    ) as driver,
                    driver.session() as session,
                ):
                    while not self._stop.is_set():
                        i += 1
                        started = time.monotonic()
                        self._one(session, i)
                        now = time.monotonic()
                        self.max_latency = max(self.max_latency, now - started)
                        self.last_ok = now
                        self.queries += 1
                        self._stop.wait(0.02)
            except Exception as exc:
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"[:300]))
                self._stop.wait(0.5)

    @staticmethod
    def _one(session: Any, i: int) -> None:
        kind = i % 10
        if kind == 0:
            with session.begin_transaction() as tx:
                value = tx.run("RETURN $i AS i", i=i).single()["i"]
                tx.commit()
        elif kind == 5:
            value = session.run(
                "MERGE (n:FuzzBystander {id: 1}) SET n.seen = $i RETURN n.seen AS i", i=i
            ).single()["i"]
        else:
            value = session.run("RETURN $i AS i", i=i).single()["i"]
        if value != i:
            raise AssertionError(f"bystander asked for {i}, got {value!r}")


# -- sending one input ----------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    started: float
    ended: float = 0.0
    port: int = 0
    received: int = 0
    server_closed: bool = False
    error: str = ""


class Target:
    """Where inputs go: the proxy's address, a TLS context, and the broker to swap in."""

    def __init__(self, host: str, port: int, broker: str) -> None:
        self.host = host
        self.port = port
        self.broker = broker.encode()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.tls = ctx

    def bind(self, data: bytes) -> bytes:
        return data.replace(BROKER_PLACEHOLDER, self.broker) if BROKER_PLACEHOLDER in data else data


async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    """Bytes, b"" at end of stream, None when nothing came in ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(65536), timeout)
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError, OSError):
        return b""


async def send_input(target: Target, inp: Input, index: int = 0) -> Outcome:
    out = Outcome(index, time.monotonic())
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=target.tls if inp.tls else None),
            10,
        )
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        out.error = f"connect: {type(exc).__name__}: {exc}"
        out.ended = time.monotonic()
        return out
    sock = writer.get_extra_info("socket")
    out.port = sock.getsockname()[1] if sock is not None else 0
    try:
        for seg in inp.segments:
            if seg.data and not out.server_closed:
                writer.write(target.bind(seg.data))
                await asyncio.wait_for(writer.drain(), 10)
            if seg.wait > 0 and not out.server_closed:
                # The first bytes of the answer, then the rest of that burst.
                got = await _read(reader, seg.wait)
                while got:
                    out.received += len(got)
                    got = await _read(reader, QUIET)
                if got == b"":
                    out.server_closed = True
        if inp.close == "half" and not inp.tls and writer.can_write_eof():
            writer.write_eof()
        if inp.close in ("drain", "half"):
            deadline = time.monotonic() + DRAIN_MAX
            while not out.server_closed and time.monotonic() < deadline:
                got = await _read(reader, QUIET)
                if got is None:
                    break
                if got == b"":
                    out.server_closed = True
                out.received += len(got)
        if inp.close == "rst" and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
    except (ConnectionError, OSError, ssl.SSLError, TimeoutError) as exc:
        out.server_closed = True
        out.error = f"{type(exc).__name__}"
    finally:
        writer.transport.abort() if inp.tls else writer.close()
        out.ended = time.monotonic()
    return out


# -- idle and half-open connections ------------------------------------------------------------


def idle_cases() -> list[tuple[str, bool, bytes]]:
    """(name, over TLS, bytes sent before going quiet): each stage a client controls."""
    from bench.fuzzgen import offer, slot
    from bench.fuzzwire import MANIFEST_SLOT, Struct, chunk, pack, ws_upgrade

    legacy = offer(slot(5, 8, 8), slot(4, 4, 2))
    hello = chunk(pack(Struct(0x01, ({"user_agent": "idle-probe/1"},))))
    logon = chunk(pack(Struct(0x6A, ({"scheme": "none"},))))
    return [
        ("nothing at all", False, b""),
        ("a single G", False, b"G"),
        ("half the Bolt magic", False, b"\x60\x60"),
        ("the magic, no offer", False, legacy[:4]),
        ("a partial HTTP request", False, b"GET / HTTP/1.1\r\nHost: x\r\n"),
        ("a WebSocket upgrade, then nothing", False, ws_upgrade()),
        ("a manifest offer, no pick", False, offer(MANIFEST_SLOT, slot(5, 8, 8))),
        ("a handshake, no HELLO", False, legacy),
        ("half a HELLO", False, legacy + hello[: len(hello) // 2]),
        ("HELLO, no LOGON", False, legacy + hello),
        ("logged in, then idle", False, legacy + hello + logon),
        ("one byte of a TLS record", False, b"\x16"),
        ("TLS handshake done, then nothing", True, b""),
        ("TLS, a handshake, no HELLO", True, legacy),
    ]


async def probe_idle(target: Target, seconds: float) -> list[tuple[str, float | None]]:
    """Open every idle case at once; how long the proxy took to close each (None: open)."""

    async def one(tls: bool, data: bytes) -> float | None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=target.tls if tls else None
        )
        try:
            if data:
                writer.write(data)
            deadline = started + seconds
            while (left := deadline - time.monotonic()) > 0:
                got = await _read(reader, left)
                if got == b"":
                    return time.monotonic() - started
            return None
        finally:
            writer.transport.abort()

    cases = idle_cases()
    results = await asyncio.gather(*(one(tls, data) for _, tls, data in cases))
    return [(name, r) for (name, _, _), r in zip(cases, results, strict=True)]


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str  # crash | log | leak | bystander | stall
    signature: str
    at: float
    example: list[str]
    count: int = 1
    index: int | None = None  # the input found to reproduce it
    ats: list[float] = field(default_factory=list)  # when its first few occurrences were seen
    minimal: Input | None = None
    saved: str = ""


@dataclass
class Report:
    seed: int
    inputs: int = 0
    seconds: float = 0.0
    families: collections.Counter[str] = field(default_factory=collections.Counter)
    transports: collections.Counter[str] = field(default_factory=collections.Counter)
    server_closed: int = 0
    client_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    crashes: int = 0
    before: ProcStats | None = None
    after: ProcStats | None = None
    findings: list[Finding] = field(default_factory=list)
    log_events: list[LogEvent] = field(default_factory=list)
    warnings: collections.Counter[str] = field(default_factory=collections.Counter)
    log_lines: int = 0
    bystander_queries: int = 0
    bystander_errors: list[str] = field(default_factory=list)
    bystander_max_latency: float = 0.0
    leaked_close_wait: list[int] = field(default_factory=list)  # client ports
    leaked_inputs: list[int] = field(default_factory=list)  # the inputs that used them
    leaked_orphans: int = 0
    stalled: bool = False
    idle: list[tuple[str, float | None]] = field(default_factory=list)
    idle_seconds: float = 0.0
    uptime_before: str = ""
    uptime_after: str = ""

    def to_json(self) -> dict[str, Any]:
        def stats(s: ProcStats | None) -> dict[str, Any] | None:
            return (
                None
                if s is None
                else {
                    "rss_kb": s.rss_kb,
                    "fds": s.fds,
                    "sockets": s.sockets,
                    "client_conns": len(s.client_conns),
                    "orphans": s.orphans,
                    "fd_kinds": s.fd_kinds,
                }
            )

        kinds = collections.Counter(e.signature for e in self.log_events)
        return {
            "seed": self.seed,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "rate": round(self.inputs / self.seconds, 1) if self.seconds else 0,
            "families": dict(self.families),
            "transports": dict(self.transports),
            "server_closed": self.server_closed,
            "crashes": self.crashes,
            "log_events": len(self.log_events),
            "tracebacks": sum(e.has_traceback for e in self.log_events),
            "errors": sum(e.level in ("ERROR", "CRITICAL") for e in self.log_events),
            "log_kinds": dict(kinds.most_common()),
            "log_examples": {
                sig: next(e.lines for e in self.log_events if e.signature == sig) for sig in kinds
            },
            "bystander": {
                "queries": self.bystander_queries,
                "errors": self.bystander_errors,
                "max_latency_s": round(self.bystander_max_latency, 3),
            },
            "leaked_close_wait": len(self.leaked_close_wait),
            "leaked_orphans": self.leaked_orphans,
            "stalled": self.stalled,
            "idle_seconds": self.idle_seconds,
            "idle": dict(self.idle),
            "before": stats(self.before),
            "after": stats(self.after),
            "uptime_before": self.uptime_before,
            "uptime_after": self.uptime_after,
            "findings": [
                {
                    "kind": f.kind,
                    "signature": f.signature,
                    "count": f.count,
                    "index": f.index,
                    "saved": f.saved,
                    "minimal": f.minimal.to_json() if f.minimal else None,
                }
                for f in self.findings
            ],
        }


def _uptime() -> str:
    with contextlib.suppress(OSError):
        return os.popen("uptime").read().strip()
    return ""


class Fuzzer:
    """Owns the proxy, the broker and the bystander for one run."""

    def __init__(
        self,
        *,
        seed: int,
        transports: tuple[str, ...],
        seeds: Seeds,
        concurrency: int = 16,
        save_dir: Path | None = None,
        verbose: bool = False,
        proxy_args: tuple[str, ...] = (),
    ) -> None:
        self.seed = seed
        self.transports = transports
        self.seeds = seeds
        self.concurrency = concurrency
        self.save_dir = save_dir
        self.verbose = verbose
        self.proxy_args = proxy_args
        self.gen = Generator(seeds, seed, transports)
        self.report = Report(seed)
        self.outcomes: dict[int, Outcome] = {}
        self.by_port: dict[int, int] = {}  # client port -> index of the latest input on it
        self.proxy: Any = None
        self.broker: Any = None
        self.bystander: Bystander | None = None
        self.log = LogWatch()
        self._tmp = tempfile.TemporaryDirectory(prefix="boltstream-fuzz-")
        self._close_wait: dict[int, tuple[int, float]] = {}  # port -> (input, first seen)
        self._leaks: set[int] = set()  # inputs whose connection the proxy kept

    # -- set up and tear down ---------------------------------------------------------------------

    def __enter__(self) -> Fuzzer:
        from tests.streams.broker import Broker

        self.broker = Broker().start()
        self.broker.create_topic("fuzz")
        self.broker.create_topic("fuzz.dlq")
        self.start_proxy()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bystander is not None:
            self.bystander.stop()
        if self.proxy is not None:
            self.proxy.stop()
        if self.broker is not None:
            self.broker.stop()
        self._tmp.cleanup()

    def start_proxy(self) -> None:
        import trustme

        from tests.support import ProxyProcess

        folder = Path(self._tmp.name)
        cert_file, key_file = folder / "cert.pem", folder / "key.pem"
        if not cert_file.exists():
            ca = trustme.CA()
            cert = ca.issue_cert("localhost", "127.0.0.1")
            cert_file.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
            key_file.write_bytes(cert.private_key_pem.bytes())
        data = folder / "data"
        self.proxy = ProxyProcess(
            "--data-dir",
            str(data),
            "--fsync",
            "no",
            "--tls-cert",
            str(cert_file),
            "--tls-key",
            str(key_file),
            "--kafka-client-config",
            "session.timeout.ms=2000,heartbeat.interval.ms=500",
            *self.proxy_args,
        )
        self.proxy.lines = self.log
        self.proxy.start()
        self.target = Target(self.proxy.host, self.proxy.port, self.broker.bootstrap)

    def start_bystander(self) -> Bystander:
        if self.bystander is None:
            self.bystander = Bystander(self.proxy.bolt_uri, self.proxy.auth).start()
        return self.bystander

    def check_bystander(self, timeout: float = 10.0) -> None:
        """Wait for the bystander to get an answer sent after now."""
        bystander = self.start_bystander()
        since = time.monotonic()
        while bystander.last_ok <= since:
            if time.monotonic() > since + timeout:
                raise AssertionError(
                    f"the bystander had no answer for {timeout} s: {bystander.errors[-1:]}"
                )
            time.sleep(0.02)

    def alive(self) -> bool:
        return (
            self.proxy is not None
            and self.proxy.proc is not None
            and self.proxy.proc.poll() is None
        )

    def stats(self) -> ProcStats:
        return proc_stats(self.proxy.proc.pid, self.proxy.port)

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # -- the main loop ----------------------------------------------------------------------------

    def probe_idle(self, seconds: float) -> None:
        self.report.idle_seconds = seconds
        self.report.idle = asyncio.run(probe_idle(self.target, seconds))
        still = [name for name, closed in self.report.idle if closed is None]
        if still:
            self.report.findings.append(
                Finding(
                    "idle",
                    "connections held open by a client that sends nothing more",
                    time.monotonic(),
                    still,
                    count=len(still),
                )
            )

    def run(self, *, inputs: int | None, seconds: float | None, settle: float = 15.0) -> Report:
        rep = self.report
        rep.uptime_before = _uptime()
        self.start_bystander()
        time.sleep(1.0)
        rep.before = self.stats()
        self.log_mark = self.log.snapshot()
        started = time.monotonic()
        asyncio.run(self._fuzz(inputs, seconds))
        rep.seconds = time.monotonic() - started
        rep.inputs = len(self.outcomes)
        self.say(f"{rep.inputs} inputs sent; dropping streams, waiting for the proxy to settle")
        self._cleanup_streams()
        self._settle(settle)
        rep.uptime_after = _uptime()
        bystander = self.start_bystander()
        bystander.stop()
        rep.bystander_queries = bystander.queries
        rep.bystander_errors = [e for _, e in bystander.errors]
        rep.bystander_max_latency = bystander.max_latency
        rep.log_events = self.log.since(self.log_mark)
        rep.warnings = self.log.warnings
        rep.log_lines = self.log.total
        self._collect_findings()
        return rep

    async def _fuzz(self, inputs: int | None, seconds: float | None) -> None:
        deadline = time.monotonic() + seconds if seconds else None
        counter = iter(range(inputs) if inputs is not None else iter(int, 1))
        next_index = 0
        stop = asyncio.Event()

        def take() -> int | None:
            nonlocal next_index
            if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                return None
            if inputs is not None and next_index >= inputs:
                return None
            if inputs is None:
                next(counter)
            i = next_index
            next_index += 1
            return i

        async def worker() -> None:
            while (i := take()) is not None:
                inp = self.gen.make(i)
                self.report.families[inp.family] += 1
                self.report.transports[inp.transport] += 1
                out = await send_input(self.target, inp, i)
                self.outcomes[i] = out
                if out.port:
                    self.by_port[out.port] = i
                self.report.server_closed += out.server_closed
                if out.error:
                    self.report.client_errors[out.error.split(":")[0]] += 1

        async def watch() -> None:
            last_print = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(1.0)
                if not self.alive():
                    self.report.crashes += 1
                    self.say(f"proxy exited with {self.proxy.proc.returncode}")
                    stop.set()
                    return
                if self.bystander and time.monotonic() - self.bystander.last_ok > STALL_AFTER:
                    self.report.stalled = True
                    self.say(
                        "the bystander has had no answer for "
                        f"{STALL_AFTER:.0f} s: the proxy is stuck"
                    )
                    stop.set()
                    return
                self._sweep()
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    s = self.stats()
                    self.say(
                        f"{len(self.outcomes)} inputs, {len(self.log.events)} log events, "
                        f"bystander {self.bystander.queries if self.bystander else 0} "
                        f"queries / {len(self.bystander.errors) if self.bystander else 0} "
                        f"errors, rss {s.rss_kb // 1024} MiB, fds {s.fds}, "
                        f"conns {len(s.client_conns)}"
                    )

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        stop.set()
        await watcher

    def _sweep(self) -> None:
        """Proxy sockets in CLOSE_WAIT (the client closed, the proxy did not) for the port of
        an input that has ended: still so ``LEAK_AFTER`` seconds later, they count as leaked."""
        s = self.stats()
        now = time.monotonic()
        current = set(s.conns_in("CLOSE_WAIT"))
        for port in list(self._close_wait):
            if port not in current:
                del self._close_wait[port]
        for port in current:
            i = self.by_port.get(port)
            if i is None or not self.outcomes[i].ended:
                continue
            seen = self._close_wait.get(port)
            if seen is None or seen[0] != i:
                self._close_wait[port] = (i, now)
            elif now - seen[1] > LEAK_AFTER:
                self._leaks.add(i)

    def answers_within(self, text: str, seconds: float) -> bool:
        """Whether the proxy answers ``text`` (a result or a clean error) within ``seconds``
        (asked in a thread of its own: the driver has no read timeout)."""
        import neo4j

        done = threading.Event()

        def ask() -> None:
            with (
                contextlib.suppress(Exception),
                neo4j.GraphDatabase.driver(
                    self.proxy.bolt_uri, auth=self.proxy.auth, connection_timeout=10
                ) as driver,
            ):
                with contextlib.suppress(neo4j.exceptions.Neo4jError), driver.session() as s:
                    s.run(text).consume()  # auto-commit: stream clauses refuse transactions
                done.set()

        threading.Thread(target=ask, daemon=True).start()
        return done.wait(seconds)

    def _cleanup_streams(self, seconds: float = 30.0) -> None:
        """Stop and drop what the clause inputs left behind, so the counts are comparable. A
        clause that does not answer in ``seconds`` is a finding (one stuck clause must not
        hold the others)."""
        import neo4j

        def drop_all() -> list[str]:
            names: list[str] = []
            with (
                neo4j.GraphDatabase.driver(self.proxy.bolt_uri, auth=self.proxy.auth) as d,
                d.session() as session,
            ):
                session.run("STOP ALL STREAMS").consume()
                names = [r["name"] for r in session.run("SHOW STREAMS")]
            for name in names:
                quoted = name.replace("`", "``")
                if not self.answers_within(f"DROP STREAM `{quoted}`", seconds):
                    raise TimeoutError(f"DROP STREAM `{name[:40]}`")
            return names

        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["dropped"] = drop_all()
            except Exception as exc:
                result["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(seconds)
        error = result.get("error")
        if thread.is_alive() or isinstance(error, TimeoutError):
            what = str(error) if error else "STOP ALL STREAMS"
            self.say(f"{what} did not answer in {seconds:.0f} s")
            self.report.findings.append(
                Finding(
                    "stall",
                    f"{what} did not answer in {seconds:.0f} s after the run",
                    time.monotonic(),
                    [what],
                )
            )

    def _settle(self, settle: float) -> None:
        """Wait for the proxy to finish with the closed connections, then count what stays."""
        rep = self.report
        deadline = time.monotonic() + settle
        bystander_ports: set[int] = set()
        while True:
            s = self.stats() if self.alive() else None
            if s is None:
                break
            bystander_ports = {p for p in s.client_conns if p not in self.by_port}
            waiting = [p for p in s.client_conns if p not in bystander_ports]
            orphans = s.orphans - (rep.before.orphans if rep.before else 0)
            if (not waiting and orphans <= 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rep.after = s
        if s is not None:
            rep.leaked_close_wait = s.conns_in("CLOSE_WAIT", bystander_ports)
            rep.leaked_orphans = max(0, s.orphans - (rep.before.orphans if rep.before else 0))
            for port in rep.leaked_close_wait:
                i = self.by_port.get(port)
                if i is not None:
                    self._leaks.add(i)
                    rep.leaked_inputs.append(i)

    # -- findings and triage ----------------------------------------------------------------------

    def _collect_findings(self) -> None:
        rep = self.report
        kinds: dict[str, Finding] = {}
        for event in rep.log_events:
            f = kinds.get(event.signature)
            if f is None:
                f = kinds[event.signature] = Finding(
                    "log", event.signature, event.at, event.lines, count=0
                )
            f.count += 1
            if len(f.ats) < 4:
                f.ats.append(event.at)
        rep.findings.extend(kinds.values())
        for when, error in self.bystander.errors if self.bystander else []:
            rep.findings.append(Finding("bystander", _blank(error)[:160], when, [error]))
        if rep.crashes:
            rep.findings.append(
                Finding(
                    "crash",
                    f"proxy exited ({self.proxy.proc.returncode})",
                    time.monotonic(),
                    list(self.log)[-30:],
                )
            )
        if rep.before and rep.after and rep.after.fds - rep.before.fds > FD_GROWTH:
            grown = {
                k: n - rep.before.fd_kinds.get(k, 0)
                for k, n in rep.after.fd_kinds.items()
                if n != rep.before.fd_kinds.get(k, 0)
            }
            rep.findings.append(
                Finding(
                    "resources",
                    f"{rep.after.fds - rep.before.fds} more descriptors after the run",
                    time.monotonic(),
                    [f"by kind: {grown}"],
                )
            )
        if rep.stalled:
            rep.findings.append(Finding("stall", "bystander stalled", time.monotonic(), []))
        if self._leaks:
            indices = sorted(self._leaks)
            rep.findings.append(
                Finding(
                    "leak",
                    "connection kept after the client closed",
                    time.monotonic(),
                    [f"inputs {indices[:20]}"],
                    count=len(indices),
                )
            )

    def suspects(self, at: float, window: float = 0.5) -> list[int]:
        """Inputs in flight around ``at`` (when the log line arrived), the latest first."""
        found = [
            i
            for i, o in self.outcomes.items()
            if o.started <= at + 0.05 and (o.ended or at) >= at - window
        ]
        return sorted(found, reverse=True)

    def reproduces(self, finding: Finding, *inputs: Input) -> bool:
        """Send ``inputs`` at once and see whether ``finding`` happens again."""
        if not self.alive():
            self.start_proxy()
        mark = self.log.snapshot()

        async def send_all() -> list[Outcome]:
            return list(await asyncio.gather(*(send_input(self.target, i) for i in inputs)))

        outs = asyncio.run(send_all())
        if finding.kind == "crash":
            time.sleep(1.0)
            if not self.alive():
                self.start_proxy()
                return True
            return False
        if finding.kind == "leak":
            deadline = time.monotonic() + 3.0
            ports = {o.port for o in outs}
            while time.monotonic() < deadline:
                conns = self.stats().client_conns
                if not any(conns.get(p) == "CLOSE_WAIT" for p in ports):
                    return False
                time.sleep(0.2)
            return True
        slow = any(i.family == "clauses" for i in inputs)
        deadline = time.monotonic() + (6.0 if slow else 0.5)
        while time.monotonic() < deadline:
            if any(e.signature == finding.signature for e in self.log.since(mark)):
                return True
            time.sleep(0.05)
        return False

    def culprit(
        self, finding: Finding, candidates: list[int], deadline: float = float("inf")
    ) -> int | None:
        """The one input among ``candidates`` that reproduces ``finding`` alone (bisection:
        the proxy keeps no state between connections that these findings depend on)."""
        group = candidates
        if not group or not self.reproduces(finding, *map(self.gen.make, group)):
            return None
        while len(group) > 1:
            if time.monotonic() > deadline:
                return None
            half = group[: len(group) // 2]
            if self.reproduces(finding, *map(self.gen.make, half)):
                group = half
            else:
                group = group[len(group) // 2 :]
        return group[0] if self.reproduces(finding, self.gen.make(group[0])) else None

    def triage(self, *, minimise_budget: int = 60, seconds: float = 90.0) -> None:
        """For each finding: find its input (bisecting the inputs in flight when it was seen),
        minimise it and save it; at most ``seconds`` per finding."""
        rep = self.report
        for f in rep.findings:
            if f.kind in ("bystander", "stall", "idle", "resources"):
                continue  # timing; the log findings around them say more
            index = None
            deadline = time.monotonic() + seconds / 2
            if f.kind == "leak":
                index = self.culprit(f, sorted(self._leaks)[:64], deadline)
            elif f.kind == "crash":
                index = self.culprit(f, self.suspects(f.at, window=3.0)[:256], deadline)
            else:  # the first few times it happened, in case one was a matter of timing
                for at in f.ats or [f.at]:
                    index = self.culprit(f, self.suspects(at, window=1.5)[:300], deadline)
                    if index is not None or time.monotonic() > deadline:
                        break
            if index is not None:
                f.index = index
                f.minimal = self.minimise(
                    f,
                    self.gen.make(index),
                    minimise_budget,
                    deadline=time.monotonic() + seconds / 2,
                )
                self.save(f)
            self.say(
                f"triage {f.kind} {f.signature[:80]!r}: "
                f"{'input ' + str(f.index) if f.minimal else 'not reproduced alone'}"
            )

    def minimise(self, f: Finding, inp: Input, budget: int, deadline: float) -> Input:
        """Fewer segments, then fewer bytes, as long as ``f`` still happens."""
        best = inp
        tries = 0

        def attempt(candidate: Input) -> bool:
            nonlocal tries, best
            if tries >= budget or time.monotonic() > deadline:
                return False
            tries += 1
            if self.reproduces(f, candidate):
                best = candidate
                return True
            return False

        def variant(segments: list[Segment], **changes: Any) -> Input:
            data = best.to_json()
            data.update(changes)
            data["segments"] = [{"data": s.data.hex(), "wait": s.wait} for s in segments]
            return Input.from_json(data)

        i = len(best.segments) - 1
        while i >= 0 and len(best.segments) > 1:  # whole segments, from the end
            segs = best.segments[:i] + best.segments[i + 1 :]
            attempt(variant(segs))
            i = min(i - 1, len(best.segments) - 1)
        if best.close != "close":
            attempt(variant(best.segments, close="close"))
        for pos in range(len(best.segments)):  # each segment cut from the end, by halves
            keep = len(best.segments[pos].data)
            step = keep // 2
            while step >= 1 and tries < budget:
                segs = list(best.segments)
                cur = segs[pos].data
                if len(cur) - step < 1:
                    step //= 2
                    continue
                segs[pos] = Segment(cur[: len(cur) - step], segs[pos].wait)
                if not attempt(variant(segs)):
                    step //= 2
        for pos in range(len(best.segments)):  # then blocks from the inside
            size = max(1, len(best.segments[pos].data) // 4)
            while size >= 1 and tries < budget:
                start = 0
                while start < len(best.segments[pos].data) and tries < budget:
                    segs = list(best.segments)
                    cur = segs[pos].data
                    if len(cur) <= size:
                        break
                    segs[pos] = Segment(cur[:start] + cur[start + size :], segs[pos].wait)
                    if not attempt(variant(segs)):
                        start += size
                size //= 2
        best.note = f"{inp.note} (minimised in {tries} tries)"
        return best

    def save(self, f: Finding) -> None:
        if self.save_dir is None or f.minimal is None:
            return
        self.save_dir.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", f.signature.lower()).strip("-")[:60]
        path = self.save_dir / f"{f.kind}-{slug}-s{self.seed}-i{f.index}.json"
        data = {
            "finding": {"kind": f.kind, "signature": f.signature, "example": f.example[:40]},
            "input": f.minimal.to_json(),
            "original": self.gen.make(f.index).to_json() if f.index is not None else None,
        }
        path.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
        f.saved = str(path)


# -- reporting ------------------------------------------------------------------------------------


def format_report(rep: Report, top: int = 8) -> str:
    data = rep.to_json()
    lines = [
        f"seed {rep.seed}: {rep.inputs} inputs in {rep.seconds:.0f} s "
        f"({data['rate']} inputs/s); proxy closed the connection for {rep.server_closed}",
        "  by family: " + ", ".join(f"{k} {v}" for k, v in rep.families.most_common()),
        "  by transport: " + ", ".join(f"{k} {v}" for k, v in rep.transports.most_common()),
        f"proxy crashes: {rep.crashes}; stalled: {rep.stalled}",
        f"log: {rep.log_lines} lines; {data['errors']} ERROR, {data['tracebacks']} tracebacks",
    ]
    kinds = collections.Counter(e.signature for e in rep.log_events)
    for sig, n in kinds.most_common(top):
        lines.append(f"  {n:6d}  {sig}")
    lines.append("  most frequent WARNING lines:")
    for sig, n in rep.warnings.most_common(top):
        lines.append(f"  {n:6d}  {sig}")
    lines.append(
        f"bystander: {rep.bystander_queries} queries, {len(rep.bystander_errors)} "
        f"errors, slowest {rep.bystander_max_latency * 1000:.0f} ms"
    )
    for error in rep.bystander_errors[:top]:
        lines.append(f"  {error}")
    lines.append(
        f"connections kept after the client closed: {len(rep.leaked_close_wait)} in "
        f"CLOSE_WAIT, {rep.leaked_orphans} unreleased socket descriptors"
    )
    for name, s in (("before", rep.before), ("after", rep.after)):
        if s is not None:
            fd_kinds = ", ".join(f"{n} {k}" for k, n in sorted(s.fd_kinds.items()))
            lines.append(
                f"{name}: RSS {s.rss_kb / 1024:.1f} MiB, {s.fds} fds ({fd_kinds}), "
                f"{len(s.client_conns)} client connections"
            )
    lines.append(
        f"load: before {rep.uptime_before.split('load average:')[-1].strip()}, "
        f"after {rep.uptime_after.split('load average:')[-1].strip()}"
    )
    if rep.idle:
        still = [name for name, closed in rep.idle if closed is None]
        lines.append(
            f"idle connections: {len(still)} of {len(rep.idle)} stages still open after "
            f"{rep.idle_seconds:.0f} s: {', '.join(still)}"
        )
        for name, closed in rep.idle:
            if closed is not None:
                lines.append(f"  closed after {closed:.1f} s: {name}")
    for f in rep.findings:
        where = f" -> input {f.index}" if f.index is not None else ""
        lines.append(f"finding [{f.kind}] x{f.count}{where}: {f.signature}")
        if f.minimal is not None:
            lines.append(
                f"  minimal ({f.minimal.transport}, {f.minimal.size} bytes, close "
                f"{f.minimal.close}): {f.minimal.note}"
            )
            for seg in f.minimal.segments:
                lines.append(f"    {seg.data[:64].hex()}{'…' if len(seg.data) > 64 else ''}")
        if f.saved:
            lines.append(f"  saved {f.saved}")
    return "\n".join(lines)


def load_seeds(path: Path, recapture: bool) -> Seeds:
    if path.exists() and not recapture:
        return Seeds.load(path)
    from tests.streams.broker import Broker
    from tests.support import ProxyProcess

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        broker = Broker().start()
        stack.callback(broker.stop)
        broker.create_topic("fuzz")
        proxy = stack.enter_context(ProxyProcess("--data-dir", tmp, "--fsync", "no"))
        seeds = capture(proxy.address, proxy.auth, broker.bootstrap)
    seeds.save(path)
    print(f"captured {len(seeds.conversations)} conversations into {path}", file=sys.stderr)
    return seeds


def replay(paths: list[Path], transports: tuple[str, ...]) -> int:
    """Send saved inputs one at a time and say what each did (as the corpus test judges)."""
    seeds = Seeds.load(DEFAULT_SEEDS)
    failed = 0
    with Fuzzer(seed=0, transports=transports, seeds=seeds) as fz:
        for path in paths:
            data = json.loads(path.read_text(encoding="utf-8"))
            inp = Input.from_json(data["input"])
            mark = fz.log.snapshot()
            fds = fz.stats().fds
            outs = [
                asyncio.run(send_input(fz.target, inp)) for _ in range(int(data.get("repeat", 1)))
            ]
            time.sleep(2.0)
            events = fz.log.since(mark)
            alive = fz.alive()
            stats = fz.stats() if alive else None
            kept = [
                o.port
                for o in outs
                if stats is not None and stats.client_conns.get(o.port) == "CLOSE_WAIT"
            ]
            grown = stats.fds - fds if stats is not None else 0
            bad = (
                bool(events)
                or not alive
                or bool(kept)
                or grown > int(data.get("max_fd_growth", 10**9))
            )
            failed += bad
            print(
                f"{'BAD' if bad else 'ok '} {path.name}: proxy {'alive' if alive else 'DEAD'}, "
                f"{len(events)} log events, {len(kept)} connections kept, "
                f"{grown:+d} descriptors"
            )
            for e in events[:3]:
                print("    " + e.signature)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--inputs", type=int, help="stop after this many inputs")
    parser.add_argument(
        "--seconds", type=float, help="stop after this long (default 60 when --inputs is not given)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--transport", choices=[*TRANSPORTS, "all"], default="all")
    parser.add_argument("--concurrency", type=int, default=16, help="connections at once")
    parser.add_argument("--save-dir", type=Path, help="where inputs that broke something go")
    parser.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS)
    parser.add_argument(
        "--capture",
        action="store_true",
        help="record the driver's traffic again into --seeds, then fuzz",
    )
    parser.add_argument(
        "--no-triage",
        action="store_true",
        help="report only; do not look for and minimise the guilty inputs",
    )
    parser.add_argument(
        "--triage-seconds",
        type=float,
        default=90.0,
        help="time to find and minimise the input of each kind of trouble",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds to wait at the end for the proxy to close connections",
    )
    parser.add_argument(
        "--idle-probe",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the run, hold a connection at each stage a client controls "
        "(nothing sent, half a handshake, no HELLO, ...) this long and report "
        "which the proxy never closed",
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--replay", type=Path, nargs="+", help="replay saved inputs instead")
    parser.add_argument(
        "--show",
        type=int,
        nargs="+",
        metavar="INDEX",
        help="print the inputs with these indices (for --seed) and exit",
    )
    args = parser.parse_args(argv)
    transports = TRANSPORTS if args.transport == "all" else (args.transport,)
    if args.replay:
        return replay(args.replay, transports)
    seeds = load_seeds(args.seeds, args.capture)
    if args.show:
        gen = Generator(seeds, args.seed, transports)
        for i in args.show:
            print(json.dumps(gen.make(i).to_json(), indent=1))
        return 0
    seconds = args.seconds if args.seconds or args.inputs else 60.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    faulthandler.register(signal.SIGUSR1)
    with Fuzzer(
        seed=args.seed,
        transports=transports,
        seeds=seeds,
        concurrency=args.concurrency,
        save_dir=args.save_dir,
    ) as fz:
        rep = fz.run(inputs=args.inputs, seconds=seconds, settle=args.settle)
        if args.idle_probe > 0:
            fz.probe_idle(args.idle_probe)
        if not args.no_triage:
            fz.triage(seconds=args.triage_seconds)
    print(format_report(rep))
    if args.json:
        args.json.write_text(json.dumps(rep.to_json(), indent=1) + "\n", encoding="utf-8")
    trouble = (
        rep.crashes
        or rep.stalled
        or rep.log_events
        or rep.bystander_errors
        or rep.leaked_close_wait
        or rep.leaked_orphans
    )
    return 1 if trouble else 0


def iter_corpus(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(folder.glob("*.json")):
        yield path, json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())

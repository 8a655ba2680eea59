"""Faults during ingestion: what a stream says while they last, what it loses, how fast it
comes back, and how much the log says about it.

    .venv/bin/python bench/faults.py [--messages 200000] [--rate 5000] [--stop 30] [--kills 5]
        [--only falkordb,broker,kill,disk]

Starts its own Tansu broker and, for each fault, a fresh ``boltstream serve`` on its embedded
FalkorDB (``appendfsync always`` and the default log level, as users run it) with a stream at
the default settings and a CREATE-only transform (a node per message holding the message's
number: ``tests/streams/test_crash.py``'s), and a producer that sends ``--messages`` numbered
messages at ``--rate`` per second. During that ingestion:

1. **falkordb**: SIGSTOP the proxy's embedded FalkorDB for ``--stop`` seconds, then SIGCONT;
2. **broker**: SIGSTOP the broker (Tansu) for ``--stop`` seconds, then SIGCONT;
3. **kill**: ``kill -9`` the proxy ``--kills`` times, each at a random moment (0 to 3 s)
   after its incarnation wrote something, restarting it at once on the same data dir; once
   with ``DELIVERY AT LEAST ONCE`` and once with ``DELIVERY EXACTLY ONCE``; the producer
   sends at ``--kill-rate`` there, so that every kill comes while messages still arrive;
4. **disk**: the data dir is a small tmpfs of its own (``mount``: root only; skipped
   otherwise), which a filler file fills to ENOSPC for ``--stop`` seconds; then the filler
   is removed.

Reported per fault: messages produced (acknowledged by the broker) against the graph
(``lost`` = produced numbers missing from the graph, ``twice`` = nodes beyond one per
number); SHOW STREAMS (status, status_detail, last_error) sampled every second while the fault
lasts and until recovery; the recovery time, from the fault's end (SIGCONT, the restart, the
space freed) to the first new node in the graph; the proxy's log lines from the fault's start
to 5 s after recovery, by level (for kill: the new incarnation's, start-up included), and the
lines FalkorDB's own log gained.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.streams.broker import Broker  # noqa: E402
from tests.streams.conftest import start_proxy  # noqa: E402
from tests.streams.test_crash import counts, transform  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402

LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
AUTH = ("bench", "x")


class Flow:
    """Produces ``"0"``, ``"1"``, ... ``str(total - 1)`` at ``rate`` messages/s from a thread,
    with one producer that rides out a broker outage (it queues and retries); ``acked``
    counts what the broker acknowledged."""

    def __init__(self, broker: Broker, topic: str, total: int, rate: int) -> None:
        self.broker, self.topic, self.total, self.rate = broker, topic, total, rate
        self.acked = 0
        self.failed = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Flow:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the producer did not finish in {timeout:g} s")

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is None:
            self.acked += 1
        else:
            self.failed += 1

    def _run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
                "log_level": 3,  # its reconnection notices are not the proxy's log
            }
        )
        started = time.monotonic()
        while self.sent < self.total:
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            while self.sent < due:
                try:
                    producer.produce(
                        self.topic, str(self.sent).encode(), on_delivery=self._delivered
                    )
                    self.sent += 1
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            time.sleep(0.02)
        while producer.flush(1):
            pass


@dataclass
class Sample:
    at: float  # seconds since the fault started
    status: str
    detail: str | None = None
    last_error: str | None = None


@dataclass
class Outcome:
    fault: str
    produced: int = 0
    failed_produce: int = 0
    nodes: int = 0
    distinct: int = 0
    recoveries: list[float | None] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)  # the log lines counted in ``levels``
    falkordb_lines: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.produced - self.distinct

    @property
    def twice(self) -> int:
        return self.nodes - self.distinct


class Watch:
    """Two threads watching a stream through whichever proxy ``current()`` returns: SHOW
    STREAMS every second (``samples``, kept while ``recording``), and the stream's node count
    every 0.1 s (``progress``: (time the answer came, count))."""

    def __init__(self, current: Callable[[], ProxyProcess], name: str, label: str) -> None:
        self.current, self.name, self.label = current, name, label
        self.samples: list[Sample] = []
        self.progress: list[tuple[float, int]] = []
        self.recording_since: float | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(self._show, 1.0, True), daemon=True),
            threading.Thread(target=self._loop, args=(self._count, 0.1, False), daemon=True),
        ]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def record(self) -> None:
        self.recording_since = time.monotonic()

    def stop_recording(self) -> None:
        self.recording_since = None

    def _loop(self, probe: Callable[[Any], None], every: float, noted: bool) -> None:
        import neo4j

        driver: Any = None
        uri = ""
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if self.current().bolt_uri != uri:
                    if driver is not None:
                        driver.close()
                    uri = self.current().bolt_uri
                    driver = neo4j.GraphDatabase.driver(
                        uri, auth=AUTH, connection_timeout=2, max_transaction_retry_time=0
                    )
                probe(driver)
            except Exception as exc:  # the proxy is down or restarting: say so
                if noted:
                    self._note(f"({type(exc).__name__}: {' '.join(str(exc).split())[:80]})")
            self._stop.wait(max(0.0, every - (time.monotonic() - began)))
        if driver is not None:
            driver.close()

    def _note(self, status: str) -> None:
        since = self.recording_since
        if since is not None:
            self.samples.append(Sample(time.monotonic() - since, status))

    def _show(self, driver: Any) -> None:
        with driver.session() as session:
            rows = [r.data() for r in session.run("SHOW STREAMS") if r["name"] == self.name]
        since = self.recording_since
        if rows and since is not None:
            row = rows[0]
            self.samples.append(
                Sample(
                    time.monotonic() - since,
                    row["status"],
                    row["status_detail"],
                    row["last_error"],
                )
            )

    def _count(self, driver: Any) -> None:
        with driver.session() as session:
            found = session.run(f"MATCH (n:{self.label}) RETURN count(n) AS c").single()
        if found is not None:
            self.progress.append((time.monotonic(), int(found["c"])))

    def recovery(self, ended: float, timeout: float = 60.0) -> float | None:
        """Seconds from ``ended`` to the first count above every count seen before it; None
        if that did not come within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = max((c for t, c in list(self.progress) if t <= ended), default=0)
            for at, found in list(self.progress):
                if at > ended and found > before:
                    return at - ended
            time.sleep(0.05)
        return None

    def wait_progress(self, timeout: float = 120.0) -> None:
        """Until the stream has written something."""
        deadline = time.monotonic() + timeout
        while not any(c for _, c in list(self.progress)):
            if time.monotonic() > deadline:
                raise RuntimeError("the stream wrote nothing")
            time.sleep(0.05)


class Run:
    """One fault's proxy, stream, producer and watch."""

    def __init__(
        self,
        broker: Broker,
        work: Path,
        fault: str,
        messages: int,
        rate: int,
        delivery: str = "AT LEAST ONCE",
        data: Path | None = None,
    ) -> None:
        self.broker = broker
        self.fault = fault
        self.label = "F" + re.sub(r"\W", "", fault.title())
        self.name = f"fault_{re.sub(r'[^a-z0-9]', '_', fault.lower())}"
        self.transforms = work / "transforms"
        self.transforms.mkdir(exist_ok=True)
        self.script = transform(self.transforms, self.label)
        self.data = data or work / f"data_{self.name}"
        self.topic = broker.create_topic(f"t_{self.name}")
        self.proxy = self.start()
        self.outcome = Outcome(fault)
        self.flow = Flow(broker, self.topic, messages, rate)
        self.delivery = delivery

    def start(self) -> ProxyProcess:
        return start_proxy(self.data, self.transforms, kafka_config=None)

    def run(self, query: str) -> list[dict[str, Any]]:
        import neo4j

        with neo4j.GraphDatabase.driver(self.proxy.bolt_uri, auth=AUTH) as driver:
            with driver.session() as session:
                return [r.data() for r in session.run(query)]

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[Watch]:
        """The stream started, the producer producing and the watch watching; afterwards,
        once every produced message is in the graph (or 120 s passed), the counts."""
        self.run(
            f"CREATE STREAM {self.name} AS LOAD DATA KAFKA '{self.broker.bootstrap}' "
            f"WITH TOPIC '{self.topic}' WITH TRANSFORM '{self.script}' "
            f"DELIVERY {self.delivery}"
        )
        self.run(f"START STREAM {self.name}")
        self.flow.start()
        with Watch(lambda: self.proxy, self.name, self.label) as watch:
            watch.wait_progress()
            yield watch
            self.flow.join(600)
            out = self.outcome
            out.samples = watch.samples
            out.produced, out.failed_produce = self.flow.acked, self.flow.failed
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                out.nodes, out.distinct = counts_now(self)
                if out.distinct >= out.produced:
                    break
                time.sleep(0.5)
            status = [r for r in self.run("SHOW STREAMS") if r["name"] == self.name]
            out.notes.append(
                f"at the end: status {status[0]['status']}, "
                f"status_detail {status[0]['status_detail']!r}"
            )

    def log_window(self, proxy: ProxyProcess, seen_before: int) -> None:
        """Count ``proxy``'s log lines since it had read ``seen_before``, by level."""
        new = proxy.seen - seen_before
        lines = list(proxy.lines)[-new:] if new > 0 else []
        if new > len(lines):
            self.outcome.notes.append(f"{new} log lines: more than the 5,000 kept")
        self.outcome.lines += lines
        for line in lines:
            found = LEVEL.match(line)
            self.outcome.levels[found.group(1) if found else "other"] += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(f"DROP STREAM {self.name}")
        self.proxy.stop()


def counts_now(run: Run) -> tuple[int, int]:
    import neo4j

    with neo4j.GraphDatabase.driver(run.proxy.bolt_uri, auth=AUTH) as driver:
        return counts(driver, run.label)


def falkordb_log_lines(data: Path) -> int:
    try:
        return len((data / "falkordb.log").read_bytes().splitlines())
    except OSError:
        return 0


def pause(pid: int, seconds: float, run: Run, watch: Watch) -> None:
    """SIGSTOP ``pid`` for ``seconds`` during ingestion; the figures into ``run.outcome``."""
    time.sleep(3)  # steady flow first
    seen, fdb_lines = run.proxy.seen, falkordb_log_lines(run.data)
    watch.record()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    ended = time.monotonic()
    recovery = watch.recovery(ended)
    run.outcome.recoveries.append(recovery)
    time.sleep(5)
    watch.stop_recording()
    run.log_window(run.proxy, seen)
    run.outcome.falkordb_lines = falkordb_log_lines(run.data) - fdb_lines


def fault_falkordb(broker: Broker, work: Path, args: argparse.Namespace) -> Outcome:
    run = Run(broker, work, f"SIGSTOP FalkorDB {args.stop:g} s", args.messages, args.rate)
    try:
        with run.ingesting() as watch:
            pause(run.proxy.embedded_falkordb_pid(), args.stop, run, watch)
        return run.outcome
    finally:
        run.close()


def fault_broker(broker: Broker, work: Path, args: argparse.Namespace) -> Outcome:
    run = Run(broker, work, f"SIGSTOP broker {args.stop:g} s", args.messages, args.rate)
    try:
        with run.ingesting() as watch:
            assert broker.proc is not None
            pause(broker.proc.pid, args.stop, run, watch)
        return run.outcome
    finally:
        run.close()


def fault_kills(broker: Broker, work: Path, args: argparse.Namespace, delivery: str) -> Outcome:
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    run = Run(
        broker,
        work,
        f"kill -9 proxy x{args.kills} ({delivery.lower()})",
        args.messages,
        args.kill_rate,
        delivery,
    )
    run.outcome.notes.append(f"random seed {seed}")
    try:
        with run.ingesting() as watch:
            watch.record()
            for _ in range(args.kills):
                # A random moment of this incarnation's work: after its first write.
                before = max((c for _, c in watch.progress), default=0)
                deadline = time.monotonic() + 120
                while max((c for _, c in watch.progress), default=0) <= before:
                    if time.monotonic() > deadline:
                        raise RuntimeError("no progress before a kill")
                    time.sleep(0.05)
                if run.flow.sent >= run.flow.total:
                    run.outcome.notes.append(
                        f"kill {len(run.outcome.recoveries) + 1} came after the last message "
                        "was produced (lower --kill-rate for kills in a steady flow)"
                    )
                time.sleep(rng.uniform(0.0, 3.0))
                run.proxy.stop(signal.SIGKILL)
                killed = time.monotonic()
                run.proxy = run.start()
                seen = 0
                run.outcome.notes.append(f"restart to ready {time.monotonic() - killed:.2f} s")
                run.outcome.recoveries.append(watch.recovery(killed))
                time.sleep(1)
                run.log_window(run.proxy, seen)
            watch.stop_recording()
        return run.outcome
    finally:
        run.close()


def fault_disk(broker: Broker, work: Path, args: argparse.Namespace) -> Outcome:
    mount = work / "small-fs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={args.disk_mb}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        outcome = Outcome("disk full")
        outcome.notes.append(f"skipped: cannot mount a tmpfs ({result.stderr.strip()})")
        return outcome
    try:
        run = Run(
            broker,
            work,
            f"disk full {args.stop:g} s",
            args.messages,
            args.rate,
            data=mount / "data",
        )
        try:
            with run.ingesting() as watch:
                time.sleep(3)
                seen, fdb_lines = run.proxy.seen, falkordb_log_lines(run.data)
                watch.record()
                filler = mount / "filler"
                with filler.open("wb") as file:
                    chunk = b"\0" * (1 << 20)
                    with contextlib.suppress(OSError):
                        while True:
                            file.write(chunk)
                            file.flush()
                run.outcome.notes.append(
                    f"filler {filler.stat().st_size >> 20} MB; "
                    f"free {shutil.disk_usage(mount).free} bytes"
                )
                time.sleep(args.stop)
                filler.unlink()
                ended = time.monotonic()
                run.outcome.recoveries.append(watch.recovery(ended))
                time.sleep(5)
                watch.stop_recording()
                run.log_window(run.proxy, seen)
                run.outcome.falkordb_lines = falkordb_log_lines(run.data) - fdb_lines
            said = (run.data / "falkordb.log").read_text(errors="replace").splitlines()
            for line in said[fdb_lines:][:40]:
                if re.search(r"AOF|space|[Ee]xit|error", line):
                    run.outcome.notes.append(f"FalkorDB: {line.strip()[:160]}")
            return run.outcome
        finally:
            run.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def report(outcome: Outcome) -> None:
    print(f"\n== {outcome.fault}")
    for note in outcome.notes:
        if note.startswith("skipped"):
            print(f"   {note}")
            return
    print(
        f"   produced {outcome.produced:,} (failed to produce {outcome.failed_produce}); "
        f"graph {outcome.nodes:,} nodes, {outcome.distinct:,} distinct: "
        f"lost {outcome.lost}, twice {outcome.twice}"
    )
    print(f"   recovery (fault end to the next new node): {fmt_seconds(outcome.recoveries)}")
    levels = ", ".join(f"{level} {n}" for level, n in sorted(outcome.levels.items()))
    print(f"   proxy log lines: {sum(outcome.levels.values())} ({levels or 'none'})")
    if outcome.falkordb_lines:
        print(f"   FalkorDB log lines: {outcome.falkordb_lines}")
    for note in outcome.notes:
        print(f"   {note}")
    shown_lines = [line for line in outcome.lines if " DEBUG " not in line]
    for line in shown_lines[:12]:
        print(f"   | {line[:200]}")
    if len(shown_lines) > 12:
        print(f"   | ... {len(shown_lines) - 12} more")
    times = [sample.at for sample in outcome.samples]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(
        f"   SHOW STREAMS: {len(times)} samples, longest gap {max(gaps, default=0):.1f} s; "
        "each change (seconds since the fault began: status | status_detail | last_error):"
    )
    previous: tuple[str, ...] | None = None
    for sample in outcome.samples:
        shown = (sample.status, sample.detail, sample.last_error)
        # The same row again with only the seconds in it changed: one line for the run.
        key = tuple(re.sub(r"\d+", "N", str(s)) for s in shown)
        if previous is not None and key == previous:
            continue
        previous = key
        print(f"   {sample.at:6.1f}  {' | '.join(str(s) for s in shown)}")


def fmt_seconds(values: list[float | None]) -> str:
    shown = [f"{v:.2f} s" if v is not None else "NONE within 60 s" for v in values]
    return ", ".join(shown) or "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=5000, help="messages per second")
    parser.add_argument("--stop", type=float, default=30.0, help="seconds each fault lasts")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument(
        "--kill-rate",
        type=int,
        default=2000,
        help="messages per second for the kill runs (each kill and restart takes seconds)",
    )
    parser.add_argument("--disk-mb", type=int, default=64, help="the tmpfs data dir's size")
    parser.add_argument("--seed", type=int, default=None, help="for the kill moments")
    parser.add_argument("--only", default="falkordb,broker,kill,disk")
    args = parser.parse_args()
    faults = [f.strip() for f in args.only.split(",") if f.strip()]
    # The driver's own complaints about connections a killed proxy dropped: expected here.
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        work = Path(tmp)
        broker = Broker().start()
        try:
            for fault in faults:
                if fault == "falkordb":
                    report(fault_falkordb(broker, work, args))
                elif fault == "broker":
                    report(fault_broker(broker, work, args))
                elif fault == "kill":
                    for delivery in ("AT LEAST ONCE", "EXACTLY ONCE"):
                        report(fault_kills(broker, work, args, delivery))
                elif fault == "disk":
                    report(fault_disk(broker, work, args))
                else:
                    parser.error(f"unknown fault {fault!r}")
        finally:
            broker.stop()
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

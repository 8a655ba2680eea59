"""Does one client's large result hold other connections up?

    .venv/bin/python bench/bystander.py [--rows 1000000] [--rounds 3] [--probe]

Starts ``boltstream serve`` on an embedded FalkorDB. One connection runs
``UNWIND range(1, ROWS) AS x RETURN x`` and pulls it all (the official driver); meanwhile a
second connection sends ``RETURN 1`` over and over (a lean client, one at a time) and records
each one's latency. Prints the bystander's p50, p99 and worst latency while the large result
was being produced and sent, and how long the large query took, per round, with the
1-minute load average before and after it (the bystander's latency is wall-clock time: on a
loaded machine it includes the time the proxy waits for a core).

``--probe`` also runs the proxy with ``bench/loopprobe`` (a 5 ms ticker on its event loop and
timed garbage collections) and prints, per round, the worst lateness of the ticker with the
proxy's CPU time in it, the most CPU time the loop spent in one late tick (work that held
every other connection), and the garbage collections over 10 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bolt.messages import Hello, Logon, Pull, Run  # noqa: E402
from tests.boltclient import RawBolt  # noqa: E402
from tests.support import ProxyProcess  # noqa: E402


def bystander(address: tuple[str, int], stop: threading.Event, out: list[float]) -> None:
    client = RawBolt(address)
    client.handshake()
    client.send(
        Hello({"user_agent": "bench/1"}),
        Logon({"scheme": "basic", "principal": "u", "credentials": "p"}),
    )
    client.recv()
    client.recv()
    while not stop.is_set():
        started = time.perf_counter()
        client.send(Run("RETURN 1 AS x", {}, {}), Pull(-1, -1))
        for _ in range(3):
            client.recv()
        out.append(time.perf_counter() - started)


def main() -> None:
    import neo4j

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe", action="store_true", help="time the proxy's event loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        probe = Path(data) / "loop-probe.txt"
        env = (
            {
                "PYTHONPATH": f"{ROOT / 'bench' / 'loopprobe'}{os.pathsep}{ROOT}",
                "BOLTSTREAM_LOOP_PROBE": str(probe),
            }
            if args.probe
            else {}
        )
        proxy = ProxyProcess("--data-dir", str(Path(data) / "proxy"), env=env).start()
        try:
            with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as driver:
                for round_number in range(1, args.rounds + 1):
                    latencies: list[float] = []
                    stop = threading.Event()
                    thread = threading.Thread(
                        target=bystander, args=(proxy.address, stop, latencies)
                    )
                    thread.start()
                    time.sleep(0.5)
                    before = len(latencies)
                    load_before = os.getloadavg()[0]
                    wall_started = time.time()
                    started = time.perf_counter()
                    with driver.session() as session:
                        rows = sum(
                            1 for _ in session.run("UNWIND range(1, $n) AS x RETURN x", n=args.rows)
                        )
                    took = time.perf_counter() - started
                    stop.set()
                    thread.join()
                    during = sorted(latencies[before:])
                    assert rows == args.rows
                    p50 = statistics.median(during) * 1000
                    p99 = during[int(len(during) * 0.99) - 1] * 1000 if during else 0.0
                    print(
                        f"round {round_number}: {rows:,} rows in {took:.2f} s; bystander "
                        f"{len(during)} queries meanwhile: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                        f"worst {during[-1] * 1000:.1f} ms; load {load_before:.1f} -> "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    if args.probe:
                        print("   " + probed(probe, wall_started, time.time()), flush=True)
        finally:
            proxy.stop()


def probed(path: Path, start: float, end: float) -> str:
    """What ``bench/loopprobe`` wrote between ``start`` and ``end`` (``time.time()``)."""
    late: list[tuple[float, float]] = []
    collections: list[tuple[float, float]] = []
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        stamp, kind, *values = line.split()
        if not start <= float(stamp) <= end:
            continue
        if kind == "late":
            late.append((float(values[0]), float(values[1])))
        elif kind == "gc" and values[0] == "2":
            collections.append((float(values[1]), float(values[2])))
    worst = max(late, default=(0.0, 0.0))
    busiest = max((cpu for _, cpu in late), default=0.0)
    longest = max(collections, default=(0.0, 0.0))
    return (
        f"proxy loop: {len(late)} ticks over 50 ms late, worst {worst[0]:.0f} ms "
        f"({worst[1]:.0f} ms of it on the CPU), most CPU in one late tick {busiest:.0f} ms; "
        f"full GCs over 10 ms: {len(collections)}, longest {longest[0]:.0f} ms "
        f"({longest[1]:.0f} ms CPU)"
    )


if __name__ == "__main__":
    main()

"""Does one client's large result hold other connections up?

    .venv/bin/python bench/bystander.py [--rows 1000000] [--rounds 3]

Starts ``boltstream serve`` on an embedded FalkorDB. One connection runs
``UNWIND range(1, ROWS) AS x RETURN x`` and pulls it all (the official driver); meanwhile a
second connection sends ``RETURN 1`` over and over (a lean client, one at a time) and records
each one's latency. Prints the bystander's p50, p99 and worst latency while the large result
was being produced and sent, and how long the large query took, per round.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proxy = ProxyProcess("--data-dir", data).start()
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
                        f"worst {during[-1] * 1000:.1f} ms",
                        flush=True,
                    )
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()

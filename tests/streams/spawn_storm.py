"""Start many transform workers on uvloop while Kafka client threads and busy Python threads
run; report how many started, and whether any child ran Python code between fork and exec.

Run as ``python -m tests.streams.spawn_storm WORKERS`` (``test_spawn.py`` does). Prints one
JSON line: ``started``, ``after_fork_hooks`` (bytes written by an ``os.register_at_fork``
hook in children: each one is a child that ran ``PyOS_AfterFork_Child``, the call the proxy
once hung in), ``fds_grown`` (descriptors held after the workers stopped, more than before),
``seconds``, ``threads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from typing import Any

import uvloop

from proxy.streams.transform import TransformRunner, TransformSource

CODE = "def stream(batch):\n    return [('RETURN $x', {'x': len(batch)})]\n"


def churn(stop: threading.Event) -> None:
    """Take and drop locks all the time (allocator, logging, imports), as the proxy's threads do."""
    import importlib
    import logging

    log = logging.getLogger("storm")
    while not stop.is_set():
        data = [bytes(1000) for _ in range(200)]
        del data
        log.debug("x")
        importlib.import_module("json")


def kafka_clients() -> list[Any]:
    """Kafka clients retrying a broker that does not answer: librdkafka threads, busy."""
    from confluent_kafka import Consumer, Producer

    settings = {
        "bootstrap.servers": "127.0.0.1:1",
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 50,
        "log_level": 0,
    }
    clients: list[Any] = [Producer(settings) for _ in range(3)]
    clients += [Consumer({**settings, "group.id": f"storm-{i}"}) for i in range(3)]
    for consumer in clients[3:]:
        consumer.subscribe(["storm"])
    return clients


async def storm(workers: int) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETFL, os.O_NONBLOCK)

    def in_child() -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, b"!")

    os.register_at_fork(after_in_child=in_child)
    stop = threading.Event()
    threads = [threading.Thread(target=churn, args=(stop,), daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    clients = kafka_clients()
    polling = True

    def poll() -> None:
        while polling:
            for client in clients:
                if hasattr(client, "consume"):
                    client.consume(num_messages=1, timeout=0.01)
                else:
                    client.poll(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    source = TransformSource.from_code("storm.py", CODE)
    fds_before = len(os.listdir("/proc/self/fd"))
    started = 0
    began = time.monotonic()
    try:
        for _ in range(workers):
            runner = TransformRunner(source, name="storm", memory_limit_mb=0)
            await asyncio.wait_for(runner.start(), 30)
            assert await runner.run([b"a", b"b"]) == [("RETURN $x", {"x": 2})]
            await runner.stop()
            started += 1
    finally:
        polling = False
        stop.set()
    try:
        hooks = len(os.read(read_end, 65536))
    except BlockingIOError:
        hooks = 0
    await asyncio.sleep(0.2)
    return {
        "started": started,
        "fds_grown": len(os.listdir("/proc/self/fd")) - fds_before,
        "after_fork_hooks": hooks,
        "seconds": round(time.monotonic() - began, 2),
        "threads": threading.active_count(),
    }


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(json.dumps(uvloop.run(storm(workers))), flush=True)
    os._exit(0)  # librdkafka's threads would keep a normal exit waiting


if __name__ == "__main__":
    main()

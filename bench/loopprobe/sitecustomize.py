"""Loop probe for ``bench/bystander.py --probe`` (never imported by the product).

Put this directory on a ``boltstream serve`` process's ``PYTHONPATH`` with
``BOLTSTREAM_LOOP_PROBE=FILE``: Python imports it at start-up, and it writes to FILE, one line
each, with ``time.time()`` first:

* ``late WALL_MS CPU_MS``: a 5 ms ticker on the proxy's event loop came back more than 50 ms
  late; CPU_MS is the main thread's CPU time meanwhile. CPU close to WALL means the loop was
  busy with something (other connections waited on it); CPU far below WALL means the process
  was waiting for a core (the machine's load), which no code change in the proxy removes.
* ``gc GENERATION WALL_MS CPU_MS``: a garbage collection that took more than 10 ms.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("BOLTSTREAM_LOOP_PROBE")

if _PATH and "serve" in sys.argv:
    _out = open(_PATH, "a", buffering=1)  # noqa: SIM115 (for the life of the process)
    _started: list[float] = [0.0, 0.0]

    def _collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _started[:] = [time.perf_counter(), time.thread_time()]
            return
        wall = time.perf_counter() - _started[0]
        if wall > 0.01:
            cpu = time.thread_time() - _started[1]
            _out.write(
                f"{time.time():.3f} gc {info['generation']} {wall * 1000:.1f} {cpu * 1000:.1f}\n"
            )

    gc.callbacks.append(_collected)

    try:
        import asyncio

        import uvloop
    except ImportError:
        pass
    else:
        _run = uvloop.run

        def _probed_run(main: Any, **kwargs: Any) -> Any:
            async def ticker() -> None:
                while True:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    await asyncio.sleep(0.005)
                    wall = time.perf_counter() - wall - 0.005
                    if wall > 0.05:
                        cpu = time.thread_time() - cpu
                        _out.write(f"{time.time():.3f} late {wall * 1000:.1f} {cpu * 1000:.1f}\n")

            async def probed() -> Any:
                task = asyncio.get_running_loop().create_task(ticker())
                try:
                    return await main
                finally:
                    task.cancel()

            return _run(probed(), **kwargs)

        uvloop.run = _probed_run

"""The front end under fuzzing: a short seeded run of ``bench/fuzz.py``, and every input that
ever broke something (``tests/fuzz_corpus/``) replayed.

Each corpus entry is a JSON file written by ``bench/fuzz.py --save-dir`` (or by hand in its
format): the input (segments sent over TCP, WebSocket or TLS, and how the client leaves),
what went wrong, ``repeat`` for the ones that need a race to show, ``max_fd_growth`` for
the ones that leave resources behind, ``then_query`` for a query that must still be answered
in time afterwards, and ``fresh_proxy`` for the ones that leave the proxy in a state the next
entries should not start from. Replaying one must leave the proxy running, its log
without ERROR or traceback, the bystander without error, no connection of the proxy open
after the client closed it, and (with ``max_fd_growth``) no more descriptors than that.

``OPEN_BUGS`` lists the entries that still break the proxy, each with the log signature it
causes: its replay is an expected failure (strict, so a fix shows up as XPASS), and the
short run tolerates that signature and no other. When a bug is fixed, delete its line.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.fuzz import Fuzzer, send_input
from bench.fuzzgen import Input
from bench.fuzzseeds import DEFAULT_SEEDS, Seeds

pytestmark = pytest.mark.timeout(180)

CORPUS = Path(__file__).resolve().parent.parent / "fuzz_corpus"

# corpus entry -> (what breaks, the log signature it causes)
OPEN_BUGS: dict[str, tuple[str, str]] = {}
TOLERATED = [re.compile(sig) for _, sig in OPEN_BUGS.values()]


def corpus() -> list[Any]:
    params = []
    for path in sorted(CORPUS.glob("*.json")):
        marks = []
        if path.stem in OPEN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=OPEN_BUGS[path.stem][0]))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


@pytest.fixture(scope="module")
def replayer() -> Iterator[Fuzzer]:
    """A proxy with TLS on, a broker, and a bystander session, for replaying the corpus."""
    with Fuzzer(seed=0, transports=("tcp", "ws", "tls"), seeds=Seeds.load(DEFAULT_SEEDS)) as fz:
        fz.start_bystander()
        yield fz


def test_every_open_bug_has_its_corpus_entry() -> None:
    assert {p.stem for p in CORPUS.glob("*.json")} >= set(OPEN_BUGS)


@pytest.mark.parametrize("path", corpus())
def test_corpus_input_breaks_nothing(replayer: Fuzzer, path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not data.get("fresh_proxy"):
        replay(replayer, data)
        return
    # An input that leaves the proxy in a state the next ones should not start from.
    with Fuzzer(seed=0, transports=("tcp",), seeds=Seeds.load(DEFAULT_SEEDS)) as fz:
        fz.start_bystander()
        try:
            replay(fz, data)
        finally:
            fz.proxy.stop(signal.SIGKILL)  # a stuck clause may hold a graceful stop up


def replay(fz: Fuzzer, data: dict[str, Any]) -> None:
    inp = Input.from_json(data["input"])
    assert fz.bystander is not None
    errors_before = len(fz.bystander.errors)
    fds_before = fz.stats().fds
    mark = fz.log.snapshot()

    async def send_all() -> list[int]:
        ports = []
        for _ in range(int(data.get("repeat", 1))):
            ports.append((await send_input(fz.target, inp)).port)
        return ports

    ports = asyncio.run(send_all())
    # Time for the proxy to see the close and log what it does about it.
    deadline = time.monotonic() + 3.0
    kept: list[int] = []
    while time.monotonic() < deadline:
        assert fz.alive(), "the proxy exited"
        conns = fz.stats().client_conns
        kept = [p for p in ports if conns.get(p) == "CLOSE_WAIT"]
        if not kept and time.monotonic() > deadline - 2.0:
            break
        time.sleep(0.1)
    assert fz.alive(), "the proxy exited"
    events = fz.log.since(mark)
    assert not events, "\n".join(events[0].lines)
    assert not kept, f"the proxy kept {len(kept)} connection(s) the client had closed"
    if "max_fd_growth" in data:
        grown = fz.stats().fds - fds_before
        assert grown <= data["max_fd_growth"], f"the proxy holds {grown} more descriptors"
    if "then_query" in data:  # and the proxy still answers this, in time
        text, within = data["then_query"]["text"], float(data["then_query"]["within"])
        assert fz.answers_within(text, within), f"{text} had no answer in {within:.0f} s"
    fz.check_bystander()
    assert len(fz.bystander.errors) == errors_before, fz.bystander.errors[-1]


def test_short_seeded_fuzz_run(tmp_path: Path) -> None:
    """About 30 s of every family on every transport: no crash, no bystander error, no
    connection kept after the client closed, and no ERROR or traceback but the known ones."""
    with Fuzzer(
        seed=20260101,
        transports=("tcp", "ws", "tls"),
        seeds=Seeds.load(DEFAULT_SEEDS),
        save_dir=tmp_path,
    ) as fz:
        rep = fz.run(inputs=None, seconds=30, settle=15)
    assert rep.inputs > 1000
    assert rep.crashes == 0 and not rep.stalled
    assert rep.bystander_errors == []
    assert rep.bystander_queries > 100
    assert rep.leaked_orphans == 0
    leaked = rep.leaked_inputs
    assert len(rep.leaked_close_wait) == len(rep.leaked_inputs)
    assert leaked == [], f"connections kept after the client closed: inputs {leaked}"
    unknown = [e for e in rep.log_events if not any(t.search(e.signature) for t in TOLERATED)]
    assert not unknown, "\n".join(unknown[0].lines)

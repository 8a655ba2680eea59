"""Permanent failures stop a stream with status ``error`` and the reason, leave the failed
batch uncommitted, and affect no other stream; transient ones are retried."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import pytest

from tests.streams.conftest import (
    Broker,
    count,
    create_stream,
    run,
    show,
    start_proxy,
    stream_name,
    wait_until,
)
from tests.support import FalkorDBProcess, ProxyProcess

pytestmark = pytest.mark.timeout(90)


def test_bad_transforms_and_queries_stop_only_their_stream(
    driver: Any, broker: Broker, transforms: Path
) -> None:
    cases = {
        "raises.py": (["ok1", "boom", "ok2"], "ValueError: cannot digest boom"),
        "hangs.py": (["ok1", "hang", "ok2"], "timed out after 5 s"),
        "badtypes.py": (["ok1"], "bytes"),
        "badquery.py": (["ok1"], "RETURN"),
    }
    streams: dict[str, tuple[str, str]] = {}
    for transform, (messages, _reason) in cases.items():
        name = stream_name(transform.split(".")[0])
        topic = broker.create_topic(f"topic_{name}")
        broker.produce(topic, [f"{name}-{m}" if m.startswith("ok") else m for m in messages])
        create_stream(driver, name, broker, topic, transforms / transform, "BATCH_SIZE 1")
        streams[transform] = (name, topic)
    healthy = stream_name("healthy")
    healthy_topic = broker.create_topic(f"topic_{healthy}")
    create_stream(driver, healthy, broker, healthy_topic, transforms / "msg.py")
    for name, _topic in [*streams.values(), (healthy, healthy_topic)]:
        run(driver, f"START STREAM {name}")

    for transform, (name, topic) in streams.items():
        reason = cases[transform][1]
        row = wait_until(
            lambda name=name: (r := show(driver, name))["status"] == "error" and r,
            timeout=30,
            message=f"{transform} to fail",
        )
        assert reason in row["last_error"], (transform, row["last_error"])
        committed = broker.committed(name, topic)
        if transform in ("raises.py", "hangs.py"):
            # ok1 was written and committed; the failing batch was not committed.
            assert committed == {0: 1}, transform
            assert count(driver, "(o:Ok)", f"WHERE o.body = '{name}-ok1'") == 1
            assert count(driver, "(o:Ok)", f"WHERE o.body = '{name}-ok2'") == 0
        else:
            assert committed == {0: -1001}, transform
    row = show(driver, streams["badquery.py"][0])
    # STOP names the message the backend refused (README "Operating streams").
    assert "partition 0 offset 0: the backend rejected it" in row["last_error"]
    assert "Neo.ClientError.Statement.SyntaxError" in row["last_error"]

    # The healthy stream and the proxy carry on.
    broker.produce(healthy_topic, [f"{healthy}:after"])
    wait_until(
        lambda: count(driver, "(m:Msg)", f"WHERE m.body = '{healthy}:after'") == 1,
        message="the healthy stream",
    )
    assert show(driver, healthy)["status"] == "running"
    assert run(driver, "RETURN 1 AS one") == [{"one": 1}]

    # A failed stream restarts from the failed batch (it was not committed): same error.
    raising, raising_topic = streams["raises.py"]
    run(driver, f"START STREAM {raising}")
    row = wait_until(
        lambda: (r := show(driver, raising))["status"] == "error" and r,
        message="the same failure again",
    )
    assert "cannot digest boom" in row["last_error"]
    assert broker.committed(raising, raising_topic) == {0: 1}
    # STOP on a failed stream makes it stopped, and TEST shows the poison batch's failure.
    run(driver, f"STOP STREAM {raising}")
    assert show(driver, raising)["status"] == "stopped"
    with pytest.raises(neo4j.exceptions.ClientError) as caught:
        run(driver, f"TEST STREAM {raising}")
    assert caught.value.code == "Neo.ClientError.Procedure.ProcedureCallFailed"
    assert "cannot digest boom" in caught.value.message
    for name, _topic in [*streams.values(), (healthy, healthy_topic)]:
        run(driver, f"DROP STREAM {name}")


def outage_shows(driver: Any, name: str, what: str) -> dict[str, Any]:
    """Wait until SHOW STREAMS says the stream is in a transient outage of ``what`` (``writing
    to the graph``, ``reading from Kafka``), and check what it says: still running, and
    ``last_error`` names the same outage. The row."""
    row: dict[str, Any] = wait_until(
        lambda: (
            (r := show(driver, name))["status_detail"].startswith(f"transient outage: {what} (")
            and r
        ),
        timeout=30,
        message=f"the outage of {what} to show",
    )
    assert row["status"] == "running"
    assert row["last_error"].startswith(f"{what}: ")
    assert "(transient; " in row["last_error"]
    return row


def recovery_shows(driver: Any, name: str, *, said: bool = True) -> dict[str, Any]:
    """Wait until SHOW STREAMS says the stream is healthy again, still running, and (``said``)
    its ``last_error`` saying it recovered. The row."""
    row: dict[str, Any] = wait_until(
        lambda: (r := show(driver, name))["status_detail"] == "healthy" and r,
        timeout=30,
        message="the recovery to show",
    )
    assert row["status"] == "running"
    assert not said or "recovered" in row["last_error"]
    return row


def stream_past(
    driver: Any, broker: Broker, topic: str, transforms: Path, messages: int = 1
) -> str:
    """A running stream over ``topic`` (one ``:Msg`` per message) that has processed the
    ``messages`` messages sent to it (``<name>:0``, ``<name>:1``, ...); the stream's name."""
    name = stream_name()
    create_stream(driver, name, broker, topic, transforms / "msg.py")
    run(driver, f"START STREAM {name}")
    broker.produce(topic, [f"{name}:{i}" for i in range(messages)])
    wait_until(lambda: show(driver, name)["messages_processed"] == messages)
    return name


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """``pid`` stopped with SIGSTOP (it keeps its connections open and answers nothing)
    inside the block, continued with SIGCONT when the block ends, however it ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# -- transient failures: the backend goes away and comes back ---------------------------------


@pytest.fixture
def falkordb(tmp_path: Path) -> Iterator[FalkorDBProcess]:
    server = FalkorDBProcess(tmp_path / "falkordb").start()
    yield server
    server.stop()


def restart_on_same_port(old: FalkorDBProcess) -> FalkorDBProcess:
    new = FalkorDBProcess(old.data_dir)
    new.port = old.port
    return new.start()


def test_backend_unavailable_is_retried(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path, falkordb: FalkorDBProcess
) -> None:
    proxy: ProxyProcess = start_proxy(
        tmp_path / "proxy", transforms, "--backend", f"falkordb://127.0.0.1:{falkordb.port}"
    )
    restarted: FalkorDBProcess | None = None
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as drv:
            name = stream_name()
            create_stream(drv, name, broker, topic, transforms / "msg.py")
            run(drv, f"START STREAM {name}")
            broker.produce(topic, [f"{name}:1"])
            wait_until(lambda: show(drv, name)["messages_processed"] == 1)

            falkordb.stop()
            broker.produce(topic, [f"{name}:2", f"{name}:3"])
            row = wait_until(
                lambda: "retrying" in ((r := show(drv, name))["last_error"] or "") and r,
                message="the retry to show",
            )
            assert row["status"] == "running"
            assert row["last_error"].startswith("writing to the graph: ")
            assert broker.committed(name, topic) == {0: 1}

            restarted = restart_on_same_port(falkordb)  # empty: the old one kept nothing
            wait_until(lambda: count(drv, "(m:Msg)") == 2, timeout=30, message="the retried batch")
            row = wait_until(lambda: (r := show(drv, name))["messages_processed"] == 3 and r)
            assert row["status"] == "running"
            assert "recovered" in row["last_error"]
            wait_until(lambda: broker.committed(name, topic) == {0: 3})
            run(drv, f"DROP STREAM {name}")
    finally:
        proxy.stop()
        if restarted is not None:
            restarted.stop()
        shutil.rmtree(falkordb.data_dir, ignore_errors=True)


def test_a_stopped_backend_shows_and_times_out(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path, falkordb: FalkorDBProcess
) -> None:
    """A FalkorDB stopped with SIGSTOP keeps its connections open and answers nothing: the
    stream says so in status_detail and last_error while it lasts, a client's query fails
    with a TransientError after backend_query_timeout instead of waiting, and after SIGCONT
    the stream carries on and loses nothing."""
    settings = tmp_path / "boltstream.toml"
    settings.write_text("backend_query_timeout = 4\n")
    proxy: ProxyProcess = start_proxy(
        tmp_path / "proxy",
        transforms,
        "--backend",
        f"falkordb://127.0.0.1:{falkordb.port}",
        "--config",
        str(settings),
    )
    assert falkordb.proc is not None
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as drv:
            name = stream_name()
            create_stream(drv, name, broker, topic, transforms / "msg.py")
            run(drv, f"START STREAM {name}")
            broker.produce(topic, [f"{name}:1"])
            wait_until(lambda: show(drv, name)["messages_processed"] == 1)
            assert show(drv, name)["status_detail"] == "healthy"

            with paused(falkordb.proc.pid):
                broker.produce(topic, [f"{name}:2", f"{name}:3"])
                outage_shows(drv, name, "writing to the graph")

                started = time.monotonic()
                with pytest.raises(neo4j.exceptions.TransientError), drv.session() as session:
                    session.run("RETURN 1 AS one").consume()
                assert time.monotonic() - started < 20  # bounded by the timeout, not the outage

            wait_until(lambda: count(drv, "(m:Msg)") == 3, timeout=40, message="the batch")
            recovery_shows(drv, name)
            run(drv, f"DROP STREAM {name}")
    finally:
        proxy.stop()


def test_broker_unavailable_while_running(transforms: Path, tmp_path: Path, driver: Any) -> None:
    """A broker that goes away: the stream stays running and says what it retries; when the
    broker is back, it says so and carries on."""
    own = Broker().start()
    again: Broker | None = None
    try:
        name = stream_past(driver, own, own.create_topic("gone"), transforms)
        own.stop()
        row = wait_until(
            lambda: (r := show(driver, name))["last_error"] and r,
            timeout=30,
            message="the broker error to show",
        )
        assert row["status"] == "running"
        assert row["last_error"].startswith("reading from Kafka: ")
        assert "retrying" in row["last_error"]
        assert row["lag"] is None
        again = Broker()
        again.port = own.port
        again.start()  # in-memory: a new, empty broker at the same address
        again.create_topic("gone")
        row = wait_until(
            lambda: "recovered" in ((r := show(driver, name))["last_error"] or "") and r,
            timeout=30,
            message="the recovery to show",
        )
        assert row["status"] == "running"
        run(driver, f"DROP STREAM {name}")
    finally:
        own.stop()
        if again is not None:
            again.stop()


def test_a_stopped_broker_shows_and_the_stream_carries_on(
    transforms: Path, tmp_path: Path, driver: Any
) -> None:
    """A broker stopped with SIGSTOP holds its connections open and answers nothing, so the
    Kafka client reports nothing for a minute: the stream notices the silence itself and says
    so while it lasts; after SIGCONT it carries on and loses nothing."""
    own = Broker().start()
    assert own.proc is not None
    try:
        topic = own.create_topic("paused")
        name = stream_past(driver, own, topic, transforms)
        with paused(own.proc.pid):
            row = outage_shows(driver, name, "reading from Kafka")
            assert "(transient; retrying" in row["last_error"]
        own.produce(topic, [f"{name}:2"])
        wait_until(
            lambda: count(driver, "(m:Msg)", f"WHERE m.body STARTS WITH '{name}:'") == 2,
            timeout=60,
            message="the message sent after the outage",
        )
        recovery_shows(driver, name)
        run(driver, f"DROP STREAM {name}")
    finally:
        own.stop()


def test_the_embedded_falkordb_is_restarted_when_it_dies(
    broker: Broker, topic: str, transforms: Path, tmp_path: Path
) -> None:
    """kill -9 of the embedded FalkorDB alone: the proxy starts it again from its AOF (no
    proxy restart needed), says so once in the log, and the stream carries on."""
    proxy = start_proxy(tmp_path / "proxy", transforms)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as drv:
            name = stream_past(drv, broker, topic, transforms)
            first = proxy.embedded_falkordb_pid()
            os.kill(first, signal.SIGKILL)
            broker.produce(topic, [f"{name}:2", f"{name}:3"])
            proxy.wait_for_log(r"the embedded FalkorDB exited with status", timeout=20)
            proxy.wait_for_log(r"the embedded FalkorDB is running again", timeout=30)
            assert proxy.embedded_falkordb_pid() != first
            wait_until(lambda: count(drv, "(m:Msg)") == 3, timeout=40, message="the rest")
            # Whether a write failed depends on when the kill came: last_error may be empty.
            recovery_shows(drv, name, said=False)
            run(drv, f"DROP STREAM {name}")
        lines = proxy.log_text().splitlines()
        assert len([line for line in lines if "FalkorDB exited" in line]) == 1
    finally:
        proxy.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of its own (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until its file system is full."""
    filler = folder / "filler"
    with filler.open("wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * (1 << 20))
            file.flush()
    return filler


def test_a_full_disk_shows_and_nothing_accepted_is_lost(
    broker: Broker, topic: str, transforms: Path, small_fs: Path
) -> None:
    """The data dir's file system fills up during ingestion: with appendfsync always the
    embedded FalkorDB exits rather than go on without its AOF; the stream says it retries,
    the proxy restarts FalkorDB once there is room again, and every message is in the graph
    once the space is freed."""
    proxy = start_proxy(small_fs / "data", transforms)
    try:
        with neo4j.GraphDatabase.driver(proxy.bolt_uri, auth=("u", "p")) as drv:
            name = stream_past(drv, broker, topic, transforms, 100)
            filler = fill(small_fs)
            broker.produce(topic, [f"{name}:{i}" for i in range(100, 200)])
            outage_shows(drv, name, "writing to the graph")
            proxy.wait_for_log(r"the embedded FalkorDB exited with status 1 \(.*AOF", timeout=20)
            filler.unlink()

            def all_there() -> bool:
                try:
                    return count(drv, "(m:Msg)") == 200
                except neo4j.exceptions.TransientError:  # FalkorDB is being restarted
                    return False

            wait_until(
                all_there,
                timeout=60,
                message="every message after the space is freed",
            )
            recovery_shows(drv, name)
            run(drv, f"DROP STREAM {name}")
        assert "Traceback" not in proxy.log_text()
    finally:
        proxy.stop()

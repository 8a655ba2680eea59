"""``offsets.describe_isolated``: DescribeGroups runs in a child process, so that librdkafka's
abort on a late coordinator answer (librdkafka #4605) takes only the child, never the proxy.
No broker needed here: the cases are a broker that does not answer and a child that dies;
SHOW STREAM OFFSETS' holders and SET OFFSET's refusal against the real broker are in
``test_operating.py``."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from proxy.streams.names import UnsafeValue
from proxy.streams.offsets import describe_isolated


async def test_a_broker_that_does_not_answer_gives_none_in_time() -> None:
    started = time.monotonic()
    group = await describe_isolated({"bootstrap.servers": "127.0.0.1:1"}, "g", timeout=1.0)
    assert group is None
    assert time.monotonic() - started < 12.0  # 2 x timeout + 10 at most


async def test_a_child_killed_by_sigabrt_leaves_the_caller_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What librdkafka's assertion does to the process it runs in: here, the child only."""
    aborting = tmp_path / "python"
    aborting.write_text("#!/bin/sh\ncat >/dev/null\nkill -ABRT $$\n")
    aborting.chmod(aborting.stat().st_mode | stat.S_IXUSR)
    with caplog.at_level(logging.WARNING, logger="boltstream.streams"):
        group = await describe_isolated(
            {"bootstrap.servers": "127.0.0.1:1"}, "g", timeout=1.0, python=str(aborting)
        )
    assert group is None
    assert os.getpid() > 0  # still here
    assert any("ended with status" in r.getMessage() for r in caplog.records)


async def test_credentials_go_on_stdin_not_on_the_command_line(tmp_path: Path) -> None:
    """The child's argv is readable by every local user (ps): settings go through a pipe."""
    recorder = tmp_path / "python"
    seen = tmp_path / "seen"
    recorder.write_text(f'#!/bin/sh\necho "$@" > {seen}\ncat > {seen}.stdin\necho null\n')
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    config = {"bootstrap.servers": "127.0.0.1:1", "sasl.password": "s3cret-pw"}
    assert await describe_isolated(config, "g", timeout=1.0, python=str(recorder)) is None
    assert "s3cret-pw" not in seen.read_text()
    assert "s3cret-pw" in (tmp_path / "seen.stdin").read_text()


async def test_unsafe_settings_never_reach_a_client() -> None:
    """A NUL cuts a string short in the native client (the stream-name crash of issue 14)."""
    with pytest.raises(UnsafeValue):
        await describe_isolated(
            {"bootstrap.servers": "127.0.0.1:1", "client.id": "a\x00b"},
            "g",
            timeout=1.0,
        )

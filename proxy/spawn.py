"""Starting child processes from a process full of threads, safely.

The proxy runs threads (Kafka clients, executor pools, librdkafka's own) while it starts
transform workers and the embedded FalkorDB. A plain ``fork()`` copies only the calling
thread, with every lock the other threads held at that instant still held; Python then runs
``PyOS_AfterFork_Child`` (and any ``os.register_at_fork`` hooks) in the child, which takes
locks (the allocator's, the import lock, the GIL machinery) and can wait for one of those
forever. That is how the proxy once hung for good: uvloop's ``uv_spawn`` forks and runs
``PyOS_AfterFork_Child`` in the child, and the parent blocks reading the exec-status pipe of a
child that never gets to ``exec``. A ``preexec_fn`` (Python code in the child) has the same
problem.

So children are started here only through ``subprocess.Popen`` without ``preexec_fn``, which
CPython runs with ``vfork()`` (``_posixsubprocess``; 3.10+ on Linux): the child shares the
parent's memory until it calls ``exec``, runs no Python code and no ``atfork`` handler, and
only async-signal-safe calls (dup2, setsid, chdir, close_range) come between. Whatever a
child must do to itself before running (``PR_SET_PDEATHSIG``) it does after ``exec``, in a
program of its own (``die_with_parent``). The event loop's own subprocess support is not
used: under uvloop it is the ``fork()`` path above.

``spawn_piped`` gives the asyncio side: stream pipes to the child's stdin, stdout and stderr,
and ``wait()`` that learns of the exit from a pidfd (Linux 5.3+), else from a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

# Run by ``die_with_parent``: ask for SIGKILL when the parent dies (Linux), make sure it has
# not died already, then become the real program. Runs after exec, in a fresh interpreter.
_LAUNCHER = """\
import ctypes, os, sys
parent = int(sys.argv[1])
try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL (kept across execve)
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(1)  # the parent is gone already: nobody would ever stop us
os.execv(sys.argv[2], sys.argv[2:])
"""


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run through a launcher that has the kernel SIGKILL it when the process that
    starts it dies (on Linux; elsewhere the launcher only execs). ``argv[0]`` must be a path.

    ``PR_SET_PDEATHSIG`` follows the starting *thread*: start it from one that lives as long
    as the child (the event loop's)."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]


class PipedProcess:
    """A child with asyncio streams on its stdin, stdout and stderr."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._exited: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        """The exit status, once the child has exited (reaped here)."""
        code = self.popen.poll()
        if code is not None:
            return code
        if self._exited is None:
            self._exited = asyncio.get_running_loop().create_future()
            self._watch(self._exited)
        return await asyncio.shield(self._exited)

    def _watch(self, exited: asyncio.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = -1
        if pidfd < 0:
            # No pidfd: a thread waits (it reaps, as Popen.wait does).
            def reaped(_: object) -> None:
                if not exited.done():
                    exited.set_result(self.popen.returncode or 0)

            loop.run_in_executor(None, self.popen.wait).add_done_callback(reaped)
            return

        def readable() -> None:
            code = self.popen.poll()
            if code is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                if not exited.done():
                    exited.set_result(code)

        loop.add_reader(pidfd, readable)
        readable()  # it may have exited before the reader was added


class _PipeReader(asyncio.StreamReaderProtocol):
    """A read pipe's protocol that lets its transport close at EOF (uvloop keeps a pipe open
    when ``eof_received`` returns True, as ``StreamReaderProtocol``'s does: a descriptor per
    worker would leak)."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class _LoopOwnedFd:
    """A pipe end handed to uvloop. libuv closes the descriptor itself when the transport
    closes, and uvloop then calls ``close()`` on the object it was given as well: on a real
    file object that is a second ``close()`` of a number another thread may have reused
    meanwhile (a Kafka client's socket, the next worker's pipe). So this object's ``close``
    does nothing; the stdlib loop, which leaves closing to the object, gets real file objects.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        pass


def _pipe_end(fd: int, mode: str, loop: asyncio.AbstractEventLoop) -> Any:
    if type(loop).__module__.startswith("uvloop"):
        return _LoopOwnedFd(fd)
    return os.fdopen(fd, mode, buffering=0)


async def spawn_piped(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str | None = None,
    new_session: bool = False,
) -> PipedProcess:
    """Start ``argv`` (vfork + exec: safe with threads running) with pipes on its stdin,
    stdout and stderr. Raises ``OSError`` when it cannot be started."""
    loop = asyncio.get_running_loop()
    # The pipes are made here, not by Popen: Popen would wrap the parent's ends in file
    # objects of its own, which would close the descriptors again (see _LoopOwnedFd).
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    parent_ends = [stdin_write, stdout_read, stderr_read]
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=stdin_read,
            stdout=stdout_write,
            stderr=stderr_write,
            env=env,
            cwd=cwd,
            start_new_session=new_session,
            close_fds=True,
        )
    except BaseException:
        for fd in parent_ends:
            os.close(fd)
        raise
    finally:
        for fd in (stdin_read, stdout_write, stderr_write):
            os.close(fd)
    handed: list[int] = []
    try:
        stdout = asyncio.StreamReader(loop=loop)
        await loop.connect_read_pipe(
            lambda: _PipeReader(stdout, loop=loop), _pipe_end(stdout_read, "rb", loop)
        )
        handed.append(stdout_read)
        stderr = asyncio.StreamReader(loop=loop)
        await loop.connect_read_pipe(
            lambda: _PipeReader(stderr, loop=loop), _pipe_end(stderr_read, "rb", loop)
        )
        handed.append(stderr_read)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop),
            _pipe_end(stdin_write, "wb", loop),
        )
        handed.append(stdin_write)
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    except BaseException:
        popen.kill()
        popen.wait()
        for fd in parent_ends:
            if fd not in handed:
                with contextlib.suppress(OSError):
                    os.close(fd)
        raise
    return PipedProcess(popen, stdin, stdout, stderr)

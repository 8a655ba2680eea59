"""Transform scripts: fetching them once, and running them in a sandboxed worker process.

A transform is a Python file that defines ``stream(batch: list[bytes]) -> list[tuple[str,
dict]]``: Kafka message values in, ``(cypher, parameters)`` pairs out (the legacy Memgraph
contract, see shared/reference/memgraph_streams.md section 1.2). Parameter values may be None,
bool, int (64-bit), float, str, list and dict with str keys, nested.

Lifecycle, as the stream engine uses it:

1. ``CREATE STREAM``: ``source = await fetch_transform(uri, policy)`` reads the script once
   (http, https, file:// or a plain path, subject to a ``TransformPolicy``) and compiles it to
   catch syntax errors; ``await check_transform(source)`` loads it in a throwaway worker. Store
   ``source`` (uri, code, sha256): the code is *pinned*, nothing ever fetches it again.
2. ``START STREAM``: ``runner = TransformRunner(source, name=...)``, ``await runner.start()``.
3. Every batch: ``pairs = await runner.run(messages)``. ``TransformFailed`` says why a batch
   failed (the user's exception with its line, bad output naming the item, timeout, crash,
   out of memory); the runner then replaces its worker, so the next ``run`` starts clean.
   Several batches in one round trip: ``await runner.run_many(batches)`` (each batch is still
   one ``stream(batch)`` call, with its own time limit; the result of each, up to the first
   that failed).
4. ``STOP``/``DROP``: ``await runner.stop()`` (idempotent; interrupts a running batch).

Isolation: the script never runs in the proxy. Each runner owns one worker process
(``transform_worker.py``, started with ``python -I -B``, an empty temporary working directory
and a minimal environment) that limits itself before it loads the code; see that module for
the layers and the wire format. The worker is treated as hostile: its replies are bounded in
size, decoded as JSON (never pickle) and checked again here. Floats, NaN and +-Infinity
included, round-trip exactly (Python's JSON on both ends).

Where scripts may come from is ``TransformPolicy``; ``TransformPolicy.default(data_dir)``
allows http(s) only from loopback and files only under ``<data_dir>/transforms`` and the
working directory, never elsewhere in the data directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import functools
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from proxy import __version__
from proxy.spawn import PipedProcess, spawn_piped
from proxy.streams.transform_worker import (
    HEADER,
    OutputError,
    check_compact,
    check_result,
    check_texts,
    decode_payload,
    encode_frame,
)

log = logging.getLogger(__name__)

MAX_SCRIPT_BYTES = 1024 * 1024  # a transform larger than this is refused at fetch
MAX_REDIRECTS = 5
WORKER_SCRIPT = Path(__file__).with_name("transform_worker.py")
MGP_SHIM = Path(__file__).with_name("mgp_shim.py")  # the `mgp` of transformation modules
OFFLOAD_BYTES = 256 * 1024  # encode/decode frames larger than this off the event loop
LOG_LIMIT = 64 * 1024  # bytes of the worker's stderr kept for error messages
WORKDIR_PREFIX = "boltstream-transform-"  # + proxy pid + "-" + random


# -- errors ---------------------------------------------------------------------------------


class TransformError(Exception):
    """The transform cannot be used: it cannot be fetched, is refused by the policy, does not
    compile, or does not load (import-time exception, no ``stream`` function). Retrying the
    same thing will fail the same way; the message is ready to show to the client."""


class FailureKind(enum.Enum):
    """Why one batch failed. After any of them the runner discards its worker."""

    EXCEPTION = "exception"  # stream() raised
    BAD_OUTPUT = "bad output"  # stream() returned something outside the contract
    TIMEOUT = "timeout"  # the batch took longer than batch_timeout; the worker was killed
    CRASH = "crash"  # the worker exited or was killed by a signal
    OUT_OF_MEMORY = "out of memory"  # MemoryError under the runner's memory limit
    PROTOCOL = "protocol"  # the worker sent something that is not a valid reply
    STOPPED = "stopped"  # stop() was called while the batch ran


class TransformFailed(TransformError):
    """One batch failed. ``kind`` says how; ``details`` holds what is worth logging (the
    user's traceback, the tail of the worker's output) but too long for a client message.
    ``unanswered``: how many batches of its round had no reply yet when it came (``collect``).
    """

    def __init__(self, kind: FailureKind, message: str, details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details
        self.unanswered = 1


# Failures that may have come from any batch of a round still waiting for its reply.
AMBIGUOUS = (FailureKind.TIMEOUT, FailureKind.CRASH, FailureKind.PROTOCOL)


# -- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformPolicy:
    """Where ``fetch_transform`` may read scripts from.

    ``allowed_hosts`` are http(s) host names matched case-insensitively: ``example.com``
    (exactly), ``*.example.com`` (any subdomain), an IP address, or ``loopback`` (``localhost``
    and any loopback address). Names are compared as written, never resolved.
    ``allow_any_host`` allows every host (``*`` in ``from_strings``); mind that it lets whoever
    may create streams make the proxy issue GET requests to any address it can reach.

    ``allowed_dirs`` / ``denied_dirs``: a local file is allowed if the deepest of these
    directories containing its fully resolved path (symbolic links followed) is an allowed
    one (a directory listed in both counts as allowed). So ``default`` can allow the working
    directory yet keep the data directory, apart from its ``transforms/`` folder, out of reach.
    """

    allowed_hosts: tuple[str, ...] = ()
    allowed_dirs: tuple[Path, ...] = ()
    allow_any_host: bool = False
    denied_dirs: tuple[Path, ...] = ()

    @classmethod
    def default(cls, data_dir: Path) -> TransformPolicy:
        """The safe default: http(s) only from loopback; files under ``<data_dir>/transforms``
        and under the proxy's working directory (unless that is ``/``), but nothing else in
        the data directory (users file, stream catalog)."""
        data = Path(data_dir).resolve()
        dirs = [data / "transforms"]
        cwd = Path.cwd().resolve()
        if cwd != Path(cwd.anchor):
            dirs.append(cwd)
        return cls(allowed_hosts=("loopback",), allowed_dirs=tuple(dirs), denied_dirs=(data,))

    @classmethod
    def from_strings(cls, hosts: str, dirs: str) -> TransformPolicy:
        """From configuration text: comma-separated hosts (``*`` = any) and directories
        (relative ones resolve against the current directory). Use ``default(...).merged(...)``
        to add to the default instead of replacing it."""
        host_list = tuple(h.strip().lower() for h in hosts.split(",") if h.strip())
        dir_list = tuple(
            Path(d.strip()).expanduser().resolve() for d in dirs.split(",") if d.strip()
        )
        return cls(
            allowed_hosts=tuple(h for h in host_list if h != "*"),
            allowed_dirs=dir_list,
            allow_any_host="*" in host_list,
        )

    def merged(self, other: TransformPolicy) -> TransformPolicy:
        """Everything either policy allows (denials of both still apply)."""
        return TransformPolicy(
            allowed_hosts=tuple(dict.fromkeys(self.allowed_hosts + other.allowed_hosts)),
            allowed_dirs=tuple(dict.fromkeys(self.allowed_dirs + other.allowed_dirs)),
            allow_any_host=self.allow_any_host or other.allow_any_host,
            denied_dirs=tuple(dict.fromkeys(self.denied_dirs + other.denied_dirs)),
        )

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".").strip("[]")
        if self.allow_any_host:
            return True
        address = _ip(host)
        for pattern in self.allowed_hosts:
            pattern = pattern.lower().rstrip(".").strip("[]")
            if pattern == "*":
                return True
            if pattern == "loopback":
                if host == "localhost" or (address is not None and address.is_loopback):
                    return True
            elif pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif pattern == host or (address is not None and _ip(pattern) == address):
                return True
        return False

    def allows_path(self, path: Path) -> bool:
        """``path`` must already be absolute and resolved."""

        def depth(dirs: tuple[Path, ...]) -> int:
            return max(
                (len(d.parts) for d in (Path(x).resolve() for x in dirs) if path.is_relative_to(d)),
                default=-1,
            )

        allowed = depth(self.allowed_dirs)  # a directory both allowed and denied is allowed
        return allowed >= 0 and allowed >= depth(self.denied_dirs)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# -- fetching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformSource:
    """A fetched transform, pinned: store it, run it, never fetch ``uri`` again.
    ``sha256`` is the hex digest of ``code`` encoded as UTF-8."""

    uri: str
    code: str = field(repr=False)
    sha256: str

    @classmethod
    def from_code(cls, uri: str, code: str) -> TransformSource:
        return cls(uri=uri, code=code, sha256=hashlib.sha256(code.encode("utf-8")).hexdigest())


class _Refused(Exception):
    """Why a fetch failed; becomes the text after "Couldn't get the transform script from X:"."""


async def fetch_transform(
    uri: str, policy: TransformPolicy, *, timeout: float = 10.0
) -> TransformSource:
    """Read the script at ``uri`` (``http://``, ``https://``, ``file://`` or a plain path,
    relative to the working directory), check it against ``policy``, size (1 MiB), UTF-8 and
    Python syntax. Raises ``TransformError("Couldn't get the transform script from URI:
    reason")``. Next: ``check_transform`` it, then keep the returned source."""
    try:
        data = await _fetch_bytes(uri, policy, timeout)
        code = _decode(data)
        await asyncio.to_thread(_syntax_check, code, uri)
    except _Refused as exc:
        raise TransformError(f"Couldn't get the transform script from {uri}: {exc}") from None
    return TransformSource.from_code(uri, code)


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


async def fetch_module(directory: Path, transformation: str) -> TransformSource:
    """Memgraph's ``TRANSFORM module.procedure``: read ``<directory>/module.py`` (the
    transformation modules directory, like Memgraph's query-modules directory), with the same
    checks as ``fetch_transform`` (size, UTF-8, syntax). The source's ``uri`` is the file's
    path. Raises ``TransformError``; next: ``check_transform(source, transformation=...)``."""
    module, _, procedure = transformation.rpartition(".")
    where = f"Couldn't load the transformation module {transformation}"
    if not _MODULE_NAME.match(module) or not _MODULE_NAME.match(procedure):
        raise TransformError(f"{where}: module and procedure must be Python identifiers")
    base = Path(directory).resolve()
    path = (base / f"{module}.py").resolve()
    if not path.is_relative_to(base):
        raise TransformError(f"{where}: {path} is outside {base}")
    try:
        data = await asyncio.to_thread(_read_file, path)
        code = _decode(data)
        await asyncio.to_thread(_syntax_check, code, str(path))
    except _Refused as exc:
        raise TransformError(f"{where} from the transformations directory {base}: {exc}") from None
    return TransformSource.from_code(str(path), code)


async def _fetch_bytes(uri: str, policy: TransformPolicy, timeout: float) -> bytes:
    if not uri.strip():
        raise _Refused("the URI is empty")
    if _has_control(uri):
        raise _Refused("the URI holds a control character")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise _Refused("the URI names no host")
        if not policy.allows_host(parts.hostname):
            raise _Refused(f"host {parts.hostname!r} is not allowed by the transform policy")
        read = asyncio.to_thread(_http_get, uri, policy, timeout)
    elif scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _Refused(
                f"a file URI must not name a host ({parts.netloc!r}); use file:///absolute/path"
            )
        read = _checked_file(unquote(parts.path), policy)
    elif scheme == "":
        read = _checked_file(uri, policy)
    else:
        raise _Refused(f"unsupported scheme {scheme!r}: use http://, https://, file:// or a path")
    try:
        return await asyncio.wait_for(read, timeout)
    except TimeoutError:
        raise _Refused(f"timed out after {timeout:g} s") from None


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


async def _checked_file(text: str, policy: TransformPolicy) -> bytes:
    # No path the OS can take holds a NUL (os.path raises ValueError on one), and file:// URIs
    # may spell one as %00: refuse control characters after unquoting too.
    if _has_control(text):
        raise _Refused("the path holds a control character")
    # Resolve first and judge the real location: a symbolic link inside an allowed directory
    # pointing outside it is refused. Refuse before looking, so the answer for a file outside
    # the policy does not reveal whether it exists.
    path = (Path.cwd() / text).resolve()
    if not policy.allows_path(path):
        raise _Refused(f"{path} is outside the directories the transform policy allows")
    return await asyncio.to_thread(_read_file, path)


def _read_file(path: Path) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not hang; O_NOFOLLOW: the path was resolved.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Refused(f"no such file: {path}") from None
    except PermissionError:
        raise _Refused(f"permission denied: {path}") from None
    except OSError as exc:
        raise _Refused(f"cannot open {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _Refused(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        if info.st_size > MAX_SCRIPT_BYTES:
            raise _Refused(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
        try:
            data = file.read(MAX_SCRIPT_BYTES + 1)
        except OSError as exc:
            raise _Refused(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise _Refused(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
    return data


class _PolicyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a place the policy allows too."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, policy: TransformPolicy) -> None:
        self.policy = policy

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        target = urlsplit(newurl)
        if target.scheme.lower() not in ("http", "https") or not target.hostname:
            raise _Refused(f"redirected to {newurl}, which is not an http(s) URL")
        if not self.policy.allows_host(target.hostname):
            raise _Refused(
                f"redirected to host {target.hostname!r}, which the transform policy does not allow"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _http_get(uri: str, policy: TransformPolicy, timeout: float) -> bytes:
    opener = urllib.request.build_opener(_PolicyRedirects(policy))
    request = urllib.request.Request(uri, headers={"User-Agent": f"boltstream/{__version__}"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > MAX_SCRIPT_BYTES:
                raise _Refused(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
            data: bytes = response.read(MAX_SCRIPT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _Refused(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _Refused(f"timed out after {timeout:g} s") from None
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise _Refused(f"cannot connect: {text}") from None
    except TimeoutError:
        raise _Refused(f"timed out after {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise _Refused(f"download failed: {exc}") from None
    except Exception as exc:  # http.client.HTTPException and friends
        if isinstance(exc, _Refused):
            raise
        raise _Refused(f"download failed: {type(exc).__name__}: {exc}") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise _Refused(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Refused(f"the script is not UTF-8 text (bad byte at offset {exc.start})") from None


def _syntax_check(code: str, uri: str) -> None:
    """Compile (never run) the script, so CREATE STREAM reports syntax errors. Warnings such
    as invalid escape sequences would otherwise land in the proxy's log."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, uri, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise _Refused(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    except ValueError:
        raise _Refused("the script contains null bytes") from None
    except (RecursionError, MemoryError):
        raise _Refused("the script is too deeply nested to compile") from None


# -- running --------------------------------------------------------------------------------


class _Log:
    """The last ``LOG_LIMIT`` bytes a worker wrote to stderr (its prints and crash reports)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > LOG_LIMIT:
            del self.data[: len(self.data) - LOG_LIMIT]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class Round:
    """Batches submitted to a worker whose replies are not read yet (``TransformRunner.submit``).
    ``single``: one batch, sent with the ``run`` op; ``failure``: sending it failed; ``stale``:
    the worker was replaced before its replies were read."""

    def __init__(self, batches: list[list[bytes]], worker: _Worker, single: bool) -> None:
        self.batches = batches
        self.worker = worker
        self.single = single
        self.failure: TransformFailed | None = None
        self.stale = False


class _Worker:
    """One worker process: its pipes, its stderr pump and its working directory."""

    def __init__(self, proc: PipedProcess, workdir: str, log: _Log) -> None:
        self.proc = proc
        self.workdir = workdir
        self.log = log
        self.sandbox: tuple[str, ...] = ()
        self.stdin: asyncio.StreamWriter = proc.stdin
        self.stdout: asyncio.StreamReader = proc.stdout
        self.pump = asyncio.create_task(self._pump(proc.stderr))

    async def _pump(self, stderr: asyncio.StreamReader) -> None:
        # Always drain stderr, so a chatty transform never blocks on a full pipe.
        while chunk := await stderr.read(65536):
            self.log.append(chunk)

    def kill(self) -> None:
        """SIGKILL the worker and anything left in its session (it leads a new one)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self) -> None:
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5.0)
        self.stdin.close()
        await self.drain_log()
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def drain_log(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.pump), 1.0)
        except TimeoutError:
            self.pump.cancel()
        except Exception:
            pass


class TransformRunner:
    """Runs one pinned transform in a worker process, one batch at a time.

    ``start()`` launches the worker and loads the code (``TransformError`` if it does not
    load). ``run(batch)`` returns the checked ``(query, params)`` pairs or raises
    ``TransformFailed``; after a failure the worker is discarded and the next ``run`` starts
    a fresh one (raising ``TransformError`` if that no longer loads). ``stop()`` kills the
    worker and is idempotent; ``start()`` may be called again afterwards.

    ``batch_timeout`` (seconds) bounds each batch and the load; ``memory_limit_mb`` is the
    worker's address-space limit (0: none); ``max_result_bytes`` bounds one reply.

    ``transformation``: ``module.procedure`` when ``source`` is a Memgraph transformation
    module. ``metadata`` is True once a transform that reads messages with their metadata
    (a module, or a script with ``stream_messages``) is loaded: then give ``run`` and
    ``submit`` the Kafka messages themselves (objects with ``value()``, ``key()``, ``topic()``,
    ``partition()``, ``offset()``, ``timestamp()``, ``headers()``); bytes are values only.
    """

    def __init__(
        self,
        source: TransformSource,
        *,
        name: str,
        batch_timeout: float = 30.0,
        memory_limit_mb: int = 512,
        max_result_bytes: int = 64 * 1024 * 1024,
        transformation: str | None = None,
    ) -> None:
        self.source = source
        self.transformation = transformation
        self.metadata = transformation is not None
        self.name = name
        self.batch_timeout = batch_timeout
        self.memory_limit_mb = memory_limit_mb
        self.max_result_bytes = max_result_bytes
        self._worker: _Worker | None = None
        self._lock = asyncio.Lock()  # starting workers and sending requests
        self._rounds: list[Round] = []  # submitted, not collected yet, in order
        self._turns = asyncio.Event()
        self._stopped = False
        self._closing: set[asyncio.Task[None]] = set()
        self._display = _display_name(source.uri)

    # -- introspection --

    @property
    def pid(self) -> int | None:
        """The worker's process id, while one runs."""
        return self._worker.proc.pid if self._worker is not None else None

    @property
    def sandbox(self) -> tuple[str, ...]:
        """The isolation layers the current worker reported (empty before ``start``)."""
        return self._worker.sandbox if self._worker is not None else ()

    def log_tail(self) -> str:
        """What the current worker wrote to stdout/stderr lately (bounded)."""
        return self._worker.log.text() if self._worker is not None else ""

    # -- lifecycle --

    async def start(self) -> None:
        """Start the worker and load the transform, if not running yet."""
        async with self._lock:
            self._stopped = False
            if self._worker is None:
                await self._start_worker()

    async def stop(self) -> None:
        """Kill the worker (interrupting a batch in progress) and clean up. Idempotent."""
        self._stopped = True
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> TransformRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run_many(
        self, batches: list[list[bytes]]
    ) -> list[list[tuple[str, dict[str, Any]]] | TransformFailed]:
        """Transform several batches in one round trip, each with ``stream(batch)`` and its
        own time limit. Returns the result of each batch in order, up to and including the
        first that failed (a ``TransformFailed``; the batches after it were not run, and the
        worker is replaced). Raises ``TransformError`` if the worker had to be restarted and no
        longer loads, ``TransformFailed(STOPPED)`` if ``stop()`` interrupted it."""
        results: list[list[tuple[str, dict[str, Any]]] | TransformFailed] = []
        while len(results) < len(batches):
            rest = batches[len(results) :]
            got = await self.collect(await self.submit(rest))
            if got is None:
                continue  # its worker was replaced before it ran: again
            results += got
            failure = got[-1] if got else None
            if isinstance(failure, TransformFailed):
                if failure.unanswered <= 1 or failure.kind not in AMBIGUOUS:
                    break
                # Several batches had no reply yet: which one failed? The first, alone,
                # tells; the rest go on in a new round trip.
                results.pop()
                try:
                    results.append(await self.run(batches[len(results)]))
                except TransformFailed as alone:
                    if alone.kind is FailureKind.STOPPED:
                        raise
                    results.append(alone)
                    break
        return results

    async def submit(self, batches: list[list[Any]]) -> Round:
        """Send ``batches`` to the worker now; their replies are read by ``collect``, in the
        order the rounds were submitted. Two rounds in flight keep the worker busy while the
        caller reads the previous one. Raises ``TransformError`` (stopped, or the worker no
        longer loads)."""
        return await self._submit(batches, single=False)

    async def collect(
        self, batch_round: Round
    ) -> list[list[tuple[str, dict[str, Any]]] | TransformFailed] | None:
        """The results of a submitted round, as ``run_many`` gives them (a failure's
        ``unanswered`` says how many batches were waiting for their reply when it came: more
        than one after a timeout or a crash means the culprit is not known). None when the
        round was never run: an earlier round's failure replaced the worker it was sent to;
        submit its batches again. Rounds are read in the order they were submitted. Raises
        ``TransformFailed(STOPPED)`` if ``stop()`` interrupted it."""
        results: list[list[tuple[str, dict[str, Any]]] | TransformFailed] = []
        try:
            await self._turn(batch_round)
            if batch_round.stale:
                return None
            worker = batch_round.worker
            if batch_round.failure is not None:
                raise batch_round.failure
            while len(results) < len(batch_round.batches):
                reply = await self._receive(worker)
                if batch_round.single:
                    results.append(await self._result(reply))
                    continue
                checked, failure = await self._results(
                    reply, len(batch_round.batches) - len(results)
                )
                results += checked
                if failure is not None:
                    raise failure
        except asyncio.CancelledError:
            self._discard_soon(batch_round.worker)
            raise
        except TransformFailed as failure:
            failure.unanswered = len(batch_round.batches) - len(results)
            await self._discard(batch_round.worker)
            if failure.kind is FailureKind.STOPPED:
                raise
            results.append(failure)
        finally:
            self._done_with(batch_round)
        return results

    async def run(self, batch: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        """Transform one batch of message values. Raises ``TransformFailed`` (see
        ``FailureKind``) or, if the worker had to be restarted and no longer loads,
        ``TransformError``."""
        while True:
            results = await self.collect(await self._submit([batch], single=True))
            if results is None:
                continue
            (result,) = results
            if isinstance(result, TransformFailed):
                raise result
            return result

    async def _submit(self, batches: list[list[bytes]], *, single: bool) -> Round:
        async with self._lock:
            if self._stopped:
                raise TransformError(f"transform runner {self.name!r} is stopped")
            worker = self._worker
            if (
                worker is not None
                and worker.proc.returncode is not None
                and not any(r.worker is worker for r in self._rounds)
            ):
                await self._discard(worker)  # died while idle: not this batch's fault
                worker = None
            worker = worker or await self._start_worker()
            encode = (
                functools.partial(_encode_batch, batches[0], self.metadata)
                if single
                else functools.partial(_encode_batches, batches, self.metadata)
            )
            if _total_size(batches) > OFFLOAD_BYTES:
                frame = await asyncio.to_thread(encode)
            else:
                frame = encode()
            batch_round = Round(batches, worker, single)
            self._rounds.append(batch_round)
            # No drain: the worker reads a request when it is done with the one before, and
            # the caller must be free to read that one's replies meanwhile.
            try:
                worker.stdin.write(frame)
            except (ConnectionError, RuntimeError):
                batch_round.failure = await self._crash(worker)
            return batch_round

    async def _turn(self, batch_round: Round) -> None:
        """Wait until the rounds submitted before this one are collected."""
        while self._rounds and self._rounds[0] is not batch_round:
            if batch_round not in self._rounds:
                return
            self._turns.clear()
            await self._turns.wait()

    def _done_with(self, batch_round: Round) -> None:
        with contextlib.suppress(ValueError):
            self._rounds.remove(batch_round)
        self._turns.set()

    # -- internals --

    async def _start_worker(self) -> _Worker:
        _sweep_stale_workdirs()
        workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": workdir,
            "TMPDIR": workdir,
            "MALLOC_ARENA_MAX": "2",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        try:
            # Never fork() here: see proxy/spawn.py (the proxy once hung in uvloop's spawn).
            # No preexec_fn either: the worker limits itself before it runs any user code.
            proc = await spawn_piped(
                [sys.executable, "-I", "-B", str(WORKER_SCRIPT), str(os.getpid())],
                cwd=workdir,
                env=env,
                new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise TransformError(f"cannot start the transform worker: {exc}") from None
        worker = _Worker(proc, workdir, _Log())
        self._worker = worker  # from here on stop() can kill it, even while it loads
        request: dict[str, Any] = {
            "op": "load",
            "code": self.source.code,
            "filename": self.source.uri,
            "memory_limit_mb": self.memory_limit_mb,
        }
        if self.transformation is not None:
            module, _, procedure = self.transformation.rpartition(".")
            request.update({"transformation": procedure, "module": module, "mgp": _mgp_shim()})
        load = encode_frame(request)
        prefix = f"Couldn't load the transform script from {self.source.uri}"
        try:
            reply = await self._exchange(worker, load)
            if reply.get("ok") is True:
                self.metadata = reply.get("metadata") is True
                layers = reply.get("sandbox")
                if isinstance(layers, list):
                    worker.sandbox = tuple(str(layer)[:200] for layer in layers[:20])
                log.debug(
                    "transform %s: worker %d started (%s)",
                    self.name,
                    proc.pid,
                    ", ".join(worker.sandbox) or "no sandbox",
                )
                _warn_if_weak(worker.sandbox)
                return worker
            raise self._failure(reply)
        except TransformFailed as exc:
            await self._discard(worker)
            if exc.kind is FailureKind.STOPPED:
                raise TransformError(f"transform runner {self.name!r} was stopped") from None
            raise TransformError(f"{prefix}: {exc}") from None
        except BaseException:
            self._discard_soon(worker)
            raise

    async def _exchange(self, worker: _Worker, frame: bytes) -> dict[str, Any]:
        """Send one frame, read one reply, within ``batch_timeout``."""
        return await self._receive(worker, frame)

    async def _receive(self, worker: _Worker, frame: bytes | None = None) -> dict[str, Any]:
        """Read one reply (after sending ``frame``, if given), within ``batch_timeout``."""
        try:
            async with asyncio.timeout(self.batch_timeout):
                if frame is not None:
                    worker.stdin.write(frame)
                    await worker.stdin.drain()
                (size,) = HEADER.unpack(await worker.stdout.readexactly(HEADER.size))
                if size > self.max_result_bytes:
                    raise TransformFailed(
                        FailureKind.PROTOCOL,
                        f"transform result is too large: {size} bytes, limit "
                        f"{self.max_result_bytes}",
                    )
                data = await worker.stdout.readexactly(size)
        except TimeoutError:
            worker.kill()
            if self._stopped:
                raise self._stopped_error() from None
            raise TransformFailed(
                FailureKind.TIMEOUT, f"transform timed out after {self.batch_timeout:g} s"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            raise await self._crash(worker) from None
        try:
            if size > OFFLOAD_BYTES:
                reply = await asyncio.to_thread(decode_payload, data)
            else:
                reply = decode_payload(data)
        except ValueError as exc:
            raise TransformFailed(
                FailureKind.PROTOCOL, f"transform worker sent a malformed reply: {exc}"
            ) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise TransformFailed(
                FailureKind.PROTOCOL, "transform worker sent a reply without an ok flag"
            )
        return reply

    async def _crash(self, worker: _Worker) -> TransformFailed:
        """The worker's pipes closed: wait for its exit status and say what happened."""
        if self._stopped:
            return self._stopped_error()
        try:
            await asyncio.wait_for(worker.proc.wait(), 2.0)
        except TimeoutError:
            worker.kill()
        await worker.drain_log()
        code = worker.proc.returncode
        if code is None or (code == -signal.SIGKILL and self._stopped):
            reason = "transform worker closed its output"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            reason = f"transform worker was killed by {name}"
            if -code == signal.SIGKILL and self.memory_limit_mb:
                reason += " (out of memory?)"
        else:
            reason = f"transform worker exited with status {code}"
        text = worker.log.text()
        fatal = self._fatal_error(text)
        if fatal:
            reason += f" ({fatal})"
        elif tail := _tail(text):
            reason += f"; its last output: {tail}"
        return TransformFailed(FailureKind.CRASH, reason, details=text[-4000:])

    def _fatal_error(self, text: str) -> str:
        """From faulthandler's report: "Fatal Python error: Segmentation fault at t.py, line 3,
        in stream"."""
        start = text.rfind("Fatal Python error:")
        if start < 0:
            return ""
        report = text[start:]
        headline = report.splitlines()[0].removeprefix("Fatal Python error:").strip()
        headline = headline[:200]
        frame = re.search(rf'File "{re.escape(self.source.uri)}", line (\d+) in (\S+)', report)
        if frame:
            return f"{headline} at {self._display}, line {frame[1]}, in {frame[2]}"
        return headline

    async def _results(
        self, frame: dict[str, Any], waiting: int
    ) -> tuple[list[list[tuple[str, dict[str, Any]]]], TransformFailed | None]:
        """The results in a ``run_many`` frame, and the failure it reports, if any."""
        results = frame.get("results")
        failure = frame.get("failure")
        if (
            frame["ok"] is not True
            or not isinstance(results, list)
            or not (results or failure)
            or len(results) + bool(failure) > waiting
            or not (failure is None or (isinstance(failure, dict) and failure.get("ok") is False))
        ):
            raise TransformFailed(
                FailureKind.PROTOCOL, "transform worker sent a reply that does not fit the request"
            )
        try:
            texts = check_texts(frame.get("texts"))
            size = sum(len(items) if isinstance(items, list) else 0 for items in results)
            if size > 20000:
                checked = await asyncio.to_thread(
                    lambda: [check_compact(texts, items) for items in results]
                )
            else:
                checked = [check_compact(texts, items) for items in results]
        except OutputError as exc:
            raise TransformFailed(FailureKind.BAD_OUTPUT, str(exc)) from None
        return checked, None if failure is None else self._failure(failure)

    async def _result(self, reply: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if reply["ok"] is not True:
            raise self._failure(reply)
        try:
            if isinstance(reply.get("result"), list) and len(reply["result"]) > 2000:
                pairs = await asyncio.to_thread(check_result, reply.get("result"))
            else:
                pairs = check_result(reply.get("result"))
        except OutputError as exc:
            # The worker checked this already; a reply that fails here means it lied.
            raise TransformFailed(FailureKind.BAD_OUTPUT, str(exc)) from None
        return [(query, params) for query, params in pairs]

    def _failure(self, reply: dict[str, Any]) -> TransformFailed:
        kind = reply.get("kind")
        error = _text(reply, "error")
        where = _text(reply, "where")
        at = f" (at {self._display}, {where})" if where else ""
        details = _text(reply, "traceback", 8000)
        if kind == "exception":
            return TransformFailed(FailureKind.EXCEPTION, f"transform raised {error}{at}", details)
        if kind == "load":
            return TransformFailed(FailureKind.EXCEPTION, f"{error}{at}", details)
        if kind == "output":
            return TransformFailed(FailureKind.BAD_OUTPUT, error)
        if kind == "memory":
            limit = f" (limit {self.memory_limit_mb} MB)" if self.memory_limit_mb else ""
            return TransformFailed(
                FailureKind.OUT_OF_MEMORY, f"transform ran out of memory{limit}{at}"
            )
        return TransformFailed(
            FailureKind.PROTOCOL, f"transform worker sent an unknown failure kind {kind!r}"
        )

    def _stopped_error(self) -> TransformFailed:
        return TransformFailed(FailureKind.STOPPED, f"transform runner {self.name!r} was stopped")

    def _forget(self, worker: _Worker) -> None:
        """``worker`` is being replaced: rounds sent to it and not read will never be."""
        if self._worker is worker:
            self._worker = None
        for batch_round in self._rounds:
            if batch_round.worker is worker:
                batch_round.stale = True

    async def _discard(self, worker: _Worker) -> None:
        self._forget(worker)
        await worker.close()

    def _discard_soon(self, worker: _Worker) -> None:
        self._forget(worker)
        worker.kill()
        task = asyncio.get_running_loop().create_task(worker.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


_swept = False
_warned = False


def _warn_if_weak(layers: tuple[str, ...]) -> None:
    """Once per process: say so if the kernel could not give transforms a real sandbox."""
    global _warned
    text = " ".join(layers)
    if _warned or ("landlock" in text and "seccomp" in text):
        return
    _warned = True
    log.warning(
        "transform workers run without %s: a transform can read what the proxy's "
        "user can read%s; sandbox layers in force: %s",
        "Landlock" if "landlock" not in text else "seccomp",
        "" if "seccomp" in text else ", open sockets and start processes",
        ", ".join(layers) or "none",
    )


def _sweep_stale_workdirs() -> None:
    """Remove the working directories of workers whose proxy died without cleaning up (the
    directory names carry the proxy's pid). Once per process."""
    global _swept
    if _swept:
        return
    _swept = True
    base = Path(tempfile.gettempdir())
    for entry in base.glob(f"{WORKDIR_PREFIX}*-*"):
        pid_text = entry.name.removeprefix(WORKDIR_PREFIX).split("-", 1)[0]
        try:
            if not pid_text.isdigit() or entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _value(message: Any) -> bytes:
    """A message's value (b"" for a tombstone); ``message`` is bytes or a Kafka message."""
    if isinstance(message, bytes):
        return message
    value = message.value()
    return b"" if value is None else bytes(value)


def _size(message: Any) -> int:
    return len(message) if isinstance(message, bytes) else len(message.value() or b"")


def _total_size(batches: list[list[Any]]) -> int:
    """The bytes of the values of ``batches`` (each a list of values, or of messages)."""
    return sum(
        sum(map(len, batch)) if batch and type(batch[0]) is bytes else sum(map(_size, batch))
        for batch in batches
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _batch_meta(batch: list[Any], topics: dict[str, int]) -> dict[str, Any]:
    """A batch's metadata, by column (``transform_worker.with_metadata`` reads it): keys
    (base64, or None), topic numbers (into the request's ``topics``, numbered in ``topics``),
    partitions, offsets, timestamps (None when the broker gave none), the positions of
    tombstones (null values), and the headers of the messages that have any. Items that are
    bytes are values without metadata."""
    keys: list[str | None] = []
    numbers: list[int] = []
    partitions: list[int] = []
    offsets: list[int] = []
    stamps: list[int | None] = []
    nulls: list[int] = []
    headers: dict[str, list[list[Any]]] = {}
    for index, message in enumerate(batch):
        if isinstance(message, bytes):
            keys.append(None)
            numbers.append(topics.setdefault("", len(topics)))
            partitions.append(-1)
            offsets.append(-1)
            stamps.append(None)
            continue
        key = message.key()
        keys.append(None if key is None else base64.b64encode(key).decode("ascii"))
        topic = message.topic()
        number = topics.get(topic)
        if number is None:
            number = topics[topic] = len(topics)
        numbers.append(number)
        partitions.append(message.partition())
        offsets.append(message.offset())
        kind, stamp = message.timestamp()
        stamps.append(stamp if kind else None)  # TIMESTAMP_NOT_AVAILABLE is 0
        if message.value() is None:
            nulls.append(index)
        found = message.headers()
        if found:
            headers[str(index)] = [[str(name), _b64(value)] for name, value in found]
    return {
        "k": keys,
        "t": numbers,
        "p": partitions,
        "o": offsets,
        "ts": stamps,
        "n": nulls,
        "h": headers,
    }


def _encode_batches(batches: list[list[Any]], metadata: bool = False) -> bytes:
    """A ``run_many`` request: the sizes as JSON, then the bytes as they are (no base64)."""
    values = [
        batch if batch and type(batch[0]) is bytes else [_value(message) for message in batch]
        for batch in batches
    ]
    request: dict[str, Any] = {
        "op": "run_many",
        "sizes": [list(map(len, batch)) for batch in values],
    }
    if metadata:
        topics: dict[str, int] = {}
        request["meta"] = [_batch_meta(batch, topics) for batch in batches]
        request["topics"] = list(topics)
    data = b"".join(value for batch in values for value in batch)
    return encode_frame(request) + HEADER.pack(len(data)) + data


def _encode_batch(batch: list[Any], metadata: bool = False) -> bytes:
    request: dict[str, Any] = {
        "op": "run",
        "batch": [base64.b64encode(_value(message)).decode("ascii") for message in batch],
    }
    if metadata:
        topics: dict[str, int] = {}
        request["meta"] = _batch_meta(batch, topics)
        request["topics"] = list(topics)
    return encode_frame(request)


@functools.cache
def _mgp_shim() -> str:
    return MGP_SHIM.read_text(encoding="utf-8")


def _text(reply: dict[str, Any], key: str, limit: int = 2000) -> str:
    value = reply.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _tail(text: str, lines: int = 3, limit: int = 500) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined if len(joined) <= limit else "..." + joined[-limit:]


def _display_name(uri: str) -> str:
    """The script's file name for one-line messages: ``http://h/a/t.py`` -> ``t.py``."""
    path = urlsplit(uri).path if "://" in uri else uri
    return PurePosixPath(unquote(path)).name or uri


async def check_transform(
    source: TransformSource,
    *,
    timeout: float = 30.0,
    memory_limit_mb: int = 512,
    transformation: str | None = None,
) -> None:
    """Load ``source`` in a throwaway worker (what CREATE STREAM verifies), then stop it.
    Raises ``TransformError`` with the reason if it does not load."""
    runner = TransformRunner(
        source,
        name="check",
        batch_timeout=timeout,
        memory_limit_mb=memory_limit_mb,
        transformation=transformation,
    )
    try:
        await runner.start()
    finally:
        await runner.stop()

"""The transform worker: one user transform, in a process of its own.

The proxy starts this file as ``python -I transform_worker.py PARENT_PID`` (see
``transform.TransformRunner``) and talks to it over the worker's stdin and stdout, with
*frames*: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. The exchange is
strictly one request, one reply:

    proxy -> {"op": "load", "code": ..., "filename": ..., "memory_limit_mb": N
              [, "transformation": procedure, "module": name, "mgp": shim source]}
    worker <- {"ok": true, "sandbox": [...], "metadata": bool}  or  {"ok": false, ...}
    proxy -> {"op": "run", "batch": [base64, ...] [, "topics": [...], "meta": {...}]}
    worker <- {"ok": true, "result": [[query, params], ...]}  or  {"ok": false, ...}
    proxy -> {"op": "run_many", "sizes": [[size, ...], ...]}, then one more frame holding the
             messages' bytes one after another (batch by batch, each message ``size`` long)
    worker <- {"ok": true, "texts": [query, ...], "results": [[[text index, params], ...],
              ...], "failure": {"ok": false, ...}}, as often as needed, in order: the results
              of the next batches (each a list of items naming its query text by its index in
              the frame's ``texts``), and ``failure`` for the batch after them if it failed;
              after a failure the worker runs no further batch of the request (the proxy
              replaces it, as after any failure)

With ``metadata`` (a Memgraph transformation module, loaded with the ``mgp`` shim the proxy
sends, or a legacy script that defines ``stream_messages(messages)``), requests also carry
``topics`` and ``meta``: each batch's metadata by column (``with_metadata``); the sizes of a
``run_many`` count a tombstone as 0.

``run_many`` is how a stream that is behind gets several batches transformed in one round
trip, each still its own ``stream(batch)`` call. The worker sends the replies it has every
``REPLY_EVERY`` seconds (and at the end, or at a failure), so a batch that hangs is seen to hang
within the time limit while a run of quick batches costs few frames. A frame names each
distinct query text once (``texts``): batches mostly share a few texts, and sending them once
per message was most of the reply's size and decoding time.

Failure kinds are ``load`` (import failed or no ``stream``), ``exception`` (``stream`` raised),
``output`` (``stream`` returned something outside the contract) and ``memory``.

Why JSON and not pickle: this process runs untrusted code, and unpickling its replies would
hand that code the proxy. JSON carries exactly the contract's types. Python's ``json`` writes
NaN and +-Infinity as the bare words ``NaN``/``Infinity`` and reads them back, so floats
round-trip exactly, non-finite ones included; both ends are this file's code, so the
non-standard words never leave the pipe.

The user's ``print`` must not corrupt the channel: the worker keeps private duplicates of the
protocol pipes, points file descriptor 1 at stderr and 0 at /dev/null, so whatever the
transform writes to "stdout" (from Python or C) lands in stderr, which the proxy keeps as a
bounded log.

Before running any user code the worker limits itself (``sandbox``): address space, open
files, file size, no core dumps, dies with its parent (``PR_SET_PDEATHSIG``), no new
privileges, no capabilities, and, where the kernel has them, Landlock (read-only access to the
Python installation, read-write to its own empty working directory, no TCP, no signals out of
the sandbox) and a seccomp filter (no new processes, no exec, no sockets, no ptrace). Each
layer is best effort; the ``load`` reply lists the layers in force.

This module imports only the standard library and orjson (see ``_dumps``), so the proxy imports
it too for the frame and validation helpers: the proxy re-checks every reply with the same
``check_result``, because the worker cannot be trusted to have done it.
"""

from __future__ import annotations

import base64
import contextlib
import faulthandler
import gc
import json
import linecache
import os
import struct
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

import orjson

# -- frames ---------------------------------------------------------------------------------

HEADER = struct.Struct(">I")
MAX_FRAME = 0xFFFF_FFFF


def encode_frame(message: Any) -> bytes:
    """One frame: length prefix + compact UTF-8 JSON (NaN/Infinity allowed, see above)."""
    return _framed(_dumps(message))


def _framed(data: bytes) -> bytes:
    if len(data) > MAX_FRAME:
        raise ValueError(f"frame of {len(data)} bytes is too large")
    return HEADER.pack(len(data)) + data


def _dumps(message: Any) -> bytes:
    # orjson is 20x faster than json here (most of a worker's time went into json.dumps), but
    # it writes NaN and infinities as null and refuses what json takes (ints past 64 bits,
    # non-str keys): a frame with no null in it had no non-finite float, and anything else
    # takes the json path, so the bytes always decode to the value json would give.
    try:
        data = orjson.dumps(message)
    except TypeError:
        data = b"null"
    if b"null" not in data:
        return data
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_payload(data: bytes) -> Any:
    """The JSON value of one frame's payload. Raises ``ValueError`` on anything malformed."""
    # orjson reads an integer past 64 bits as a float (json as an int): only a forged reply
    # has one (the worker refuses them before sending), and a float is a value the proxy can
    # write, so the checks that follow still hold; scanning for long numbers first cost half
    # of what orjson saves.
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # NaN/Infinity, lone surrogates or malformed: json decides
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


# -- the output contract --------------------------------------------------------------------

ALLOWED_TYPES = "none, bool, int, float, str, list, dict"
MAX_DEPTH = 100  # nesting of lists/dicts inside one parameter; also stops reference cycles
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # Bolt integers are 64-bit


class OutputError(ValueError):
    """``stream`` returned something outside ``[(str, {str: value})]``; says which item."""


def _type_name(value: object) -> str:
    return type(value).__name__


def _short_repr(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_text(text: str) -> bool:
    """True if ``text`` cannot be encoded as UTF-8 (a lone surrogate)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_result(result: object) -> list[Any]:
    """Check a transform's return value against the contract and return it (JSON-ready:
    tuples encode as arrays). Raises ``OutputError`` naming the first offending item (items
    count from 0) and, inside it, the parameter path (``parameter 'a'[1]['b']``).

    The pair itself may be a tuple or a list; everything inside the parameters must be None,
    bool, int (64-bit), float, str, list or dict with str keys.
    """
    if not isinstance(result, list):
        raise OutputError(
            f"transform result has type {_type_name(result)}, "
            "must be a list of (query, parameters) pairs"
        )
    for index, item in enumerate(result):
        if not isinstance(item, tuple | list) or len(item) != 2:
            where = f"transform result item {index}"
            if isinstance(item, tuple | list):
                raise OutputError(
                    f"{where} has {len(item)} elements, must be a (query, parameters) pair"
                )
            raise OutputError(
                f"{where} has type {_type_name(item)}, must be a (query, parameters) pair"
            )
        query, params = item
        if not isinstance(query, str) or (not query.isascii() and _bad_text(query)):
            where = f"transform result item {index}"
            if isinstance(query, str):
                raise OutputError(f"{where}: query is not valid Unicode (lone surrogate)")
            raise OutputError(f"{where}: query has type {_type_name(query)}, must be str")
        if not isinstance(params, dict):
            raise OutputError(
                f"transform result item {index}: parameters have type "
                f"{_type_name(params)}, must be dict"
            )
        for key, value in params.items():
            if type(key) is not str or not key.isascii():
                _check_name(key, index)
            kind = type(value)
            if kind in _PLAIN or (kind is str and value.isascii()):
                continue  # the common case, kept inline
            try:
                _check_value(value, 0)
            except _Bad as bad:
                path = "".join(reversed(bad.path))
                raise OutputError(
                    f"transform result item {index}: parameter "
                    f"{_short_repr(key)}{path} {bad.problem}"
                ) from None
    return result


def check_texts(texts: object) -> list[str]:
    """A ``run_many`` frame's texts, checked."""
    if not isinstance(texts, list):
        raise OutputError("transform reply has no texts list")
    for number, text in enumerate(texts):
        if not isinstance(text, str) or (not text.isascii() and _bad_text(text)):
            raise OutputError(f"transform reply text {number} is not a valid str")
    return texts


def check_compact(texts: list[str], items: object) -> list[tuple[str, dict[str, Any]]]:
    """A batch's result in a ``run_many`` frame (``texts`` checked by ``check_texts``),
    checked like ``check_result`` (the same messages) and expanded to (query, parameters)
    pairs."""
    if not isinstance(items, list):
        raise OutputError("transform reply has no items list")
    count = len(texts)
    pairs: list[tuple[str, dict[str, Any]]] = []
    append = pairs.append
    for index, item in enumerate(items):
        if type(item) is not list or len(item) != 2:
            raise OutputError(f"transform result item {index} must be a (query, parameters) pair")
        number, params = item
        if type(number) is not int or not 0 <= number < count:
            raise OutputError(f"transform result item {index} names no query text")
        if type(params) is not dict:
            raise OutputError(
                f"transform result item {index}: parameters have type "
                f"{_type_name(params)}, must be dict"
            )
        for key, value in params.items():
            if not key.isascii():
                _check_name(key, index)
            kind = type(value)
            if kind is str:
                if value.isascii():
                    continue
            elif kind in _PLAIN or (kind is int and INT64_MIN <= value <= INT64_MAX):
                continue
            try:
                _check_value(value, 0)
            except _Bad as bad:
                path = "".join(reversed(bad.path))
                raise OutputError(
                    f"transform result item {index}: parameter "
                    f"{_short_repr(key)}{path} {bad.problem}"
                ) from None
        append((texts[number], params))
    return pairs


def compact_result(result: list[Any], texts: dict[str, int]) -> list[list[Any]]:
    """A checked result as items of a ``run_many`` frame, its query texts numbered in
    ``texts`` (shared by the frame)."""
    items: list[list[Any]] = []
    for query, params in result:
        number = texts.get(query)
        if number is None:
            number = texts[query] = len(texts)
        items.append([number, params])
    return items


_PLAIN = frozenset({type(None), bool, float})


class _Bad(Exception):
    """A bad value deep inside a parameter; callers add their path step on the way out, so
    the happy path never builds a path string."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str] = []


def _check_name(key: object, index: int) -> None:
    where = f"transform result item {index}"
    if not isinstance(key, str):
        raise OutputError(
            f"{where}: parameter name {_short_repr(key)} has type {_type_name(key)}, must be str"
        )
    if _bad_text(key):
        raise OutputError(
            f"{where}: parameter name {_short_repr(key)} is not valid Unicode (lone surrogate)"
        )


def _check_value(value: object, depth: int) -> None:
    kind = type(value)
    if kind in _PLAIN:
        return
    if isinstance(value, str):
        if _bad_text(value):
            raise _Bad("is a str that is not valid Unicode (lone surrogate)")
        return
    if isinstance(value, bool | float):  # subclasses
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Bad("is an int outside the 64-bit range")
        return
    if depth >= MAX_DEPTH and isinstance(value, list | dict):
        raise _Bad(f"is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
    if isinstance(value, list):
        for position, element in enumerate(value):
            try:
                _check_value(element, depth + 1)
            except _Bad as bad:
                bad.path.append(f"[{position}]")
                raise
        return
    if isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str):
                raise _Bad(
                    f"has a key {_short_repr(key)} of type {_type_name(key)}, keys must be str"
                )
            if _bad_text(key):
                raise _Bad("has a key that is not valid Unicode (lone surrogate)")
            try:
                _check_value(element, depth + 1)
            except _Bad as bad:
                bad.path.append(f"[{_short_repr(key)}]")
                raise
        return
    raise _Bad(f"has type {_type_name(value)}, allowed: {ALLOWED_TYPES}")


# -- describing the user's exceptions -------------------------------------------------------

MAX_TEXT = 2000  # longest exception text we send back
MAX_TRACEBACK = 8000


def describe_exception(exc: BaseException, filename: str) -> dict[str, str]:
    """``error``: "Type: message"; ``where``: the innermost traceback line in the transform's
    own file ("line 5, in stream: int(x)"), or ""; ``traceback``: the whole thing, bounded."""
    try:
        error = traceback.format_exception_only(exc)[-1].strip()
    except Exception:  # a hostile __str__ can raise anything
        error = _type_name(exc)
    where = ""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [frame for frame in frames if frame.filename == filename]
        if isinstance(exc, SyntaxError) and exc.filename == filename and exc.lineno:
            where = f"line {exc.lineno}"
        elif own:
            frame = own[-1]
            where = f"line {frame.lineno}, in {frame.name}"
            if frame.line:
                where += f": {frame.line.strip()}"
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = error
    if len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-MAX_TRACEBACK:]
    return {"error": error[:MAX_TEXT], "where": where[:MAX_TEXT], "traceback": text}


# -- the sandbox ----------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

FILE_SIZE_LIMIT = 64 * 1024 * 1024
OPEN_FILES_LIMIT = 256


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the proxy dies; exit at once if it already has."""
    import ctypes
    import signal

    libc = _libc()
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        print(f"transform worker: PR_SET_PDEATHSIG failed: {os.strerror(errno)}", file=sys.stderr)
    # The parent may have died between fork and prctl: then nobody would ever kill us.
    if parent and os.getppid() != parent:
        os._exit(70)


def _limits(memory_limit_mb: int) -> list[str]:
    import resource

    applied: list[str] = []

    def cap(which: int, value: int, label: str) -> None:
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY and hard < value:
                value = hard
            resource.setrlimit(which, (value, value))
            applied.append(label)
        except (ValueError, OSError) as exc:
            print(f"transform worker: {label} limit not set: {exc}", file=sys.stderr)

    if memory_limit_mb > 0:
        cap(resource.RLIMIT_AS, memory_limit_mb * 1024 * 1024, f"memory {memory_limit_mb} MB")
    cap(resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT, f"{OPEN_FILES_LIMIT} open files")
    cap(resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT, "file size 64 MB")
    cap(resource.RLIMIT_CORE, 0, "no core dumps")
    return applied


def _drop_capabilities(libc: Any) -> bool:
    """Root (or a process with file capabilities) keeps its uid but loses every capability."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2: all zero
    return int(libc.capset(header, data)) == 0


# Landlock (linux/landlock.h). Syscall numbers >= 424 are the same on every architecture.
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LL_EXECUTE, _LL_WRITE_FILE, _LL_READ_FILE, _LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_LL_REMOVE_DIR, _LL_REMOVE_FILE, _LL_MAKE_DIR, _LL_MAKE_REG = 1 << 4, 1 << 5, 1 << 7, 1 << 8
_LL_MAKE_SYM, _LL_REFER, _LL_TRUNCATE = 1 << 12, 1 << 13, 1 << 14
_LL_FILE_RIGHTS = _LL_EXECUTE | _LL_WRITE_FILE | _LL_READ_FILE | _LL_TRUNCATE | (1 << 15)


def _landlock(libc: Any, workdir: str) -> str | None:
    """Confine the file system to reads of the Python installation and its libraries and
    read-write in ``workdir``; with ABI >= 4 no TCP bind/connect; with ABI >= 6 no signals or
    abstract unix sockets beyond the sandbox. Returns a label, or None if unavailable."""
    import ctypes

    abi = int(
        libc.syscall(
            ctypes.c_long(_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0), ctypes.c_long(1)
        )
    )
    if abi < 1:
        return None
    handled_fs = (1 << 13) - 1
    if abi >= 2:
        handled_fs |= _LL_REFER
    if abi >= 3:
        handled_fs |= _LL_TRUNCATE
    if abi >= 5:
        handled_fs |= 1 << 15  # IOCTL_DEV
    handled_net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, with no port allowed
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    attr = ctypes.create_string_buffer(struct.pack("=QQQ", handled_fs, handled_net, scoped)[:size])
    ruleset = int(
        libc.syscall(
            ctypes.c_long(_LANDLOCK_CREATE_RULESET), attr, ctypes.c_long(size), ctypes.c_long(0)
        )
    )
    if ruleset < 0:
        return None
    read = _LL_READ_FILE | _LL_READ_DIR
    write = (
        read
        | _LL_WRITE_FILE
        | _LL_REMOVE_DIR
        | _LL_REMOVE_FILE
        | _LL_MAKE_DIR
        | _LL_MAKE_REG
        | _LL_MAKE_SYM
        | (_LL_REFER | _LL_TRUNCATE) & handled_fs
    )
    prefixes = {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
        if p
    }
    # sys.path entries only where packages live: a legacy editable install's .pth can put a
    # project root (and a data directory inside it) on sys.path.
    packages = {
        os.path.realpath(p)
        for p in sys.path
        if p
        and (
            os.path.basename(p) in ("site-packages", "dist-packages")
            or any(os.path.realpath(p).startswith(prefix + os.sep) for prefix in prefixes)
        )
    }
    paths: dict[str, int] = {}
    for entry in [
        *prefixes,
        *packages,
        "/usr",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/dev/urandom",
        "/proc/self",
        "/sys/devices/system/cpu",
    ]:
        paths[os.path.realpath(entry)] = read
    paths["/dev/null"] = _LL_READ_FILE | _LL_WRITE_FILE
    paths[os.path.realpath(workdir)] = write
    try:
        for path, access in paths.items():
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    access &= _LL_FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access & handled_fs, fd))
                libc.syscall(
                    ctypes.c_long(_LANDLOCK_ADD_RULE),
                    ctypes.c_long(ruleset),
                    ctypes.c_long(1),
                    rule,
                    ctypes.c_long(0),
                )  # PATH_BENEATH
            finally:
                os.close(fd)
        if (
            int(
                libc.syscall(
                    ctypes.c_long(_LANDLOCK_RESTRICT_SELF), ctypes.c_long(ruleset), ctypes.c_long(0)
                )
            )
            != 0
        ):
            return None
    finally:
        os.close(ruleset)
    extras = (["no tcp"] if handled_net else []) + (["signals scoped"] if scoped else [])
    return ", ".join([f"landlock abi {abi}", *extras])


# seccomp: syscalls denied with EPERM (ENOSYS for clone3, so libc falls back to clone, whose
# flags we can see: threads are allowed, new processes are not).
_SECCOMP_ARCH: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41,
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "pidfd_open": 434,
            "pidfd_getfd": 438,
            "pidfd_send_signal": 424,
            "unshare": 272,
            "setns": 308,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 321,
            "userfaultfd": 323,
            "perf_event_open": 298,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "tkill": 200,
            "clone": 56,
            "clone3": 435,
            "kill": 62,
            "tgkill": 234,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "socket": 198,
            "execve": 221,
            "execveat": 281,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "pidfd_open": 434,
            "pidfd_getfd": 438,
            "pidfd_send_signal": 424,
            "unshare": 97,
            "setns": 268,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 280,
            "userfaultfd": 282,
            "perf_event_open": 241,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "tkill": 130,
            "clone": 220,
            "clone3": 435,
            "kill": 129,
            "tgkill": 131,
        },
    ),
}


def seccomp_program(arch: str, own_pid: int) -> list[tuple[int, int, int, int]] | None:
    """The classic-BPF filter as (code, jt, jf, k) tuples, or None for an unknown machine."""
    if arch not in _SECCOMP_ARCH:
        return None
    audit_arch, numbers = _SECCOMP_ARCH[arch]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    kill_process = 0x80000000
    arg0 = 16  # offsetof(struct seccomp_data, args[0]), low 32 bits on little-endian
    program = [
        (ld, 0, 0, 4),
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, kill_process),
        (ld, 0, 0, 0),
    ]
    if arch == "x86_64":  # the x32 ABI shares the arch value; its numbers have bit 30 set
        program += [(jge, 0, 1, 0x40000000), (ret, 0, 0, eperm)]
    special = {"clone", "clone3", "kill", "tgkill"}
    for name, number in numbers.items():
        if name not in special:
            program += [(jeq, 0, 1, number), (ret, 0, 0, eperm)]
    program += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, enosys)]
    # clone: allowed only with CLONE_THREAD (a thread, not a process).
    program += [
        (jeq, 0, 4, numbers["clone"]),
        (ld, 0, 0, arg0),
        (jset, 0, 1, 0x00010000),
        (ret, 0, 0, allow),
        (ret, 0, 0, eperm),
    ]
    # kill(pid, sig): only ourselves (pid 0 is our own process group: we lead a new session).
    program += [
        (jeq, 0, 5, numbers["kill"]),
        (ld, 0, 0, arg0),
        (jeq, 2, 0, own_pid),
        (jeq, 1, 0, 0),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]
    # tgkill(tgid, tid, sig): only threads of this process.
    program += [
        (jeq, 0, 3, numbers["tgkill"]),
        (ld, 0, 0, arg0),
        (jeq, 1, 0, own_pid),
        (ret, 0, 0, eperm),
    ]
    program += [(ret, 0, 0, allow)]
    return program


def _seccomp(libc: Any) -> bool:
    import ctypes

    # The filter kills any syscall made under another ABI (an x86_64 process can make i386
    # calls with int 0x80); so a 32-bit interpreter on a 64-bit kernel gets no filter at all.
    machine = os.uname().machine if struct.calcsize("P") == 8 else "32-bit"
    program = seccomp_program(machine, os.getpid())
    if program is None:
        return False
    raw = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    filters = ctypes.create_string_buffer(raw)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}: native layout.
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(program), ctypes.addressof(filters)))
    return int(libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), fprog, 0, 0)) == 0


def sandbox(memory_limit_mb: int, workdir: str) -> list[str]:
    """Apply every layer we can; return the labels of those in force."""
    import ctypes

    layers = _limits(memory_limit_mb)
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0) == 0:
        layers.append("no new privileges")
    if _drop_capabilities(libc):
        layers.append("no capabilities")
    landlock = _landlock(libc, workdir)
    if landlock:
        layers.append(landlock)
    if _seccomp(libc):
        layers.append("seccomp: no processes, exec, sockets or ptrace")
    else:
        # Without seccomp, fall back to RLIMIT_NPROC=0, which stops threads as well and does
        # not bind root.
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
            layers.append("no new processes (RLIMIT_NPROC)")
        except (ValueError, OSError):
            pass
    return layers


# -- the worker's main loop -----------------------------------------------------------------


class Channel:
    """Blocking frame I/O on the two private protocol descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def _read_exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            chunk = os.read(self.read_fd, min(remaining, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def receive_raw(self) -> bytes:
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size))
        return self._read_exactly(size)

    def receive(self) -> Any:
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size))
        return decode_payload(self._read_exactly(size))

    def send_raw(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            written = os.write(self.write_fd, view)
            view = view[written:]

    def send(self, message: Any) -> None:
        self.send_raw(encode_frame(message))


def _take_protocol_fds() -> Channel:
    """Keep private (non-inheritable) copies of stdin/stdout for the protocol, then make fd 0
    /dev/null and fd 1 a copy of stderr: a transform that prints cannot break a frame."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # sys.stdout still wraps fd 1, which is now stderr; flush it per line so a crash loses
    # nothing the transform printed.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, errors="backslashreplace")
    return Channel(read_fd, write_fd)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class KafkaMessage:
    """One message as ``stream_messages(messages)`` receives it: ``value`` is None for a
    tombstone (a null value), b"" for an empty one; ``timestamp`` is milliseconds since the
    epoch, or None when the broker gave none; ``headers`` in order, each value bytes or None."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, data: dict[str, Any]) -> None:
        self.value: bytes | None = data["value"]
        self.key: bytes | None = data["key"]
        self.topic: str = data["topic"]
        self.partition: int = data["partition"]
        self.offset: int = data["offset"]
        self.timestamp: int | None = data["timestamp"]
        self.headers: list[tuple[str, bytes | None]] = data["headers"]

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def __repr__(self) -> str:
        return (
            f"KafkaMessage(topic={self.topic!r}, partition={self.partition}, "
            f"offset={self.offset}, key={self.key!r}, value={self.value!r})"
        )


def with_metadata(
    values: list[bytes], meta: dict[str, Any], topics: list[str]
) -> list[dict[str, Any]]:
    """A batch's messages as dicts (``mgp_shim.run_transformation``'s input): the values with
    the batch's metadata columns as ``transform._batch_meta`` sends them."""
    decode = base64.b64decode
    keys = [None if key is None else decode(key) for key in meta["k"]]
    messages = [
        {
            "value": value,
            "key": key,
            "topic": topics[number],
            "partition": partition,
            "offset": offset,
            "timestamp": stamp,
            "headers": [],
        }
        for value, key, number, partition, offset, stamp in zip(
            values, keys, meta["t"], meta["p"], meta["o"], meta["ts"], strict=True
        )
    ]
    for index in meta["n"]:
        messages[index]["value"] = None
    for index, found in meta["h"].items():
        messages[int(index)]["headers"] = [
            (str(name), None if data is None else decode(data)) for name, data in found
        ]
    return messages


def _load(message: dict[str, Any], channel: Channel) -> tuple[Callable[[Any], Any], bool] | None:
    """Load the transform; returns what to call with a batch, and whether it takes messages
    with their metadata (dicts, see ``with_metadata``) rather than values."""
    code, filename = str(message["code"]), str(message["filename"])
    procedure = message.get("transformation")
    layers = sandbox(int(message.get("memory_limit_mb", 0)), os.getcwd())
    shim: Any = None
    if isinstance(procedure, str):
        # A Memgraph transformation module: it imports mgp, which is this worker's shim.
        shim = types.ModuleType("mgp")
        shim_name = "mgp.py"
        linecache.cache[shim_name] = (
            len(message["mgp"]),
            None,
            str(message["mgp"]).splitlines(True),
            shim_name,
        )
        exec(compile(str(message["mgp"]), shim_name, "exec", dont_inherit=True), shim.__dict__)
        sys.modules["mgp"] = shim
    # The source never touches the disk; linecache serves it to tracebacks.
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    name = str(message.get("module") or "__transform__")
    if name in sys.modules:  # a module named like one the worker holds (json.py): never shadow
        name = "__transform__"
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    try:
        exec(compile(code, filename, "exec", dont_inherit=True), module.__dict__)
    except MemoryError:
        channel.send({"ok": False, "kind": "memory", "error": "MemoryError", "where": ""})
        return None
    except BaseException as exc:
        channel.send({"ok": False, "kind": "load", **describe_exception(exc, filename)})
        return None
    finally:
        _flush()
    entry: Callable[[Any], Any]
    metadata = True
    if shim is not None:
        try:
            func = shim.find_transformation(module, procedure)
        except LookupError as exc:
            channel.send(
                {"ok": False, "kind": "load", "where": "", "traceback": "", "error": str(exc)}
            )
            return None

        def entry(batch: list[dict[str, Any]]) -> Any:
            return shim.run_transformation(func, batch)

    elif callable(module.__dict__.get("stream_messages")):
        # Opt-in metadata for a legacy script: stream_messages(messages) wins over stream.
        stream_messages = module.__dict__["stream_messages"]

        def entry(batch: list[dict[str, Any]]) -> Any:
            return stream_messages([KafkaMessage(m) for m in batch])

    else:
        metadata = False
        stream = module.__dict__.get("stream")
        if not callable(stream):
            found = "" if stream is None else f" (stream is a {_type_name(stream)})"
            channel.send(
                {
                    "ok": False,
                    "kind": "load",
                    "where": "",
                    "traceback": "",
                    "error": "the script defines no stream(batch) or "
                    f"stream_messages(messages) function{found}",
                }
            )
            return None
        entry = stream
    channel.send({"ok": True, "sandbox": layers, "metadata": metadata})
    return entry, metadata


def _run(stream: Callable[[Any], Any], batch: Any, filename: str) -> tuple[bytes, bool]:
    """One batch -> (reply frame, whether this worker must exit), never raising for anything
    the transform does."""
    reply, fatal = _reply(stream, batch, filename)
    return encode_frame(reply), fatal


def _reply(
    stream: Callable[[Any], Any],
    batch: Any,
    filename: str,
    *,
    texts: dict[str, int] | None = None,
) -> tuple[dict[str, Any], bool]:
    """One batch -> (its reply, whether this worker must exit). With ``texts``, a success is
    ``{"ok": true, "items": ...}`` naming texts in it (``compact_result``)."""
    try:
        result = check_result(stream(batch))
        if texts is not None:
            return {"ok": True, "items": compact_result(result, texts)}, False
        return {"ok": True, "result": result}, False
    except OutputError as exc:
        return {"ok": False, "kind": "output", "error": str(exc)}, False
    except MemoryError as exc:
        where = describe_exception(exc, filename)["where"]
        # The heap may be in any state now: the proxy starts a fresh worker.
        return {"ok": False, "kind": "memory", "error": "MemoryError", "where": where}, True
    except BaseException as exc:
        return {"ok": False, "kind": "exception", **describe_exception(exc, filename)}, False
    finally:
        _flush()


REPLY_EVERY = 0.05  # seconds: how long finished replies of a run_many may wait to be sent


def split_batches(sizes: Any, data: bytes) -> list[list[bytes]]:
    """A ``run_many`` request's batches: the messages cut out of ``data`` by ``sizes``."""
    batches: list[list[bytes]] = []
    position = 0
    for batch_sizes in sizes:
        batch = []
        for size in batch_sizes:
            batch.append(data[position : position + size])
            position += size
        batches.append(batch)
    if position != len(data):
        raise ValueError("the message sizes do not add up to the data")
    return batches


def _run_many(
    stream: Callable[[Any], Any],
    batches: list[Any],
    filename: str,
    channel: Channel,
) -> bool:
    """Run each batch; send the replies in frames (see the module docstring). False when the
    worker must exit."""
    texts: dict[str, int] = {}
    results: list[list[list[Any]]] = []
    sent = time.monotonic()
    for batch in batches:
        reply, fatal = _reply(stream, batch, filename, texts=texts)
        if reply["ok"]:
            results.append(reply["items"])
        now = time.monotonic()
        if not reply["ok"] or fatal or now - sent >= REPLY_EVERY:
            frame: dict[str, Any] = {"ok": True, "texts": list(texts), "results": results}
            if not reply["ok"]:
                frame["failure"] = reply
            channel.send(frame)
            texts, results, sent = {}, [], now
        if fatal:
            return False
        if not reply["ok"]:
            break  # a failed batch ends the request (the proxy starts a new worker)
    if results:
        channel.send({"ok": True, "texts": list(texts), "results": results})
    return True


# The cyclic collector's thresholds, here and in the proxy (``proxy.app``): a young collection
# every 50,000 allocations of tracked objects (CPython's default: 700). A stream allocates a
# few dicts and lists per message (parameters, rows, outcomes), most of them alive until their
# batch is written: with the defaults the collector ran every few dozen messages and walked
# the batches in flight again and again, a quarter of the proxy's CPU per message
# (bench/ingest.py's manual stream, BATCH_SIZE 10: 16 -> 12 us/msg). Garbage cycles are found
# as before, later; memory for the young objects between collections is a few MB at most.
GC_THRESHOLDS = (50_000, 20, 10)


def collect_rarely() -> None:
    """Hide what exists now from the cyclic collector (it lives as long as the process: every
    full collection would walk it with everything else stopped) and make collections rarer
    (``GC_THRESHOLDS``). Frozen objects are still freed by reference counting; garbage cycles
    among them, made before this point, would not be, so collect first."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str]) -> int:
    parent = int(argv[1]) if len(argv) > 1 else 0
    die_with_parent(parent)
    channel = _take_protocol_fds()
    faulthandler.enable(file=sys.stderr)  # a segfault prints the Python stack to the log
    try:
        load = channel.receive()
    except EOFError:
        return 0
    loaded = _load(load, channel)
    if loaded is None:
        return 1
    stream, metadata = loaded
    filename = str(load["filename"])
    collect_rarely()  # what the transform loaded lives as long as the worker
    while True:
        try:
            request = channel.receive()
        except EOFError:
            return 0
        if request.get("op") == "run_many":
            try:
                batches: list[Any] = split_batches(request["sizes"], channel.receive_raw())
            except EOFError:
                return 0
            if metadata:
                batches = [
                    with_metadata(batch, meta, request["topics"])
                    for batch, meta in zip(batches, request["meta"], strict=True)
                ]
            if not _run_many(stream, batches, filename, channel):
                return 3
            continue
        batch: Any = [base64.b64decode(item) for item in request["batch"]]
        if metadata:
            batch = with_metadata(batch, request["meta"], request["topics"])
        reply, fatal = _run(stream, batch, filename)
        channel.send_raw(reply)
        if fatal:
            return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The transform loader and sandbox, against real worker processes."""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proxy.streams.transform as transform_module
from proxy.streams.transform import (
    FailureKind,
    TransformError,
    TransformFailed,
    TransformPolicy,
    TransformRunner,
    TransformSource,
    check_transform,
    fetch_transform,
)
from proxy.streams.transform_worker import (
    HEADER,
    OutputError,
    check_result,
    decode_payload,
    encode_frame,
    seccomp_program,
)
from tests.streams.conftest import MANUAL_TRANSFORM

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

# The transform from the manual (seeds/000: docs/user_technical/integrations.md).
MANUAL = MANUAL_TRANSFORM

MANUAL_RESULT = [
    ("CREATE (:Node {id: $id})", {"id": "1"}),
    (
        "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
        {"from_id": "1", "to_id": "2"},
    ),
]


def asynctest(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def source(code: str, uri: str = "file:///transforms/t.py") -> TransformSource:
    return TransformSource.from_code(uri, textwrap.dedent(code))


def runner(code: str, **options: Any) -> TransformRunner:
    options.setdefault("batch_timeout", 10.0)
    return TransformRunner(source(code), name="test", **options)


def policy_for(*dirs: Path) -> TransformPolicy:
    return TransformPolicy(allowed_hosts=("loopback",), allowed_dirs=dirs)


def failing(body: str, prelude: str = "") -> str:
    """A transform that runs ``body`` for the batch [b"boom"] and works for any other."""
    return (
        textwrap.dedent(prelude)
        + "\ndef stream(batch):\n    if batch == [b'boom']:\n"
        + textwrap.indent(textwrap.dedent(body), "        ")
        + "\n    return [('ok', {'n': len(batch)})]\n"
    )


async def recovers(r: TransformRunner, failed_pid: int | None) -> None:
    """After a failure, the same transform runs the next batch, on a fresh worker."""
    assert r.pid is None and not _alive(failed_pid)
    assert await r.run([b"fine"]) == [("ok", {"n": 1})]
    assert r.pid not in (None, failed_pid)


# -- the contract, in memory ------------------------------------------------------------------


class TestCheckResult:
    def test_pairs_may_be_tuples_or_lists(self) -> None:
        result = [("q", {}), ["r", {"a": 1}]]
        assert check_result(result) is result

    def test_all_allowed_types_nested(self) -> None:
        value = {
            "n": None,
            "b": True,
            "i": -(2**63),
            "f": 1.5,
            "s": "é",
            "l": [1, [2, {"k": []}]],
            "d": {"x": {"y": "z"}},
            "nan": math.nan,
            "inf": -math.inf,
        }
        assert check_result([("q", value)]) == [("q", value)]

    @pytest.mark.parametrize(
        ("result", "message"),
        [
            ({"q": {}}, "transform result has type dict, must be a list"),
            (["q"], "transform result item 0 has type str, must be a (query, parameters) pair"),
            ([("q", {}, 1)], "transform result item 0 has 3 elements"),
            ([("q", {}), (b"q", {})], "transform result item 1: query has type bytes, must be str"),
            ([("q", [])], "transform result item 0: parameters have type list, must be dict"),
            (
                [("q", {1: 2})],
                "transform result item 0: parameter name 1 has type int, must be str",
            ),
            (
                [("q", {}), ("q", {}), ("q", {}), ("q", {"when": datetime.datetime(2020, 1, 1)})],
                "transform result item 3: parameter 'when' has type datetime, allowed: none, "
                "bool, int, float, str, list, dict",
            ),
            ([("q", {"s": {1, 2}})], "transform result item 0: parameter 's' has type set"),
            ([("q", {"b": b"x"})], "transform result item 0: parameter 'b' has type bytes"),
            ([("q", {"t": (1, 2)})], "transform result item 0: parameter 't' has type tuple"),
            (
                [("q", {"a": [1, {"b": [{2}]}]})],
                "transform result item 0: parameter 'a'[1]['b'][0] has type set",
            ),
            (
                [("q", {"d": {3: "x"}})],
                "transform result item 0: parameter 'd' has a key 3 of type int",
            ),
            ([("q", {"i": 2**63})], "parameter 'i' is an int outside the 64-bit range"),
            ([("q", {"s": "\ud800"})], "parameter 's' is a str that is not valid Unicode"),
            ([("\udfff", {})], "query is not valid Unicode"),
        ],
    )
    def test_bad_output_is_named(self, result: Any, message: str) -> None:
        with pytest.raises(OutputError) as failure:
            check_result(result)
        assert message in str(failure.value)

    def test_cycles_are_caught(self) -> None:
        loop: list[Any] = []
        loop.append(loop)
        with pytest.raises(OutputError, match="nested deeper than 100 levels"):
            check_result([("q", {"loop": loop})])

    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.text(), st.dictionaries(st.text(), values, max_size=4)), max_size=5)
    )
    def test_valid_results_round_trip_through_frames(self, result: list[Any]) -> None:
        checked = check_result(result)
        frame = encode_frame({"ok": True, "result": checked})
        (size,) = HEADER.unpack(frame[:4])
        assert size == len(frame) - 4
        decoded = check_result(decode_payload(frame[4:])["result"])
        assert decoded == [list(pair) for pair in result]

    def test_non_finite_floats_survive_the_frame(self) -> None:
        frame = encode_frame([math.inf, -math.inf, math.nan, 0.1])
        inf, minus_inf, nan, tenth = decode_payload(frame[4:])
        assert (inf, minus_inf, tenth) == (math.inf, -math.inf, 0.1) and math.isnan(nan)

    def test_seccomp_program_jumps_stay_in_range(self) -> None:
        for arch in ("x86_64", "aarch64"):
            program = seccomp_program(arch, 1234)
            assert program is not None
            for position, (code, jt, jf, _k) in enumerate(program):
                if code & 0x07 == 0x05:  # BPF_JMP: both targets exist
                    assert position + 1 + max(jt, jf) < len(program)
            assert program[-1] == (0x06, 0, 0, 0x7FFF0000)  # default: allow
        assert seccomp_program("sparc", 1) is None


# -- policy ---------------------------------------------------------------------------------


class TestPolicy:
    def test_hosts(self) -> None:
        policy = TransformPolicy(
            allowed_hosts=("loopback", "Example.COM", "*.corp.net", "10.1.2.3")
        )
        for host in (
            "localhost",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
            "example.com",
            "a.corp.net",
            "10.1.2.3",
        ):
            assert policy.allows_host(host), host
        for host in (
            "evil.com",
            "example.com.evil.com",
            "corp.net.evil",
            "10.1.2.4",
            "localhost.evil.com",
            "169.254.169.254",
        ):
            assert not policy.allows_host(host), host
        assert TransformPolicy(allow_any_host=True).allows_host("anything.example")
        assert not TransformPolicy().allows_host("localhost")

    def test_from_strings(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        policy = TransformPolicy.from_strings(" example.com, loopback ,", "a, /srv/t ,")
        assert policy.allowed_hosts == ("example.com", "loopback")
        assert policy.allowed_dirs == (tmp_path.resolve() / "a", Path("/srv/t"))
        assert not policy.allow_any_host
        assert TransformPolicy.from_strings("*", "").allow_any_host

    def test_default_keeps_the_data_dir_private(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        data = tmp_path / "data"
        policy = TransformPolicy.default(data)
        assert policy.allows_path((data / "transforms" / "t.py").resolve())
        assert policy.allows_path((tmp_path / "mine" / "t.py").resolve())
        assert not policy.allows_path((data / "users.toml").resolve())
        assert not policy.allows_path(Path("/etc/passwd"))
        assert policy.allows_host("127.0.0.1") and not policy.allows_host("example.com")
        merged = policy.merged(TransformPolicy.from_strings("example.com", "/srv"))
        assert merged.allows_host("example.com") and merged.allows_path(Path("/srv/x.py"))
        assert not merged.allows_path((data / "users.toml").resolve())
        explicit = TransformPolicy(allowed_dirs=(data,), denied_dirs=(data,))
        assert explicit.allows_path((data / "t.py").resolve())


# -- fetching -------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/redirect-out"):
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/t.py")
            self.end_headers()
        elif self.path.startswith("/redirect-in"):
            self.send_response(302)
            self.send_header("Location", "/manual.py")
            self.end_headers()
        else:
            super().do_GET()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class TestFetch:
    @asynctest
    async def test_manual_transform_from_a_file_uri(self, tmp_path: Path) -> None:
        script = tmp_path / "manual.py"
        script.write_text(MANUAL)
        fetched = await fetch_transform(script.as_uri(), policy_for(tmp_path))
        assert fetched.code == MANUAL and fetched.uri == script.as_uri()
        assert fetched == TransformSource.from_code(script.as_uri(), MANUAL)
        async with TransformRunner(fetched, name="manual") as r:
            assert await r.run([b"1", b"1 2"]) == MANUAL_RESULT

    @asynctest
    async def test_plain_paths_absolute_and_relative(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "manual.py").write_text(MANUAL)
        monkeypatch.chdir(tmp_path)
        policy = policy_for(tmp_path)
        absolute = await fetch_transform(str(tmp_path / "sub" / "manual.py"), policy)
        relative = await fetch_transform("sub/manual.py", policy)
        assert absolute.code == relative.code == MANUAL
        assert relative.uri == "sub/manual.py"

    @asynctest
    async def test_http_from_a_local_server(
        self, http_root: tuple[str, Path], tmp_path: Path
    ) -> None:
        base, root = http_root
        (root / "manual.py").write_text(MANUAL)
        policy = TransformPolicy.default(tmp_path / "data")  # loopback is allowed by default
        fetched = await fetch_transform(f"{base}/manual.py", policy)
        assert fetched.code == MANUAL
        assert (await fetch_transform(f"{base}/redirect-in", policy)).code == MANUAL
        async with TransformRunner(fetched, name="http") as r:
            assert await r.run([b"1", b"1 2"]) == MANUAL_RESULT

    @asynctest
    async def test_http_failures(self, http_root: tuple[str, Path], tmp_path: Path) -> None:
        base, root = http_root
        (root / "big.py").write_bytes(b"#" * (1024 * 1024 + 1))
        policy = TransformPolicy.default(tmp_path / "data")
        for path, reason in [
            ("/missing.py", "HTTP 404"),
            ("/big.py", "larger than 1024 KiB"),
            (
                "/redirect-out",
                "redirected to host 'example.invalid', which the transform policy does not allow",
            ),
        ]:
            with pytest.raises(TransformError) as failure:
                await fetch_transform(base + path, policy)
            assert str(failure.value).startswith(
                f"Couldn't get the transform script from {base}{path}: "
            )
            assert reason in str(failure.value)

    @asynctest
    async def test_refused_by_policy(self, tmp_path: Path) -> None:
        policy = TransformPolicy.default(tmp_path / "data")
        with pytest.raises(TransformError) as failure:
            await fetch_transform("http://example.com/t.py", policy)
        assert str(failure.value) == (
            "Couldn't get the transform script from "
            "http://example.com/t.py: host 'example.com' is not "
            "allowed by the transform policy"
        )
        (tmp_path / "data").mkdir()
        secret = tmp_path / "data" / "users.toml"
        secret.write_text("x = 1\n")
        for uri in (str(secret), "/etc/passwd", "file:///etc/hostname"):
            with pytest.raises(
                TransformError, match="outside the directories the transform policy allows"
            ):
                await fetch_transform(uri, policy)
        # A symbolic link inside an allowed directory does not lead outside it.
        allowed = tmp_path / "ok"
        allowed.mkdir()
        (allowed / "link.py").symlink_to("/etc/hostname")
        with pytest.raises(TransformError, match="outside the directories"):
            await fetch_transform(str(allowed / "link.py"), policy_for(allowed))

    @asynctest
    async def test_file_failures(self, tmp_path: Path) -> None:
        policy = policy_for(tmp_path)
        (tmp_path / "syntax.py").write_text("def stream(batch):\n    return [\n")
        (tmp_path / "latin1.py").write_bytes(b"# caf\xe9\ndef stream(b): return []\n")
        (tmp_path / "big.py").write_bytes(b"#" * (1024 * 1024 + 1))
        (tmp_path / "dir.py").mkdir()
        os.mkfifo(tmp_path / "fifo.py")
        cases = [
            ("missing.py", f"no such file: {tmp_path / 'missing.py'}"),
            ("syntax.py", "syntax error at line 2: '[' was never closed"),
            ("latin1.py", "the script is not UTF-8 text (bad byte at offset 5)"),
            ("big.py", "the script is larger than 1024 KiB"),
            ("dir.py", f"{tmp_path / 'dir.py'} is not a regular file"),
            ("fifo.py", f"{tmp_path / 'fifo.py'} is not a regular file"),
        ]
        for name, reason in cases:
            uri = str(tmp_path / name)
            with pytest.raises(TransformError) as failure:
                await fetch_transform(uri, policy)
            assert str(failure.value) == f"Couldn't get the transform script from {uri}: {reason}"
        for uri, reason in [
            ("ftp://h/t.py", "unsupported scheme 'ftp'"),
            ("file://host/t.py", "must not name a host"),
            ("", "empty"),
            # No path holds a NUL (os.path raised ValueError, a traceback at ERROR): fuzz
            # corpus create-stream-transform-with-nul.
            (str(tmp_path / "a\x00b.py"), "the URI holds a control character"),
            ("file://" + str(tmp_path / "a%00b.py"), "the path holds a control character"),
            ("http://localhost/a\nb.py", "the URI holds a control character"),
        ]:
            with pytest.raises(TransformError, match=reason):
                await fetch_transform(uri, policy)

    @asynctest
    async def test_code_is_pinned(self, tmp_path: Path) -> None:
        script = tmp_path / "t.py"
        script.write_text("def stream(batch):\n    return [('OLD', {})]\n")
        fetched = await fetch_transform(str(script), policy_for(tmp_path))
        script.write_text("def stream(batch):\n    return [('NEW', {})]\n")
        async with TransformRunner(fetched, name="pinned") as r:
            assert await r.run([b""]) == [("OLD", {})]
            os.kill(r.pid or 0, signal.SIGKILL)  # a restarted worker still runs the pinned code
            await asyncio.sleep(0.1)
            assert await r.run([b""]) == [("OLD", {})]


# -- loading --------------------------------------------------------------------------------


class TestLoad:
    @asynctest
    async def test_check_transform_accepts_the_manual(self) -> None:
        await check_transform(source(MANUAL))

    @asynctest
    async def test_no_stream_function(self) -> None:
        with pytest.raises(TransformError) as failure:
            await check_transform(source("def transform(batch):\n    return []\n"))
        assert str(failure.value) == (
            "Couldn't load the transform script from "
            "file:///transforms/t.py: the script defines no "
            "stream(batch) or stream_messages(messages) function"
        )
        with pytest.raises(TransformError, match=r"\(stream is a int\)"):
            await check_transform(source("stream = 3\n"))

    @asynctest
    async def test_import_time_exception(self) -> None:
        code = """\
            import json
            CONFIG = json.loads("{not json")
            def stream(batch):
                return []
            """
        with pytest.raises(TransformError) as failure:
            await check_transform(source(code))
        message = str(failure.value)
        assert message.startswith(
            "Couldn't load the transform script from file:///transforms/"
            "t.py: json.decoder.JSONDecodeError: Expecting property name"
        )
        assert message.endswith('(at t.py, line 2, in <module>: CONFIG = json.loads("{not json"))')
        with pytest.raises(TransformError, match=r"SystemExit: 3"):
            await check_transform(source("import sys\nsys.exit(3)\n"))

    @asynctest
    async def test_syntax_error_in_an_unchecked_source(self) -> None:
        with pytest.raises(TransformError, match="SyntaxError"):
            await check_transform(source("def stream(:\n"))

    @asynctest
    async def test_hanging_import_times_out(self) -> None:
        with pytest.raises(TransformError) as failure:
            await check_transform(source("while True:\n    pass\n"), timeout=1)
        assert str(failure.value).endswith(": transform timed out after 1 s")


# -- running --------------------------------------------------------------------------------


class TestRun:
    @asynctest
    async def test_manual_transform(self) -> None:
        async with runner(MANUAL) as r:
            assert await r.run([b"1", b"1 2"]) == MANUAL_RESULT
            assert await r.run([]) == []
            assert await r.run([b"7"] * 3) == [("CREATE (:Node {id: $id})", {"id": "7"})] * 3

    @asynctest
    async def test_binary_messages_arrive_intact(self) -> None:
        code = "def stream(batch):\n    return [('q', {'hex': m.hex()}) for m in batch]\n"
        messages = [bytes(range(256)), b"", b"\x00\xff" * 1000]
        async with runner(code) as r:
            assert await r.run(messages) == [("q", {"hex": m.hex()}) for m in messages]

    @asynctest
    async def test_stream_raising(self) -> None:
        code = """\
            def parse(item):
                return int(item)

            def stream(batch):
                return [("q", {"n": parse(item)}) for item in batch]
            """
        async with runner(code) as r:
            assert await r.run([b"1"]) == [("q", {"n": 1})]
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"1", b"x"])
            assert failure.value.kind is FailureKind.EXCEPTION
            assert str(failure.value) == (
                "transform raised ValueError: invalid literal for int() with base 10: b'x' "
                "(at t.py, line 2, in parse: return int(item))"
            )
            assert "Traceback" in failure.value.details
            assert 'File "file:///transforms/t.py", line 5, in stream' in failure.value.details
            assert r.pid is None  # a fresh worker for the next batch: no state left behind
            assert await r.run([b"2"]) == [("q", {"n": 2})]

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            (
                "{1, 2}",
                "transform result item 1: parameter 'v' has type set, allowed: none, bool, "
                "int, float, str, list, dict",
            ),
            ("b'raw'", "transform result item 1: parameter 'v' has type bytes"),
            (
                "__import__('datetime').datetime.now()",
                "transform result item 1: parameter 'v' has type datetime",
            ),
            (
                "[1, {'k': object()}]",
                "transform result item 1: parameter 'v'[1]['k'] has type object",
            ),
            ("{2: 'two'}", "transform result item 1: parameter 'v' has a key 2 of type int"),
        ],
    )
    @asynctest
    async def test_bad_output_types_are_named(self, expression: str, message: str) -> None:
        code = failing(f'return [("ok", {{"v": 1}}), ("bad", {{"v": {expression}}})]')
        async with runner(code) as r:
            pid = r.pid
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"boom"])
            assert failure.value.kind is FailureKind.BAD_OUTPUT
            assert str(failure.value).startswith(message)
            await recovers(r, pid)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ("[(b'CREATE ()', {})]", "transform result item 0: query has type bytes, must be str"),
            ("[(None, {})]", "transform result item 0: query has type NoneType, must be str"),
            ("[('q', {1: 'x'})]", "transform result item 0: parameter name 1 has type int"),
            ("(('q', {}),)", "transform result has type tuple, must be a list"),
            ("None", "transform result has type NoneType, must be a list"),
            ("['q']", "transform result item 0 has type str, must be a (query, parameters) pair"),
            ("[('q', {}, {})]", "transform result item 0 has 3 elements"),
        ],
    )
    @asynctest
    async def test_bad_output_shapes_are_named(self, body: str, message: str) -> None:
        async with runner(f"def stream(batch):\n    return {body}\n") as r:
            with pytest.raises(TransformFailed) as failure:
                await r.run([b""])
            assert failure.value.kind is FailureKind.BAD_OUTPUT
            assert str(failure.value).startswith(message)

    @asynctest
    async def test_tuples_lists_and_every_allowed_type(self) -> None:
        code = """\
            def stream(batch):
                params = {"n": None, "b": False, "i": 2**63 - 1, "f": 0.1, "s": "ü",
                          "l": [1, "a", [None]], "d": {"x": {"y": [1.5]}},
                          "inf": float("inf")}
                return [("q", params), ["r", {}]]
            """
        async with runner(code) as r:
            (first, second) = await r.run([b""])
        assert first == (
            "q",
            {
                "n": None,
                "b": False,
                "i": 2**63 - 1,
                "f": 0.1,
                "s": "ü",
                "l": [1, "a", [None]],
                "d": {"x": {"y": [1.5]}},
                "inf": math.inf,
            },
        )
        assert second == ("r", {})

    @asynctest
    async def test_prints_do_not_corrupt_the_channel(self) -> None:
        code = """\
            import os, sys
            print("loading")
            def stream(batch):
                print("x" * 100000)
                print("to the real stdout", file=sys.__stdout__)
                os.write(1, b"\\x00\\x00\\x00\\x05raw write to fd 1\\n")
                sys.stderr.write("to stderr\\n")
                return [("q", {"n": len(batch)})]
            """
        async with runner(code) as r:
            await asyncio.sleep(0.1)  # let the log pump catch up
            assert r.log_tail() == "loading\n"
            # 300 kB of prints: more than a pipe holds, so the log must be drained meanwhile.
            for _ in range(3):
                assert await r.run([b"a", b"b"]) == [("q", {"n": 2})]
            await asyncio.sleep(0.1)
            log = r.log_tail()
        assert 64 * 1024 - 200 < len(log) <= 64 * 1024  # bounded
        assert log.endswith("x\nto the real stdout\n\x00\x00\x00\x05raw write to fd 1\nto stderr\n")

    @asynctest
    async def test_hanging_batch_times_out_and_recovers(self) -> None:
        code = """\
            import time
            def stream(batch):
                if batch == [b"hang"]:
                    while True:
                        time.sleep(0.01)
                return [("q", {})]
            """
        async with runner(code, batch_timeout=1) as r:
            pid = r.pid
            started = time.monotonic()
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"hang"])
            assert 0.9 < time.monotonic() - started < 10  # the limit, not a hang
            assert failure.value.kind is FailureKind.TIMEOUT
            assert str(failure.value) == "transform timed out after 1 s"
            assert r.pid is None and not _alive(pid)
            # The limit also bounds the new worker's load, which can take longer than 1 s on
            # a loaded machine: the recovery is what is tested here, not the limit again.
            r.batch_timeout = 30
            assert await r.run([b"fine"]) == [("q", {})]
            assert r.pid != pid

    @asynctest
    async def test_worker_exit(self) -> None:
        code = failing('print("about to exit")\nos._exit(7)', "import os")
        async with runner(code) as r:
            pid = r.pid
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"boom"])
            assert failure.value.kind is FailureKind.CRASH
            assert str(failure.value) == (
                "transform worker exited with status 7; its last output: about to exit"
            )
            await recovers(r, pid)

    @asynctest
    async def test_segfault(self) -> None:
        code = failing("ctypes.string_at(0)", "import ctypes")
        async with runner(code) as r:
            pid = r.pid
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"boom"])
            assert failure.value.kind is FailureKind.CRASH
            assert str(failure.value) == (
                "transform worker was killed by SIGSEGV (Segmentation "
                "fault at t.py, line 4, in stream)"
            )
            assert "Fatal Python error" in failure.value.details
            await recovers(r, pid)

    @asynctest
    async def test_killed_from_outside_while_idle_is_not_a_batch_failure(self) -> None:
        async with runner(MANUAL) as r:
            os.kill(r.pid or 0, signal.SIGKILL)
            await asyncio.sleep(0.2)
            assert await r.run([b"1"]) == MANUAL_RESULT[:1]

    @pytest.mark.parametrize(
        "hog",
        [
            "bytearray(400 * 1024 * 1024)",
            "[str(i) * 100 for i in range(10**8)]",
        ],
    )
    @asynctest
    async def test_memory_hog(self, hog: str) -> None:
        code = failing(f"data = {hog}")
        async with runner(code, memory_limit_mb=200) as r:
            pid = r.pid
            with pytest.raises(TransformFailed) as failure:
                await r.run([b"boom"])
            assert failure.value.kind is FailureKind.OUT_OF_MEMORY
            assert str(failure.value).startswith(
                "transform ran out of memory (limit 200 MB) (at t.py, line 4, in "
            )
            await recovers(r, pid)

    @asynctest
    async def test_forged_replies_are_checked_again(self) -> None:
        # A hostile transform can write to the protocol pipe itself; the proxy must not trust
        # what arrives. (The worker's protocol write end is fd 4: dup(1) after dup(0).)
        code = """\
            import json, os, struct
            def forge(message):
                data = message if isinstance(message, bytes) else json.dumps(message).encode()
                os.write(4, struct.pack(">I", len(data)) + data)
            def stream(batch):
                kind = batch[0]
                if kind == b"int":
                    forge({"ok": True, "result": [["q", {"i": 2**64 - 1}]]})
                elif kind == b"junk":
                    forge(b"not json")
                elif kind == b"huge":
                    os.write(4, struct.pack(">I", 2**31))
                elif kind == b"shape":
                    forge({"ok": True, "result": {"q": 1}})
                elif kind == b"noflag":
                    forge([1, 2])
                return [("ok", {"n": len(batch)})]
            """
        cases = [
            (b"int", FailureKind.BAD_OUTPUT, "parameter 'i' is an int outside the 64-bit range"),
            (b"junk", FailureKind.PROTOCOL, "transform worker sent a malformed reply"),
            (b"huge", FailureKind.PROTOCOL, "transform result is too large: 2147483648 bytes"),
            (b"shape", FailureKind.BAD_OUTPUT, "transform result has type dict"),
            (b"noflag", FailureKind.PROTOCOL, "without an ok flag"),
        ]
        async with runner(code) as r:
            for kind, failure_kind, message in cases:
                pid = r.pid
                with pytest.raises(TransformFailed) as failure:
                    await r.run([kind])
                assert failure.value.kind is failure_kind
                assert message in str(failure.value)
                await recovers(r, pid)

    @asynctest
    async def test_two_runners_in_parallel(self) -> None:
        slow = """\
            import time
            def stream(batch):
                time.sleep(0.3)
                return [("A", {"n": len(batch)})]
            """
        fast = "def stream(batch):\n    return [('B', {'first': batch[0].decode()})]\n"
        async with runner(slow) as a, runner(fast) as b:
            assert a.pid != b.pid
            results = list(
                await asyncio.gather(
                    a.run([b"x", b"y"]), b.run([b"z"]), a.run([b"w"]), b.run([b"v"])
                )
            )
        assert results == [
            [("A", {"n": 2})],
            [("B", {"first": "z"})],
            [("A", {"n": 1})],
            [("B", {"first": "v"})],
        ]

    @asynctest
    async def test_one_batch_at_a_time(self) -> None:
        code = """\
            import time
            calls = 0
            def stream(batch):
                global calls
                calls += 1
                seen = calls
                time.sleep(0.02)
                return [("q", {"call": seen, "calls": calls, "m": batch[0].decode()})]
            """
        async with runner(code) as r:
            results = await asyncio.gather(*(r.run([str(i).encode()]) for i in range(8)))
        for i, [(_, params)] in enumerate(results):
            assert params == {"call": i + 1, "calls": i + 1, "m": str(i)}

    @asynctest
    async def test_lifecycle(self) -> None:
        r = runner(MANUAL)
        assert r.pid is None
        assert await r.run([b"1"]) == MANUAL_RESULT[:1]  # run starts the worker on demand
        pid = r.pid
        await r.stop()
        await r.stop()
        assert r.pid is None and not _alive(pid)
        with pytest.raises(TransformError, match="is stopped"):
            await r.run([b"1"])
        await r.start()
        await r.start()
        assert await r.run([b"1"]) == MANUAL_RESULT[:1]
        await r.stop()

    @asynctest
    async def test_stop_interrupts_a_batch(self) -> None:
        async with runner("import time\ndef stream(batch):\n    time.sleep(60)\n") as r:
            batch = asyncio.ensure_future(r.run([b""]))
            await asyncio.sleep(0.3)
            await r.stop()
            with pytest.raises(TransformFailed) as failure:
                await batch
            assert failure.value.kind is FailureKind.STOPPED

    @asynctest
    async def test_cancelled_batch_does_not_poison_the_next(self) -> None:
        code = """\
            import time
            def stream(batch):
                if batch == [b"slow"]:
                    time.sleep(0.5)
                return [("q", {"m": batch[0].decode()})]
            """
        async with runner(code) as r:
            batch = asyncio.ensure_future(r.run([b"slow"]))
            await asyncio.sleep(0.2)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            assert await r.run([b"next"]) == [("q", {"m": "next"})]

    @asynctest
    async def test_a_large_batch_round_trips(self) -> None:
        async with runner(MANUAL) as r:
            messages = [b"1", b"1 2"] * 2500
            result = await r.run(messages)
            assert len(result) == 5000
            assert result[1] == (
                "MATCH (n:Node {id: $from_id}), (m:Node {id: $to_id}) CREATE (n)-[:Edge]->(m)",
                {"from_id": "1", "to_id": "2"},
            )

    @asynctest
    async def test_several_batches_in_one_round_trip(self) -> None:
        """run_many: one stream(batch) call per batch, a result per batch, in order; a run of
        quick batches costs one frame or a few."""
        async with runner(MANUAL) as r:
            pid = r.pid
            batches = [[b"1", b"1 2"], [], [b"7"] * 3] * 400
            results = await r.run_many(batches)
            assert (
                results
                == [MANUAL_RESULT, [], [("CREATE (:Node {id: $id})", {"id": "7"})] * 3] * 400
            )
            assert r.pid == pid

    @asynctest
    async def test_several_batches_stop_at_the_first_that_fails(self) -> None:
        code = """\
            def stream(batch):
                if batch == [b"boom"]:
                    raise ValueError("no")
                if batch == [b"bad"]:
                    return [("q", {"x": b"bytes"})]
                return [("q", {"n": len(batch)})]
            """
        async with runner(code) as r:
            for bad, kind in ((b"boom", FailureKind.EXCEPTION), (b"bad", FailureKind.BAD_OUTPUT)):
                pid = r.pid
                results = await r.run_many([[b"a"], [b"b", b"c"], [bad], [b"never"]])
                assert results[:2] == [[("q", {"n": 1})], [("q", {"n": 2})]]
                assert len(results) == 3 and isinstance(results[2], TransformFailed)
                assert results[2].kind is kind
                assert r.pid is None and not _alive(pid)  # replaced, as after any failure

    @asynctest
    async def test_a_batch_that_hangs_or_crashes_among_several_is_named(self) -> None:
        """Replies of quick batches may still be waiting in the worker when a later batch
        hangs or kills it: the batch to blame is found by running the first unanswered one
        alone, and the batches after the culprit are not run."""
        code = """\
            import os, time
            def stream(batch):
                if batch == [b"hang"]:
                    while True:
                        time.sleep(0.01)
                if batch == [b"die"]:
                    os._exit(9)
                return [("q", {"m": batch[0].decode()})]
            """
        # 3 s: long enough for the fine batches on a loaded 2-core machine (1 s timed out there).
        async with runner(code, batch_timeout=3) as r:
            for culprit, kind in ((b"hang", FailureKind.TIMEOUT), (b"die", FailureKind.CRASH)):
                fine = [[str(i).encode()] for i in range(5)]
                results = await r.run_many([*fine, [culprit], [b"after"]])
                assert results[:5] == [[("q", {"m": str(i)})] for i in range(5)]
                assert len(results) == 6 and isinstance(results[5], TransformFailed)
                assert results[5].kind is kind
            assert await r.run_many([[b"x"]]) == [[("q", {"m": "x"})]]


# -- isolation ------------------------------------------------------------------------------


def _alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie counts as dead)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


PROBE = """\
import os, socket, subprocess, threading

def attempt(action):
    try:
        action()
        return "allowed"
    except Exception as exc:
        return type(exc).__name__

def stream(batch):
    thread = threading.Thread(target=lambda: None)
    return [("probe", {
        "read /etc/passwd": attempt(lambda: open("/etc/passwd").read()),
        "read the proxy's tree": attempt(lambda: os.listdir(batch[0].decode())),
        "write its own directory": attempt(lambda: open("scratch.txt", "w").write("x")),
        "import the stdlib": attempt(lambda: __import__("decimal").Decimal(1)),
        "tcp connect": attempt(lambda: socket.create_connection(("127.0.0.1", 9), 1)),
        "udp socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
        "fork": attempt(os.fork),
        "subprocess": attempt(lambda: subprocess.run(["true"])),
        "signal the proxy": attempt(lambda: os.kill(os.getppid(), 0)),
        "start a thread": attempt(lambda: (thread.start(), thread.join())),
    })]
"""


class TestIsolation:
    @asynctest
    async def test_sandbox_layers(self) -> None:
        async with runner(PROBE) as r:
            [(_, seen)] = await r.run([str(ROOT).encode()])
            layers = " / ".join(r.sandbox)
        assert "memory 512 MB" in layers and "no core dumps" in layers
        assert seen["write its own directory"] == "allowed"
        assert seen["import the stdlib"] == "allowed"
        assert seen["start a thread"] == "allowed"
        if "seccomp" in layers:
            assert seen["udp socket"] == seen["fork"] == seen["subprocess"] == "PermissionError"
            assert seen["tcp connect"] == "PermissionError"
            assert seen["signal the proxy"] == "PermissionError"
        if "landlock" in layers:
            assert seen["read /etc/passwd"] == "PermissionError"
            assert seen["read the proxy's tree"] == "PermissionError"
        if "seccomp" not in layers or "landlock" not in layers:
            pytest.skip(f"kernel lacks a sandbox layer; have: {layers}")

    @asynctest
    async def test_worker_environment(self) -> None:
        code = """\
            import os, sys
            def stream(batch):
                return [("env", {"cwd": os.getcwd(), "files": os.listdir("."),
                                 "env": sorted(os.environ), "argv0": sys.argv[0],
                                 "path0": sys.path[0], "flags": sys.flags.isolated})]
            """
        async with runner(code) as r:
            [(_, seen)] = await r.run([])
        assert Path(seen["cwd"]).name.startswith("boltstream-transform-")
        assert seen["files"] == []
        assert "BOLTSTREAM" not in " ".join(seen["env"]) and "PYTHONPATH" not in seen["env"]
        assert seen["flags"] == 1 and seen["path0"] != ""
        assert not Path(seen["cwd"]).exists()  # removed on stop

    def test_worker_dies_with_its_parent(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        parent = textwrap.dedent(f"""\
            import asyncio, sys
            sys.path.insert(0, {str(ROOT)!r})
            from proxy.streams.transform import TransformRunner, TransformSource

            async def main():
                source = TransformSource.from_code("t.py", "def stream(batch):\\n    return []\\n")
                runner = TransformRunner(source, name="orphan")
                await runner.start()
                print(runner.pid, flush=True)
                await asyncio.sleep(60)

            asyncio.run(main())
            """)
        proc = subprocess.Popen(
            [sys.executable, "-c", parent],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
        try:
            assert proc.stdout is not None
            worker = int(proc.stdout.readline())
            assert _alive(worker)
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 5
            while _alive(worker) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not _alive(worker)
            # The dead proxy's worker directory is swept by the next proxy that runs a worker.
            [stale] = tmp_path.glob("boltstream-transform-*")
            transform_module._swept = False
            monkeypatch.setenv("TMPDIR", str(tmp_path))
            monkeypatch.setattr(tempfile, "tempdir", None)
            asyncio.run(check_transform(source(MANUAL)))
            assert not stale.exists()
            assert list(tmp_path.glob("boltstream-transform-*")) == []
        finally:
            proc.kill()
            proc.wait()


def test_worker_module_imports_only_the_standard_library() -> None:
    """The proxy imports the worker module for its helpers, and the worker runs it with -I:
    it must not need the proxy package (or anything else off sys.path)."""
    code = (
        "import sys, runpy; sys.argv = ['w']; "
        f"m = runpy.run_path({str(ROOT / 'proxy/streams/transform_worker.py')!r}); "
        "print(sorted(n for n in sys.modules if n.startswith('proxy')))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


FALLBACK_PROBE = """\
import json, os, sys
import proxy.streams.transform_worker as worker
worker._landlock = lambda libc, workdir: None  # as on a kernel without Landlock
worker._seccomp = lambda libc: False  # ... and without seccomp
layers = worker.sandbox(256, os.getcwd())
seen = {}
try:
    with open(sys.argv[1], "rb") as secret:
        seen["read outside"] = secret.read().decode()
except OSError as exc:
    seen["read outside"] = type(exc).__name__
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    seen["fork"] = "allowed"
except OSError as exc:
    seen["fork"] = type(exc).__name__
try:
    bytearray(512 * 1024 * 1024)
    seen["512 MB"] = "allowed"
except MemoryError:
    seen["512 MB"] = "MemoryError"
print(json.dumps({"layers": layers, "seen": seen}))
"""


def test_the_sandbox_falls_back_without_landlock_and_seccomp(tmp_path: Path) -> None:
    """On a kernel without Landlock and seccomp the worker still limits what it can, and says
    which layers are in force: the resource limits hold, new processes are refused through
    RLIMIT_NPROC (which the kernel does not apply to root), and files of the proxy's user are
    readable (what Landlock would have prevented; the README's Security section says so)."""
    secret = tmp_path / "secret"
    secret.write_text("of the proxy's user")
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK_PROBE, str(secret)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    layers, seen = report["layers"], report["seen"]
    assert "memory 256 MB" in layers and "no core dumps" in layers
    assert "no new processes (RLIMIT_NPROC)" in layers
    assert not any("landlock" in layer or "seccomp" in layer for layer in layers)
    assert seen["512 MB"] == "MemoryError"
    assert seen["read outside"] == "of the proxy's user"
    assert seen["fork"] == ("allowed" if os.getuid() == 0 else "BlockingIOError")

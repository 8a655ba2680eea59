"""Running a client program over the scenario and turning its report into one test per step.

A client program runs in a child process (its own interpreter: the main venv's Python, a
separate virtualenv's, or Node.js), so a client that crashes (pymgclient is C) fails its tests
instead of taking pytest down, and clients that install the same import name (``neo4j`` 6 and
``neo4j-driver`` 5.28) do not meet.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from conformance.scenario import SCENARIO, Outcome, Profile, Step, scenario_input
from tests.streams.broker import Broker
from tests.support import ROOT, ProxyProcess

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients"
JS = HERE / "js"
VENVS = ROOT / ".venv-conformance"


@dataclass(frozen=True)
class ClientSpec:
    """One client configuration: a program, the interpreter fixture that runs it, a scheme."""

    id: str
    program: Path
    profile: Profile
    interpreter: str = "main_python"  # the name of a fixture giving the interpreter's path
    scheme: str = "bolt"  # bolt | neo4j | bolt+ssc | neo4j+ssc | bolt+s ...
    proxy: str = "proxy"  # the name of the fixture giving the proxy (tls_proxy: TLS on)
    version_prefix: str = ""  # the client library version the program must report
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float = 90.0


@dataclass
class ClientRun:
    spec: ClientSpec
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    header: dict[str, Any]
    outcomes: dict[str, Outcome]
    done: bool
    # per step: None when its check passed, else what it raised and the traceback
    failures: dict[str, tuple[Exception, TracebackType | None] | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"<ClientRun {self.spec.id}: exit code {self.returncode}, "
            f"{len(self.outcomes)} steps reported>"
        )

    def describe(self) -> str:
        status = f"exit code {self.returncode}"
        if self.returncode is not None and self.returncode < 0:
            status += f" (killed by signal {-self.returncode})"
        return (
            f"{' '.join(self.command)}: {status}\n--- stderr (last 4000 chars) ---\n"
            f"{self.stderr[-4000:]}"
        )

    def outcome(self, step: Step) -> Outcome:
        found = self.outcomes.get(step.name)
        if found is None:
            raise AssertionError(
                f"{self.spec.id} never reported step {step.name!r}: {self.describe()}"
            )
        return found


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONFAULTHANDLER"] = "1"  # a C client's crash prints where it happened
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass(frozen=True)
class StreamSetup:
    """What the stream steps need: a broker, and the manual's transform where the proxy may
    load it."""

    broker: Broker
    transform: Path


def run_client(
    spec: ClientSpec, interpreter: str, proxy: ProxyProcess, streams: StreamSetup
) -> ClientRun:
    label = "Conf" + "".join(ch for ch in spec.id.title() if ch.isalnum()) + uuid.uuid4().hex[:6]
    # each run has its own stream and topic; the topic holds the tutorial's two messages
    values = {
        "label": label,
        "stream": f"{label}_stream",
        "topic": f"{label}_topic",
        "broker": streams.broker.bootstrap,
        "transform": str(streams.transform),
    }
    streams.broker.create_topic(values["topic"])
    # one record batch each: Tansu's high watermark counts record batches (README), and
    # SHOW STREAMS computes the lag from it
    streams.broker.produce(values["topic"], ["1", "1 2"], one_by_one=True)
    uri = f"{spec.scheme}://{proxy.host}:{proxy.port}"
    stdin = scenario_input(
        SCENARIO,
        values,
        uri=uri,
        host=proxy.host,
        port=proxy.port,
        user=proxy.auth[0],
        password=proxy.auth[1],
        **spec.options,
    )
    command = [interpreter, str(spec.program)]
    try:
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=spec.timeout,
            env=_clean_env(),
            cwd=HERE,
        )
        returncode, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        stderr += f"\n[timed out after {spec.timeout} s]"
    header: dict[str, Any] = {}
    outcomes: dict[str, Outcome] = {}
    done = False
    for line in stdout.splitlines():
        try:
            record = json.loads(line, object_hook=_decode_ints)
        except json.JSONDecodeError:
            continue
        if "client" in record:
            header = record
        elif "done" in record:
            done = True
        elif "step" in record:
            outcomes[record["step"]] = Outcome(
                record["ok"], record.get("value"), record.get("error"), record.get("trace", "")
            )
    run = ClientRun(spec, command, returncode, stdout, stderr, header, outcomes, done)
    ctx: dict[str, Any] = {**values, "user": proxy.auth[0], "address": f"{proxy.host}:{proxy.port}"}
    for step in SCENARIO:
        try:
            check_step(run, step, ctx)
            run.failures[step.name] = None
        except Exception as exc:  # a KeyError on an odd report fails that step alone too
            run.failures[step.name] = (exc, exc.__traceback__)
    return run


def _decode_ints(obj: dict[str, Any]) -> Any:
    """The JS client writes integers as ``{"$int": "123"}`` (a JS number cannot hold them)."""
    if len(obj) == 1 and "$int" in obj:
        return int(obj["$int"])
    return obj


def check_step(run: ClientRun, step: Step, ctx: dict[str, Any]) -> None:
    outcome = run.outcome(step)
    if step.kind == "connect" and run.spec.version_prefix:
        version = str(run.header.get("version", ""))
        assert version.startswith(run.spec.version_prefix), (
            f"{run.spec.id} runs client version {version!r}, not {run.spec.version_prefix}*"
        )
    step.check(outcome, run.spec.profile, ctx)


def scenario_test(specs: list[ClientSpec]) -> Callable[..., None]:
    """A test function with one case per (client, step) in scenario order, and a last one per
    client for a clean exit (it closed its connections and the program ended with status 0)."""
    cases = [
        pytest.param(spec, step, id=f"{spec.id}-{step.name if step else 'clean_exit'}")
        for spec in specs
        for step in [*SCENARIO, None]
    ]

    @pytest.mark.parametrize(("spec", "step"), cases)
    @pytest.mark.timeout(300)  # the first case of a client may build its virtualenv first
    def test_scenario(
        spec: ClientSpec,
        step: Step | None,
        request: pytest.FixtureRequest,
        stream_setup: StreamSetup,
        client_runs: dict[str, ClientRun],
    ) -> None:
        run = client_runs.get(spec.id)
        if run is None:
            interpreter = request.getfixturevalue(spec.interpreter)
            proxy = request.getfixturevalue(spec.proxy)
            run = client_runs[spec.id] = run_client(spec, interpreter, proxy, stream_setup)
        if step is None:
            assert run.done and run.returncode == 0, run.describe()
            return
        failure = run.failures[step.name]
        if failure is not None:
            exc, traceback = failure
            raise exc.with_traceback(traceback)

    return test_scenario


# -- interpreters ----------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_venv(name: str, requirements: Path) -> Path:
    """``.venv-conformance/<name>`` with ``requirements`` installed, built once and kept until
    the requirements (or the Python version) change."""
    target = VENVS / name
    python = target / "bin" / "python"
    stamp = target / ".built-from"
    wanted = f"python {sys.version_info.major}.{sys.version_info.minor}\n{requirements.read_text()}"
    with _locked(VENVS / f".{name}.lock"):
        if python.exists() and stamp.exists() and stamp.read_text() == wanted:
            return python
        shutil.rmtree(target, ignore_errors=True)
        for command in (
            [sys.executable, "-m", "venv", str(target)],
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
            ],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(wanted)
    return python


def ensure_js_client() -> str:
    """Node.js with ``conformance/js``'s locked packages (``scripts/setup test`` installs them;
    ``npm ci`` runs here only if that was skipped or the lock file changed since)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed for the JavaScript driver"
    installed = JS / "node_modules" / ".package-lock.json"
    lock = JS / "package-lock.json"
    if not installed.exists() or lock.stat().st_mtime > installed.stat().st_mtime:
        with _locked(VENVS / ".npm.lock"):
            done = subprocess.run(
                [npm, "ci", "--loglevel=error", "--no-audit", "--no-fund"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm ci failed:\n{done.stdout}\n{done.stderr}")
    return node

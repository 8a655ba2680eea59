"""The transforms shipped with boltstream, named ``builtin:NAME`` in ``WITH TRANSFORM``.

Each is a Python file in this package with the usual ``stream(batch)`` contract. They are
trusted code, but they run exactly like a user's transform, for the same reasons: the code is
pinned into the stream at CREATE (``SHOW STREAMS`` shows ``builtin:NAME``; upgrading boltstream
does not change a stream that exists), and it runs in the stream's sandboxed worker process
with the same memory and time limits, so a hostile message (a JSON bomb, a huge number) costs
the worker, never the proxy. Nothing needed them in the proxy process: they only parse and
check messages; what the engine does with their output depends on the stream's *mode*:

* ``write`` (``builtin:depc``, and every user transform): the queries are written to the graph
  in batches, grouped into UNWIND queries where that is provably the same;
* ``command`` (``builtin:command``): the queries are applied one by one, in offset order,
  never grouped, and a failure is pinned to its message exactly;
* ``request`` (``builtin:request``): each query runs read-only and its rows (or its error) are
  produced to the response topic the request named.

Built-ins return exactly one item per message, in order, so the engine knows which message
each query came from; an invalid message is a dead-letter item (``proxy/streams/outcomes.py``).
Their error policies: ``builtin:depc`` must have ``ON ERROR DEAD LETTER`` (an invalid message
is never dropped and never stops the stream); ``builtin:command`` stops by default (replicas
must not diverge silently); ``builtin:request`` skips by default (a request that names no
response topic cannot be answered, and one malformed request must not stop the service).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

from proxy.streams.catalog import POLICIES, PolicyKind
from proxy.streams.transform import TransformSource

Mode = Literal["write", "command", "request"]
PREFIX = "builtin:"
COMMON = "proxy.streams.builtin._common"


@dataclass(frozen=True)
class Builtin:
    name: str
    mode: Mode
    default_policy: PolicyKind | None  # None: the clause must say (see ``policies``)
    policies: tuple[PolicyKind, ...]  # the ON ERROR choices allowed
    summary: str

    @property
    def uri(self) -> str:
        return PREFIX + self.name

    def source(self) -> TransformSource:
        """The code shipped with this boltstream, to pin into a new stream: ``_common.py``
        followed by the transform's own file (the worker runs one file's text)."""
        package = files("proxy.streams.builtin")
        common = package.joinpath("_common.py").read_text(encoding="utf-8")
        own = package.joinpath(f"{self.name}.py").read_text(encoding="utf-8")
        return TransformSource.from_code(self.uri, common + "\n\n" + _without_common(own))


def _without_common(code: str) -> str:
    """``code`` less its imports of ``_common`` and ``__future__`` (both already pinned above
    it; a ``from __future__`` line is only allowed at the top of a file)."""
    lines = code.splitlines(keepends=True)
    for node in reversed(ast.parse(code).body):
        if isinstance(node, ast.ImportFrom) and node.module in (COMMON, "__future__"):
            del lines[node.lineno - 1 : node.end_lineno]
    return "".join(lines)


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "depc",
            "write",
            None,
            ("dead_letter",),
            "DepC dependency messages (nested or flat) merged into the graph",
        ),
        Builtin(
            "command",
            "command",
            "stop",
            POLICIES,
            "replication: each message is a Cypher command, applied in offset order",
        ),
        Builtin(
            "request",
            "request",
            "skip",
            POLICIES,
            "read queries from Kafka, answered on the response topic each one names",
        ),
    )
}


def is_builtin(uri: str) -> bool:
    return uri[: len(PREFIX)].lower() == PREFIX


def lookup(uri: str) -> Builtin | None:
    """The built-in a ``builtin:NAME`` URI names (the prefix in any case), or None."""
    if not is_builtin(uri):
        return None
    return BUILTINS.get(uri[len(PREFIX) :])


def names() -> str:
    return ", ".join(b.uri for b in BUILTINS.values())

"""Seeds for the fuzzer: what the official drivers really send (Python ``neo4j``, and the
JavaScript ``neo4j-driver`` 6.3 and 5.26 from ``conformance/js`` when Node.js has it).

``capture`` puts a recording TCP pipe in front of a running proxy, drives the driver through
it (queries with every parameter type, paging, DISCARD, transactions, a failure and its RESET,
routing, the system database, notification filters, re-authentication, bookmarks, stream
clauses), and keeps each connection's client bytes split into the handshake offer, the manifest
pick and the messages. It also keeps a real TLS ClientHello. ``bench/fuzz_seeds.json`` is such
a capture, committed so that a run is reproducible from its seed alone; ``fuzz.py --capture``
records a new one.

The broker address of the capture is replaced by ``BROKER_PLACEHOLDER`` (same length: ports
from ``tests.support.free_port`` have five digits), which the fuzzer swaps back for the
broker of the run as it sends.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fuzzwire import MANIFEST_SLOT, dechunk, read_varint

BROKER_PLACEHOLDER = b"127.0.0.1:00000"
DEFAULT_SEEDS = Path(__file__).with_name("fuzz_seeds.json")


@dataclass
class Conversation:
    """One driver connection, client side."""

    scenario: str
    offer: bytes  # magic + 16 bytes
    pick: bytes | None  # manifest pick + capabilities varint, when the manifest was used
    version: tuple[int, int]
    messages: list[bytes]  # payloads, unchunked

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "offer": self.offer.hex(),
            "pick": self.pick.hex() if self.pick is not None else None,
            "version": list(self.version),
            "messages": [m.hex() for m in self.messages],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Conversation:
        pick = data.get("pick")
        return cls(
            scenario=data["scenario"],
            offer=bytes.fromhex(data["offer"]),
            pick=bytes.fromhex(pick) if pick else None,
            version=(int(data["version"][0]), int(data["version"][1])),
            messages=[bytes.fromhex(m) for m in data["messages"]],
        )


@dataclass
class Seeds:
    driver: str
    conversations: list[Conversation]
    client_hello: bytes
    notes: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        data = {
            "driver": self.driver,
            "notes": self.notes,
            "client_hello": self.client_hello.hex(),
            "conversations": [c.to_json() for c in self.conversations],
        }
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Seeds:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            driver=data["driver"],
            notes=data.get("notes", []),
            client_hello=bytes.fromhex(data["client_hello"]),
            conversations=[Conversation.from_json(c) for c in data["conversations"]],
        )


# -- the recording pipe ---------------------------------------------------------------------------


class _Recording:
    def __init__(self) -> None:
        self.client = bytearray()
        self.server = bytearray()


class RecordingPipe:
    """A TCP pipe in front of ``upstream`` that records both directions of each connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recordings: list[_Recording] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            rec = _Recording()
            self.recordings.append(rec)
            for src, dst, buf in ((client, server, rec.client), (server, client, rec.server)):
                thread = threading.Thread(target=self._copy, args=(src, dst, buf), daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        try:
            while data := src.recv(65536):
                buf += data
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


def _split(scenario: str, rec: _Recording) -> Conversation | None:
    client, server = bytes(rec.client), bytes(rec.server)
    if len(client) < 20 or len(server) < 4:
        return None
    offer, rest = client[:20], client[20:]
    pick: bytes | None = None
    if server[:4] == MANIFEST_SLOT:
        end = read_varint(rest, 4)
        if end is None:
            return None
        pick, rest = rest[: end[1]], rest[end[1] :]
        version = (pick[3], pick[2])
    else:
        version = (server[3], server[2])
    messages, _ = dechunk(rest)
    return Conversation(scenario, offer, pick, version, messages)


# -- what the driver is made to do ----------------------------------------------------------------


def _values() -> list[Any]:
    import neo4j.spatial
    import neo4j.time

    return [
        1,
        -1,
        2**40,
        -(2**63),
        1.5,
        float("inf"),
        "text",
        "ünïcödé ✓",
        "",
        [1, "a", None],
        {"a": {"b": [1, 2.5, True]}},
        None,
        True,
        b"\x00\x01\xff",
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6000),
        datetime.datetime(
            2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        neo4j.time.DateTime(2024, 1, 2, 3, 4, 5, 123456789),
        datetime.time(12, 30),
        datetime.timedelta(days=3, seconds=7),
        neo4j.time.Duration(months=14, days=3, seconds=5, nanoseconds=7),
        neo4j.spatial.WGS84Point((12.5, 55.7)),
        neo4j.spatial.CartesianPoint((1.0, 2.0, 3.0)),
    ]


def _scenarios(uri: str, auth: tuple[str, str], broker: str) -> list[tuple[str, Any]]:
    import neo4j

    def execute_query(driver: Any) -> None:
        for value in _values():
            with contextlib.suppress(Exception):
                driver.execute_query("RETURN $x AS x", x=value)

    def paging(driver: Any) -> None:
        with driver.session(fetch_size=3) as session:
            list(session.run("UNWIND range(1, 10) AS i RETURN i"))
            result = session.run("UNWIND range(1, 10) AS i RETURN i")
            result.fetch(2)
            result.consume()

    def explicit(driver: Any) -> None:
        with driver.session() as session:
            with session.begin_transaction(metadata={"app": "fuzz"}, timeout=5) as tx:
                tx.run("CREATE (:FuzzSeed {at: $t}) RETURN 1", t=1).consume()
                tx.run("MATCH (n:FuzzSeed) RETURN count(n)").single()
                tx.commit()
            with session.begin_transaction() as tx:
                tx.run("RETURN 1").consume()
                tx.rollback()
            session.execute_write(lambda tx: tx.run("MATCH (n:FuzzSeed) DELETE n").consume())
            session.execute_read(lambda tx: tx.run("RETURN 1 AS one").single())

    def failure(driver: Any) -> None:
        with driver.session() as session:
            with contextlib.suppress(neo4j.exceptions.Neo4jError):
                session.run("RETURN RETURN").consume()
            with contextlib.suppress(neo4j.exceptions.Neo4jError):
                session.run("RETURN $missing").consume()
            session.run("RETURN 1").consume()

    def system(driver: Any) -> None:
        with driver.session(database="system") as session:
            session.run("SHOW DATABASES").consume()
        driver.execute_query("CALL dbms.components()")
        driver.execute_query("CALL db.ping()")
        driver.verify_connectivity()
        driver.get_server_info()

    def reauth(driver: Any) -> None:
        driver.execute_query("RETURN 1")
        with contextlib.suppress(Exception):
            driver.execute_query("RETURN 2", auth_=("someone", "else"))
        with driver.session(auth=("third", "user")) as session:
            session.run("RETURN 3").consume()

    def bookmarks(driver: Any) -> None:
        with driver.session() as session:
            session.run("RETURN 1").consume()
            marks = session.last_bookmarks()
        with driver.session(bookmarks=marks, default_access_mode=neo4j.READ_ACCESS) as session:
            session.run("RETURN 2").consume()
        with contextlib.suppress(Exception), driver.session(impersonated_user="bob") as session:
            session.run("RETURN 3").consume()

    def streams(driver: Any) -> None:
        with driver.session() as session:
            for text in [
                "SHOW STREAMS",
                f"CREATE STREAM fuzz_seed AS LOAD DATA KAFKA '{broker}' WITH TOPIC "
                "'fuzz' WITH TRANSFORM 'builtin:command' BATCH_INTERVAL 50 "
                "BATCH_SIZE 5 ON ERROR SKIP",
                "TEST STREAM fuzz_seed LIMIT 1 BATCHES",
                "START STREAM fuzz_seed",
                "STOP STREAM fuzz_seed",
                "DROP STREAM fuzz_seed",
            ]:
                with contextlib.suppress(neo4j.exceptions.Neo4jError):
                    session.run(text).consume()

    def run(body: Any, **options: Any) -> Any:
        def go(pipe_uri: str) -> None:
            with neo4j.GraphDatabase.driver(pipe_uri, auth=auth, **options) as driver:
                body(driver)

        return go

    return [
        ("execute_query", run(execute_query)),
        ("paging", run(paging)),
        ("explicit_tx", run(explicit)),
        ("failure", run(failure)),
        ("system", run(system)),
        (
            "notifications",
            run(
                lambda d: d.execute_query("RETURN 1"),
                notifications_min_severity="WARNING",
                notifications_disabled_classifications=["HINT", "GENERIC"],
            ),
        ),
        ("reauth", run(reauth)),
        ("bookmarks", run(bookmarks)),
        ("streams", run(streams)),
        ("routing", lambda pipe_uri: _routing(pipe_uri.replace("bolt://", "neo4j://"), auth)),
    ]


def _routing(uri: str, auth: tuple[str, str]) -> None:
    import neo4j

    with neo4j.GraphDatabase.driver(uri, auth=auth) as driver:
        driver.verify_connectivity()


# The JavaScript driver: 6.3.0, and 5.26.0 (the one Neo4j Browser ships, which sends the same
# Bolt inside WebSocket frames), from conformance/js/node_modules when it is installed.
JS_SCENARIO = """
import neo4j6 from 'neo4j-driver'
import neo4j5 from 'neo4j-driver-5.26'
const neo4j = process.env.JS_DRIVER === '5' ? neo4j5 : neo4j6
const [uri, user, password] = process.argv.slice(1)
const driver = neo4j.driver(uri, neo4j.auth.basic(user, password))
const attempt = async (f) => { try { await f() } catch (e) { } }
for (const x of [1, neo4j.int(2 ** 40), 1.5, 'text', [1, 'a', null], { a: { b: [true] } }, null,
                 new neo4j.types.Date(2024, 2, 29), new neo4j.types.Duration(14, 3, 5, 7),
                 new neo4j.types.Point(4326, 12.5, 55.7)]) {
  await attempt(() => driver.executeQuery('RETURN $x AS x', { x }))
}
const session = driver.session({ fetchSize: 3 })
await attempt(() => session.run('UNWIND range(1, 10) AS i RETURN i'))
await attempt(() => session.run('RETURN RETURN'))
await attempt(async () => {
  const tx = await session.beginTransaction({ metadata: { app: 'fuzz' }, timeout: 5000 })
  await tx.run('RETURN 1')
  await tx.commit()
})
await attempt(() => session.executeRead(tx => tx.run('CALL db.ping()')))
await attempt(() => session.run('SHOW STREAMS'))
await session.close()
const system = driver.session({ database: 'system' })
await attempt(() => system.run('SHOW DATABASES'))
await system.close()
await driver.close()
"""


def _js(uri: str, auth: tuple[str, str], major: str) -> None:
    import os
    import subprocess

    folder = Path(__file__).resolve().parent.parent / "conformance" / "js"
    subprocess.run(
        ["node", "--input-type=module", "-e", JS_SCENARIO, "--", uri, *auth],
        cwd=folder,
        env={**os.environ, "JS_DRIVER": major},
        timeout=60,
        check=True,
        capture_output=True,
    )


def js_available() -> bool:
    import shutil

    folder = Path(__file__).resolve().parent.parent / "conformance" / "js" / "node_modules"
    return shutil.which("node") is not None and (folder / "neo4j-driver-5.26").exists()


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl, as the driver would send it)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def capture(proxy: tuple[str, int], auth: tuple[str, str], broker: str) -> Seeds:
    """Record the driver against the proxy at ``proxy`` (a broker at ``broker`` for streams)."""
    import neo4j

    conversations: list[Conversation] = []
    notes: list[str] = []
    scenarios = _scenarios("", auth, broker)
    if js_available():
        scenarios += [
            ("js-6.3", lambda uri: _js(uri, auth, "6")),
            ("js-5.26", lambda uri: _js(uri, auth, "5")),
        ]
    else:
        notes.append("conformance/js/node_modules missing: no JavaScript driver traffic")
    for name, scenario in scenarios:
        pipe = RecordingPipe(proxy)
        try:
            scenario(f"bolt://127.0.0.1:{pipe.port}")
        except Exception as exc:  # a scenario that fails still recorded what it sent
            notes.append(f"{name}: {type(exc).__name__}: {exc}")
        time.sleep(0.2)
        pipe.close()
        for rec in pipe.recordings:
            conv = _split(name, rec)
            if conv is not None and conv.messages:
                conv.messages = [
                    m.replace(broker.encode(), BROKER_PLACEHOLDER) for m in conv.messages
                ]
                conversations.append(conv)
    drivers = f"neo4j {neo4j.__version__}" + (
        ", neo4j-driver (JS) 6.3.0 and 5.26.0" if js_available() else ""
    )
    return Seeds(
        driver=drivers, conversations=conversations, client_hello=client_hello(), notes=notes
    )

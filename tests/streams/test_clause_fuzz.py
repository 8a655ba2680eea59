"""Stream clauses fuzzed through the running proxy (issue 14, "Measure").

Hypothesis writes stream clauses in every syntax the grammar accepts (the legacy
``CREATE STREAM ... LOAD DATA KAFKA``, Memgraph 2.x's ``CREATE KAFKA STREAM`` and 2.0's
``CREATE STREAM name TOPICS ...``, the mappings, ``ALTER STREAM``, ``SET OFFSET``, ``SKIP FAILED
MESSAGE``, ``CHECK STREAM``), with hostile values where users put them: names (control
characters, NUL, very long, empty, any script), topics (Kafka-illegal, too long, ``.``/``..``),
batch sizes, intervals, limits and timeouts at and past their bounds, and CONFIGS /
CREDENTIALS that reach librdkafka (unknown keys, wrong types, huge values, NUL bytes, the
engine's own keys, security settings). Each CREATE is followed by START, CHECK/TEST, SHOW
STREAMS, SHOW STREAM ... OFFSETS, ALTER, STOP and DROP, now and then in an explicit
transaction (committed or rolled back); random text and mutated clauses are sent as queries
too.

The property, for every statement, against one proxy started for the module (the real broker,
the embedded FalkorDB, the official driver): a success or a Neo4j ``ClientError`` /
``TransientError`` (never the driver's ``ServiceUnavailable`` / ``SessionExpired``: a closed
connection), no "internal error" in any message, the proxy alive, and its log without ERROR
or traceback. Text that is not a stream clause goes to FalkorDB, whose errors are plain text
the backend classifies: there a ``DatabaseError`` (an error FalkorDB wrote that no rule
knows) is clean too, and counted in the summary the last test prints. After the run a
bystander ``RETURN 1`` works, and the proxy restarts on the same data dir (nothing the run
left in the catalog makes it crash).

``BOLTSTREAM_CLAUSE_FUZZ_EXAMPLES=N`` runs N stream cases (and 4 N texts) instead of the few
the suite runs; ``BOLTSTREAM_CLAUSE_FUZZ_SEED`` picks Hypothesis' seed.
"""

from __future__ import annotations

import itertools
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import neo4j
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn
from neo4j.exceptions import ClientError, DatabaseError, Neo4jError, TransientError

from bench.fuzz import LogWatch
from grammar import StreamSyntaxError, looks_like_stream_clause
from grammar.procedures import match_procedure
from tests.streams.broker import Broker
from tests.streams.conftest import KAFKA_TEST_CONFIG, TRANSFORMS
from tests.support import ProxyProcess

EXAMPLES = int(os.environ.get("BOLTSTREAM_CLAUSE_FUZZ_EXAMPLES") or 0)
STREAM_CASES = EXAMPLES or 14
TEXT_CASES = 4 * EXAMPLES if EXAMPLES else 120
KEEP = 6  # streams the stream cases leave in the catalog for the restart at the end
SETTINGS_CASES = min(EXAMPLES // 10, 60) if EXAMPLES else 4
SEED = int(os.environ.get("BOLTSTREAM_CLAUSE_FUZZ_SEED") or 0) or None
VERBOSE = bool(os.environ.get("BOLTSTREAM_CLAUSE_FUZZ_VERBOSE"))  # print every outcome

# A statement the proxy has not answered in this long is stuck (TEST waits 10 s at most,
# CHECK and START ... BATCH_LIMIT as long as their TIMEOUT, which the cases keep small).
STATEMENT_LIMIT = 45.0

pytestmark = pytest.mark.timeout(240 + 12 * EXAMPLES)

# Every way the proxy may refuse a statement cleanly.
CLEAN_ERRORS = (ClientError, TransientError)

MODULE = """
import mgp


@mgp.transformation
def rec(messages: mgp.Messages
        ) -> mgp.Record(query=str, parameters=mgp.Nullable[mgp.Map]):
    out = []
    for i in range(messages.total_messages()):
        m = messages.message_at(i)
        out.append(mgp.Record(query="CREATE (:CfMod {p: $p, o: $o})",
                              parameters={"p": m.payload().decode("utf-8", "replace"),
                                          "o": m.offset()}))
    return out
"""

# What the topics hold: text, numbers, JSON and CUD the mappings read, and bytes that no
# transform or mapping can read (every stream meets a failing message sooner or later).
MESSAGES = [
    "1",
    "1 2",
    '{"id": 1, "name": "a"}',
    '{"op": "merge", "type": "node", "labels": ["CfCud"], "ids": {"id": 7}, "properties": {}}',
    "",
    "\x00",
    '{"id": 1, "id": 2}',
    "boom",
    "x" * 3000,
]
BAD_BYTES = [b"\xff\xfe\x00", b"\xc3"]


# -- the services ------------------------------------------------------------------------------


@dataclass
class Outcome:
    text: str
    ok: bool
    code: str = ""
    message: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Harness:
    """The proxy under test, its log, and the driver the statements go through."""

    proxy: ProxyProcess
    log: LogWatch
    driver: Any
    broker: Broker
    data: Path
    folder: Path
    topics: dict[str, str]
    statements: int = 0
    seen: int = 0  # log events (ERROR, tracebacks) checked so far
    kept: list[str] = field(default_factory=list)  # streams left for the restart (clause text)
    refused: dict[str, int] = field(default_factory=dict)
    unclassified: dict[str, int] = field(default_factory=dict)  # FalkorDB errors, by message

    def alive(self) -> bool:
        return self.proxy.proc is not None and self.proxy.proc.poll() is None

    def say(self, text: str, tx: str = "") -> Outcome:
        """Run ``text`` in an auto-commit transaction, or an explicit one that ends with ``tx``
        ("commit" or "rollback"); check the property on what comes back."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                with self.driver.session() as session:
                    if not tx:
                        box["rows"] = [record.data() for record in session.run(text)]
                        return
                    with session.begin_transaction() as transaction:
                        box["rows"] = [record.data() for record in transaction.run(text)]
                        if tx == "commit":
                            transaction.commit()
                        else:
                            transaction.rollback()
            except BaseException as exc:  # judged below, on the test's thread
                box["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(STATEMENT_LIMIT)
        self.statements += 1
        ours = answered_by_the_proxy(text)
        what = f"the statement {text[:300]!r}"
        assert not worker.is_alive(), f"{what} had no answer in {STATEMENT_LIMIT:g} s"
        assert self.alive(), f"the proxy exited after {what}:\n{self.tail()}"
        # Everything logged since the last check: what a stream does between statements too.
        events = self.log.since(self.seen)
        self.seen += len(events)
        assert not events, f"after {what}, the proxy logged:\n" + "\n".join(events[0].lines)
        error = box.get("error")
        if VERBOSE:
            shown = f"{error.code} {error.message}" if isinstance(error, Neo4jError) else error
            print(f"{text[:200]!r} {tx}\n    -> {shown!r}"[:600])
        if error is None:
            return Outcome(text, True, rows=box["rows"])
        clean = CLEAN_ERRORS if ours else (*CLEAN_ERRORS, DatabaseError)
        assert isinstance(error, clean), f"{what} failed with {error!r}"
        assert isinstance(error, Neo4jError)
        code, message = error.code or "", error.message or ""
        assert "internal error" not in message.lower(), f"{what}: {code} {message}"
        if isinstance(error, DatabaseError):
            self.unclassified[message[:80]] = self.unclassified.get(message[:80], 0) + 1
        self.refused[code] = self.refused.get(code, 0) + 1
        return Outcome(text, False, code, message)

    def rows(self, text: str) -> list[dict[str, Any]]:
        outcome = self.say(text)
        assert outcome.ok, outcome
        return outcome.rows

    def tail(self) -> str:
        return "\n".join(list(self.log)[-40:])


def answered_by_the_proxy(text: str) -> bool:
    """Whether ``text`` is a stream clause or procedure (else it goes to the backend)."""
    try:
        return looks_like_stream_clause(text) or match_procedure(text) is not None
    except StreamSyntaxError:  # a call of one of the procedures that does not parse
        return True


def start(data: Path, folder: Path, broker: Broker, log: LogWatch) -> ProxyProcess:
    proxy = ProxyProcess(
        "--data-dir",
        str(data),
        "--fsync",
        "no",
        "--transform-allowed-dirs",
        str(folder),
        "--transformations-dir",
        str(folder),
        "--kafka-bootstrap-servers",
        broker.bootstrap,
        "--kafka-client-config",
        KAFKA_TEST_CONFIG,
        "--transform-timeout",
        "5",
    )
    proxy.lines = log
    return proxy.start()


@pytest.fixture(scope="module")
def harness(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    folder = tmp_path_factory.mktemp("clause-fuzz-code")
    for name in ("msg.py", "raises.py", "badquery.py", "nostream.py", "syntaxerror.py"):
        (folder / name).write_text(textwrap.dedent(TRANSFORMS[name]))
    (folder / "cfmod.py").write_text(MODULE)
    tag = f"{os.getpid()}"
    topics = {
        "in": broker.create_topic(f"cf_in_{tag}", partitions=2),
        "two": broker.create_topic(f"cf_two_{tag}"),
        "dlq": broker.create_topic(f"cf_dlq_{tag}"),
    }
    broker.produce(topics["in"], [*MESSAGES, *BAD_BYTES] * 3)
    broker.produce(topics["two"], MESSAGES[:3])
    data = tmp_path_factory.mktemp("clause-fuzz-data")
    log = LogWatch()
    proxy = start(data, folder, broker, log)
    with neo4j.GraphDatabase.driver(
        proxy.bolt_uri, auth=("alice", "pw"), connection_timeout=10
    ) as driver:
        h = Harness(proxy, log, driver, broker, data, folder, topics)
        try:
            yield h
        finally:
            proxy.stop()
            h.proxy.stop()  # the restarted one, when the last test restarted it


# -- the values users put in clauses -----------------------------------------------------------

_numbers = itertools.count(1)

# Text the driver can send: any code point but lone surrogates (UTF-8 cannot hold them).
utf8_text = st.text(st.characters(codec="utf-8"), max_size=40)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 8
) -> st.SearchStrategy[Any]:
    """``good`` values, and a ``bad`` one once in ``odds``: most clauses get far enough to
    start a stream, and every value is hostile now and then."""
    return st.integers(0, odds - 1).flatmap(lambda i: bad if i == 0 else good)


def quoted_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def string(value: str) -> str:
    """``value`` as a Cypher string literal (NUL and control characters raw)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def stream_names(draw: DrawFn) -> str:
    """A stream name as clause text: a fresh valid one, or a hostile one."""
    n = next(_numbers)
    fresh = f"cf{os.getpid()}_{n}"
    return draw(
        mostly(
            st.sampled_from(
                [fresh, fresh, quoted_name(f"{fresh}.v2-x"), quoted_name(f"名前_{fresh}")]
            ),
            st.sampled_from(
                [
                    quoted_name("\x00"),
                    quoted_name("a\x00b"),
                    quoted_name(""),
                    quoted_name("\t"),
                    quoted_name(" "),
                    quoted_name(f"{fresh}\n"),
                    quoted_name("\u202e" + fresh),
                    quoted_name("-" + fresh),
                    quoted_name("a`b" + fresh),
                    quoted_name("x" * 128),
                    quoted_name("x" * 129),
                    quoted_name("n" * 5000),
                    quoted_name("é" * 200),
                    "s" * 300,
                    "stream",
                    "STREAMS",
                    quoted_name("DROP STREAM x"),
                ]
            )
            | utf8_text.map(quoted_name),
        )
    )


def topic_values(topics: dict[str, str]) -> st.SearchStrategy[str]:
    return mostly(
        st.sampled_from([topics["in"], topics["in"], topics["two"]]),
        st.sampled_from(
            [
                "",
                ".",
                "..",
                "a b",
                "t" * 249,
                "t" * 250,
                "ü",
                topics["in"] + "\x00",
                "\x00",
                f"{topics['in']},{topics['two']}",
                "__consumer_offsets",
                f"cf_missing_{os.getpid()}",
                "-",
            ]
        )
        | utf8_text,
    )


BAD_NUMBERS = [
    "0",
    "-1",
    "1000000",
    "1000001",
    "3600000",
    "3600001",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    "1" * 40,
    "1.5",
    "1e3",
    "0x10",
    "+5",
    "007",
    "NaN",
]


def counts(low: int, high: int) -> st.SearchStrategy[str]:
    """A number as clause text: mostly in [low, high], sometimes at or past a bound."""
    return mostly(st.integers(low, high).map(str), st.sampled_from(BAD_NUMBERS))


GOOD_SETTINGS = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("client.id", "cf-client"),
    ("fetch.wait.max.ms", "50"),
    ("auto.offset.reset", "earliest"),
    ("isolation.level", "read_committed"),
    ("statistics.interval.ms", "0"),
    ("socket.timeout.ms", "10000"),
    ("max.poll.interval.ms", "300000"),
    ("queued.max.messages.kbytes", "1024"),
]
# Valid settings that make a consumer behave unusually once it runs.
STRANGE_SETTINGS = [
    ("auto.offset.reset", "error"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("group.instance.id", "cf-static"),
    ("group.protocol", "consumer"),
    ("receive.message.max.bytes", "1000"),
    ("fetch.max.bytes", "1"),
    ("fetch.message.max.bytes", "1"),
    ("queued.max.messages.kbytes", "1"),
    ("api.version.request", "false"),
    ("broker.version.fallback", "0.8.0"),
    ("session.timeout.ms", "1"),
    ("heartbeat.interval.ms", "1"),
    ("max.poll.interval.ms", "1"),
    ("socket.timeout.ms", "10"),
    ("statistics.interval.ms", "1"),
    ("debug", "all"),
    ("log.queue", "true"),
    ("log_level", "0"),
    ("topic.metadata.refresh.interval.ms", "-1"),
    ("isolation.level", "read_uncommitted"),
    ("client.id", ""),
    ("security.protocol", "SSL"),
    ("security.protocol", "SASL_PLAINTEXT"),
    ("sasl.mechanism", "SCRAM-SHA-512"),
    ("reconnect.backoff.ms", "0"),
    ("internal.termination.signal", "15"),
    ("internal.termination.signal", "9"),
    ("enable.random.seed", "false"),
    ("check.crcs", "true"),
    ("allow.auto.create.topics", "true"),
]
SETTING_KEYS = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "client.id",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "auto.offset.reset",
    "isolation.level",
    "queued.max.messages.kbytes",
    "socket.timeout.ms",
    "statistics.interval.ms",
    "debug",
    "log_level",
    "group.instance.id",
    "partition.assignment.strategy",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.key.password",
    # the engine's own
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    # what confluent-kafka takes as Python callbacks, and what loads or runs code
    "stats_cb",
    "error_cb",
    "logger",
    "on_commit",
    "oauth_cb",
    "plugin.library.paths",
    "sasl.kerberos.kinit.cmd",
    "ssl.engine.location",
    "ssl.providers",
    "internal.termination.signal",
    # nonsense
    "no.such.setting",
    "",
    "a\x00b",
    "x" * 300,
]
SETTING_VALUES = [
    "",
    "0",
    "-1",
    "1",
    "6000",
    "2000",
    "true",
    "false",
    "yes",
    str(2**63),
    "\x00",
    "a\x00b",
    "\t",
    "x" * 20000,
    "127.0.0.1:1",
    "nowhere.invalid:9092",
    "SASL_SSL",
    "PLAINTEXT",
    "PLAIN",
    "GSSAPI",
    "earliest",
    "latest",
    "read_committed",
    "/etc/passwd",
    "/nonexistent/lib.so",
    "all",
    "cooperative-sticky",
    "ü",
]


@st.composite
def settings_text(draw: DrawFn) -> str:
    pairs = draw(
        st.lists(
            mostly(
                st.sampled_from(GOOD_SETTINGS),
                st.sampled_from(STRANGE_SETTINGS)
                | st.tuples(
                    st.one_of(st.sampled_from(SETTING_KEYS), utf8_text),
                    st.one_of(st.sampled_from(SETTING_VALUES), utf8_text),
                ),
                odds=3,
            ),
            max_size=3,
            unique_by=lambda pair: pair[0],
        )
    )
    return "{" + ", ".join(f"{string(k)}: {string(v)}" for k, v in pairs) + "}"


def consumer_groups() -> st.SearchStrategy[str]:
    return mostly(
        st.builds(lambda: f"cfg_{os.getpid()}_{next(_numbers)}"),
        st.sampled_from(["", "\x00", "\t", " ", "g" * 300, "ü", "a b", "g\x00h"]).map(string)
        | utf8_text.map(string),
        odds=3,
    )


def transforms(folder: Path) -> st.SearchStrategy[str]:
    return mostly(
        st.sampled_from([str(folder / "msg.py")] * 3 + ["builtin:command"]),
        st.sampled_from(
            [
                str(folder / name)
                for name in ("raises.py", "badquery.py", "nostream.py", "syntaxerror.py")
            ]
            + [
                "",
                "\x00",
                str(folder / "msg.py") + "\x00",
                "/etc/passwd",
                str(folder / ".." / "x.py"),
                "builtin:nope",
                "builtin:depc",
                "builtin:request",
                "builtin:cypher",
                "http://127.0.0.1:1/x.py",
                "file:///dev/zero",
                "x" * 5000,
            ]
        )
        | utf8_text,
    )


TEMPLATES = [
    "MERGE (:CfT {v: event})",
    "MERGE (p:CfP {id: event.id}) SET p.name = event.name",
    "RETURN RETURN",
    "CREATE (",
    "",
    "\x00",
    "MATCH (n) DETACH DELETE n",  # what a template may do is the user's business
]
PATTERNS = ["(:CfPat{!id, name})", "(:A{!id})-[:R]->(:B{!id})", "", "(((", "\x00", "(:X)"]


@st.composite
def on_error(draw: DrawFn, dlq: str) -> str:
    return draw(
        mostly(
            st.sampled_from(
                ["ON ERROR STOP", "ON ERROR SKIP", f"ON ERROR DEAD LETTER {string(dlq)}"]
            ),
            st.sampled_from(["''", "'\x00'", "'..'", "'cf_no_such_dlq'"]).map(
                lambda t: f"ON ERROR DEAD LETTER {t}"
            ),
        )
    )


def delivery() -> st.SearchStrategy[str]:
    return st.sampled_from(["DELIVERY AT LEAST ONCE", "DELIVERY EXACTLY ONCE"])


def database() -> st.SearchStrategy[str]:
    return st.sampled_from(["neo4j", "cfdb", quoted_name("\x00"), quoted_name(""), "x" * 300]).map(
        lambda name: f"DATABASE {name}"
    )


# -- the clauses -------------------------------------------------------------------------------


@st.composite
def legacy_create(draw: DrawFn, name: str, h: Harness) -> str:
    uri = draw(
        mostly(
            st.just(h.broker.bootstrap),
            st.sampled_from(
                [
                    "",
                    "\x00",
                    "127.0.0.1:1",
                    "nowhere.invalid:9092",
                    h.broker.bootstrap + "\x00",
                    f"{h.broker.bootstrap},{h.broker.bootstrap}",
                    "x" * 300,
                ]
            ),
        )
    )
    topics = draw(st.lists(topic_values(h.topics), min_size=1, max_size=2, unique=True))
    parts = [f"CREATE STREAM {name} AS LOAD DATA KAFKA {string(uri)}"]
    parts += [f"WITH TOPIC {string(t)}" for t in topics]
    options: list[str] = []
    how = draw(
        mostly(
            st.sampled_from(["transform"] * 3 + ["cypher", "pattern", "cud"]),
            st.sampled_from(["both", "none"]),
        )
    )
    if how in ("transform", "both"):
        options.append(f"WITH TRANSFORM {string(draw(transforms(h.folder)))}")
    if how in ("cypher", "both"):
        options.append(f"WITH CYPHER {string(draw(st.sampled_from(TEMPLATES)))}")
        if draw(st.booleans()):
            options.append(f"WITH FORMAT {draw(st.sampled_from(['JSON', 'TEXT', 'BYTES']))}")
    if how == "pattern":
        for pattern in draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2)):
            options.append(f"WITH PATTERN {string(pattern)}")
        if draw(st.booleans()):
            options.append("MERGE NODE PROPERTIES")
    if how == "cud":
        options.append("WITH FORMAT CUD")
    if draw(st.integers(0, 5)) == 0:
        options.append(draw(database()))
    options += common_options(draw, h)
    return " ".join(parts + draw(st.permutations(options)))


def common_options(draw: DrawFn, h: Harness) -> list[str]:
    """The options both CREATE syntaxes take, each maybe."""
    options = []
    if draw(st.booleans()):
        spelling = draw(st.sampled_from(["BATCH_INTERVAL", "BATCH INTERVAL"]))
        options.append(f"{spelling} {draw(counts(10, 300))}")
    if draw(st.booleans()):
        spelling = draw(st.sampled_from(["BATCH_SIZE", "BATCH SIZE"]))
        options.append(f"{spelling} {draw(counts(1, 40))}")
    if draw(st.integers(0, 2)) == 0:
        options.append(draw(on_error(h.topics["dlq"])))
    if draw(st.integers(0, 3)) == 0:
        options.append(draw(delivery()))
    if draw(st.integers(0, 3)) == 0:
        options.append(f"CONSUMER_GROUP {draw(consumer_groups())}")
    if draw(st.integers(0, 2)) == 0:
        options.append(f"CONFIGS {draw(settings_text())}")
    if draw(st.integers(0, 3)) == 0:
        options.append(f"CREDENTIALS {draw(settings_text())}")
    return options


@st.composite
def kafka_create(draw: DrawFn, name: str, h: Harness) -> str:
    head = draw(st.sampled_from([f"CREATE KAFKA STREAM {name}", f"CREATE STREAM {name}"]))
    options = []
    if draw(st.integers(0, 9)):
        topics = draw(st.lists(topic_values(h.topics), min_size=1, max_size=2, unique=True))
        options.append("TOPICS " + ", ".join(string(t) for t in topics))
    if draw(st.integers(0, 9)):
        transform = draw(
            st.one_of(
                st.just("cfmod.rec"),
                st.just("cfmod.rec"),
                st.sampled_from(["cfmod.nope", "nope.rec", "`\x00`.rec", "cfmod.`\x00`"]),
                transforms(h.folder).map(string),
            )
        )
        options.append(f"TRANSFORM {transform}")
    if draw(st.integers(0, 3)) == 0:
        servers = draw(
            st.sampled_from([h.broker.bootstrap, "", "\x00", "127.0.0.1:1", "nowhere.invalid:9092"])
        )
        options.append(f"BOOTSTRAP_SERVERS {string(servers)}")
    options += common_options(draw, h)
    return " ".join([head, *draw(st.permutations(options))])


@st.composite
def follow_up(draw: DrawFn, name: str, h: Harness) -> str:
    """One clause on the stream ``name`` (or on all streams)."""
    kind = draw(
        st.sampled_from(
            [
                *("start", "start", "start_limit", "start_wait", "check", "check", "test"),
                *("show", "offsets", "alter", "set_offset", "skip", "stop", "stop", "info"),
                *("set_offset_call", "drop", "stop_all", "start_all"),
            ]
        )
    )
    timeout = draw(mostly(st.integers(50, 1500).map(str), st.sampled_from(["0", "-1", "1.5"])))
    match kind:
        case "start":
            return f"START STREAM {name}"
        case "start_limit":
            return f"START STREAM {name} LIMIT {draw(counts(1, 3))} BATCHES"
        case "start_wait":
            return f"START STREAM {name} BATCH_LIMIT {draw(counts(1, 2))} TIMEOUT {timeout}"
        case "check":
            limit = draw(st.one_of(st.just(""), counts(1, 2).map(lambda n: f" BATCH_LIMIT {n}")))
            return f"CHECK STREAM {name}{limit} TIMEOUT {timeout}"
        case "test":
            return f"TEST STREAM {name} LIMIT {draw(counts(1, 2))} BATCHES"
        case "show":
            return "SHOW STREAMS"
        case "offsets":
            return f"SHOW STREAM {name} OFFSETS"
        case "alter":
            choices = {
                "interval": counts(10, 300).map(lambda n: f"BATCH_INTERVAL {n}"),
                "size": counts(1, 40).map(lambda n: f"BATCH_SIZE {n}"),
                "on_error": on_error(h.topics["dlq"]),
                "transform": transforms(h.folder).map(lambda t: f"TRANSFORM {string(t)}"),
            }
            kinds = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, unique=True))
            options = [draw(choices[kind]) for kind in kinds]
            return f"ALTER STREAM {name} SET {' '.join(options)}"
        case "set_offset":
            target = draw(
                st.one_of(
                    st.sampled_from(["BEGINNING", "END"]),
                    counts(0, 30),
                    counts(0, 2**41).map(lambda n: f"TIMESTAMP {n}"),
                )
            )
            partition = draw(
                st.one_of(st.just(""), counts(0, 2).map(lambda n: f" FOR PARTITION {n}"))
            )
            return f"ALTER STREAM {name} SET OFFSET TO {target}{partition}"
        case "skip":
            return f"ALTER STREAM {name} SKIP FAILED MESSAGE"
        case "stop":
            return f"STOP STREAM {name}"
        case "info":
            return f"CALL mg.kafka_stream_info({string(plain(name))})"
        case "set_offset_call":
            offset = draw(st.sampled_from(["-1", "-2", "0", "5", str(2**63), "'x'", "null"]))
            return f"CALL mg.kafka_set_stream_offset({string(plain(name))}, {offset})"
        case "drop":
            return f"DROP STREAM {name}"
        case "start_all":
            return "START ALL STREAMS"
        case _:
            return "STOP ALL STREAMS"


def plain(name: str) -> str:
    """The stream name a clause's name text stands for."""
    if name.startswith("`"):
        return name[1:-1].replace("``", "`")
    return name


@st.composite
def stream_case(draw: DrawFn, h: Harness) -> tuple[str, list[str]]:
    """A stream's name (as clause text), its CREATE, and what is done with it."""
    name = draw(stream_names())
    syntax = draw(st.sampled_from(["legacy", "legacy", "kafka"]))
    create = draw(legacy_create(name, h) if syntax == "legacy" else kafka_create(name, h))
    steps = draw(st.lists(follow_up(name, h), min_size=2, max_size=7))
    return name, [create, *steps]


VOCABULARY = [
    "CREATE",
    "KAFKA",
    "STREAM",
    "STREAMS",
    "TOPICS",
    "TRANSFORM",
    "CONFIGS",
    "CREDENTIALS",
    "{",
    "}",
    ":",
    ",",
    "'k'",
    "'",
    "`",
    "``",
    "\x00",
    "ALTER",
    "SET",
    "OFFSET",
    "TO",
    "BATCH_LIMIT",
    "TIMEOUT",
    "-1",
    str(2**64),
    "START",
    "TEST",
    "CHECK",
    "DROP",
    ";",
    "/*",
    "\n",
    "RETURN 1",
    "CALL mg.kafka_stream_info(",
    ")",
]


@st.composite
def mutated(draw: DrawFn, h: Harness) -> str:
    text = draw(stream_case(h))[1][draw(st.integers(0, 2))]
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        insert = draw(st.one_of(st.sampled_from(["", *VOCABULARY]), utf8_text))
        text = text[:start] + insert + text[end:]
    return text


# -- the properties ----------------------------------------------------------------------------


def fuzz_settings(examples: int) -> Any:
    chosen = settings(
        max_examples=examples,
        deadline=None,  # a busy machine stalls any one example
        # Shrinking re-runs failing cases against a proxy that may be gone: the first failing
        # case, as drawn, is what the report shows (with the statement that broke it).
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    return chosen if SEED is None else lambda f: seed(SEED)(chosen(f))


@fuzz_settings(STREAM_CASES)
@given(st.data())
def test_every_stream_clause_gets_an_answer_or_a_clean_error(
    harness: Harness, data: st.DataObject
) -> None:
    name, case = data.draw(stream_case(harness))
    # Now and then a clause runs in an explicit transaction (committed or rolled back).
    ways = data.draw(
        st.lists(
            st.sampled_from(["", "", "", "", "commit", "rollback"]),
            min_size=len(case),
            max_size=len(case),
        )
    )
    created = harness.say(case[0], ways[0]).ok and ways[0] != "rollback"
    for text, way in zip(case[1:], ways[1:], strict=True):
        harness.say(text, way)
    if not created:
        return
    if len(harness.kept) < KEEP and data.draw(st.integers(0, 3)) == 0:
        # Left in the catalog, started, for the restart at the end (if it still exists).
        if harness.say(f"START STREAM {name}").code != "Neo.ClientError.Statement.EntityNotFound":
            harness.kept.append(name)
        return
    # Whatever happened since, the stream it made can be dropped.
    last = harness.say(f"DROP STREAM {name}")
    assert last.ok or last.code == "Neo.ClientError.Statement.EntityNotFound", last


@fuzz_settings(SETTINGS_CASES)
@given(st.data())
def test_valid_but_unusual_kafka_settings_reach_a_running_stream(
    harness: Harness, data: st.DataObject
) -> None:
    """Settings librdkafka accepts but that make a consumer behave unusually, on a stream that
    is otherwise valid: CREATE takes them or refuses them cleanly, and what the stream does
    with them (START, CHECK, offsets, STOP) stays clean."""
    settings_ = data.draw(
        st.lists(
            st.sampled_from(STRANGE_SETTINGS), min_size=1, max_size=2, unique_by=lambda p: p[0]
        )
    )
    name = f"cfset{os.getpid()}_{next(_numbers)}"
    where = data.draw(st.sampled_from(["CONFIGS", "CREDENTIALS"]))
    pairs = ", ".join(f"{string(k)}: {string(v)}" for k, v in settings_)
    create = data.draw(
        st.sampled_from(
            [
                f"CREATE KAFKA STREAM {name} TOPICS {harness.topics['in']} TRANSFORM cfmod.rec "
                f"BATCH_INTERVAL 50 {where} {{{pairs}}}",
                f"CREATE STREAM {name} AS LOAD DATA KAFKA {string(harness.broker.bootstrap)} "
                f"WITH TOPIC {string(harness.topics['in'])} "
                f"WITH CYPHER 'MERGE (:CfT {{v: event}})' WITH FORMAT TEXT {where} {{{pairs}}}",
            ]
        )
    )
    if not harness.say(create).ok:
        return
    for text in (
        f"CHECK STREAM {name} BATCH_LIMIT 1 TIMEOUT 1500",
        f"START STREAM {name} BATCH_LIMIT 1 TIMEOUT 3000",
        f"START STREAM {name}",
        "SHOW STREAMS",
        f"SHOW STREAM {name} OFFSETS",
        f"STOP STREAM {name}",
        f"ALTER STREAM {name} SET OFFSET TO BEGINNING",
        f"CALL mg.kafka_stream_info({string(name)})",
    ):
        harness.say(text)
    dropped = harness.say(f"DROP STREAM {name}")
    assert dropped.ok, dropped


@fuzz_settings(TEXT_CASES)
@given(st.data())
def test_any_text_gets_an_answer_or_a_clean_error(harness: Harness, data: st.DataObject) -> None:
    text = data.draw(
        st.one_of(
            st.text(st.characters(codec="utf-8"), min_size=1),  # the driver refuses ""
            mutated(harness),
            st.lists(st.sampled_from(VOCABULARY)).map(" ".join),
        ).filter(bool)  # the driver refuses an empty query itself
    )
    harness.say(text)


def test_after_the_run_a_bystander_works_and_the_proxy_restarts(harness: Harness) -> None:
    assert harness.say("RETURN 1 AS one").ok
    # Whatever the run left in the catalog (the stream cases keep a few; the texts make more),
    # and two streams of each kind for sure, started where they can be, so that the restart
    # resumes them.
    tag = f"{os.getpid()}_{next(_numbers)}"
    bootstrap, topic = string(harness.broker.bootstrap), harness.topics["in"]
    for create in (
        f"CREATE KAFKA STREAM cfkeep_mod_{tag} TOPICS {topic} TRANSFORM cfmod.rec "
        "ON ERROR SKIP CONFIGS {'client.id': 'cf-keep'} CREDENTIALS {'sasl.password': 'cf-pw'}",
        f"CREATE STREAM cfkeep_map_{tag} AS LOAD DATA KAFKA {bootstrap} WITH TOPIC '{topic}' "
        "WITH CYPHER 'MERGE (:CfKeep {v: event})' WITH FORMAT TEXT ON ERROR SKIP",
    ):
        assert harness.say(create).ok
    harness.say("START ALL STREAMS")
    time.sleep(2)
    before = {row["name"]: row["status"] for row in harness.rows("SHOW STREAMS")}
    code = harness.proxy.stop()
    assert code == 0, f"the proxy exited with {code}:\n{harness.tail()}"
    events = harness.log.since(harness.seen)
    assert not events, "stopping logged:\n" + "\n".join(events[0].lines)
    harness.proxy = start(harness.data, harness.folder, harness.broker, harness.log)
    with neo4j.GraphDatabase.driver(
        harness.proxy.bolt_uri, auth=("alice", "pw"), connection_timeout=10
    ) as driver:
        harness.driver = driver
        assert harness.say("RETURN 1 AS one").ok
        time.sleep(3)  # the streams that were running start again meanwhile
        after = {row["name"]: row["status"] for row in harness.rows("SHOW STREAMS")}
        assert set(after) == set(before), (before, after)
        for name, status in before.items():  # running ones resume (or stop on their input)
            if status == "running":
                assert after[name] in ("running", "error"), (name, after[name])
        assert harness.say("STOP ALL STREAMS").ok
        for name in after:
            dropped = harness.say(f"DROP STREAM {quoted_name(name)}")
            assert dropped.ok, dropped
        assert harness.say("RETURN 1 AS one").ok
        assert harness.alive()
    running = sorted(name for name, status in before.items() if status == "running")
    print(f"\n{len(before)} streams at the restart, {len(running)} running: {running}")
    print(f"\n{harness.statements} statements; refusals by code: {harness.refused}")
    print(f"FalkorDB errors no rule classifies: {harness.unclassified}")

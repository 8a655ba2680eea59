"""Fuzz inputs: one connection's worth of hostile bytes, made from a seed and an index.

``Generator(seeds, seed).make(i)`` is a pure function of (seeds file, seed, i): input ``i`` can
be made again without making the ones before it, so a finding is reproduced by its index.

Each input is a list of segments sent in order over a plain or TLS socket (waiting for a
reply after a segment when the protocol needs one, as a real client would), then a way to
leave: read until the proxy closes or goes quiet, close at once, reset (RST), or half-close.
The families, each structure-aware and mostly built from the captured driver traffic:

* ``replay``: a captured conversation, re-chunked and re-segmented (the baseline: must work);
* ``handshake``: magic, four-slot offers, ranges, the manifest and its pick and varint;
* ``chunking``: chunk sizes, NOOPs, premature end markers, truncation, headers that lie;
* ``packstream``: a node of a captured message replaced by a hostile value (every marker,
  lengths that lie, huge declared sizes, deep nesting, invalid UTF-8, odd structures);
* ``message``: wrong field counts and types, unknown and response tags, trailing bytes;
* ``statewalk``: a legal prefix to each server state, then any request(s), then recovery;
* ``havoc``: byte-level mutation (flips, interesting bytes, cuts, splices) of a conversation;
* ``websocket``: upgrade requests (bad UTF-8, non-ASCII Host, missing keys) and frames
  (fragments, control frames, masks, opcodes, lying lengths, close codes);
* ``tls-garbage``: mutated and truncated ClientHellos and records on the TLS sniffing path;
* ``clauses``: stream clauses with hostile names, topics, URIs and numbers, then
  START/TEST/STOP/DROP (they reach the native Kafka client).

Bolt-level families are carried over the chosen transport: raw TCP, WebSocket (an upgrade,
then the bytes in binary frames of any size, sometimes fragmented, with pings between), or
TLS (a real TLS session, Bolt or WebSocket inside).
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.fuzzseeds import BROKER_PLACEHOLDER, Conversation, Seeds
from bench.fuzzwire import (
    MAGIC,
    MANIFEST_SLOT,
    Raw,
    Struct,
    chunk,
    pack,
    unpack,
    varint,
    ws_frame,
    ws_upgrade,
)

TRANSPORTS = ("tcp", "ws", "tls")
CLOSES = ("drain", "close", "rst", "half")

# What the proxy speaks (README); 5.5 never.
VERSIONS = [
    (5, 8),
    (5, 7),
    (5, 6),
    (5, 4),
    (5, 3),
    (5, 2),
    (5, 1),
    (5, 0),
    (4, 4),
    (4, 3),
    (4, 2),
    (4, 1),
]

REQUEST_TAGS = {
    "HELLO": 0x01,
    "GOODBYE": 0x02,
    "RESET": 0x0F,
    "RUN": 0x10,
    "BEGIN": 0x11,
    "COMMIT": 0x12,
    "ROLLBACK": 0x13,
    "DISCARD": 0x2F,
    "PULL": 0x3F,
    "TELEMETRY": 0x54,
    "ROUTE": 0x66,
    "LOGON": 0x6A,
    "LOGOFF": 0x6B,
}
RESPONSE_TAGS = [0x70, 0x71, 0x7E, 0x7F]
VALUE_TAGS = [
    0x4E,
    0x52,
    0x72,
    0x50,
    0x44,
    0x54,
    0x74,
    0x64,
    0x49,
    0x69,
    0x46,
    0x66,
    0x45,
    0x58,
    0x59,
    0x56,
    0x3F,
]


@dataclass
class Segment:
    data: bytes
    wait: float = 0.0  # after sending: wait this long at most for an answer (0: don't)


@dataclass
class Input:
    family: str
    transport: str  # tcp | ws | tls (tls: the client does a real TLS handshake first)
    segments: list[Segment]
    close: str = "drain"
    note: str = ""
    seed: int = 0
    index: int = 0
    raw_tcp: bool = False  # sent without TLS even though the family is about TLS
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.transport == "tls" and not self.raw_tcp

    @property
    def size(self) -> int:
        return sum(len(s.data) for s in self.segments)

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "transport": self.transport,
            "raw_tcp": self.raw_tcp,
            "close": self.close,
            "note": self.note,
            "seed": self.seed,
            "index": self.index,
            "segments": [{"data": s.data.hex(), "wait": s.wait} for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Input:
        return cls(
            family=data["family"],
            transport=data["transport"],
            raw_tcp=bool(data.get("raw_tcp", False)),
            close=data.get("close", "drain"),
            note=data.get("note", ""),
            seed=int(data.get("seed", 0)),
            index=int(data.get("index", 0)),
            segments=[
                Segment(bytes.fromhex(s["data"]), float(s.get("wait", 0))) for s in data["segments"]
            ],
        )


def offer(*slots: bytes) -> bytes:
    return MAGIC + b"".join(slots).ljust(16, b"\0")[:16]


def slot(major: int, minor: int, rng: int = 0, reserved: int = 0) -> bytes:
    return bytes((reserved & 0xFF, rng & 0xFF, minor & 0xFF, major & 0xFF))


# -- hostile values -------------------------------------------------------------------------------

INTERESTING_INTS = [
    0,
    -1,
    1,
    127,
    128,
    -16,
    -17,
    255,
    256,
    32767,
    32768,
    -32769,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**63 - 1,
    -(2**63),
    2**53 + 1,
    1000001,
    10**12,
]


def bad_utf8(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"\xff",
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xe2\x82",
            b"\xf4\x90\x80\x80",
            b"a\x80b",
            b"\xfe\xfe\xff\xff",
            b"\xc3",
            b"\xf0\x9f\x98",
        ]
    )


def hostile(rng: random.Random, depth: int = 0) -> Any:
    """A value no well-behaved driver sends: a ``Raw`` lie or an odd but valid value."""
    kind = rng.randrange(16)
    if kind == 0:  # any marker at all, then a few random bytes
        marker = rng.randrange(256)
        return Raw(bytes([marker]) + rng.randbytes(rng.choice([0, 0, 1, 2, 4, 8])))
    if kind == 1:  # a length that promises more than there is
        marker = rng.choice(
            [
                0xD0,
                0xD1,
                0xD2,
                0xD4,
                0xD5,
                0xD6,
                0xD8,
                0xD9,
                0xDA,
                0xCC,
                0xCD,
                0xCE,
                0x8F,
                0x9F,
                0xAF,
                0xBF,
            ]
        )
        size = {0xD0: 1, 0xD4: 1, 0xD8: 1, 0xCC: 1, 0xD1: 2, 0xD5: 2, 0xD9: 2, 0xCD: 2}.get(
            marker, 4 if marker in (0xD2, 0xD6, 0xDA, 0xCE) else 0
        )
        n = rng.choice([2 ** (8 * size) - 1, 2 ** (8 * size - 1), 5]) if size else 0
        return Raw(
            bytes([marker])
            + (n.to_bytes(size, "big") if size else b"")
            + rng.randbytes(rng.randrange(4))
        )
    if kind == 2:  # invalid UTF-8 in a string
        data = rng.randbytes(rng.randrange(3)) + bad_utf8(rng)
        return (
            Raw(bytes([0x80 | len(data)]) + data)
            if len(data) < 16
            else Raw(bytes([0xD0, len(data)]) + data)
        )
    if kind == 3:  # deep nesting
        d = rng.choice([63, 64, 65, 100, 1000, 20000])
        opener = rng.choice([b"\x91", b"\xa1\x81k", b"\xb1\x4e", b"\xd4\x01"])
        return Raw(opener * d + b"\x01")
    if kind == 4:
        return rng.choice(INTERESTING_INTS)
    if kind == 5:
        return rng.choice([float("nan"), float("inf"), -0.0, 1e308, 5e-324])
    if kind == 6:  # strings: NUL, huge, odd scripts, lone surrogates
        return rng.choice(
            [
                "\x00",
                "a\x00b",
                "x" * rng.choice([15, 16, 255, 256, 65535, 65536]),
                "\ud800",
                "名前",
                "`",
                "'",
                "\\",
                "${x}",
                "\u202e",
                "\t\n\r",
            ]
        )
    if kind == 7:  # a value structure with any field count and types
        tag = rng.choice([*VALUE_TAGS, rng.randrange(256)])
        count = rng.choice([0, 1, 2, 3, 4, 5, 8, 15])
        return Struct(tag, tuple(leaf(rng) for _ in range(count)))
    if kind == 8:  # a map whose keys are not strings, or repeat
        return Raw(
            b"\xa2"
            + rng.choice([b"\x01\x01", b"\xc0\x01", b"\x91\x01\x01", b"\x81a\x01"])
            + b"\x81a\x02"
        )
    if kind == 9:  # a structure marker claiming more fields than follow
        return Raw(bytes([0xB0 | rng.randrange(16), rng.randrange(256)]))
    if kind == 10:
        return rng.randbytes(rng.choice([0, 1, 300]))
    if kind == 11 and depth < 3:
        return [hostile(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    if kind == 12 and depth < 3:
        return {rng.choice(["a", "", "\x00", "n", "qid", "db"]): hostile(rng, depth + 1)}
    if kind == 13:  # temporal/spatial structures with values out of any range
        return rng.choice(
            [
                Struct(0x44, (2**62,)),
                Struct(0x49, (2**63 - 1, 2**31, 99999)),
                Struct(0x69, (0, 0, "Mars/Olympus_Mons")),
                Struct(0x69, (0, 0, "")),
                Struct(0x66, (10**15, -1, "\x00")),
                Struct(0x46, (-(2**63), 0, 0)),
                Struct(0x45, (2**63 - 1, 2**63 - 1, 2**63 - 1, 2**31)),
                Struct(0x54, (-1, 2**40)),
                Struct(0x74, (2**63 - 1,)),
                Struct(0x64, (2**63 - 1, -1)),
                Struct(0x58, (-1, float("nan"), float("inf"))),
                Struct(0x59, (4979, 1.0, 2.0, None)),
                Struct(0x4E, (1, ["L"], {}, "4:x:1")),
                Struct(0x56, (b"\xc8", b"\x01\x02")),
            ]
        )
    if kind == 14:  # a bare reserved marker
        reserved = [0xC4, 0xC5, 0xC6, 0xC7, 0xCF, 0xD3, 0xD7, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF]
        return Raw(bytes([rng.choice(reserved + list(range(0xE0, 0xF0)))]))
    return rng.choice([None, True, False, "", [], {}])


def leaf(rng: random.Random) -> Any:
    return rng.choice([None, 0, -1, 2**40, 1.5, "s", "", [], {}, True, b"\x00"])


def mutate_value(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """Replace one node somewhere in ``value`` (descending at random)."""
    children: list[Any] = []
    if isinstance(value, list):
        children = list(range(len(value)))
    elif isinstance(value, dict):
        children = list(value)
    elif isinstance(value, Struct):
        children = list(range(len(value.fields)))
    if not children or rng.random() < 0.3 or depth > 8:
        roll = rng.random()
        if roll < 0.6:
            return hostile(rng)
        if roll < 0.8:  # a type swap
            return rng.choice([None, 1, "x", [value], {"v": value}, 1.0, b"", True])
        if isinstance(value, dict):  # add or drop keys
            out = dict(value)
            if out and rng.random() < 0.5:
                out.pop(rng.choice(list(out)))
            else:
                out[
                    rng.choice(
                        [
                            "n",
                            "qid",
                            "db",
                            "mode",
                            "bookmarks",
                            "scheme",
                            "routing",
                            "tx_timeout",
                            "imp_user",
                            "user_agent",
                            "patch_bolt",
                            rng.randbytes(3).hex(),
                        ]
                    )
                ] = hostile(rng)
            return out
        if isinstance(value, list):
            return [*value, hostile(rng)] if rng.random() < 0.5 else value[1:]
        return hostile(rng)
    key = rng.choice(children)
    if isinstance(value, list):
        out_list = list(value)
        out_list[key] = mutate_value(rng, value[key], depth + 1)
        return out_list
    if isinstance(value, dict):
        out_map = dict(value)
        out_map[key] = mutate_value(rng, value[key], depth + 1)
        return out_map
    assert isinstance(value, Struct)
    fields = list(value.fields)
    fields[key] = mutate_value(rng, fields[key], depth + 1)
    return Struct(value.tag, tuple(fields))


# -- well-formed requests for any version ---------------------------------------------------------


def auth_map(rng: random.Random) -> dict[str, Any]:
    return rng.choice(
        [
            {"scheme": "basic", "principal": "neo4j", "credentials": "x"},
            {"scheme": "none"},
            {},
            {"scheme": "bearer", "credentials": "t"},
            {"scheme": "basic", "principal": "neo4j"},
            {"scheme": "kerberos"},
        ]
    )


def hello(rng: random.Random, version: tuple[int, int]) -> Struct:
    extra: dict[str, Any] = {"user_agent": "neo4j-python/6.4.1 Python/3.11.7-final-0 (linux)"}
    if version >= (5, 3):
        extra["bolt_agent"] = {
            "product": "neo4j-python/6.4.1",
            "platform": "Linux",
            "language": "Python/3.11.7-final-0",
        }
    if rng.random() < 0.3:
        extra["routing"] = {"address": "127.0.0.1:7687"}
    if (4, 3) <= version < (5, 0):
        extra["patch_bolt"] = ["utc"]
    if version < (5, 1):
        extra.update(auth_map(rng))
    return Struct(0x01, (extra,))


def request(rng: random.Random, name: str, version: tuple[int, int]) -> Struct:
    """A plausible request ``name`` shaped for ``version`` (defined in it or not)."""
    if name == "HELLO":
        return hello(rng, version)
    if name == "LOGON":
        return Struct(0x6A, (auth_map(rng),))
    if name == "RUN":
        query = rng.choice(
            [
                "RETURN 1 AS x",
                "UNWIND range(1, 5) AS i RETURN i",
                "RETURN RETURN",
                "RETURN $p AS p",
                "MATCH (n) RETURN count(n)",
                "SHOW STREAMS",
                "CALL db.ping()",
                "CREATE (:FuzzScratch) RETURN 1",
                "BEGIN",
                "COMMIT",
                "ROLLBACK",
                "SHOW DATABASES",
                "CALL dbms.components()",
            ]
        )
        extra = rng.choice(
            [
                {},
                {"db": "neo4j"},
                {"mode": "r"},
                {"bookmarks": ["boltstream:1"]},
                {"tx_timeout": 1000, "tx_metadata": {"a": 1}},
                {"db": "system"},
                {"imp_user": "bob"},
            ]
        )
        return Struct(0x10, (query, {"p": rng.choice([1, "x", [1], None])}, extra))
    if name in ("PULL", "DISCARD"):
        extra = rng.choice(
            [
                {"n": -1},
                {"n": 1},
                {"n": 1000},
                {"n": 2, "qid": 0},
                {"n": -1, "qid": -1},
                {"n": 1, "qid": 7},
                {"n": 0},
                {"n": -2},
            ]
        )
        return Struct(REQUEST_TAGS[name], (extra,))
    if name == "BEGIN":
        return Struct(
            0x11,
            (
                rng.choice(
                    [{}, {"mode": "r"}, {"db": "neo4j"}, {"tx_timeout": 5000}, {"db": "nope"}]
                ),
            ),
        )
    if name == "TELEMETRY":
        return Struct(0x54, (rng.choice([0, 1, 2, 3, 4, -1]),))
    if name == "ROUTE":
        third: Any = {"db": "neo4j"} if version >= (4, 4) else "neo4j"
        return Struct(0x66, ({"address": "127.0.0.1:7687"}, [], rng.choice([third, None, {}])))
    return Struct(REQUEST_TAGS[name], ())


# States the walk can reach with a legal prefix, and how (bolt.md §6).
def state_prefix(state: str, version: tuple[int, int], rng: random.Random) -> list[Struct]:
    ready = [hello(rng, version)]
    if version >= (5, 1):
        ready.append(Struct(0x6A, ({"scheme": "basic", "principal": "neo4j", "credentials": "x"},)))
    run = Struct(0x10, ("UNWIND range(1, 3) AS i RETURN i", {}, {}))
    return {
        "NEGOTIATION": [],
        "AUTHENTICATION": ready[:1],
        "READY": ready,
        "STREAMING": [*ready, run],
        "TX_READY": [*ready, Struct(0x11, ({},))],
        "TX_STREAMING": [*ready, Struct(0x11, ({},)), run],
        "FAILED": [*ready, Struct(0x3F, ({"n": -1},))],
        "AFTER_GOODBYE": [*ready, Struct(0x02, ())],
        "AFTER_LOGOFF": [*ready, Struct(0x6B, ())],
    }[state]


STATES = [
    "NEGOTIATION",
    "AUTHENTICATION",
    "READY",
    "STREAMING",
    "TX_READY",
    "TX_STREAMING",
    "FAILED",
    "AFTER_GOODBYE",
    "AFTER_LOGOFF",
]


def legacy_offer(version: tuple[int, int]) -> bytes:
    return offer(slot(version[0], version[1]))


# -- the generator --------------------------------------------------------------------------------


Bolt = list[Segment]  # Bolt-level segments before the transport wraps them


class Generator:
    def __init__(self, seeds: Seeds, seed: int, transports: tuple[str, ...] = TRANSPORTS) -> None:
        self.seeds = seeds
        self.seed = seed
        self.transports = transports
        self.convs = seeds.conversations
        self.families: list[tuple[str, float, Callable[[random.Random], Bolt]]] = [
            ("replay", 1, self.replay),
            ("handshake", 3, self.handshake),
            ("chunking", 3, self.chunking),
            ("packstream", 6, self.packstream),
            ("message", 4, self.message),
            ("statewalk", 6, self.statewalk),
            ("havoc", 4, self.havoc),
            ("clauses", 0.6, self.clauses),
        ]

    def make(self, index: int) -> Input:
        rng = random.Random(f"{self.seed}:{index}")
        self._note = ""
        transport = rng.choice(self.transports)
        families = list(self.families)
        if transport in ("ws", "tls") and rng.random() < (0.25 if transport == "ws" else 0.1):
            family, bolt = "websocket", None
        elif transport == "tls" and rng.random() < 0.25:
            family, bolt = "tls-garbage", None
        else:
            names = [f[0] for f in families]
            weights = [f[1] for f in families]
            family = rng.choices(names, weights)[0]
            bolt = dict((f[0], f[2]) for f in families)[family](rng)
        close = rng.choices(CLOSES, [6, 2, 1, 1])[0]
        if family == "websocket":
            segments = self.websocket(rng)
            inp = Input(family, transport, segments, close)
        elif family == "tls-garbage":
            inp = Input(family, transport, self.tls_garbage(rng), close, raw_tcp=True)
        else:
            assert bolt is not None
            inside_ws = transport == "ws" or (transport == "tls" and rng.random() < 0.3)
            segments = self.over_websocket(rng, bolt) if inside_ws else bolt
            inp = Input(family, transport, segments, close)
        inp.seed, inp.index = self.seed, index
        inp.note = self._note
        return inp

    _note = ""

    def note(self, text: str) -> None:
        self._note = text

    # -- helpers ----------------------------------------------------------------------------------

    def conv(self, rng: random.Random) -> Conversation:
        return rng.choice(self.convs)

    def opening(self, conv: Conversation) -> bytes:
        return conv.offer + (conv.pick or b"")

    @staticmethod
    def frame(rng: random.Random, payloads: list[bytes]) -> bytes:
        """Chunk payloads the way drivers do, sometimes with small chunks and NOOPs."""
        out = bytearray()
        for p in payloads:
            if not p:
                continue
            if rng.random() < 0.15:
                out += b"\x00\x00" * rng.randrange(1, 4)
            size = 0xFFFF if rng.random() < 0.8 else rng.choice([1, 2, 3, 7, 16, 100])
            out += chunk(p, size)
        return bytes(out)

    @staticmethod
    def segment(rng: random.Random, data: bytes) -> Bolt:
        """Usually one write; sometimes cut at random places (a split chunk header...)."""
        if len(data) < 2 or rng.random() < 0.8:
            return [Segment(data)]
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 5))))
        bounds = [0, *cuts, len(data)]
        return [Segment(data[a:b], 0.002) for a, b in itertools.pairwise(bounds)]

    def session(
        self,
        rng: random.Random,
        version: tuple[int, int],
        messages: list[Any],
        manifest: bool = False,
    ) -> Bolt:
        """A handshake for ``version`` (legacy or through the manifest), then ``messages``."""
        if manifest:
            head = [
                Segment(offer(MANIFEST_SLOT, slot(5, 8, 8), slot(4, 4, 2)), 0.3),
                Segment(slot(version[0], version[1]) + b"\x00"),
            ]
        else:
            head = [Segment(legacy_offer(version))]
        body = self.frame(rng, [m if isinstance(m, bytes) else pack(m) for m in messages])
        return head + self.segment(rng, body)

    # -- families ---------------------------------------------------------------------------------

    def replay(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        self.note(f"replay {conv.scenario}")
        head = [Segment(conv.offer, 0.3)] + ([Segment(conv.pick)] if conv.pick else [])
        return head + self.segment(rng, self.frame(rng, conv.messages))

    def handshake(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        rest = self.frame(rng, conv.messages[: rng.randrange(0, 4)])
        kind = rng.randrange(8)
        if kind == 0:  # the magic wrong, cut, or doubled
            magic = rng.choice(
                [
                    rng.randbytes(4),
                    MAGIC[: rng.randrange(1, 4)],
                    MAGIC * 2,
                    bytes([MAGIC[0] ^ 1]) + MAGIC[1:],
                    b"\x60\x60\xb0\x16",
                ]
            )
            self.note(f"magic {magic.hex()}")
            return [Segment(magic + rng.choice([b"", conv.offer[4:], rng.randbytes(16)]))]
        if kind == 1:  # four slots of anything
            slots = [self._slot(rng) for _ in range(4)]
            self.note("slots " + " ".join(s.hex() for s in slots))
            return [Segment(offer(*slots), 0.2), Segment(rest)]
        if kind == 2:  # an offer cut short, then silence or close
            n = rng.randrange(1, 20)
            self.note(f"offer cut at {n}")
            return [Segment(conv.offer[:n], rng.choice([0.0, 0.1]))]
        if kind == 3:  # the manifest, then a pick that is bad in some way
            pick, note = self._pick(rng)
            pos = rng.randrange(4)
            slots = [slot(5, 8, 8), slot(4, 4, 2), slot(3, 0)]
            slots.insert(
                pos,
                rng.choice(
                    [MANIFEST_SLOT, b"\x00\x00\x02\xff", b"\x00\x01\x01\xff", b"\x01\x00\x01\xff"]
                ),
            )
            self.note(f"manifest at slot {pos}, pick {note}")
            return [Segment(offer(*slots[:4]), rng.choice([0.3, 0.0])), Segment(pick + rest)]
        if kind == 4:  # the manifest with the pick pipelined, or sent byte by byte
            pick, note = self._pick(rng)
            self.note(f"manifest, pick {note} byte by byte")
            return (
                [Segment(offer(MANIFEST_SLOT), 0.3)]
                + [Segment(bytes([b]), 0.002) for b in pick]
                + [Segment(rest)]
            )
        if kind == 5:  # a version outside what we speak, or 5.5 alone
            v = rng.choice([(5, 5), (6, 0), (3, 0), (1, 0), (4, 0), (255, 255), (0, 1), (5, 9)])
            self.note(f"only {v}")
            return [Segment(offer(slot(*v, rng.choice([0, 0, 1]))), 0.2), Segment(rest)]
        if kind == 6:  # a legal offer with the session pipelined behind it
            self.note("offer with HELLO pipelined")
            return [Segment(conv.offer + (conv.pick or b"") + rest)]
        n = rng.choice([1, 2, 3, 4, 100])
        self.note(f"offer repeated {n} times")
        return [Segment(conv.offer * n)]

    def _slot(self, rng: random.Random) -> bytes:
        return rng.choice(
            [
                slot(*rng.choice(VERSIONS)),
                slot(5, 8, 8),
                slot(4, 4, 2),
                slot(5, 8, 255),
                slot(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                MANIFEST_SLOT,
                b"\x00\x00\x00\x00",
                slot(5, 5),
                slot(5, 6, 1),
                rng.randbytes(4),
                slot(4, 4, 0, reserved=1),
                slot(0xFF, 0, 1),
                slot(0xFF, 2),
            ]
        )

    def _pick(self, rng: random.Random) -> tuple[bytes, str]:
        kind = rng.randrange(7)
        if kind == 0:
            v = rng.choice(VERSIONS)
            return slot(*v) + b"\x00", f"{v} ok"
        if kind == 1:
            v = rng.choice([(5, 5), (6, 0), (4, 0), (9, 9), (3, 0), (0xFF, 1), (5, 9)])
            return slot(*v) + b"\x00", f"{v} not offered"
        if kind == 2:
            return b"\x00\x00\x00\x00\x00", "0.0 (nothing)"
        if kind == 3:
            n = rng.choice([10, 11, 12, 50])
            return slot(5, 8) + b"\x80" * (n - 1) + b"\x01", f"capabilities varint of {n} bytes"
        if kind == 4:
            return slot(5, 8) + varint(rng.choice([1, 2**32, 2**63])), "capabilities set"
        if kind == 5:
            return slot(5, 8) + b"\x80", "varint cut"
        return slot(5, 8, rng.randrange(1, 9)) + b"\x00", "pick with a range byte"

    def chunking(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        payloads = conv.messages
        kind = rng.randrange(7)
        opening = self.opening(conv)
        if kind == 0:
            size = rng.choice([1, 2, 3, 5, 64, 255])
            body = b"".join(chunk(p, size) for p in payloads)
            self.note(f"chunks of {size}")
        elif kind == 1:
            n = rng.choice([1, 2, 100, 5000])
            body = b"\x00\x00" * n + self.frame(rng, payloads)
            self.note(f"{n} NOOPs first")
        elif kind == 2:  # an end marker in the middle of a message
            p = rng.choice(payloads)
            cut = rng.randrange(1, max(2, len(p)))
            body = chunk(p[:cut]) + chunk(p[cut:]) if cut < len(p) else chunk(p)
            self.note(f"message cut in two at {cut}")
        elif kind == 3:  # truncated anywhere
            full = self.frame(rng, payloads)
            cut = rng.randrange(0, len(full) + 1)
            body = full[:cut]
            self.note(f"stream cut at {cut} of {len(full)}")
        elif kind == 4:  # a header that promises more than comes
            n = rng.choice([0xFFFF, 0x8000, 0x1000, 300])
            body = (
                self.frame(rng, payloads[:2])
                + n.to_bytes(2, "big")
                + rng.randbytes(rng.randrange(0, 64))
            )
            self.note(f"header promising {n}")
        elif kind == 5:  # a large message in many maximal chunks
            big = pack(Struct(0x10, ("RETURN $p", {"p": "x" * rng.choice([70000, 200000])}, {})))
            body = self.frame(rng, payloads[:2]) + chunk(big, rng.choice([0xFFFF, 1000]))
            self.note(f"{len(big)}-byte RUN")
        else:  # chunk sizes differing per chunk, NOOPs between every message
            body = b"".join(b"\x00\x00" + chunk(p, rng.randrange(1, 40)) for p in payloads)
            self.note("random chunk sizes, NOOPs between")
        head = [Segment(conv.offer, 0.3)] + ([Segment(conv.pick)] if conv.pick else [])
        if rng.random() < 0.5:
            head = [Segment(opening)]
        return head + self.segment(rng, body)

    def _decoded(self, conv: Conversation) -> list[Any]:
        out = []
        for m in conv.messages:
            try:
                out.append(unpack(m))
            except Exception:
                out.append(Raw(m))
        return out

    def packstream(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        messages = self._decoded(conv)
        if rng.random() < 0.25 or not messages:  # a RUN parameter, the plainest carrier
            value = hostile(rng)
            messages = [
                *messages[:2],
                Struct(0x10, ("RETURN $p AS p", {"p": value}, {})),
                Struct(0x3F, ({"n": -1},)),
            ]
            self.note(f"RUN parameter {pack(value)[:24].hex()}")
        else:
            i = rng.randrange(len(messages))
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                messages[i] = mutate_value(rng, messages[i])
            self.note(f"{conv.scenario} message {i} mutated: {pack(messages[i])[:32].hex()}")
        return self._send(rng, conv, messages)

    def _send(self, rng: random.Random, conv: Conversation, messages: list[Any]) -> Bolt:
        body = self.frame(rng, [pack(m) for m in messages])
        head = [Segment(conv.offer, 0.3)] + ([Segment(conv.pick)] if conv.pick else [])
        return head + self.segment(rng, body)

    def message(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        messages = self._decoded(conv)
        i = rng.randrange(len(messages))
        target = messages[i]
        kind = rng.randrange(7)
        if kind == 0 and isinstance(target, Struct):  # a field more or less
            fields = list(target.fields)
            if fields and rng.random() < 0.5:
                fields.pop(rng.randrange(len(fields)))
            else:
                fields.insert(rng.randrange(len(fields) + 1), leaf(rng))
            messages[i] = Struct(target.tag, tuple(fields))
            self.note(f"message {i}: {len(fields)} fields")
        elif kind == 1 and isinstance(target, Struct):  # a field of the wrong type
            fields = list(target.fields)
            if fields:
                j = rng.randrange(len(fields))
                fields[j] = rng.choice([None, 1, "s", [], 1.5, b"", True, Struct(0x4E, ())])
            messages[i] = Struct(target.tag, tuple(fields))
            self.note(f"message {i}: field type swapped")
        elif kind == 2:  # an unknown or response tag
            tag = rng.choice([rng.randrange(256), *RESPONSE_TAGS])
            messages[i] = Struct(tag, target.fields if isinstance(target, Struct) else ())
            self.note(f"message {i}: tag {tag:02X}")
        elif kind == 3:  # not a structure at all
            messages[i] = Raw(pack(hostile(rng)))
            self.note(f"message {i}: not a structure")
        elif kind == 4:  # trailing bytes, or two structures in one message
            messages[i] = Raw(pack(target) + rng.choice([b"\x00", pack(target), b"\xb0\x0f"]))
            self.note(f"message {i}: trailing bytes")
        elif kind == 5:  # more than 15 fields: the nibble wraps, the rest trails
            messages[i] = Struct(
                rng.choice(list(REQUEST_TAGS.values())),
                tuple(leaf(rng) for _ in range(rng.choice([16, 17, 31]))),
            )
            self.note(f"message {i}: over 15 fields")
        else:  # messages repeated or reordered
            messages = messages[:i] + [target] * rng.choice([2, 10, 200]) + messages[i + 1 :]
            self.note(f"message {i} repeated")
        return self._send(rng, conv, messages)

    def statewalk(self, rng: random.Random) -> Bolt:
        version = rng.choice(VERSIONS)
        state = rng.choice(STATES)
        messages: list[Any] = list(state_prefix(state, version, rng))
        names = list(REQUEST_TAGS)
        walk = [rng.choice(names) for _ in range(rng.choice([1, 1, 2, 3, 5]))]
        for name in walk:
            req = request(rng, name, version)
            if rng.random() < 0.1:
                req = mutate_value(rng, req)
            messages.append(req)
        if rng.random() < 0.5:  # then recover, as a driver would
            messages += [
                Struct(0x0F, ()),
                Struct(0x10, ("RETURN 1 AS x", {}, {})),
                Struct(0x3F, ({"n": -1},)),
            ]
        if rng.random() < 0.3:
            messages.append(Struct(0x02, ()))
        self.note(f"Bolt {version[0]}.{version[1]} {state} + {' '.join(walk)}")
        return self.session(
            rng, version, messages, manifest=version >= (5, 7) and rng.random() < 0.3
        )

    def havoc(self, rng: random.Random) -> Bolt:
        conv = self.conv(rng)
        data = bytearray(self.opening(conv) + self.frame(rng, conv.messages))
        keep = 20 if rng.random() < 0.7 else 0  # mostly past the handshake
        ops = []
        for _ in range(rng.choice([1, 1, 2, 4, 8, 16])):
            if len(data) <= keep + 1:
                break
            pos = rng.randrange(keep, len(data))
            op = rng.randrange(7)
            if op == 0:
                data[pos] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[pos] = rng.choice(
                    [0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xD2, 0xB1, 0x10, rng.randrange(256)]
                )
            elif op == 2:
                data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
            elif op == 3:
                del data[pos : pos + rng.randrange(1, 17)]
            elif op == 4:
                n = rng.randrange(1, 33)
                data[pos:pos] = data[pos : pos + n]
            elif op == 5:  # splice another conversation in
                other = self.frame(rng, self.conv(rng).messages)
                data[pos:] = other[rng.randrange(len(other)) :]
            else:
                struct.pack_into(
                    ">H",
                    data,
                    min(pos, len(data) - 2),
                    rng.choice([0, 1, 0xFFFF, 0x7FFF, len(data)]),
                )
            ops.append(f"{op}@{pos}")
        self.note(f"havoc on {conv.scenario}: {' '.join(ops)}")
        return [Segment(bytes(data[:20]), 0.3), *self.segment(rng, bytes(data[20:]))]

    # -- stream clauses ---------------------------------------------------------------------------

    def clauses(self, rng: random.Random) -> Bolt:
        name = rng.choice(
            [
                f"fz_{self.seed}_{rng.randrange(10**9)}",
                "`\x00`",
                "`a\x00b`",
                "`\t`",
                "` `",
                "``",
                "`" + "x" * rng.choice([128, 129, 5000]) + "`",
                "`名前`",
                "`a``b`",
                "`-a`",
                "`.a`",
                "`\ud800`",
                "`a/b`",
                "`" + "é" * 100 + "`",
                "x" * 300,
                "`\n`",
                "`\x7f`",
            ]
        )
        broker = BROKER_PLACEHOLDER.decode()
        uri = rng.choice(
            [broker] * 6
            + [
                "",
                "\x00",
                "127.0.0.1:1",
                "127.0.0.1:-1",
                "x" * 300,
                f"{broker},{broker}",
                "[::1]:x",
                f"{broker}\x00",
            ]
        )
        topic = rng.choice(
            ["fuzz"] * 5 + ["", "\x00", "fuzz\x00x", "t" * 300, "ü", "a b", "..", "nope_topic"]
        )
        transform = rng.choice(
            ["builtin:command"] * 3
            + [
                "builtin:depc",
                "builtin:request",
                "builtin:nope",
                "",
                "/etc/passwd",
                "\x00",
                "http://127.0.0.1:1/x.py",
                "file:///dev/zero",
                "transforms/../../x.py",
            ]
        )
        numbers = [
            "0",
            "1",
            "-1",
            "1000000",
            "1000001",
            str(2**31),
            str(2**63 - 1),
            str(2**63),
            str(2**64),
            "1" * 40,
            "1.5",
            "1e309",
            "0x10",
            "NaN",
        ]
        options = []
        for option in ["BATCH_INTERVAL", "BATCH_SIZE", "BATCH INTERVAL", "BATCH SIZE"]:
            if rng.random() < 0.3:
                options.append(f"{option} {rng.choice(numbers)}")
        if rng.random() < 0.3:
            options.append(
                rng.choice(
                    [
                        "ON ERROR STOP",
                        "ON ERROR SKIP",
                        "ON ERROR DEAD LETTER 'fuzz.dlq'",
                        "ON ERROR DEAD LETTER 'fuzz'",
                        "ON ERROR DEAD LETTER ''",
                        "ON ERROR DEAD LETTER '\x00'",
                    ]
                )
            )
        create = (
            f"CREATE STREAM {name} AS LOAD DATA KAFKA '{uri}' WITH TOPIC '{topic}' "
            f"WITH TRANSFORM '{transform}' " + " ".join(options)
        )
        texts = [create]
        for verb in rng.sample(["START", "TEST", "STOP", "SHOW", "START_LIMIT"], rng.randrange(4)):
            if verb == "SHOW":
                texts.append("SHOW STREAMS")
            elif verb == "START_LIMIT":
                texts.append(f"START STREAM {name} LIMIT {rng.choice(numbers)} BATCHES")
            else:
                texts.append(f"{verb} STREAM {name}")
        texts.append(f"DROP STREAM {name}")
        if rng.random() < 0.2:  # and the text itself mangled
            i = rng.randrange(len(texts))
            t = texts[i]
            pos = rng.randrange(len(t) + 1)
            texts[i] = (
                t[:pos]
                + rng.choice(["\x00", "'", "`", " ", "\n", "\\", "(", ""])
                + t[pos + rng.randrange(3) :]
            )
        version = rng.choice([(5, 8), (5, 4), (4, 4)])
        messages: list[Any] = list(state_prefix("READY", version, rng))
        for text in texts:
            messages += [Struct(0x10, (text, {}, {})), Struct(0x3F, ({"n": -1},)), Struct(0x0F, ())]
        self.note("clauses: " + " | ".join(t[:80] for t in texts))
        # Each clause waits for its answer, so that the next one sees its effect.
        head = [Segment(legacy_offer(version), 0.3)]
        waits = {0x01: 2.0, 0x6A: 2.0, 0x0F: 8.0}  # HELLO, LOGON, and the RESET after each
        body = [Segment(chunk(pack(m)), waits.get(m.tag, 0.0)) for m in messages]
        return head + body

    # -- transports -------------------------------------------------------------------------------

    def over_websocket(self, rng: random.Random, bolt: Bolt) -> list[Segment]:
        """Bolt segments carried in binary frames after an upgrade, as a browser sends them."""
        out = [Segment(ws_upgrade(), 0.5)]
        for seg in bolt:
            out.append(Segment(self._frames(rng, seg.data), seg.wait))
        return out

    def _frames(self, rng: random.Random, data: bytes) -> bytes:
        mask = b"\0\0\0\0" if BROKER_PLACEHOLDER in data else rng.randbytes(4)
        if not data:
            return b""
        roll = rng.random()
        if roll < 0.7:
            return ws_frame(data, mask=mask)
        if roll < 0.9:  # fragmented, with a ping between
            cut = rng.randrange(0, len(data) + 1)
            return (
                ws_frame(data[:cut], fin=False, mask=mask)
                + (ws_frame(b"p", opcode=9, mask=mask) if rng.random() < 0.5 else b"")
                + ws_frame(data[cut:], opcode=0, mask=mask)
            )
        # several messages: a Bolt message across frames
        out = bytearray()
        pos = 0
        while pos < len(data):
            n = rng.randrange(1, 64)
            out += ws_frame(data[pos : pos + n], mask=mask)
            pos += n
        return bytes(out)

    def websocket(self, rng: random.Random) -> list[Segment]:
        conv = self.conv(rng)
        bolt = self.opening(conv) + self.frame(rng, conv.messages)
        if rng.random() < 0.4:  # the upgrade request itself
            request, note = self._bad_upgrade(rng)
            self.note(f"upgrade: {note}")
            return [Segment(request, 0.3), Segment(ws_frame(bolt, mask=rng.randbytes(4)))]
        mask = rng.randbytes(4)
        kind = rng.randrange(12)
        notes = [
            "text message",
            "reserved opcode",
            "RSV bits",
            "unmasked",
            "continuation first",
            "control frame fragmented",
            "ping over 125",
            "close with odd code",
            "huge declared length",
            "frame cut short",
            "text with bad UTF-8",
            "close then more",
        ]
        if kind == 0:
            frames = ws_frame(bolt, opcode=1, mask=mask)
        elif kind == 1:
            frames = ws_frame(bolt, opcode=rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xF]), mask=mask)
        elif kind == 2:
            frames = ws_frame(bolt, rsv=rng.randrange(1, 8), mask=mask)
        elif kind == 3:
            frames = ws_frame(bolt, mask=None)
        elif kind == 4:
            frames = ws_frame(bolt, opcode=0, mask=mask)
        elif kind == 5:
            frames = ws_frame(b"x", opcode=9, fin=False, mask=mask) + ws_frame(bolt, mask=mask)
        elif kind == 6:
            frames = ws_frame(b"p" * 126, opcode=9, mask=mask) + ws_frame(bolt, mask=mask)
        elif kind == 7:
            code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
            reason = rng.choice([b"", b"bye", bad_utf8(rng), b"x" * 130])
            frames = ws_frame(bolt[:20], mask=mask) + ws_frame(
                code.to_bytes(2, "big") + reason if rng.random() < 0.9 else b"\x03",
                opcode=8,
                mask=mask,
            )
        elif kind == 8:
            frames = ws_frame(
                bolt[:10], length=rng.choice([2**63 - 1, 2**40, 2**24 + 1, 70000]), mask=mask
            )
        elif kind == 9:
            full = ws_frame(bolt, mask=mask)
            frames = full[: rng.randrange(1, min(len(full), 14))]
        elif kind == 10:
            frames = ws_frame(bad_utf8(rng), opcode=1, mask=mask)
        else:
            frames = ws_frame(b"\x03\xe8", opcode=8, mask=mask) + ws_frame(bolt, mask=mask)
        self.note(f"frames: {notes[kind]}")
        return [Segment(ws_upgrade(), 0.5), *self.segment(rng, frames)]

    def _bad_upgrade(self, rng: random.Random) -> tuple[bytes, str]:
        good = ws_upgrade()
        kind = rng.randrange(12)
        if kind == 0:
            host = rng.choice(["hôst:7687", "名前.example", "\udcff\udcfe", "x" * 5000, ""])
            return ws_upgrade(host), f"Host {host[:20]!r}"
        if kind == 1:
            return good.replace(b"GET / ", b"GET /" + bad_utf8(rng) + b" "), "bad UTF-8 in path"
        if kind == 2:
            return ws_upgrade(extra="X-Fuzz: " + "\udcff\udcc0" + "\r\n"), "bad UTF-8 in header"
        if kind == 3:
            return good.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""), "no key"
        if kind == 4:
            return good.replace(b"Version: 13", b"Version: 8"), "version 8"
        if kind == 5:
            return ws_upgrade(
                extra="X-Big: " + "a" * rng.choice([8000, 70000]) + "\r\n"
            ), "huge header"
        if kind == 6:
            return good[: rng.randrange(1, len(good))], "request cut short"
        if kind == 7:
            return good.replace(b"HTTP/1.1", b"HTTP/1.0"), "HTTP/1.0"
        if kind == 8:
            return ws_upgrade(
                extra="Sec-WebSocket-Protocol: binary, v1.bolt, \x00\r\n"
            ), "subprotocols"
        if kind == 9:
            return good.replace(b"\r\n", b"\n"), "bare LF"
        if kind == 10:
            return ws_upgrade(extra="Content-Length: 5\r\n").rstrip(
                b"\r\n"
            ) + b"\r\n\r\nhello", "request with a body"
        return good.replace(b"Upgrade: websocket", b"Upgrade: h2c"), "upgrade to h2c"

    def tls_garbage(self, rng: random.Random) -> list[Segment]:
        hello_bytes = bytearray(self.seeds.client_hello)
        kind = rng.randrange(6)
        if kind == 0:  # flips inside a real ClientHello
            for _ in range(rng.choice([1, 2, 8])):
                pos = rng.randrange(1, len(hello_bytes))
                hello_bytes[pos] = rng.randrange(256)
            self.note("ClientHello with flipped bytes")
            return [Segment(bytes(hello_bytes), 0.3), Segment(rng.randbytes(rng.randrange(64)))]
        if kind == 1:
            n = rng.randrange(1, len(hello_bytes))
            self.note(f"ClientHello cut at {n}")
            return [Segment(bytes(hello_bytes[:n]), rng.choice([0.0, 0.1]))]
        if kind == 2:
            length = rng.choice([0, 1, 0x4000, 0x4001, 0xFFFF])
            self.note(f"record length {length}")
            return [
                Segment(
                    b"\x16\x03"
                    + bytes([rng.randrange(5)])
                    + length.to_bytes(2, "big")
                    + rng.randbytes(rng.randrange(0, 300))
                )
            ]
        if kind == 3:
            self.note("ClientHello then garbage records")
            return [
                Segment(bytes(hello_bytes), 0.3),
                Segment(
                    rng.choice(
                        [
                            b"\x17\x03\x03\x00\x05hello",
                            b"\x15\x03\x03\x00\x02\x02\x28",
                            b"\x14\x03\x03\x00\x01\x01",
                            rng.randbytes(50),
                            MAGIC + b"\x00" * 16,
                        ]
                    )
                ),
            ]
        if kind == 4:
            self.note("two ClientHellos")
            return [Segment(bytes(hello_bytes) * 2, 0.3)]
        self.note("ClientHello, then close_notify-sized junk")
        return [Segment(b"\x16" + rng.randbytes(rng.randrange(1, 40)))]

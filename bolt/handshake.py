"""The Bolt handshake, both sides, without I/O (bolt.md §2).

Client -> server: the magic ``60 60 B0 17`` then four 4-byte proposals ``[00][range][minor]
[major]`` in preference order (``range`` = how many lower minors are also fine; ``00 00 00 00`` is
padding; ``00 00 01 FF`` asks for the version-1 *manifest*).

Server -> client, legacy: one 4-byte version ``00 00 minor major`` or ``00 00 00 00`` (+ close).
Selection rule (Neo4j's and the testkit stub's): walk the slots in the client's order, the first
slot we can satisfy wins, and inside its range take the highest minor we support.

Server -> client, manifest v1 (5.7+): ``00 00 01 FF``, varint N, N ranges, varint capabilities;
the client then sends its pick ``00 00 minor major`` + varint capabilities and may pipeline HELLO
right behind it, so whatever follows belongs to the message stream (``leftover``).

Two rules from the field (bolt.md §2.4): every reply must be produced as one ``bytes`` (Python
reads the legacy answer with one ``recv(4)``; the JS driver parses the whole reply from the first
WebSocket message), and clients pipeline, so the input is always treated as a byte stream.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from bolt.errors import HandshakeError
from bolt.versions import NEVER_NEGOTIATE, Version

MAGIC = b"\x60\x60\xb0\x17"
NO_VERSION = b"\x00\x00\x00\x00"
MANIFEST_V1 = b"\x00\x00\x01\xff"

_OFFER_SIZE = 20  # magic + 4 slots
_MANIFEST_MAJOR = 0xFF
_MAX_VARINT_BYTES = 10  # 70 bits: more than any capability mask needs; bounds the buffer


# -- varints (manifest handshake) -------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """Encode a non-negative int: 7-bit groups, least significant first, high bit = more."""
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """Decode a varint at ``offset``: ``(value, offset after it)``, or None if incomplete.

    Raises ``HandshakeError`` if it runs past ``_MAX_VARINT_BYTES`` (garbage, not a varint).
    """
    value = 0
    shift = 0
    pos = offset
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if pos - offset >= _MAX_VARINT_BYTES:
            raise HandshakeError("handshake varint is too long")
    return None


# -- version sets <-> 4-byte ranges -----------------------------------------------------------


def _ranges(versions: Sequence[Version]) -> list[tuple[int, int, int]]:
    """Compress versions into (major, top minor, range) runs of consecutive minors, descending.

    5.5 never appears, so a run 5.8..5.0 splits into 5.8..5.6 and 5.4..5.0: offering a range that
    spans 5.5 would let a naive server pick it.
    """
    ordered = sorted({v for v in versions if v not in NEVER_NEGOTIATE}, reverse=True)
    runs: list[tuple[int, int, int]] = []
    for v in ordered:
        if runs:
            major, top, rng = runs[-1]
            if v.major == major and v.minor == top - rng - 1:
                runs[-1] = (major, top, rng + 1)
                continue
        runs.append((v.major, v.minor, 0))
    return runs


def _slot(major: int, minor: int, rng: int) -> bytes:
    return bytes((0, rng, minor, major))


@dataclass(frozen=True)
class ClientOffer:
    """The four proposals a client sent, as (major, minor, range), in the client's order."""

    slots: tuple[tuple[int, int, int], ...]
    manifest: bool

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientOffer:
        """Parse the 16 proposal bytes (after the magic)."""
        if len(data) != 16:
            raise HandshakeError(f"a Bolt offer has 16 bytes, got {len(data)}")
        slots = tuple((data[i + 3], data[i + 2], data[i + 1]) for i in range(0, 16, 4))
        return cls(slots=slots, manifest=(_MANIFEST_MAJOR, 1, 0) in slots)

    def versions(self) -> list[Version]:
        """Every version the client accepts, in its preference order (highest first per range).

        The manifest marker and zero padding are left out.
        """
        out: list[Version] = []
        for major, minor, rng in self.slots:
            if major == _MANIFEST_MAJOR or (major, minor, rng) == (0, 0, 0):
                continue
            for m in range(minor, max(minor - rng, 0) - 1, -1):
                out.append(Version(major, m))
        return out


def choose_version(offer: ClientOffer, supported: Sequence[Version]) -> Version | None:
    """The version a server picks for ``offer`` under the first-satisfiable-slot rule.

    Never 5.5, never the manifest marker, never a version outside the client's slot.
    """
    allowed = {v for v in supported if v not in NEVER_NEGOTIATE}
    for major, minor, rng in offer.slots:
        if major == _MANIFEST_MAJOR or (major, minor, rng) == (0, 0, 0):
            continue
        for m in range(minor, max(minor - rng, 0) - 1, -1):
            v = Version(major, m)
            if v in allowed:
                return v
    return None


def _describe_garbage(data: bytes) -> str:
    """Say what arrived instead of the magic, so logs point at the real mistake."""
    shown = data[:20]
    if data[:4] in (b"GET ", b"POST", b"PUT ", b"HEAD", b"HTTP", b"OPTI", b"DELE"):
        hint = "looks like HTTP (a browser or HTTP client on the Bolt port?)"
    elif data[:1] == b"\x16":
        hint = "looks like a TLS ClientHello (TLS is not enabled on this listener?)"
    elif data[:4] == b"PROX":
        hint = "looks like a PROXY protocol header"
    else:
        hint = "not a Bolt client"
    return f"expected Bolt magic 6060B017, received {shown!r}: {hint}"


class _Phase(enum.Enum):
    OFFER = enum.auto()  # waiting for magic + 16 proposal bytes
    RESPOND = enum.auto()  # offer parsed, the caller must call respond()
    CHOICE = enum.auto()  # manifest sent, waiting for the client's pick + capabilities
    DONE = enum.auto()  # version agreed (or refused: ``failed``)


class ServerHandshake:
    """The server side of the handshake. Feed bytes, ask for the offer, send ``respond``.

    Typical use::

        hs = ServerHandshake()
        hs.receive_data(data)               # repeat until hs.offer() is not None
        writer.write(hs.respond(SUPPORTED_VERSIONS))   # one write
        # if hs.manifest_used: keep feeding receive_data until hs.done
        if hs.failed: close
        else: decoder.receive_data(hs.leftover())      # pipelined HELLO
    """

    def __init__(self, max_versions_manifest: bool = True) -> None:
        # Whether to answer a manifest-capable client with the manifest (lists every version we
        # speak) or with a plain legacy reply (valid for every official client, bolt.md §2.2).
        self.use_manifest = max_versions_manifest
        self._buf = bytearray()
        self._phase = _Phase.OFFER
        self._offer: ClientOffer | None = None
        self._end = 0  # where the handshake bytes end in _buf
        self._manifest_versions: frozenset[Version] = frozenset()
        self.version: Version | None = None
        self.manifest_used = False
        self.failed = False
        self.capabilities = 0  # what the client picked in a manifest handshake (drivers send 0)

    @property
    def done(self) -> bool:
        """True once a version is agreed or refused; then read ``version`` / ``failed``."""
        return self._phase is _Phase.DONE

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client. Raises ``HandshakeError`` as soon as they are wrong."""
        self._buf += data
        if self._phase is _Phase.OFFER:
            self._check_magic()
        elif self._phase is _Phase.CHOICE:
            self._parse_choice()

    def _check_magic(self) -> None:
        # Compare the prefix we have, so garbage is refused on its first bytes instead of
        # waiting for 20 of them (an HTTP request may never send that many before waiting).
        n = min(len(self._buf), 4)
        if self._buf[:n] != MAGIC[:n]:
            self._phase = _Phase.DONE
            self.failed = True
            raise HandshakeError(_describe_garbage(bytes(self._buf)))

    def offer(self) -> ClientOffer | None:
        """The client's offer, or None until all 20 bytes are in. Raises on a wrong magic."""
        if self._offer is not None:
            return self._offer
        if self.failed:
            raise HandshakeError(_describe_garbage(bytes(self._buf)))
        self._check_magic()
        if len(self._buf) < _OFFER_SIZE:
            return None
        self._offer = ClientOffer.from_bytes(bytes(self._buf[4:_OFFER_SIZE]))
        self._end = _OFFER_SIZE
        self._phase = _Phase.RESPOND
        return self._offer

    def respond(self, versions: Sequence[Version], *, use_manifest: bool | None = None) -> bytes:
        """The reply to write (in ONE write). ``versions``: what we speak, best first.

        Legacy reply: ``version`` is set (or ``failed``) immediately. Manifest reply: write
        it, then feed ``receive_data`` (``b""`` first: the pick may already be buffered) until
        ``done``; the client's pick must be one we listed, else ``receive_data`` raises. The
        reply itself never raises for what the client sent, so it can always be written.
        """
        offer = self.offer()
        if offer is None or self._phase is not _Phase.RESPOND:
            raise RuntimeError("respond() needs a complete offer and may be called once")
        manifest = self.use_manifest if use_manifest is None else use_manifest
        if offer.manifest and manifest:
            runs = _ranges(versions)
            self.manifest_used = True
            self._manifest_versions = frozenset(v for v in versions if v not in NEVER_NEGOTIATE)
            self._phase = _Phase.CHOICE
            reply = b"".join([MANIFEST_V1, encode_varint(len(runs)), *(_slot(*r) for r in runs)])
            # Capabilities: none defined for us yet, and the client may only pick a subset.
            reply += encode_varint(0)
            return reply
        chosen = choose_version(offer, versions)
        self._phase = _Phase.DONE
        if chosen is None:
            self.failed = True
            return NO_VERSION
        self.version = chosen
        return bytes((0, 0, chosen.minor, chosen.major))

    def _parse_choice(self) -> None:
        buf = self._buf
        start = self._end
        if len(buf) < start + 5:  # 4 version bytes + at least one varint byte
            return
        decoded = decode_varint(buf, start + 4)
        if decoded is None:
            return
        self.capabilities, self._end = decoded
        major, minor = buf[start + 3], buf[start + 2]
        self._phase = _Phase.DONE
        if (major, minor) == (0, 0):
            # The client found nothing it likes in our manifest and will close.
            self.failed = True
            return
        chosen = Version(major, minor)
        if chosen not in self._manifest_versions:
            self.failed = True
            raise HandshakeError(f"client picked Bolt {chosen}, which the server did not offer")
        self.version = chosen

    def leftover(self) -> bytes:
        """Bytes received after the handshake (pipelined messages). Call once, when ``done``."""
        if self._phase is not _Phase.DONE:
            raise RuntimeError("the handshake is not finished")
        rest = bytes(self._buf[self._end :])
        self._buf.clear()
        self._end = 0
        return rest


# -- client side: the proxy talking to Bolt backends --------------------------------------------


def client_proposal(versions: Sequence[Version]) -> bytes:
    """Magic + four proposal slots for ``versions`` (ranges compressed, best first, 20 bytes).

    Needs more than four ranges? The highest four win. We never propose the manifest: backends
    get a legacy handshake, which every server answers.
    """
    runs = _ranges(versions)[:4]
    slots = b"".join(_slot(*r) for r in runs)
    return MAGIC + slots + NO_VERSION * (4 - len(runs))


def parse_server_choice(data: bytes, proposed: Sequence[Version] | None = None) -> Version | None:
    """The version in a server's 4-byte legacy reply; None if it refused (``00 00 00 00``).

    With ``proposed``, a version we did not offer is a ``HandshakeError`` too.
    """
    if len(data) != 4:
        raise HandshakeError(f"a Bolt handshake reply has 4 bytes, got {len(data)}: {data!r}")
    if data == b"HTTP":
        raise HandshakeError("server replied with HTTP: that port is not a raw Bolt port")
    if data[3] == _MANIFEST_MAJOR:
        raise HandshakeError(f"server sent a manifest reply {data!r} we did not ask for")
    if data == NO_VERSION:
        return None
    chosen = Version(data[3], data[2])
    if proposed is not None and chosen not in proposed:
        raise HandshakeError(f"server chose Bolt {chosen}, which we did not propose")
    return chosen

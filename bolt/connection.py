"""The server side of one Bolt connection after the handshake, without I/O.

h11's ``Connection`` is the model: bytes in, requests out; responses in, bytes out. A session
shell owns the socket and decides *how* each request is answered (by a backend, by the proxy);
this object owns everything the protocol itself decides: framing, the server state machine, and
how many results are open. No session counts or mirrors state on its own.

Theory of operation
-------------------

Bolt answers requests strictly in the order they arrive, and clients pipeline. So the connection
keeps the requests it has handed out (``next_request``) and not yet answered, oldest first. Every
*summary* sent through it — ``success``, ``failure``, ``ignored``, or ``relay_summary`` for one
that came from a backend — answers the oldest of them, and only then moves the state machine
(``bolt.state``), using the outcome the summary itself says:

* SUCCESS of PULL/DISCARD with ``has_more`` leaves the result open;
* inside an explicit transaction, a RUN's SUCCESS opens one more result, and the last result
  being exhausted is what turns TX_STREAMING back into TX_READY. The connection counts open
  results (``open_results``) to tell those apart, whoever produced them;
* FAILURE ends every open result.

RECORDs change nothing (``record``; relayed records are just passed on).

Whether a request is allowed can only be known in the state it will be answered in: when every
request before it has been answered. ``check`` answers that question for the oldest unanswered
request (and raises ``InvalidTransition`` for one that has no transition); for a request behind
others it returns None, and a relay lets the backend, which is the authority on its own state,
decide. A summary the state table has no room for (a backend accepting what our table would
not) is tolerated: the state stays, and ``anomaly`` says what happened, for the log.

GOODBYE is never queued: it has no answer, and ``next_request`` hands it out with the machine
already DEFUNCT.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from bolt.chunking import DEFAULT_MAX_MESSAGE_SIZE, ChunkDecoder, chunk, payload_of
from bolt.errors import BoltError, ProtocolError
from bolt.failures import normalize_failure
from bolt.messages import (
    IGNORED_PAYLOAD,
    Request,
    Tag,
    decode_request,
    decode_response,
    encode_failure,
    encode_record,
    encode_success,
)
from bolt.packstream import Packer
from bolt.state import REQUEST_TAGS, Action, Outcome, ServerStateMachine, State
from bolt.versions import Version

_REQUEST_TAGS = frozenset(int(t) for t in REQUEST_TAGS)
_IGNORED = chunk(IGNORED_PAYLOAD)
# ``has_more: true`` can only be encoded as these bytes (tiny string key, then True), so a
# PULL/DISCARD summary without them is final and need not be decoded.
_HAS_MORE_TRUE = b"\x88has_more\xc3"
_ENDS_RESULTS = frozenset(
    int(t) for t in (Tag.COMMIT, Tag.ROLLBACK, Tag.RESET, Tag.BEGIN, Tag.LOGOFF)
)
# Plain ints: comparing with them does not go through IntEnum (the relay does it per answer).
_SUCCESS, _FAILURE, _IGNORED_TAG = int(Tag.SUCCESS), int(Tag.FAILURE), int(Tag.IGNORED)
_RUN, _PULL, _DISCARD = int(Tag.RUN), int(Tag.PULL), int(Tag.DISCARD)
_GOODBYE = int(Tag.GOODBYE)


def _check_request(payload: bytes) -> int:
    """The tag of a request payload; ``ProtocolError`` if it is not one."""
    if len(payload) < 2 or payload[0] & 0xF0 != 0xB0:
        raise ProtocolError("a message must be a PackStream structure")
    tag = payload[1]
    if tag not in _REQUEST_TAGS:
        raise ProtocolError(f"unknown message tag 0x{tag:02X}")
    return tag


@dataclass(slots=True)
class Received:
    """One request as it arrived: its tag, payload (dechunked) and exact wire bytes."""

    tag: int
    payload: bytes
    wire: bytes


class ServerConnection:
    """One client connection, from the server's side, after the Bolt handshake."""

    def __init__(
        self,
        version: Version,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        utc_patch: bool = False,
    ) -> None:
        self.version = version
        self.machine = ServerStateMachine(version)
        self.packer = Packer(version, utc_patch)
        self.open_results = 0
        self.anomaly: str | None = None
        self._decoder = ChunkDecoder(max_message_size)
        self._unanswered: deque[int] = deque()

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def in_transaction(self) -> bool:
        return self.machine.in_transaction

    @property
    def unanswered(self) -> int:
        """Requests handed out that have not had their summary yet."""
        return len(self._unanswered)

    @property
    def head(self) -> int | None:
        """The tag of the oldest unanswered request (the one the next summary answers)."""
        return self._unanswered[0] if self._unanswered else None

    @property
    def buffered(self) -> int:
        """Received bytes not yet handed out as a request."""
        return self._decoder.buffered

    def use_utc_patch(self) -> None:
        """4.3/4.4: the ``utc`` patch was agreed in HELLO; DateTimes take the 5.0 shapes."""
        self.packer = Packer(self.version, utc_patch=True)

    # -- bytes in, requests out --------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the client."""
        self._decoder.receive_data(data)

    def next_request(self) -> Received | None:
        """The next whole request, or None until more bytes arrive.

        Raises ``ProtocolError`` (``MessageTooLarge``, a message that is no structure, an
        unknown tag): answer it with ``violation`` and close. The request now awaits its
        summary, except GOODBYE, after which the connection is DEFUNCT.
        """
        item = self._decoder.next_framed()
        if item is None:
            return None
        payload, wire = item
        tag = _check_request(payload)
        self.claim(tag)
        return Received(tag, payload, wire)

    def split_requests(self, data: bytes) -> tuple[bytes, list[tuple[int, int, int]], bool]:
        """Feed ``data`` and return every whole request at once, for relays that forward bytes
        as they are: ``(buffer, spans, whole)``, each span ``(tag, start, end)`` of ``buffer``;
        ``whole`` when ``buffer`` is ``data`` itself and the spans cover it exactly.

        The requests are not handed out yet, nor checked: ``claim`` each one, in order, before
        answering or forwarding it, once the caller has checked it is a structure with a known
        tag; or turn it into a ``Received`` for ``claim_request``, which checks. Raises
        ``MessageTooLarge``.
        """
        decoder = self._decoder
        decoder.receive_data(data)
        buffer, spans = decoder.split()
        return buffer, spans, decoder.whole and buffer is data

    def claim(self, tag: int) -> None:
        """Hand out a request from ``split_requests``: it now awaits its summary (GOODBYE:
        the connection is DEFUNCT)."""
        if tag == _GOODBYE:
            self.machine.state = State.DEFUNCT
        else:
            self._unanswered.append(tag)

    def claim_many(self, tags: list[int]) -> None:
        """``claim`` several requests at once (none of them GOODBYE)."""
        self._unanswered.extend(tags)

    def claim_request(self, request: Received) -> Received:
        """Check and hand out a request from ``split_requests`` (see ``next_request``)."""
        _check_request(request.payload)
        self.claim(request.tag)
        return request

    def allowed(self, tag: int) -> Action | None:
        """What ``check`` would say for ``tag`` in the current state, without raising."""
        return self.machine.allowed(tag)

    def decode(self, request: Received) -> Request:
        """The typed request (``bolt.messages``). Raises ``ProtocolError`` on a malformed one."""
        return decode_request(request.payload, self.version)

    def check(self) -> Action | None:
        """What to do with the oldest unanswered request, in the state it is answered in.

        PROCESS: answer it; IGNORE: answer ``ignored()`` (FAILED / INTERRUPTED); None when no
        request is waiting. Raises ``InvalidTransition`` (the connection goes DEFUNCT) when it
        has no transition: send ``violation(exc)`` and close.
        """
        if not self._unanswered:
            return None
        tag = self._unanswered[0]
        action = self.machine.allowed(tag)
        if action is None:
            self.machine.on_request(tag)  # raises, and goes DEFUNCT
        return action

    # -- answers out --------------------------------------------------------------------------

    def record(self, values: list[Any] | tuple[Any, ...]) -> bytes:
        """A RECORD (values may hold ``bolt.values``); answers nothing by itself."""
        return chunk(encode_record(values, self.packer))

    def success(self, metadata: dict[str, Any]) -> bytes:
        """SUCCESS for the oldest unanswered request. ``has_more: True`` keeps its result open."""
        self._advance(Tag.SUCCESS, metadata.get("has_more") is True)
        return chunk(encode_success(metadata, self.packer))

    def failure(self, error: BoltError) -> bytes:
        """FAILURE for the oldest unanswered request, from the error's own ``failure``. When
        ``error.close_connection``, close after sending it."""
        self._advance(Tag.FAILURE, False)
        if error.close_connection:
            self.machine.state = State.DEFUNCT
        return chunk(encode_failure(error.failure(self.version), self.packer))

    def ignored(self) -> bytes:
        """IGNORED for the oldest unanswered request (FAILED / INTERRUPTED)."""
        self._advance(Tag.IGNORED, False)
        return _IGNORED

    def violation(self, error: ProtocolError) -> bytes:
        """The FAILURE for a protocol violation; the connection is DEFUNCT: close after it.

        It answers no particular request, so send it after the answers already due."""
        self.machine.state = State.DEFUNCT
        self._unanswered.clear()
        return chunk(encode_failure(error.failure(self.version), self.packer))

    def relay_summary(self, tag: int, data: bytes, start: int, end: int) -> bytes | None:
        """A summary from a backend, ``data[start:end]`` (wire bytes), for the oldest unanswered
        request: None to pass it on as it is, else the bytes to send instead.

        A FAILURE whose shape or code does not fit the client's version is rewritten
        (``normalize_failure``). Raises ``ProtocolError`` if it is no summary.
        """
        if tag == _SUCCESS:
            head = self._unanswered[0] if self._unanswered else None
            has_more = (head in (_PULL, _DISCARD)) and (data.find(_HAS_MORE_TRUE, start, end) >= 0)
            self._advance(tag, has_more)
            return None
        if tag == _FAILURE:
            response = decode_response(payload_of(data, start, end), self.version)
            self._advance(tag, False)
            metadata: dict[str, Any] = getattr(response, "metadata", {})
            normalized = normalize_failure(metadata, self.version)
            if normalized is metadata:
                return None
            return chunk(encode_failure(normalized, self.packer))
        if tag == _IGNORED_TAG:
            self._advance(tag, False)
            return None
        raise ProtocolError(f"backend answered with 0x{tag:02X}, which is not a summary")

    # -- internals ----------------------------------------------------------------------------

    def _advance(self, response: int, has_more: bool) -> None:
        """The oldest request has been answered with ``response``: move the state."""
        if not self._unanswered:
            raise ProtocolError("a summary was sent with no request waiting for it")
        tag = self._unanswered.popleft()
        machine = self.machine
        before = machine.state
        if response == _SUCCESS:
            if has_more:
                outcome = Outcome.HAS_MORE
            else:
                outcome = Outcome.SUCCESS
                if tag == _RUN:
                    self.open_results += 1
                elif tag in (_PULL, _DISCARD):
                    if self.open_results > 0:
                        self.open_results -= 1
                    if self.open_results and before is State.TX_STREAMING:
                        outcome = Outcome.HAS_MORE  # other results of the transaction
                elif tag in _ENDS_RESULTS:
                    self.open_results = 0
        elif response == _FAILURE:
            outcome = Outcome.FAILURE
            self.open_results = 0
        else:
            outcome = Outcome.IGNORED
        new = machine.table.get((before, tag, outcome))
        if new is None:
            if machine.allowed(tag) is None:
                # The request had no transition here, yet it was answered (a backend accepted
                # what our table does not): the backend is the authority on what it answered.
                self.anomaly = f"0x{tag:02X} answered in the {before.name} state"
                return
            # A confused answer (HAS_MORE for a BEGIN...): the backend said it succeeded or
            # failed, and that is what the client sees.
            self.anomaly = f"0x{tag:02X} cannot end with {outcome.name} in {before.name}"
            new = State.FAILED if outcome is Outcome.FAILURE else before
        machine.state = new
        if new is State.READY or new is State.TX_READY:
            self.open_results = 0

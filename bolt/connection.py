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

from bolt.chunking import DEFAULT_MAX_MESSAGE_SIZE, ChunkDecoder, chunk
from bolt.errors import BoltError, InvalidTransition, ProtocolError
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
_RESULT_TAGS = frozenset((Tag.PULL, Tag.DISCARD))
_ENDS_RESULTS = frozenset((Tag.COMMIT, Tag.ROLLBACK, Tag.RESET, Tag.BEGIN, Tag.LOGOFF))


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
        if payload[0] & 0xF0 != 0xB0 or len(payload) < 2:
            raise ProtocolError("a message must be a PackStream structure")
        tag = payload[1]
        if tag not in _REQUEST_TAGS:
            raise ProtocolError(f"unknown message tag 0x{tag:02X}")
        if tag == Tag.GOODBYE:
            self.machine.state = State.DEFUNCT
        else:
            self._unanswered.append(tag)
        return Received(tag, payload, wire)

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

    def relay_summary(self, payload: bytes, wire: bytes) -> bytes:
        """A summary from a backend, for the oldest unanswered request: the bytes to send.

        Usually ``wire`` itself. A FAILURE whose shape or code does not fit the client's version
        is rewritten (``normalize_failure``). Raises ``ProtocolError`` if it is no summary.
        """
        tag = payload[1]
        if tag == Tag.SUCCESS:
            self._advance(tag, self._head_streams() and _HAS_MORE_TRUE in payload)
            return wire
        if tag == Tag.FAILURE:
            response = decode_response(payload, self.version)
            self._advance(tag, False)
            metadata: dict[str, Any] = getattr(response, "metadata", {})
            normalized = normalize_failure(metadata, self.version)
            if normalized is metadata:
                return wire
            return chunk(encode_failure(normalized, self.packer))
        if tag == Tag.IGNORED:
            self._advance(tag, False)
            return wire
        raise ProtocolError(f"backend answered with 0x{tag:02X}, which is not a summary")

    # -- internals ----------------------------------------------------------------------------

    def _head_streams(self) -> bool:
        return bool(self._unanswered) and self._unanswered[0] in _RESULT_TAGS

    def _advance(self, response: int, has_more: bool) -> None:
        """The oldest request has been answered with ``response``: move the state."""
        if not self._unanswered:
            raise ProtocolError("a summary was sent with no request waiting for it")
        tag = self._unanswered.popleft()
        machine = self.machine
        if response == Tag.SUCCESS:
            if has_more:
                outcome = Outcome.HAS_MORE
            else:
                outcome = Outcome.SUCCESS
                if tag == Tag.RUN:
                    self.open_results += 1
                elif tag == Tag.PULL or tag == Tag.DISCARD:
                    if self.open_results > 0:
                        self.open_results -= 1
                    if self.open_results and machine.state is State.TX_STREAMING:
                        outcome = Outcome.HAS_MORE  # other results of the transaction
                elif tag in _ENDS_RESULTS:
                    self.open_results = 0
        elif response == Tag.FAILURE:
            outcome = Outcome.FAILURE
            self.open_results = 0
        else:
            outcome = Outcome.IGNORED
        if machine.allowed(tag) is None:
            # The request had no transition here, yet it was answered (a backend accepted what
            # our table does not): the backend is the authority on what it answered.
            self.anomaly = f"0x{tag:02X} answered in the {machine.state.name} state"
            return
        before = machine.state
        try:
            machine.on_outcome(tag, outcome)
        except InvalidTransition as exc:
            # A confused answer (HAS_MORE for a BEGIN...) would leave us DEFUNCT; the backend
            # said it succeeded or failed, and that is what the client sees.
            self.anomaly = str(exc)
            machine.state = State.FAILED if outcome is Outcome.FAILURE else before
        if machine.state is State.READY or machine.state is State.TX_READY:
            self.open_results = 0

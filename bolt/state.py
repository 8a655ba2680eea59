"""The Bolt server state machine, as a table (bolt.md §6; docs-bolt server-state.adoc).

Theory of operation
-------------------

A Bolt connection is always in one of the states below, named as in the spec. Each request a
client sends either has a transition from the current state or is a protocol violation; there
is no third option. Violations are never ignored: ``on_request`` raises ``InvalidTransition``
(Neo4j answers ``Neo.ClientError.Request.Invalid`` and closes) and the machine goes DEFUNCT,
which is sticky — nothing ever leaves DEFUNCT.

A request's effect depends on how it ends, so a transition is keyed by ``(state, request tag,
outcome)``. The outcome is what the server answered: SUCCESS, FAILURE, IGNORED, or HAS_MORE — a
SUCCESS for PULL/DISCARD that leaves a result open (``has_more: true``, or, inside an explicit
transaction, other results still open). The caller works the outcome out; this module only looks
it up. Using the machine is two calls per request, in request order:

    action = machine.on_request(tag)          # PROCESS or IGNORE (or raises)
    ... run it, or answer IGNORED ...
    machine.on_outcome(tag, outcome)          # moves to the next state

A relay that pipelines requests to a backend makes both calls when each response comes back
(responses arrive in request order), so the state is never a guess about the future.

Rules that are not obvious from the spec tables, and why:

* FAILED and INTERRUPTED answer every request with IGNORED except RESET (back to READY) and
  GOODBYE. Pipelined clients depend on this: BEGIN fails, then RUN and PULL come back IGNORED.
* RESET works from every state after authentication, and its FAILURE means DEFUNCT (spec). RESET
  in AUTHENTICATION is *our* choice: SUCCESS, still AUTHENTICATION — a RESET cannot log anyone
  in, but a client cleaning up a half-open connection should not be punished for it. RESET
  before HELLO is a violation.
* ``interrupt()`` is the spec's ``<INTERRUPT>`` signal: call it when a RESET is seen queued
  behind running work. It only applies after authentication, for the same reason as above.
* COMMIT and ROLLBACK are accepted in TX_STREAMING (results still open), going to READY. The
  spec tables list them only in TX_READY, but Neo4j 4.0+ runs both transaction states as one
  and closes open results on commit/rollback, ArcadeDB does the same, and drivers rely on it
  when a transaction is closed without consuming every result.
* TELEMETRY (5.4+) is listed only for READY, but it is a fire-and-forget hint that drivers
  pipeline in front of BEGIN/RUN, so it is accepted in every post-auth state and changes
  nothing (ArcadeDB does the same, bolt.md §6). Before authentication it is a violation.
* GOODBYE has no response: ``on_request`` applies it at once.
* Messages the negotiated version does not define (LOGON/LOGOFF < 5.1, TELEMETRY < 5.4, ROUTE <
  4.3) have no transitions at all in that version's table; before 5.1 HELLO leads to READY and
  there is no AUTHENTICATION state.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any, cast

from bolt.errors import InvalidTransition
from bolt.messages import Tag, request_defined
from bolt.versions import Version, has_logon


class State(enum.Enum):
    """Server states (Bolt server-state spec)."""

    # Members are singletons: identity hashing keeps table lookups in C (Enum.__hash__ is
    # Python code, and the relay looks states up on every answer).
    __hash__ = object.__hash__

    NEGOTIATION = "NEGOTIATION"  # handshake done, waiting for HELLO ("CONNECTED" in <5.1 docs)
    AUTHENTICATION = "AUTHENTICATION"  # 5.1+: HELLO done, waiting for LOGON
    READY = "READY"  # idle, may RUN / BEGIN / ROUTE
    STREAMING = "STREAMING"  # auto-commit result open, waiting for PULL / DISCARD
    TX_READY = "TX_READY"  # explicit transaction open, no result open
    TX_STREAMING = "TX_STREAMING"  # explicit transaction with result(s) open
    FAILED = "FAILED"  # a request failed: IGNORED until RESET
    INTERRUPTED = "INTERRUPTED"  # <INTERRUPT> seen: IGNORED until the queued RESET
    DEFUNCT = "DEFUNCT"  # closed for good


class Outcome(enum.Enum):
    """How a request ended, as seen in its summary response."""

    # Members are singletons: identity hashing keeps table lookups in C (Enum.__hash__ is
    # Python code, and the relay looks states up on every answer).
    __hash__ = object.__hash__

    SUCCESS = "SUCCESS"  # SUCCESS (for PULL/DISCARD: nothing left open)
    HAS_MORE = "HAS_MORE"  # PULL/DISCARD SUCCESS with has_more, or other tx results still open
    FAILURE = "FAILURE"  # FAILURE
    IGNORED = "IGNORED"  # IGNORED (only in FAILED / INTERRUPTED)


class Action(enum.Enum):
    """What to do with a request that has a transition."""

    # Members are singletons: identity hashing keeps table lookups in C (Enum.__hash__ is
    # Python code, and the relay looks states up on every answer).
    __hash__ = object.__hash__

    PROCESS = "PROCESS"  # run it and report its outcome
    IGNORE = "IGNORE"  # answer IGNORED without running it


TRANSITIONS: dict[tuple[State, Tag, Outcome], State] = {
    # NEGOTIATION: only HELLO. (Before 5.1 it leads to READY: see transitions_for.)
    (State.NEGOTIATION, Tag.HELLO, Outcome.SUCCESS): State.AUTHENTICATION,
    (State.NEGOTIATION, Tag.HELLO, Outcome.FAILURE): State.DEFUNCT,
    # AUTHENTICATION: only LOGON (and our tolerant RESET).
    (State.AUTHENTICATION, Tag.LOGON, Outcome.SUCCESS): State.READY,
    (State.AUTHENTICATION, Tag.LOGON, Outcome.FAILURE): State.DEFUNCT,
    (State.AUTHENTICATION, Tag.RESET, Outcome.SUCCESS): State.AUTHENTICATION,
    (State.AUTHENTICATION, Tag.RESET, Outcome.FAILURE): State.DEFUNCT,
    # READY
    (State.READY, Tag.RUN, Outcome.SUCCESS): State.STREAMING,
    (State.READY, Tag.RUN, Outcome.FAILURE): State.FAILED,
    (State.READY, Tag.BEGIN, Outcome.SUCCESS): State.TX_READY,
    (State.READY, Tag.BEGIN, Outcome.FAILURE): State.FAILED,
    (State.READY, Tag.ROUTE, Outcome.SUCCESS): State.READY,
    (State.READY, Tag.ROUTE, Outcome.FAILURE): State.FAILED,
    (State.READY, Tag.TELEMETRY, Outcome.SUCCESS): State.READY,
    (State.READY, Tag.TELEMETRY, Outcome.FAILURE): State.FAILED,
    (State.READY, Tag.LOGOFF, Outcome.SUCCESS): State.AUTHENTICATION,
    (State.READY, Tag.LOGOFF, Outcome.FAILURE): State.FAILED,
    # STREAMING (auto-commit result open)
    (State.STREAMING, Tag.PULL, Outcome.HAS_MORE): State.STREAMING,
    (State.STREAMING, Tag.PULL, Outcome.SUCCESS): State.READY,
    (State.STREAMING, Tag.PULL, Outcome.FAILURE): State.FAILED,
    (State.STREAMING, Tag.DISCARD, Outcome.HAS_MORE): State.STREAMING,
    (State.STREAMING, Tag.DISCARD, Outcome.SUCCESS): State.READY,
    (State.STREAMING, Tag.DISCARD, Outcome.FAILURE): State.FAILED,
    (State.STREAMING, Tag.TELEMETRY, Outcome.SUCCESS): State.STREAMING,
    (State.STREAMING, Tag.TELEMETRY, Outcome.FAILURE): State.FAILED,
    # TX_READY
    (State.TX_READY, Tag.RUN, Outcome.SUCCESS): State.TX_STREAMING,
    (State.TX_READY, Tag.RUN, Outcome.FAILURE): State.FAILED,
    (State.TX_READY, Tag.COMMIT, Outcome.SUCCESS): State.READY,
    (State.TX_READY, Tag.COMMIT, Outcome.FAILURE): State.FAILED,
    (State.TX_READY, Tag.ROLLBACK, Outcome.SUCCESS): State.READY,
    (State.TX_READY, Tag.ROLLBACK, Outcome.FAILURE): State.FAILED,
    (State.TX_READY, Tag.TELEMETRY, Outcome.SUCCESS): State.TX_READY,
    (State.TX_READY, Tag.TELEMETRY, Outcome.FAILURE): State.FAILED,
    # TX_STREAMING (one or more results open in the transaction)
    (State.TX_STREAMING, Tag.RUN, Outcome.SUCCESS): State.TX_STREAMING,
    (State.TX_STREAMING, Tag.RUN, Outcome.FAILURE): State.FAILED,
    (State.TX_STREAMING, Tag.PULL, Outcome.HAS_MORE): State.TX_STREAMING,
    (State.TX_STREAMING, Tag.PULL, Outcome.SUCCESS): State.TX_READY,
    (State.TX_STREAMING, Tag.PULL, Outcome.FAILURE): State.FAILED,
    (State.TX_STREAMING, Tag.DISCARD, Outcome.HAS_MORE): State.TX_STREAMING,
    (State.TX_STREAMING, Tag.DISCARD, Outcome.SUCCESS): State.TX_READY,
    (State.TX_STREAMING, Tag.DISCARD, Outcome.FAILURE): State.FAILED,
    (State.TX_STREAMING, Tag.COMMIT, Outcome.SUCCESS): State.READY,
    (State.TX_STREAMING, Tag.COMMIT, Outcome.FAILURE): State.FAILED,
    (State.TX_STREAMING, Tag.ROLLBACK, Outcome.SUCCESS): State.READY,
    (State.TX_STREAMING, Tag.ROLLBACK, Outcome.FAILURE): State.FAILED,
    (State.TX_STREAMING, Tag.TELEMETRY, Outcome.SUCCESS): State.TX_STREAMING,
    (State.TX_STREAMING, Tag.TELEMETRY, Outcome.FAILURE): State.FAILED,
}

# Every state after authentication, i.e. where RESET returns to READY.
POST_AUTH_STATES = (
    State.READY,
    State.STREAMING,
    State.TX_READY,
    State.TX_STREAMING,
    State.FAILED,
    State.INTERRUPTED,
)

REQUEST_TAGS = (
    Tag.HELLO,
    Tag.GOODBYE,
    Tag.RESET,
    Tag.RUN,
    Tag.BEGIN,
    Tag.COMMIT,
    Tag.ROLLBACK,
    Tag.DISCARD,
    Tag.PULL,
    Tag.TELEMETRY,
    Tag.ROUTE,
    Tag.LOGON,
    Tag.LOGOFF,
)

for _state in POST_AUTH_STATES:
    TRANSITIONS[(_state, Tag.RESET, Outcome.SUCCESS)] = State.READY
    TRANSITIONS[(_state, Tag.RESET, Outcome.FAILURE)] = State.DEFUNCT

for _state in State:
    if _state is not State.DEFUNCT:
        TRANSITIONS[(_state, Tag.GOODBYE, Outcome.SUCCESS)] = State.DEFUNCT

# FAILED and INTERRUPTED: everything but RESET and GOODBYE is answered IGNORED, state unchanged.
for _state in (State.FAILED, State.INTERRUPTED):
    for _tag in REQUEST_TAGS:
        if _tag not in (Tag.RESET, Tag.GOODBYE):
            TRANSITIONS[(_state, _tag, Outcome.IGNORED)] = _state

# The <INTERRUPT> signal (a RESET seen queued behind running work).
INTERRUPT_TRANSITIONS: dict[State, State] = {state: State.INTERRUPTED for state in POST_AUTH_STATES}

del _state, _tag


@lru_cache(maxsize=32)
def transitions_for(version: Version) -> dict[tuple[State, Tag, Outcome], State]:
    """``TRANSITIONS`` restricted to ``version``: its messages only, and HELLO -> READY < 5.1."""
    table = {
        key: new
        for key, new in TRANSITIONS.items()
        if request_defined(key[1], version)
        and (has_logon(version) or State.AUTHENTICATION not in (key[0], new))
    }
    if not has_logon(version):
        table[(State.NEGOTIATION, Tag.HELLO, Outcome.SUCCESS)] = State.READY
    return table


def outcome_of(response_tag: int, metadata: dict[str, Any] | None = None) -> Outcome:
    """The outcome of a summary response (``has_more: true`` -> HAS_MORE).

    Inside a transaction the caller must still turn SUCCESS into HAS_MORE when other results
    are open (the machine does not count streams).
    """
    if response_tag == Tag.SUCCESS:
        if metadata is not None and metadata.get("has_more") is True:
            return Outcome.HAS_MORE
        return Outcome.SUCCESS
    if response_tag == Tag.FAILURE:
        return Outcome.FAILURE
    if response_tag == Tag.IGNORED:
        return Outcome.IGNORED
    raise ValueError(f"0x{response_tag:02X} is not a summary response")


def _name(tag: int) -> str:
    try:
        return Tag(tag).name
    except ValueError:
        return f"0x{tag:02X}"


class ServerStateMachine:
    """The state of one client connection, seen from the server.

    Starts in NEGOTIATION (after the handshake). See the module essay for the call protocol.
    """

    def __init__(self, version: Version) -> None:
        self.version = version
        self.state = State.NEGOTIATION
        # Keyed by plain ints too: callers pass peek_tag() results (IntEnum hashes like int).
        self.table = cast("dict[tuple[State, int, Outcome], State]", transitions_for(version))
        # (state, tag) -> action, derived once from the table so on_request is one lookup.
        self._actions: dict[tuple[State, int], Action] = {}
        for state, tag, outcome in self.table:
            action = Action.IGNORE if outcome is Outcome.IGNORED else Action.PROCESS
            self._actions[(state, tag)] = action

    @property
    def in_transaction(self) -> bool:
        return self.state is State.TX_READY or self.state is State.TX_STREAMING

    @property
    def defunct(self) -> bool:
        return self.state is State.DEFUNCT

    def allowed(self, tag: int) -> Action | None:
        """What ``on_request`` would return, without raising or changing state."""
        return self._actions.get((self.state, tag))

    def on_request(self, tag: int) -> Action:
        """Check a request against the current state.

        Returns PROCESS (run it, then call ``on_outcome``) or IGNORE (answer IGNORED; calling
        ``on_outcome(tag, Outcome.IGNORED)`` is allowed and changes nothing). GOODBYE moves to
        DEFUNCT at once. Raises ``InvalidTransition`` — and goes DEFUNCT — when the request has
        no transition: send its FAILURE if you can, then close.
        """
        state = self.state
        action = self._actions.get((state, tag))
        if action is None:
            self.state = State.DEFUNCT
            if state is State.DEFUNCT:
                raise InvalidTransition(f"message {_name(tag)} received on a closed connection")
            raise InvalidTransition(
                f"message {_name(tag)} cannot be handled by a session in the {state.name} state"
            )
        if tag == Tag.GOODBYE:
            self.state = State.DEFUNCT
        return action

    def on_outcome(self, tag: int, outcome: Outcome) -> State:
        """Apply how request ``tag`` ended; returns the new state. DEFUNCT stays DEFUNCT.

        An outcome the table does not have (e.g. HAS_MORE for BEGIN) raises
        ``InvalidTransition`` and goes DEFUNCT: it means the caller or a backend is confused.
        """
        state = self.state
        if state is State.DEFUNCT:
            return state
        new = self.table.get((state, tag, outcome))
        if new is None:
            self.state = State.DEFUNCT
            raise InvalidTransition(
                f"{_name(tag)} cannot end with {outcome.name} in the {state.name} state"
            )
        self.state = new
        return new

    def interrupt(self) -> State:
        """The ``<INTERRUPT>`` signal: a RESET is queued. No effect before authentication."""
        self.state = INTERRUPT_TRANSITIONS.get(self.state, self.state)
        return self.state

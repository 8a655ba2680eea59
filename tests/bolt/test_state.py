"""The server state machine (bolt.md §6): the table's shape, real flows, and (state x tag)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bolt.errors import InvalidTransition, ProtocolError
from bolt.messages import Tag, request_defined
from bolt.state import (
    INTERRUPT_TRANSITIONS,
    POST_AUTH_STATES,
    REQUEST_TAGS,
    TRANSITIONS,
    Action,
    Outcome,
    ServerStateMachine,
    State,
    outcome_of,
    transitions_for,
)
from bolt.versions import SUPPORTED_VERSIONS, Version

V44, V50, V51, V54, V58 = (Version.parse(v) for v in ("4.4", "5.0", "5.1", "5.4", "5.8"))
OK, MORE, FAIL, IGN = Outcome.SUCCESS, Outcome.HAS_MORE, Outcome.FAILURE, Outcome.IGNORED


def machine(version: Version = V58, state: State | None = None) -> ServerStateMachine:
    m = ServerStateMachine(version)
    if state is not None:
        m.state = state
    return m


def step(m: ServerStateMachine, tag: Tag, outcome: Outcome = OK) -> State:
    assert m.on_request(tag) is Action.PROCESS
    return m.on_outcome(tag, outcome)


# -- the table ----------------------------------------------------------------------------------


def test_every_transition_is_from_a_live_state_on_a_request() -> None:
    for (state, tag, _), new in TRANSITIONS.items():
        assert state is not State.DEFUNCT
        assert tag in REQUEST_TAGS
        assert isinstance(new, State)


def test_ignored_only_in_failed_and_interrupted_and_never_moves() -> None:
    for (state, _, outcome), new in TRANSITIONS.items():
        if outcome is IGN:
            assert state in (State.FAILED, State.INTERRUPTED)
            assert new is state


def test_has_more_only_for_pull_and_discard() -> None:
    for _, tag, outcome in TRANSITIONS:
        if outcome is MORE:
            assert tag in (Tag.PULL, Tag.DISCARD)


def test_every_processed_request_can_fail() -> None:
    for state, tag, outcome in TRANSITIONS:
        if outcome is OK and tag is not Tag.GOODBYE:
            assert (state, tag, FAIL) in TRANSITIONS, (state, tag)


def test_failure_before_ready_closes() -> None:
    for (state, _, outcome), new in TRANSITIONS.items():
        if outcome is FAIL and state in (State.NEGOTIATION, State.AUTHENTICATION):
            assert new is State.DEFUNCT


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS, ids=str)
def test_versioned_tables_only_hold_defined_messages(version: Version) -> None:
    table = transitions_for(version)
    for (state, tag, _), new in table.items():
        assert request_defined(tag, version)
        if version < V51:
            assert State.AUTHENTICATION not in (state, new)
    hello = table[(State.NEGOTIATION, Tag.HELLO, OK)]
    assert hello is (State.AUTHENTICATION if version >= V51 else State.READY)


# -- flows real clients produce ------------------------------------------------------------------


def test_python_driver_5x_session() -> None:
    m = machine(V58)
    assert step(m, Tag.HELLO) is State.AUTHENTICATION
    assert step(m, Tag.LOGON) is State.READY
    assert step(m, Tag.TELEMETRY) is State.READY
    assert step(m, Tag.BEGIN) is State.TX_READY
    assert step(m, Tag.RUN) is State.TX_STREAMING
    assert step(m, Tag.PULL, MORE) is State.TX_STREAMING
    assert step(m, Tag.PULL) is State.TX_READY
    assert step(m, Tag.COMMIT) is State.READY
    assert step(m, Tag.RUN) is State.STREAMING
    assert step(m, Tag.DISCARD) is State.READY
    assert step(m, Tag.RESET) is State.READY
    assert step(m, Tag.LOGOFF) is State.AUTHENTICATION
    assert step(m, Tag.LOGON) is State.READY
    assert m.on_request(Tag.GOODBYE) is Action.PROCESS
    assert m.state is State.DEFUNCT


def test_bolt_4_has_no_authentication_state() -> None:
    m = machine(V44)
    assert step(m, Tag.HELLO) is State.READY
    assert step(m, Tag.ROUTE) is State.READY
    with pytest.raises(InvalidTransition):
        machine(V44, State.READY).on_request(Tag.LOGON)
    with pytest.raises(InvalidTransition):
        machine(V50, State.READY).on_request(Tag.TELEMETRY)


def test_pipelined_failure_then_ignored_then_reset() -> None:
    m = machine(V58, State.READY)
    assert step(m, Tag.BEGIN, FAIL) is State.FAILED
    for tag in (Tag.RUN, Tag.PULL, Tag.COMMIT):
        assert m.on_request(tag) is Action.IGNORE
        assert m.on_outcome(tag, IGN) is State.FAILED
    assert step(m, Tag.RESET) is State.READY


def test_multiple_streams_in_a_transaction() -> None:
    m = machine(V58, State.TX_READY)
    assert step(m, Tag.RUN) is State.TX_STREAMING
    assert step(m, Tag.RUN) is State.TX_STREAMING
    assert step(m, Tag.PULL, MORE) is State.TX_STREAMING  # first stream done, second still open
    assert step(m, Tag.DISCARD) is State.TX_READY


@pytest.mark.parametrize("tag", [Tag.COMMIT, Tag.ROLLBACK])
def test_commit_and_rollback_with_open_results(tag: Tag) -> None:
    assert step(machine(V58, State.TX_STREAMING), tag) is State.READY


def test_reset_in_authentication_stays_there() -> None:
    m = machine(V58, State.AUTHENTICATION)
    assert step(m, Tag.RESET) is State.AUTHENTICATION
    assert m.interrupt() is State.AUTHENTICATION  # no way around LOGON


def test_interrupt() -> None:
    m = machine(V58, State.TX_STREAMING)
    assert m.interrupt() is State.INTERRUPTED
    for tag in (Tag.PULL, Tag.RUN, Tag.BEGIN, Tag.HELLO, Tag.LOGON):
        assert m.on_request(tag) is Action.IGNORE
    assert step(m, Tag.RESET) is State.READY
    assert set(INTERRUPT_TRANSITIONS) == set(POST_AUTH_STATES)


def test_reset_failure_is_fatal() -> None:
    assert step(machine(V58, State.FAILED), Tag.RESET, FAIL) is State.DEFUNCT


def test_invalid_transition_message_and_policy() -> None:
    m = machine(V58, State.READY)
    with pytest.raises(InvalidTransition) as info:
        m.on_request(Tag.PULL)
    assert "PULL" in str(info.value)
    assert "READY" in str(info.value)
    assert isinstance(info.value, ProtocolError)
    assert info.value.code == "Neo.ClientError.Request.Invalid"
    assert info.value.close_connection
    assert m.state is State.DEFUNCT


def test_unexpected_outcome_is_fatal() -> None:
    m = machine(V58, State.READY)
    m.on_request(Tag.BEGIN)
    with pytest.raises(InvalidTransition):
        m.on_outcome(Tag.BEGIN, MORE)
    assert m.defunct


def test_plain_int_tags_work() -> None:
    m = machine(V58, State.READY)
    assert m.on_request(0x10) is Action.PROCESS
    assert m.on_outcome(0x10, OK) is State.STREAMING
    assert m.allowed(0x3F) is Action.PROCESS
    assert m.allowed(0x99) is None
    with pytest.raises(InvalidTransition, match="0x99"):
        m.on_request(0x99)


def test_defunct_is_sticky() -> None:
    m = machine(V58, State.READY)
    m.on_request(Tag.GOODBYE)
    assert m.defunct
    assert m.on_outcome(Tag.RUN, OK) is State.DEFUNCT
    assert m.interrupt() is State.DEFUNCT
    with pytest.raises(InvalidTransition, match="closed"):
        m.on_request(Tag.RESET)
    assert m.state is State.DEFUNCT


def test_in_transaction() -> None:
    assert machine(V58, State.TX_READY).in_transaction
    assert machine(V58, State.TX_STREAMING).in_transaction
    assert not machine(V58, State.STREAMING).in_transaction


def test_outcome_of() -> None:
    assert outcome_of(Tag.SUCCESS, {"has_more": True}) is MORE
    assert outcome_of(Tag.SUCCESS, {"has_more": False}) is OK
    assert outcome_of(Tag.SUCCESS) is OK
    assert outcome_of(Tag.FAILURE, {}) is FAIL
    assert outcome_of(Tag.IGNORED) is IGN
    with pytest.raises(ValueError):
        outcome_of(Tag.RECORD)


# -- properties over (state x tag) ----------------------------------------------------------------

states = st.sampled_from(list(State))
tags = st.sampled_from(list(Tag))
versions = st.sampled_from(SUPPORTED_VERSIONS)


@settings(max_examples=500)
@given(versions, states, tags)
def test_every_pair_has_a_transition_or_raises_and_goes_defunct(
    version: Version, state: State, tag: Tag
) -> None:
    m = machine(version, state)
    table = transitions_for(version)
    outcomes = [o for o in Outcome if (state, tag, o) in table]
    try:
        action = m.on_request(tag)
    except InvalidTransition:
        assert outcomes == []
        assert m.state is State.DEFUNCT
        return
    assert outcomes
    if action is Action.IGNORE:
        assert outcomes == [IGN]
        assert m.state is state
    elif tag is Tag.GOODBYE:
        assert m.state is State.DEFUNCT
    else:
        assert m.state is state  # nothing moves until the outcome is known
        outcome = outcomes[0]
        assert m.on_outcome(tag, outcome) is table[(state, tag, outcome)]


@settings(max_examples=300)
@given(versions, tags)
def test_failed_ignores_everything_but_reset_and_goodbye(version: Version, tag: Tag) -> None:
    m = machine(version, State.FAILED)
    if tag in (Tag.RESET, Tag.GOODBYE):
        assert m.on_request(tag) is Action.PROCESS
    elif request_defined(tag, version):
        assert m.on_request(tag) is Action.IGNORE
        assert m.on_outcome(tag, IGN) is State.FAILED
    else:  # responses, and messages this version does not have
        with pytest.raises(InvalidTransition):
            m.on_request(tag)


@settings(max_examples=200)
@given(versions, st.sampled_from(POST_AUTH_STATES))
def test_reset_always_returns_to_ready_after_auth(version: Version, state: State) -> None:
    m = machine(version, state)
    assert step(m, Tag.RESET) is State.READY
    m = machine(version, state)
    m.interrupt()
    assert step(m, Tag.RESET) is State.READY


@settings(max_examples=200)
@given(versions, st.lists(st.tuples(tags, st.sampled_from(list(Outcome))), max_size=30))
def test_random_walks_never_leave_defunct(
    version: Version, script: list[tuple[Tag, Outcome]]
) -> None:
    m = machine(version)
    seen_defunct = False
    for tag, outcome in script:
        try:
            action = m.on_request(tag)
            m.on_outcome(tag, IGN if action is Action.IGNORE else outcome)
        except InvalidTransition:
            assert m.state is State.DEFUNCT
        if seen_defunct:
            assert m.state is State.DEFUNCT
        seen_defunct = m.state is State.DEFUNCT

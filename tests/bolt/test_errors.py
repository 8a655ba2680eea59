from __future__ import annotations

import pytest

from bolt.errors import (
    AuthenticationError,
    BoltError,
    ClientError,
    HandshakeError,
    InvalidTransition,
    MessageTooLarge,
    NestingTooDeep,
    PackStreamError,
    ProtocolError,
    TransientError,
)
from bolt.versions import Version

V44, V56, V57 = Version(4, 4), Version(5, 6), Version(5, 7)


@pytest.mark.parametrize(
    "cls", [ProtocolError, HandshakeError, MessageTooLarge, PackStreamError, NestingTooDeep,
            InvalidTransition],
)  # fmt: skip
def test_protocol_errors_close_with_request_invalid(cls: type[ProtocolError]) -> None:
    err = cls("boom")
    assert isinstance(err, ProtocolError)
    assert isinstance(err, BoltError)
    assert err.code == "Neo.ClientError.Request.Invalid"
    assert err.close_connection is True
    assert err.transient is False
    assert err.failure(V44) == {"code": "Neo.ClientError.Request.Invalid", "message": "boom"}


def test_nesting_too_deep_is_a_packstream_error() -> None:
    assert issubclass(NestingTooDeep, PackStreamError)


def test_client_error_keeps_connection_and_code() -> None:
    err = ClientError("Neo.ClientError.Statement.SyntaxError", "bad query")
    assert err.close_connection is False
    assert err.transient is False
    assert err.message == "bad query"
    assert str(err) == "bad query"
    assert err.failure(V56) == {"code": "Neo.ClientError.Statement.SyntaxError",
                                "message": "bad query"}  # fmt: skip
    gql = err.failure(V57)
    assert gql["neo4j_code"] == "Neo.ClientError.Statement.SyntaxError"
    assert gql["gql_status"] == "42001"
    assert "code" not in gql


def test_transient_error_is_transient() -> None:
    err = TransientError("busy")
    assert err.transient is True
    assert err.close_connection is False
    assert err.code.startswith("Neo.TransientError.")
    assert err.failure(V57)["diagnostic_record"]["_classification"] == "TRANSIENT_ERROR"


def test_authentication_error_closes() -> None:
    err = AuthenticationError("wrong password")
    assert err.code == "Neo.ClientError.Security.Unauthorized"
    assert err.close_connection is True


def test_specific_gql_statuses_override_the_code_default() -> None:
    assert InvalidTransition("x").failure(V57)["gql_status"] == "08N10"
    assert MessageTooLarge("x").failure(V57)["gql_status"] == "22N56"
    assert ProtocolError("x").failure(V57)["gql_status"] == "08N06"

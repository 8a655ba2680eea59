"""FAILURE metadata shapes: {code, message} up to 5.6, GQL-shaped from 5.7 (bolt.md §5.2)."""

from __future__ import annotations

from typing import Any

import pytest

from bolt.failures import (
    DEFAULT_GQL_STATUS,
    UNKNOWN_ERROR_CODE,
    failure_metadata,
    gql_status_for,
    normalize_failure,
)
from bolt.versions import SUPPORTED_VERSIONS, Version, uses_gql_failure

V56, V57, V58 = Version(5, 6), Version(5, 7), Version(5, 8)


@pytest.mark.parametrize("version", [v for v in SUPPORTED_VERSIONS if not uses_gql_failure(v)])
def test_legacy_shape(version: Version) -> None:
    assert failure_metadata("Neo.ClientError.Statement.SyntaxError", "oops", version) == {
        "code": "Neo.ClientError.Statement.SyntaxError",
        "message": "oops",
    }


def test_gql_shape() -> None:
    meta = failure_metadata("Neo.ClientError.Statement.SyntaxError", "Invalid input 'X'", V57)
    assert meta == {
        "neo4j_code": "Neo.ClientError.Statement.SyntaxError",
        "message": "Invalid input 'X'",
        "gql_status": "42001",
        "description": "error: syntax error or access rule violation - invalid syntax. "
        "Invalid input 'X'",
        "diagnostic_record": {
            "OPERATION": "",
            "OPERATION_CODE": "0",
            "CURRENT_SCHEMA": "/",
            "_classification": "CLIENT_ERROR",
        },
    }


def test_python_driver_accepts_the_gql_shape() -> None:
    # The Python driver's own 5.7+ FAILURE hydration: without gql_status/description/message it
    # reports "An unknown error occurred" and a wrong classification.
    exceptions = pytest.importorskip("neo4j.exceptions")
    meta = failure_metadata("Neo.ClientError.Procedure.ProcedureNotFound", "no such proc", V58)
    err = exceptions.Neo4jError._hydrate_gql(**meta)
    assert isinstance(err, exceptions.ClientError)
    assert err.code == "Neo.ClientError.Procedure.ProcedureNotFound"
    assert err.gql_status == "42N08"
    assert err.message == "no such proc"
    assert err.gql_classification.name == "CLIENT_ERROR"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Neo.ClientError.Statement.SyntaxError", "42001"),
        ("Neo.ClientError.Statement.ParameterMissing", "42N51"),
        ("Neo.ClientError.Request.Invalid", "08N06"),
        ("Neo.ClientError.Procedure.ProcedureNotFound", "42N08"),
        ("Neo.ClientError.Security.Unauthorized", "42NFF"),
        ("Neo.TransientError.General.DatabaseUnavailable", "08N09"),
        ("Neo.DatabaseError.General.UnknownError", "50N42"),
        ("Memgraph.ClientError.MemgraphError.MemgraphError", DEFAULT_GQL_STATUS),
        ("Neo.ClientError.Something.New", DEFAULT_GQL_STATUS),
    ],
)
def test_gql_status_map(code: str, status: str) -> None:
    assert gql_status_for(code)[0] == status
    assert failure_metadata(code, "m", V57)["gql_status"] == status
    assert gql_status_for(code)[1].startswith("error: ")


def test_explicit_gql_status_wins() -> None:
    meta = failure_metadata("Neo.ClientError.Request.Invalid", "x", V57, gql_status="22N56")
    assert meta["gql_status"] == "22N56"


def test_empty_message_description_is_the_title() -> None:
    meta = failure_metadata("Neo.ClientError.Statement.SyntaxError", "", V57)
    assert meta["description"] == gql_status_for("Neo.ClientError.Statement.SyntaxError")[1]


def test_normalize_returns_same_object_when_it_fits() -> None:
    legacy = {"code": "Neo.ClientError.Statement.SyntaxError", "message": "m"}
    assert normalize_failure(legacy, V56) is legacy
    gql = failure_metadata("Neo.ClientError.Statement.SyntaxError", "m", V57)
    assert normalize_failure(gql, V58) is gql


def test_normalize_legacy_to_gql() -> None:
    legacy = {"code": "Neo.ClientError.Statement.SyntaxError", "message": "m"}
    out = normalize_failure(legacy, V57)
    assert out == failure_metadata("Neo.ClientError.Statement.SyntaxError", "m", V57)
    assert "code" not in out
    assert legacy == {"code": "Neo.ClientError.Statement.SyntaxError", "message": "m"}


def test_normalize_gql_to_legacy() -> None:
    gql = failure_metadata("Neo.ClientError.Statement.SyntaxError", "m", V57)
    gql["cause"] = {"gql_status": "42I06"}
    assert normalize_failure(gql, V56) == {
        "code": "Neo.ClientError.Statement.SyntaxError",
        "message": "m",
    }


def test_normalize_keeps_backend_gql_fields() -> None:
    partial: dict[str, Any] = {
        "neo4j_code": "Neo.ClientError.Statement.SyntaxError",
        "message": "m",
        "gql_status": "42I06",
        "cause": {"x": 1},
    }
    out = normalize_failure(partial, V57)
    assert out["gql_status"] == "42I06"
    assert out["cause"] == {"x": 1}
    assert out["description"].startswith("error: syntax error")


@pytest.mark.parametrize("version", [V56, V57])
def test_normalize_garbage(version: Version) -> None:
    out = normalize_failure({"message": 3}, version)
    code = out.get("code", out.get("neo4j_code"))
    assert code == UNKNOWN_ERROR_CODE
    assert out["message"] == ""

"""FAILURE metadata in the shape each Bolt version expects (bolt.md §5.2).

Up to 5.6 a FAILURE is ``{"code", "message"}``. From 5.7 it is GQL-shaped: ``neo4j_code``,
``message``, ``gql_status``, ``description`` and a ``diagnostic_record`` — and ``code`` is gone.
Getting this wrong is silent and nasty: the JS driver reads ``neo4j_code`` on 5.7+ (so a bare
``code`` becomes ``undefined``) and the Python driver files an error without ``gql_status`` /
``description`` under "An unknown error occurred" with the wrong retry classification.

A proxy meets both directions: it makes FAILUREs of its own (``failure_metadata``) and it relays
FAILUREs from backends that may speak another version than the client (``normalize_failure``).

GQL statuses come from Neo4j's published list (docs-status-codes, ``errors/gql-errors.adoc``).
Only the codes a proxy realistically produces or relays are mapped; anything else gets 50N42,
which Neo4j documents as "the default GQLSTATUS code for exceptions without a GQL object".
"""

from __future__ import annotations

from typing import Any

from bolt.versions import Version, uses_gql_failure

UNKNOWN_ERROR_CODE = "Neo.DatabaseError.General.UnknownError"

DEFAULT_GQL_STATUS = "50N42"
_DEFAULT_GQL_TITLE = "error: general processing exception - unexpected error"

# Neo4j status code -> (GQLSTATUS, status description title).
GQL_STATUS_BY_CODE: dict[str, tuple[str, str]] = {
    "Neo.ClientError.Statement.SyntaxError": (
        "42001",
        "error: syntax error or access rule violation - invalid syntax",
    ),
    "Neo.ClientError.Statement.ParameterMissing": (
        "42N51",
        "error: syntax error or access rule violation - invalid parameter",
    ),
    "Neo.ClientError.Statement.SemanticError": (
        "42000",
        "error: syntax error or access rule violation",
    ),
    "Neo.ClientError.Statement.TypeError": ("22N01", "error: data exception - invalid type"),
    "Neo.ClientError.Statement.ArgumentError": (
        "22N04",
        "error: data exception - invalid input value",
    ),
    "Neo.ClientError.Statement.ArithmeticError": (
        "22012",
        "error: data exception - division by zero",
    ),
    "Neo.ClientError.Statement.AccessMode": (
        "42N02",
        "error: syntax error or access rule violation - writing in read access mode",
    ),
    "Neo.ClientError.Statement.NotSystemDatabaseError": (
        "42N17",
        "error: syntax error or access rule violation - unsupported request",
    ),
    "Neo.ClientError.Procedure.ProcedureNotFound": (
        "42N08",
        "error: syntax error or access rule violation - no such procedure or function",
    ),
    "Neo.ClientError.Database.DatabaseNotFound": (
        "22N51",
        "error: data exception - database or alias does not exist",
    ),
    "Neo.ClientError.Request.Invalid": (
        "08N06",
        "error: connection exception - protocol error",
    ),
    "Neo.ClientError.Request.InvalidFormat": (
        "08N06",
        "error: connection exception - protocol error",
    ),
    "Neo.ClientError.Security.Unauthorized": (
        "42NFF",
        "error: syntax error or access rule violation - permission/access denied",
    ),
    "Neo.ClientError.Security.Forbidden": (
        "42NFF",
        "error: syntax error or access rule violation - permission/access denied",
    ),
    "Neo.ClientError.Security.CredentialsExpired": (
        "42NFD",
        "error: syntax error or access rule violation - credentials expired",
    ),
    "Neo.ClientError.Security.AuthorizationExpired": (
        "42NFE",
        "error: syntax error or access rule violation - auth info expired",
    ),
    "Neo.ClientError.Security.TokenExpired": (
        "42NFE",
        "error: syntax error or access rule violation - auth info expired",
    ),
    "Neo.ClientError.Transaction.TransactionNotFound": (
        "25N04",
        "error: invalid transaction state - specified transaction does not exist",
    ),
    "Neo.ClientError.Transaction.Terminated": (
        "25N05",
        "error: invalid transaction state - transaction terminated or closed",
    ),
    "Neo.TransientError.Transaction.DeadlockDetected": (
        "50N05",
        "error: general processing exception - deadlock detected",
    ),
    "Neo.TransientError.General.DatabaseUnavailable": (
        "08N09",
        "error: connection exception - database unavailable",
    ),
    "Neo.TransientError.Database.DatabaseUnavailable": (
        "08N09",
        "error: connection exception - database unavailable",
    ),
    "Neo.DatabaseError.General.UnknownError": (DEFAULT_GQL_STATUS, _DEFAULT_GQL_TITLE),
}

# Neo4j's diagnostic record defaults (the Python driver fills in the same three).
_DIAGNOSTIC_DEFAULTS = (("OPERATION", ""), ("OPERATION_CODE", "0"), ("CURRENT_SCHEMA", "/"))

# The GQL error classification drivers expose (``_classification`` in the diagnostic record),
# derived from the middle word of a Neo4j code.
_CLASSIFICATION = {
    "ClientError": "CLIENT_ERROR",
    "TransientError": "TRANSIENT_ERROR",
    "DatabaseError": "DATABASE_ERROR",
}


def gql_status_for(code: str) -> tuple[str, str]:
    """The (GQLSTATUS, description title) Neo4j would pair with ``code``."""
    return GQL_STATUS_BY_CODE.get(code, (DEFAULT_GQL_STATUS, _DEFAULT_GQL_TITLE))


def _classification(code: str) -> str | None:
    parts = code.split(".")
    return _CLASSIFICATION.get(parts[1]) if len(parts) > 2 else None


def failure_metadata(
    code: str, message: str, version: Version, *, gql_status: str | None = None
) -> dict[str, Any]:
    """FAILURE metadata for ``code``/``message`` in the shape ``version`` expects.

    ``gql_status`` overrides the status looked up from ``code`` (for errors that know a more
    precise one, e.g. a message-size overflow). Send the result with ``encode_failure``-style
    packing; the caller decides whether to close the connection afterwards.
    """
    if not uses_gql_failure(version):
        return {"code": code, "message": message}
    status, title = gql_status_for(code)
    if gql_status is not None:
        status = gql_status
    diagnostic: dict[str, Any] = dict(_DIAGNOSTIC_DEFAULTS)
    classification = _classification(code)
    if classification is not None:
        diagnostic["_classification"] = classification
    return {
        "neo4j_code": code,
        "message": message,
        "gql_status": status,
        "description": f"{title}. {message}" if message else title,
        "diagnostic_record": diagnostic,
    }


def normalize_failure(metadata: dict[str, Any], version: Version) -> dict[str, Any]:
    """Convert FAILURE metadata from a backend (either shape) into the shape of ``version``.

    Returns ``metadata`` itself, untouched, when it already fits — the common case on the relay
    path, so it costs two dict lookups. Otherwise returns a new dict: ``code`` is taken from
    ``neo4j_code`` (or vice versa), GQL fields already present are kept, missing ones derived.
    """
    message = metadata.get("message")
    if not isinstance(message, str):
        message = ""
    if not uses_gql_failure(version):
        if isinstance(metadata.get("code"), str):
            return metadata
        code = metadata.get("neo4j_code")
        return {"code": code if isinstance(code, str) else UNKNOWN_ERROR_CODE, "message": message}
    if (
        isinstance(metadata.get("neo4j_code"), str)
        and "gql_status" in metadata
        and "description" in metadata
        and "message" in metadata
    ):
        return metadata
    code = metadata.get("neo4j_code")
    if not isinstance(code, str):
        code = metadata.get("code")
    if not isinstance(code, str):
        code = UNKNOWN_ERROR_CODE
    result = failure_metadata(code, message, version)
    for key in ("gql_status", "description", "diagnostic_record", "cause"):
        if key in metadata:
            result[key] = metadata[key]
    return result

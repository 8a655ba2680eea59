"""Neo4j status codes: every code the proxy sends, the GQL status that goes with it, and what
its class means.

A Neo4j status code is ``Neo.<Classification>.<Category>.<Title>``. The classification is the
policy: drivers retry a unit of work on ``TransientError`` and on nothing else, so "is this
transient?" is answered here, from the code, and nowhere else (``is_transient``; the error
classes expose it as ``BoltError.transient``).

GQL statuses come from Neo4j's published list (docs-status-codes, ``errors/gql-errors.adoc``).
Only the codes a proxy realistically produces or relays are mapped; anything else gets 50N42,
which Neo4j documents as "the default GQLSTATUS code for exceptions without a GQL object".
"""

from __future__ import annotations

from typing import Any

# -- codes (Neo4j "Status codes" reference) ---------------------------------------------------

SYNTAX_ERROR = "Neo.ClientError.Statement.SyntaxError"
SEMANTIC_ERROR = "Neo.ClientError.Statement.SemanticError"
TYPE_ERROR = "Neo.ClientError.Statement.TypeError"
ARGUMENT_ERROR = "Neo.ClientError.Statement.ArgumentError"
ARITHMETIC_ERROR = "Neo.ClientError.Statement.ArithmeticError"
PARAMETER_MISSING = "Neo.ClientError.Statement.ParameterMissing"
ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"
ENTITY_NOT_FOUND = "Neo.ClientError.Statement.EntityNotFound"
EXTERNAL_RESOURCE_FAILED = "Neo.ClientError.Statement.ExternalResourceFailed"
NOT_SYSTEM_DATABASE = "Neo.ClientError.Statement.NotSystemDatabaseError"
PROCEDURE_NOT_FOUND = "Neo.ClientError.Procedure.ProcedureNotFound"
PROCEDURE_CALL_FAILED = "Neo.ClientError.Procedure.ProcedureCallFailed"
CONSTRAINT_VALIDATION_FAILED = "Neo.ClientError.Schema.ConstraintValidationFailed"
SCHEMA_RULE_EXISTS = "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"
INDEX_NOT_FOUND = "Neo.ClientError.Schema.IndexNotFound"
CONSTRAINT_NOT_FOUND = "Neo.ClientError.Schema.ConstraintNotFound"
DATABASE_NOT_FOUND = "Neo.ClientError.Database.DatabaseNotFound"
REQUEST_INVALID = "Neo.ClientError.Request.Invalid"
REQUEST_INVALID_FORMAT = "Neo.ClientError.Request.InvalidFormat"
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
FORBIDDEN = "Neo.ClientError.Security.Forbidden"
CREDENTIALS_EXPIRED = "Neo.ClientError.Security.CredentialsExpired"
AUTHORIZATION_EXPIRED = "Neo.ClientError.Security.AuthorizationExpired"
TOKEN_EXPIRED = "Neo.ClientError.Security.TokenExpired"
TRANSACTION_NOT_FOUND = "Neo.ClientError.Transaction.TransactionNotFound"
TRANSACTION_TERMINATED = "Neo.ClientError.Transaction.Terminated"
TRANSACTION_TIMED_OUT = "Neo.ClientError.Transaction.TransactionTimedOut"
TRANSACTION_START_FAILED = "Neo.ClientError.Transaction.TransactionStartFailed"
FORBIDDEN_DUE_TO_TRANSACTION_TYPE = "Neo.ClientError.Transaction.ForbiddenDueToTransactionType"
DEADLOCK_DETECTED = "Neo.TransientError.Transaction.DeadlockDetected"
DATABASE_UNAVAILABLE = "Neo.TransientError.General.DatabaseUnavailable"
OUT_OF_MEMORY = "Neo.TransientError.General.MemoryPoolOutOfMemoryError"
RESOURCE_EXHAUSTED = "Neo.TransientError.Request.ResourceExhaustion"
ROLLBACK_FAILED = "Neo.DatabaseError.Transaction.TransactionRollbackFailed"
COMMIT_FAILED = "Neo.DatabaseError.Transaction.TransactionCommitFailed"
UNKNOWN_ERROR = "Neo.DatabaseError.General.UnknownError"

# -- classification -----------------------------------------------------------------------------

CLIENT_ERROR = "ClientError"
TRANSIENT_ERROR = "TransientError"
DATABASE_ERROR = "DatabaseError"
_CLASSIFICATIONS = frozenset((CLIENT_ERROR, TRANSIENT_ERROR, DATABASE_ERROR))


def classification(code: str) -> str | None:
    """``ClientError``, ``TransientError`` or ``DatabaseError`` (the code's second word), or
    None for a code that is not shaped like Neo4j's."""
    parts = code.split(".")
    if len(parts) >= 3 and parts[1] in _CLASSIFICATIONS:
        return parts[1]
    return None


def is_transient(code: str) -> bool:
    """True when a retry of the same work may succeed (what drivers retry on)."""
    return classification(code) == TRANSIENT_ERROR


# Status titles some Bolt servers send bare (FalkorDB's Bolt port: "SyntaxError"), with the
# Neo4j category they belong to; drivers classify errors from the full four-part code.
_BARE_TITLES = {
    "SyntaxError": "Statement", "SemanticError": "Statement", "ParameterMissing": "Statement",
    "TypeError": "Statement", "ArithmeticError": "Statement", "EntityNotFound": "Statement",
    "ProcedureNotFound": "Procedure", "Unauthorized": "Security",
    "ConstraintValidationFailed": "Schema", "DatabaseNotFound": "Database",
}  # fmt: skip


def neo4j_style_code(code: str) -> str:
    """``code`` in Neo4j's ``Neo.<Class>.<Category>.<Title>`` shape.

    Vendor prefixes (``FalkorDB.ClientError...``, ``Memgraph.ClientError...``) become ``Neo``;
    a bare title gets its Neo4j category; anything else unknown becomes a DatabaseError.
    """
    parts = code.split(".")
    if len(parts) == 4 and parts[0] == "Neo":
        return code
    if len(parts) == 4 and parts[1] in _CLASSIFICATIONS:
        return ".".join(["Neo", *parts[1:]])
    if len(parts) == 1 and code in _BARE_TITLES:
        return f"Neo.ClientError.{_BARE_TITLES[code]}.{code}"
    return UNKNOWN_ERROR


# -- GQL statuses (5.7+ FAILUREs) -------------------------------------------------------------

DEFAULT_GQL_STATUS = "50N42"
DEFAULT_GQL_TITLE = "error: general processing exception - unexpected error"

# Neo4j status code -> (GQLSTATUS, status description title).
GQL_STATUS_BY_CODE: dict[str, tuple[str, str]] = {
    SYNTAX_ERROR: ("42001", "error: syntax error or access rule violation - invalid syntax"),
    PARAMETER_MISSING: (
        "42N51",
        "error: syntax error or access rule violation - invalid parameter",
    ),
    SEMANTIC_ERROR: ("42000", "error: syntax error or access rule violation"),
    TYPE_ERROR: ("22N01", "error: data exception - invalid type"),
    ARGUMENT_ERROR: ("22N04", "error: data exception - invalid input value"),
    ARITHMETIC_ERROR: ("22012", "error: data exception - division by zero"),
    ACCESS_MODE: (
        "42N02",
        "error: syntax error or access rule violation - writing in read access mode",
    ),
    NOT_SYSTEM_DATABASE: (
        "42N17",
        "error: syntax error or access rule violation - unsupported request",
    ),
    PROCEDURE_NOT_FOUND: (
        "42N08",
        "error: syntax error or access rule violation - no such procedure or function",
    ),
    DATABASE_NOT_FOUND: ("22N51", "error: data exception - database or alias does not exist"),
    REQUEST_INVALID: ("08N06", "error: connection exception - protocol error"),
    REQUEST_INVALID_FORMAT: ("08N06", "error: connection exception - protocol error"),
    UNAUTHORIZED: (
        "42NFF",
        "error: syntax error or access rule violation - permission/access denied",
    ),
    FORBIDDEN: (
        "42NFF",
        "error: syntax error or access rule violation - permission/access denied",
    ),
    CREDENTIALS_EXPIRED: (
        "42NFD",
        "error: syntax error or access rule violation - credentials expired",
    ),
    AUTHORIZATION_EXPIRED: (
        "42NFE",
        "error: syntax error or access rule violation - auth info expired",
    ),
    TOKEN_EXPIRED: ("42NFE", "error: syntax error or access rule violation - auth info expired"),
    TRANSACTION_NOT_FOUND: (
        "25N04",
        "error: invalid transaction state - specified transaction does not exist",
    ),
    TRANSACTION_TERMINATED: (
        "25N05",
        "error: invalid transaction state - transaction terminated or closed",
    ),
    DEADLOCK_DETECTED: ("50N05", "error: general processing exception - deadlock detected"),
    DATABASE_UNAVAILABLE: ("08N09", "error: connection exception - database unavailable"),
    "Neo.TransientError.Database.DatabaseUnavailable": (
        "08N09",
        "error: connection exception - database unavailable",
    ),
    UNKNOWN_ERROR: (DEFAULT_GQL_STATUS, DEFAULT_GQL_TITLE),
}

# The GQL error classification drivers expose (``_classification`` in the diagnostic record).
GQL_CLASSIFICATION = {
    CLIENT_ERROR: "CLIENT_ERROR",
    TRANSIENT_ERROR: "TRANSIENT_ERROR",
    DATABASE_ERROR: "DATABASE_ERROR",
}


def gql_status_for(code: str) -> tuple[str, str]:
    """The (GQLSTATUS, description title) Neo4j would pair with ``code``."""
    return GQL_STATUS_BY_CODE.get(code, (DEFAULT_GQL_STATUS, DEFAULT_GQL_TITLE))


def gql_classification(code: str) -> str | None:
    found = classification(code)
    return GQL_CLASSIFICATION[found] if found is not None else None


def code_of(metadata: dict[str, Any]) -> str:
    """The Neo4j code in FAILURE metadata of either shape (``code`` <=5.6, ``neo4j_code``)."""
    code = metadata.get("neo4j_code", metadata.get("code"))
    return code if isinstance(code, str) else UNKNOWN_ERROR

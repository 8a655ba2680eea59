"""FalkorDB's errors are plain text: ``classify_error`` maps them to Neo4j status codes.

Seen with 4.16: ``RETURN RETURN`` -> ``'RETURN' not defined``; a missing parameter -> ``Missing
parameters``; an unknown procedure -> ``Procedure `db.nope` is not registered``; ``RETURN 1/0`` ->
``Division by zero``. The message is kept as FalkorDB wrote it; unrecognised errors get
``Neo.DatabaseError.General.UnknownError``.
"""

from __future__ import annotations

import re

from bolt.status import (
    ACCESS_MODE,
    ARGUMENT_ERROR,
    ARITHMETIC_ERROR,
    CONSTRAINT_NOT_FOUND,
    CONSTRAINT_VALIDATION_FAILED,
    DATABASE_NOT_FOUND,
    EXTERNAL_RESOURCE_FAILED,
    INDEX_NOT_FOUND,
    OUT_OF_MEMORY,
    PARAMETER_MISSING,
    PROCEDURE_NOT_FOUND,
    RESOURCE_EXHAUSTED,
    SCHEMA_RULE_EXISTS,
    SEMANTIC_ERROR,
    SYNTAX_ERROR,
    TRANSACTION_TIMED_OUT,
    TYPE_ERROR,
    UNAUTHORIZED,
    UNKNOWN_ERROR,
)
from proxy.backends.base import BackendError, BackendUnavailable

_ERROR_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.I), code)
    for p, code in [
        (r"^errMsg: Invalid input|^Invalid input|Error: could not parse query", SYNTAX_ERROR),
        (r"^'.*' (is )?not defined$", SYNTAX_ERROR),  # Neo4j: Variable `m` not defined
        (r"^Unknown function", SYNTAX_ERROR),
        (r"^Invalid constraint command", SYNTAX_ERROR),
        (r"^Error: ", SYNTAX_ERROR),  # duplicate columns, empty query, several statements
        # The query's structure, found after parsing (Neo4j: SyntaxError too).
        (
            r"^Unexpected clause following RETURN|^RETURN \* is not allowed|"
            r"^A WITH clause is required|^WITH clause projections must be aliased|"
            r"^WITH imports in CALL|^Expression in CALL must be aliased|"
            r"^Invalid use of aggregating function|^Can't use aggregate functions inside|"
            r"^failed to map aggregation expression|^Query cannot (begin|conclude) with|"
            r"^Variable length relationships cannot be used in|"
            r"^Encountered unsupported query type",  # ":help", a client command
            SYNTAX_ERROR,
        ),
        (r"^Missing parameters", PARAMETER_MISSING),
        (r"^Procedure `.*` is not registered", PROCEDURE_NOT_FOUND),
        (r"division by zero", ARITHMETIC_ERROR),
        (r"constraint violation", CONSTRAINT_VALIDATION_FAILED),
        (r"^Type mismatch|^Property values can only be|unhandled type", TYPE_ERROR),
        (r"^Query timed out", TRANSACTION_TIMED_OUT),
        (r"is already indexed|^Constraint already exists", SCHEMA_RULE_EXISTS),
        (r"^(ERR )?Unable to drop index", INDEX_NOT_FOUND),
        (r"^Unable to drop constraint", CONSTRAINT_NOT_FOUND),
        (r"RO_QUERY is to be executed only on read-only queries", ACCESS_MODE),
        (r"empty key", DATABASE_NOT_FOUND),
        (r"^Error opening CSV", EXTERNAL_RESOURCE_FAILED),
        (r"^Max pending queries exceeded", RESOURCE_EXHAUSTED),
        (r"mem consumption exceeded|^Out of memory|^OOM ", OUT_OF_MEMORY),
        (r"^NOAUTH|^WRONGPASS|^NOPERM", UNAUTHORIZED),
        (
            r"^Only directed relationships|^Exactly one relationship type|"
            r"can't be redeclared|^Cannot merge|^Cannot use the same|^Delete type mismatch",
            SEMANTIC_ERROR,
        ),
        (
            r"^ArgumentError|must be a (non-negative|positive)|should be within|"
            r"^Failed to parse|^A point map|components map|must be specified|"
            r"^Received \d+ arguments|^Expected \d+ parameters",
            ARGUMENT_ERROR,
        ),
    ]
]
# Redis-level states in which a retry later can succeed. MISCONF: with appendfsync everysec
# or no, Redis refuses writes while it cannot write its AOF or snapshot (a full disk) and
# takes them again once it can.
_UNAVAILABLE = re.compile(r"^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|MISCONF)\b")


def classify_error(message: str) -> BackendError:
    """A FalkorDB error text as a ``BackendError`` with the matching Neo4j status code.

    The message is kept as FalkorDB wrote it; unrecognised errors get
    ``Neo.DatabaseError.General.UnknownError``.
    """
    if _UNAVAILABLE.match(message):
        return BackendUnavailable(f"FalkorDB is not ready: {message}")
    if message.lower().startswith("unknown command"):
        return BackendError(
            UNKNOWN_ERROR, f"the server does not have the FalkorDB module loaded: {message}"
        )
    for pattern, code in _ERROR_RULES:
        if pattern.search(message):
            return BackendError(code, message)
    return BackendError(UNKNOWN_ERROR, message)

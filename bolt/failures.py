"""FAILURE metadata in the shape each Bolt version expects (bolt.md §5.2).

Up to 5.6 a FAILURE is ``{"code", "message"}``. From 5.7 it is GQL-shaped: ``neo4j_code``,
``message``, ``gql_status``, ``description`` and a ``diagnostic_record`` — and ``code`` is gone.
Getting this wrong is silent and nasty: the JS driver reads ``neo4j_code`` on 5.7+ (so a bare
``code`` becomes ``undefined``) and the Python driver files an error without ``gql_status`` /
``description`` under "An unknown error occurred" with the wrong retry classification.

A proxy meets both directions: it makes FAILUREs of its own (``failure_metadata``, which every
``BoltError.failure`` uses) and it relays FAILUREs from backends that may speak another version
than the client, or vendor codes (``normalize_failure``). The codes and their GQL statuses are
in ``bolt.status``.
"""

from __future__ import annotations

from typing import Any

from bolt.status import (
    DEFAULT_GQL_STATUS,
    UNKNOWN_ERROR,
    code_of,
    gql_classification,
    gql_status_for,
    neo4j_style_code,
)
from bolt.versions import Version, uses_gql_failure

__all__ = [
    "DEFAULT_GQL_STATUS",
    "UNKNOWN_ERROR_CODE",
    "failure_metadata",
    "gql_status_for",
    "normalize_failure",
]

UNKNOWN_ERROR_CODE = UNKNOWN_ERROR

# Neo4j's diagnostic record defaults (the Python driver fills in the same three).
_DIAGNOSTIC_DEFAULTS = (("OPERATION", ""), ("OPERATION_CODE", "0"), ("CURRENT_SCHEMA", "/"))


def failure_metadata(
    code: str, message: str, version: Version, *, gql_status: str | None = None
) -> dict[str, Any]:
    """FAILURE metadata for ``code``/``message`` in the shape ``version`` expects.

    ``gql_status`` overrides the status looked up from ``code`` (for errors that know a more
    precise one, e.g. a message-size overflow).
    """
    if not uses_gql_failure(version):
        return {"code": code, "message": message}
    status, title = gql_status_for(code)
    if gql_status is not None:
        status = gql_status
    diagnostic: dict[str, Any] = dict(_DIAGNOSTIC_DEFAULTS)
    classification = gql_classification(code)
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
    """Convert FAILURE metadata from a backend (either shape, any vendor's code) into the shape
    of ``version``, with a Neo4j-shaped code.

    Returns ``metadata`` itself, untouched, when it already fits — the common case on the relay
    path. Otherwise returns a new dict: ``code`` is taken from ``neo4j_code`` (or vice versa),
    GQL fields already present are kept, missing ones derived.
    """
    raw = code_of(metadata)
    code = neo4j_style_code(raw)
    message = metadata.get("message")
    if not isinstance(message, str):
        message = ""
    if not uses_gql_failure(version):
        if code == raw and metadata.get("code") == code:
            return metadata
        return {"code": code, "message": message}
    if (
        code == raw
        and metadata.get("neo4j_code") == code
        and "gql_status" in metadata
        and "description" in metadata
        and "message" in metadata
    ):
        return metadata
    result = failure_metadata(code, message, version)
    for key in ("gql_status", "description", "diagnostic_record", "cause"):
        if key in metadata:
            result[key] = metadata[key]
    return result

"""Errors, with the policy for each on the class.

Every error a Bolt peer can cause or report is a ``BoltError``. The class says what the server
side should do about it, so the I/O layer never has to guess from the message text:

* ``code`` — the Neo4j status code to put in the FAILURE;
* ``close_connection`` — close after sending the FAILURE (protocol violations, failed auth);
* ``retriable`` — a driver may retry the unit of work (``Neo.TransientError.*``);
* ``failure(version)`` — the ready FAILURE metadata for the client's protocol version.

``ProtocolError`` and its subclasses mean the *peer* broke the protocol (bad bytes, a message that
has no transition in the current state). Neo4j answers those with ``Neo.ClientError.Request.
Invalid`` and closes the connection (bolt.md §6); the handshake errors close without a FAILURE
because no Bolt version has been agreed to shape one.
"""

from __future__ import annotations

from typing import Any

from bolt.failures import failure_metadata
from bolt.versions import Version


class BoltError(Exception):
    """Base class. Subclasses override the three policy attributes."""

    code: str = "Neo.DatabaseError.General.UnknownError"
    close_connection: bool = True
    retriable: bool = False
    # A more precise GQLSTATUS than the one derived from ``code`` (5.7+ FAILUREs), if any.
    gql_status: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def failure(self, version: Version) -> dict[str, Any]:
        """FAILURE metadata describing this error, in the shape ``version`` expects."""
        return failure_metadata(self.code, self.message, version, gql_status=self.gql_status)


class ProtocolError(BoltError):
    """The peer sent something the protocol does not allow. Send FAILURE, then close."""

    code = "Neo.ClientError.Request.Invalid"
    close_connection = True


class HandshakeError(ProtocolError):
    """The handshake failed (wrong magic, malformed reply). Close without a FAILURE."""


class MessageTooLarge(ProtocolError):
    """A message (or the part of it received so far) exceeds the configured limit."""

    gql_status = "22N56"  # "protocol message length limit overflow"


class PackStreamError(ProtocolError):
    """Bytes that are not valid PackStream (truncated, unknown marker, non-string map key...)."""


class NestingTooDeep(PackStreamError):
    """Lists/maps/structures nested deeper than the decoder allows (a cheap DoS otherwise)."""


class InvalidTransition(ProtocolError):
    """A request that has no transition in the current server state (bolt.md §6)."""

    gql_status = "08N10"  # "invalid server state"


class ClientError(BoltError):
    """A request the server refuses (bad query, unknown database...). The connection lives on."""

    close_connection = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthenticationError(ClientError):
    """Credentials were refused. Drivers expect the server to close afterwards (bolt.md §5.4)."""

    close_connection = True

    def __init__(self, message: str, code: str = "Neo.ClientError.Security.Unauthorized") -> None:
        super().__init__(code, message)


class TransientError(BoltError):
    """A temporary condition; drivers retry managed transactions on ``Neo.TransientError.*``."""

    close_connection = False
    retriable = True

    def __init__(
        self, message: str, code: str = "Neo.TransientError.General.DatabaseUnavailable"
    ) -> None:
        super().__init__(message)
        self.code = code

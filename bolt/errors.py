"""Errors, with the policy for each on the class.

Every error a Bolt peer can cause, and every refusal a server sends, is a ``BoltError``. The
error says what the server side should do about it, so no session has to guess from message
text:

* ``code`` — the Neo4j status code to put in the FAILURE (``bolt.status``);
* ``close_connection`` — close after sending the FAILURE (protocol violations, failed auth);
* ``transient`` — a retry of the same work may succeed (``Neo.TransientError.*``: drivers retry
  managed transactions on exactly these), derived from ``code``;
* ``failure(version)`` — the ready FAILURE metadata for the client's protocol version.

``ProtocolError`` and its subclasses mean the *peer* broke the protocol (bad bytes, a message that
has no transition in the current state). Neo4j answers those with ``Neo.ClientError.Request.
Invalid`` and closes the connection (bolt.md §6); the handshake errors close without a FAILURE
because no Bolt version has been agreed to shape one.

``ClientError`` is a request refused with any status code (the backends' errors are
``ClientError``s: ``proxy.backends.base.BackendError``); the connection lives on.
"""

from __future__ import annotations

from typing import Any

from bolt import status
from bolt.failures import failure_metadata
from bolt.versions import Version


class BoltError(Exception):
    """Base class. Subclasses set the policy attributes."""

    code: str = status.UNKNOWN_ERROR
    close_connection: bool = True
    # A more precise GQLSTATUS than the one derived from ``code`` (5.7+ FAILUREs), if any.
    gql_status: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def transient(self) -> bool:
        """True when retrying the same work may succeed (the code is a TransientError)."""
        return status.is_transient(self.code)

    def failure(self, version: Version) -> dict[str, Any]:
        """FAILURE metadata describing this error, in the shape ``version`` expects."""
        return failure_metadata(self.code, self.message, version, gql_status=self.gql_status)


class ProtocolError(BoltError):
    """The peer sent something the protocol does not allow. Send FAILURE, then close."""

    code = status.REQUEST_INVALID
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
    """A request the server refuses, with the status code that says why (of any class: client,
    transient or database error). The connection lives on."""

    close_connection = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthenticationError(ClientError):
    """Credentials were refused. Drivers expect the server to close afterwards (bolt.md §5.4)."""

    close_connection = True

    def __init__(self, message: str, code: str = status.UNAUTHORIZED) -> None:
        super().__init__(code, message)


class TransientError(ClientError):
    """A temporary condition; drivers retry managed transactions on ``Neo.TransientError.*``."""

    def __init__(self, message: str, code: str = status.DATABASE_UNAVAILABLE) -> None:
        super().__init__(code, message)

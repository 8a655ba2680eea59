"""Authentication for backends that have no users of their own (FalkorDB).

With no users configured every credential is accepted (the ready line says so). With users
configured, only the ``basic`` scheme with a matching password gets in. The Bolt relay never
uses this: there the backend checks credentials and the proxy holds no passwords.
"""

from __future__ import annotations

import hmac
from typing import Any

from bolt.errors import AuthenticationError


class Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    @property
    def description(self) -> str:
        if not self.users:
            return "auth: none (any credentials accepted)"
        return f"auth: {len(self.users)} configured user(s)"

    def authenticate(self, token: dict[str, Any]) -> str:
        """The user name for an auth token; raises ``ClientError`` (Unauthorized) if refused."""
        scheme = token.get("scheme") or "none"
        principal = token.get("principal")
        if not self.users:
            return principal if isinstance(principal, str) and principal else "neo4j"
        credentials = token.get("credentials")
        if scheme != "basic" or not isinstance(principal, str) or not isinstance(credentials, str):
            raise AuthenticationError(
                "The client is unauthorized due to authentication "
                "failure: this server requires basic authentication."
            )
        expected = self.users.get(principal)
        # Compare even for unknown users so the timing does not tell which names exist.
        ok = hmac.compare_digest((expected or "\0").encode(), credentials.encode())
        if expected is None or not ok:
            raise AuthenticationError("The client is unauthorized due to authentication failure.")
        return principal

"""Who may do what to a stream (README "Operating streams").

With users configured (``--auth``, ``--users-file``) or behind a Bolt backend (which
authenticates users itself), each stream has an owner, the user who created it; only the
owner or an admin may ALTER, DROP, START, STOP, TEST it or move its position. Others get
``Neo.ClientError.Security.Forbidden``. SHOW STREAMS and SHOW STREAM ... OFFSETS show every
stream to everyone (as Memgraph does); they never show a secret.

Who is an admin: the users file's role field (``root:secret:admin``), the proxy's
``--stream-admins`` list, and, on a Bolt backend that can tell (Neo4j: ``SHOW CURRENT USER``
run as that user), the backend's own ``admin`` role. With no users configured on a FalkorDB
backend, any credentials are accepted, so names prove nothing: nothing is enforced.

A stream without an owner (created before owners, or while nothing was enforced) may be
touched by admins only, once something is enforced.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from proxy.streams.clauses import StreamError

ADMIN = "admin"
USER = "user"
ROLES = (ADMIN, USER)
_ROLE_TTL = 60.0  # seconds a backend's answer about a user's roles is kept

RolesOf = Callable[[str], Awaitable[frozenset[str] | None]]


class StreamAccess:
    """``enforced``: whether owners count at all; ``admins``: users with the admin role by
    configuration; ``roles_of``: asks the backend for a user's roles (None: it cannot
    tell)."""

    def __init__(
        self,
        *,
        enforced: bool,
        admins: Iterable[str] = (),
        roles_of: RolesOf | None = None,
    ) -> None:
        self.enforced = enforced
        self.admins = frozenset(admins)
        self.roles_of = roles_of
        self._cache: dict[str, tuple[float, bool]] = {}

    @classmethod
    def open(cls) -> StreamAccess:
        """Nothing enforced (tests, and FalkorDB without users)."""
        return cls(enforced=False)

    async def is_admin(self, user: str) -> bool:
        if user in self.admins:
            return True
        if self.roles_of is None or not user:
            return False
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is not None and now - cached[0] < _ROLE_TTL:
            return cached[1]
        roles = await self.roles_of(user)
        admin = roles is not None and ADMIN in roles
        self._cache[user] = (now, admin)
        return admin

    async def check(self, user: str, owner: str | None, action: str, name: str) -> None:
        """Raise ``StreamError("forbidden")`` unless ``user`` may ``action`` stream ``name``."""
        if not self.enforced:
            return
        if owner is not None and user == owner:
            return
        if await self.is_admin(user):
            return
        whose = f"owned by {owner!r}" if owner is not None else "without an owner"
        raise StreamError(
            "forbidden",
            f"User {user!r} may not {action} Kafka stream {name}: it is {whose}, and only its "
            "owner or an admin may",
        )

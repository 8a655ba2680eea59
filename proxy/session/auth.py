"""Authentication for backends that have no users of their own (FalkorDB).

With no users configured every credential is accepted (the ready line says so). With users
configured, only the ``basic`` scheme with a matching password gets in. The Bolt relay never
uses this: there the backend checks credentials and the proxy holds no passwords.

Passwords in the users file are stored as scrypt hashes (``hash_password``; written by
``boltstream passwd``): ``USER:scrypt$N$r$p$SALT$HASH``, salt and hash in base64. A line
with a plain password still works, and the ready line warns about it. Checking a hash costs
about 50 ms of CPU and 16 MiB, so it runs on a thread, never on the event loop; a password
that was checked once is remembered (an HMAC of it under a key made at start-up, in memory
only) so that a driver opening a pool of connections pays once.

Failed logins are throttled per client address and per user name (``Throttle``, one of
each): after ``max_failures`` in a row from one address (5), or for one name from anywhere
(10), further attempts from that address, or for that name, are refused at once, without
checking, for ``lock_seconds`` (5) after the last failure, with Neo4j's
``Neo.ClientError.Security.AuthenticationRateLimit``. The address lock stops one client
guessing; the name lock stops a credential-stuffing attack that rotates addresses: it gets
one guess per name every 5 s. The price, as with Neo4j's own per-user lock (3 failures, 5 s:
``dbms.security.auth_max_failed_attempts``, ``auth_lock_time``), is that such an attack also
keeps the real user out while it lasts. Names that do not exist are counted the same way, and
the refusal says the same thing whichever lock applies, so neither tells which names exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from bolt.errors import AuthenticationError

SCHEME = "scrypt"
# 2**14 x 8 x 128 bytes = 16 MiB per check; about 50 ms on one core of the project's machines.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
AUTHENTICATION_RATE_LIMIT = "Neo.ClientError.Security.AuthenticationRateLimit"


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The users-file form of ``password``: ``scrypt$N$r$p$SALT$HASH``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p, SCRYPT_LEN)
    return "$".join((SCHEME, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def is_hashed(stored: str) -> bool:
    return stored.startswith(SCHEME + "$")


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a hash, or a plain password). Blocking (a
    hash costs ~50 ms): call it off the event loop."""
    if not is_hashed(stored):
        return hmac.compare_digest(stored.encode(), password.encode())
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        found = _scrypt(
            password, base64.b64decode(salt, validate=True), int(n), int(r), int(p), len(expected)
        )
    except ValueError:
        return False  # a malformed entry matches nothing (``parse_users`` reports it)
    return hmac.compare_digest(found, expected)


def check_stored(stored: str) -> str | None:
    """What is wrong with a users-file entry's password field, or None."""
    if not is_hashed(stored):
        return None
    parts = stored.split("$")
    if len(parts) != 6:
        return "a scrypt entry has six fields: scrypt$N$r$p$SALT$HASH"
    try:
        n, r, p = (int(x) for x in parts[1:4])
        base64.b64decode(parts[4], validate=True)
        if not base64.b64decode(parts[5], validate=True):
            return "empty hash"
    except ValueError:
        return "bad number or base64 in a scrypt entry"
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or n * r * 128 > 256 << 20:
        return "scrypt parameters out of range (N a power of two, at most 256 MiB)"
    return None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=300 << 20
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class _Failures:
    count: int
    last: float


class Throttle:
    """Failed logins in a row per key: a client address, or a user name (see the module
    docstring). Bounded: the oldest keys are forgotten past ``max_keys``."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        lock_seconds: float = 5.0,
        max_keys: int = 10000,
        clock: Any = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def check(self, key: str) -> None:
        """Raise ``AuthenticationError`` (rate limit) if ``key`` is locked out now."""
        found = self._failures.get(key)
        if found is None or found.count < self.max_failures:
            return
        if self.clock() - found.last < self.lock_seconds:
            raise AuthenticationError(
                "The client has provided incorrect authentication details too many times "
                f"in a row: try again in {self.lock_seconds:g} s.",
                code=AUTHENTICATION_RATE_LIMIT,
            )

    def failed(self, key: str) -> None:
        found = self._failures.pop(key, None)
        now = self.clock()
        if found is None:
            found = _Failures(0, now)
        found.count += 1
        found.last = now
        self._failures[key] = found
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class Authenticator:
    def __init__(
        self,
        users: dict[str, str],
        throttle: Throttle | None = None,
        user_throttle: Throttle | None = None,
    ) -> None:
        self.users = users
        self.throttle = throttle or Throttle()  # per client address
        self.user_throttle = user_throttle or Throttle(max_failures=10)  # per user name
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}  # user -> HMAC of the password that matched

    @property
    def description(self) -> str:
        if not self.users:
            return "auth: none (any credentials accepted)"
        plain = self.plaintext_users()
        note = (
            f"; {len(plain)} with a plain-text password (hash them with boltstream passwd)"
            if plain
            else ""
        )
        return f"auth: {len(self.users)} configured user(s){note}"

    def plaintext_users(self) -> list[str]:
        return sorted(user for user, stored in self.users.items() if not is_hashed(stored))

    async def authenticate(self, token: dict[str, Any], address: str = "") -> str:
        """The user name for an auth token; raises ``AuthenticationError`` if refused (or if
        ``address``, or the name, failed too often lately)."""
        scheme = token.get("scheme") or "none"
        principal = token.get("principal")
        if not self.users:
            return principal if isinstance(principal, str) and principal else "neo4j"
        self.throttle.check(address)
        name = principal if isinstance(principal, str) else ""
        self.user_throttle.check(name)
        credentials = token.get("credentials")
        if scheme != "basic" or not isinstance(principal, str) or not isinstance(credentials, str):
            self.throttle.failed(address)
            self.user_throttle.failed(name)
            raise AuthenticationError(
                "The client is unauthorized due to authentication "
                "failure: this server requires basic authentication."
            )
        stored = self.users.get(principal)
        mark = hmac.digest(self._key, credentials.encode("utf-8"), "sha256")
        known = self._verified.get(principal) if stored is not None else None
        if known is not None and hmac.compare_digest(known, mark):
            ok = True
        elif stored is None:
            # Cost the same as a wrong password, so the timing does not tell which names exist.
            if self.plaintext_users() != sorted(self.users):
                await asyncio.to_thread(check_password, credentials, _dummy_hash())
            else:
                check_password(credentials, "\0")
            ok = False
        elif is_hashed(stored):
            ok = await asyncio.to_thread(check_password, credentials, stored)
        else:
            ok = check_password(credentials, stored)
        if not ok:
            self.throttle.failed(address)
            self.user_throttle.failed(principal)
            raise AuthenticationError("The client is unauthorized due to authentication failure.")
        self._verified[principal] = mark
        self.throttle.succeeded(address)
        self.user_throttle.succeeded(principal)
        return principal


_dummy: list[str] = []


def _dummy_hash() -> str:
    if not _dummy:
        _dummy.append(hash_password(secrets.token_hex(8)))
    return _dummy[0]

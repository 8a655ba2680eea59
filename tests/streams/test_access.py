"""Who may touch a stream (proxy/streams/access.py)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.streams.access import StreamAccess
from proxy.streams.clauses import StreamError


def check(access: StreamAccess, user: str, owner: str | None) -> str | None:
    try:
        asyncio.run(access.check(user, owner, "drop", "s"))
    except StreamError as exc:
        assert exc.kind == "forbidden"
        return exc.message
    return None


def test_owner_and_admins_may_others_not() -> None:
    access = StreamAccess(enforced=True, admins={"root"})
    assert check(access, "alice", "alice") is None
    assert check(access, "root", "alice") is None
    message = check(access, "bob", "alice")
    assert message == (
        "User 'bob' may not drop Kafka stream s: it is owned by 'alice', and only its owner "
        "or an admin may"
    )
    assert check(access, "bob", None) is not None  # no owner: admins only
    assert check(access, "root", None) is None


def test_nothing_is_enforced_without_users() -> None:
    assert check(StreamAccess.open(), "bob", "alice") is None


@pytest.mark.parametrize(("roles", "admin"), [(frozenset({"admin"}), True), (None, False)])
def test_the_backend_tells_who_is_admin(roles: frozenset[str] | None, admin: bool) -> None:
    asked: list[str] = []

    async def roles_of(user: str) -> frozenset[str] | None:
        asked.append(user)
        return roles

    access = StreamAccess(enforced=True, roles_of=roles_of)

    async def twice() -> tuple[bool, bool]:
        return await access.is_admin("dba"), await access.is_admin("dba")

    assert asyncio.run(twice()) == (admin, admin)
    assert asked == ["dba"]  # kept for a while

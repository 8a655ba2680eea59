"""Passwords stored as scrypt hashes, ``boltstream passwd``, and failed logins throttled per
client address and per user name (``proxy.session.auth``)."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from bolt.errors import AuthenticationError
from proxy import cli
from proxy.config import ConfigError, load_config
from proxy.session.auth import (
    AUTHENTICATION_RATE_LIMIT,
    Authenticator,
    Throttle,
    check_password,
    hash_password,
)

# Small scrypt parameters keep these tests fast; the format is the same.
FAST = {"n": 2**4, "r": 1, "p": 1}


def basic(user: str, password: str) -> dict[str, str]:
    return {"scheme": "basic", "principal": user, "credentials": password}


def test_a_hash_matches_its_password_only() -> None:
    stored = hash_password("s3cret", **FAST)
    assert stored.startswith("scrypt$16$1$1$")
    assert "s3cret" not in stored
    assert check_password("s3cret", stored)
    assert not check_password("s3cret ", stored)
    assert hash_password("s3cret", **FAST) != stored  # salted
    assert not check_password("x", "scrypt$16$1$1$notbase64$$")  # malformed: matches nothing


async def test_hashed_and_plain_entries_both_log_in() -> None:
    auth = Authenticator({"ann": hash_password("a-pass", **FAST), "bob": "b-pass"})
    assert auth.plaintext_users() == ["bob"]
    assert "1 with a plain-text password" in auth.description
    assert await auth.authenticate(basic("ann", "a-pass"), "10.0.0.1") == "ann"
    assert await auth.authenticate(basic("ann", "a-pass"), "10.0.0.1") == "ann"  # remembered
    assert await auth.authenticate(basic("bob", "b-pass"), "10.0.0.1") == "bob"
    for token in (basic("ann", "b-pass"), basic("nobody", "a-pass"), {"scheme": "none"}):
        with pytest.raises(AuthenticationError):
            await auth.authenticate(token, "10.0.0.1")


async def test_failed_logins_are_throttled_per_address() -> None:
    now = [100.0]
    throttle = Throttle(max_failures=3, lock_seconds=5.0, clock=lambda: now[0])
    auth = Authenticator({"ann": hash_password("right", **FAST)}, throttle)
    for _ in range(3):
        with pytest.raises(AuthenticationError) as failure:
            await auth.authenticate(basic("ann", "wrong"), "10.0.0.9")
        assert failure.value.code == "Neo.ClientError.Security.Unauthorized"
    # Locked: even the right password is refused at once, with the rate-limit code.
    with pytest.raises(AuthenticationError) as failure:
        await auth.authenticate(basic("ann", "right"), "10.0.0.9")
    assert failure.value.code == AUTHENTICATION_RATE_LIMIT
    # Another address is not.
    assert await auth.authenticate(basic("ann", "right"), "10.0.0.10") == "ann"
    now[0] += 5.1  # the lock has passed; one success clears the count
    assert await auth.authenticate(basic("ann", "right"), "10.0.0.9") == "ann"
    with pytest.raises(AuthenticationError) as failure:
        await auth.authenticate(basic("ann", "wrong"), "10.0.0.9")
    assert failure.value.code == "Neo.ClientError.Security.Unauthorized"


async def test_failed_logins_are_throttled_per_name_across_addresses() -> None:
    """Credential stuffing from many addresses, each under its own limit: the name is locked
    after ``max_failures`` in a row from anywhere; other names are not; a name that does not
    exist is locked the same way, with the same answer (no oracle for which names exist)."""
    now = [100.0]
    auth = Authenticator(
        {"ann": hash_password("right", **FAST), "bob": hash_password("b", **FAST)},
        Throttle(max_failures=5, lock_seconds=5.0, clock=lambda: now[0]),
        Throttle(max_failures=4, lock_seconds=5.0, clock=lambda: now[0]),
    )
    codes = {}
    for name in ("ann", "ghost"):
        for i in range(4):  # four addresses, one failure each: no address is near its limit
            with pytest.raises(AuthenticationError) as failure:
                await auth.authenticate(basic(name, "guess"), f"10.1.0.{i}")
            assert failure.value.code == "Neo.ClientError.Security.Unauthorized"
        # A fifth address, and the right password: refused at once for this name.
        with pytest.raises(AuthenticationError) as failure:
            await auth.authenticate(basic(name, "right"), "10.1.0.99")
        codes[name] = (failure.value.code, str(failure.value))
    assert codes["ann"] == codes["ghost"]
    assert codes["ann"][0] == AUTHENTICATION_RATE_LIMIT
    # Another name from the same addresses is not locked.
    assert await auth.authenticate(basic("bob", "b"), "10.1.0.0") == "bob"
    now[0] += 5.1  # the lock has passed; one success clears the name's count
    assert await auth.authenticate(basic("ann", "right"), "10.1.0.99") == "ann"
    with pytest.raises(AuthenticationError) as failure:
        await auth.authenticate(basic("ann", "guess"), "10.1.0.5")
    assert failure.value.code == "Neo.ClientError.Security.Unauthorized"


def test_the_throttle_forgets_the_oldest_addresses() -> None:
    throttle = Throttle(max_failures=1, max_keys=2)
    for address in ("a", "b", "c"):
        throttle.failed(address)
    throttle.check("a")  # forgotten: not locked
    with pytest.raises(AuthenticationError):
        throttle.check("c")


def test_passwd_writes_a_hashed_entry_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    users.write_text("# team\nann:old-plain\nbob:b-pass\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("new pass\n"))
    assert cli.main(["passwd", str(users), "ann", "--password-stdin"]) == 0
    lines = users.read_text().splitlines()
    assert lines[0] == "# team" and lines[2] == "bob:b-pass"
    user, _, stored = lines[1].partition(":")
    assert user == "ann" and stored.startswith("scrypt$") and check_password("new pass", stored)
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    monkeypatch.setattr("sys.stdin", io.StringIO("c-pass\n"))
    assert cli.main(["passwd", str(users), "cy", "--password-stdin"]) == 0
    found = load_config(env={"BOLTSTREAM_USERS_FILE": str(users)}).users()
    assert sorted(found) == ["ann", "bob", "cy"] and check_password("c-pass", found["cy"])
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli.main(["passwd", str(users), "dee", "--password-stdin"]) == 1  # empty: refused
    assert cli.main(["passwd", str(users), "a:b", "--password-stdin"]) == 2


def test_a_malformed_hash_in_the_users_file_is_a_config_error(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("ann:scrypt$16$1$1$c2FsdA==\n")
    with pytest.raises(ConfigError, match=r"users:1: a scrypt entry has six fields"):
        load_config(env={"BOLTSTREAM_USERS_FILE": str(users)})

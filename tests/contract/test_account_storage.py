"""Contract of AccountStorage and AuditStorage (cache/storage.py): users, tokens, revocation,
lockout state, the JWT signing key and the audit log. Every test runs on SQLite (one node) and
on PostgreSQL (several nodes); "another node" is a second handle on the same store."""
from __future__ import annotations

import asyncio
import time

import pytest

from depot.cache.accounts import UserError, verify_password
from depot.cache.lockout import LockoutPolicy
from depot.cache.storage import AccountStorage, AuditStorage

PASSWORD = "password-123"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_implements_the_protocols(accounts):
    handle = accounts.first
    assert isinstance(handle.users, AccountStorage)
    assert isinstance(handle.audit, AuditStorage)


def test_users_are_created_once_and_checked_by_password(accounts):
    users = accounts.first.users
    assert not users.any_admin()
    users.add_user("alice", PASSWORD)
    users.add_user("root", PASSWORD, admin=True)
    with pytest.raises(UserError, match="exists"):
        users.add_user("alice", "other-password")
    with pytest.raises(UserError):
        users.add_user("Bad Name", PASSWORD)
    with pytest.raises(UserError):
        users.add_user("bob", "short")
    assert users.user_exists("alice") and not users.user_exists("bob")
    assert users.user_is_admin("root") and not users.user_is_admin("alice") and users.any_admin()
    wait, stored = run(users.password_state("alice", time.time()))
    assert wait == 0 and stored is not None and stored.version == 0 and not stored.admin
    assert verify_password(stored.password_hash, PASSWORD)
    assert not verify_password(stored.password_hash, "other-password")
    assert run(users.password_state("nobody", time.time())) == (0.0, None)
    assert [row[:2] for row in users.user_rows(time.time())] == [("alice", False), ("root", True)]


def test_another_node_sees_users_and_tokens_at_once(accounts):
    a, b = accounts.first.users, accounts().users
    a.add_user("alice", PASSWORD)
    token, secret = a.create_token("alice", ["*"], "write", description="ci")
    found, owner = run(b.resolve_token(secret=secret))
    assert found is not None and found.id == token.id and found.perm == "write" and found.description == "ci"
    assert owner is not None and owner.name == "alice"
    assert run(b.resolve_token(token_id=token.id))[0] == found
    assert b.user_exists("alice") and [t.id for t in b.list_tokens()] == [token.id]
    assert a.signing_key() == b.signing_key() and len(a.signing_key()) >= 32


def test_revocation_counts_on_every_node_at_once(accounts):
    a, b = accounts.first.users, accounts().users
    a.add_user("alice", PASSWORD)
    token, secret = a.create_token("alice", ["r1", "r2"], "read", expires_in=3600)
    generation = run(b.generation())
    version = run(b.user_state("alice")).version
    assert a.revoke(token.id)
    assert not a.revoke(token.id)                       # once
    assert not a.revoke("no-such-id")
    found, _ = run(b.resolve_token(secret=secret))
    assert found is not None and found.revoked is not None and not found.usable(time.time())
    assert found.repos == ("r1", "r2") and found.expires is not None
    assert run(b.generation()) > generation             # workers drop their credential caches
    assert run(b.user_state("alice")).version == version + 1   # the user's JWTs stop working


def test_password_change_and_deletion_take_credentials_away(accounts):
    a, b = accounts.first.users, accounts().users
    a.add_user("alice", PASSWORD)
    _, secret = a.create_token("alice", [], "read")
    generation = run(b.generation())
    a.set_password("alice", "new-password-456")
    assert run(b.generation()) > generation
    stored = run(b.user_state("alice"))
    assert stored.version == 1 and verify_password(stored.password_hash, "new-password-456")
    a.delete_user("alice")
    token, owner = run(b.resolve_token(secret=secret))
    assert owner is None and token is not None and token.revoked is not None
    assert not b.user_exists("alice")
    with pytest.raises(UserError):
        a.delete_user("alice")
    with pytest.raises(UserError):
        a.set_password("alice", "new-password-789")
    with pytest.raises(UserError):
        a.create_token("alice", [], "read")


def test_deploy_tokens_and_unknown_secrets(accounts):
    users = accounts.first.users
    token, secret = users.create_token(None, ["repo"], "write")
    found, owner = run(users.resolve_token(secret=secret))
    assert found.user is None and owner is None and found.covers("repo") and not found.covers("other")
    assert run(users.resolve_token(secret="dpt_unknown")) == (None, None)
    with pytest.raises(UserError):
        users.create_token(None, [], "superuser")
    made, secret2 = run(users.create_token_async(None, [], "read", 60.0, "login"))
    assert run(users.resolve_token(secret=secret2))[0].id == made.id


def test_last_use_is_recorded(accounts):
    users = accounts.first.users
    token, _ = users.create_token(None, [], "read")
    now = time.time()
    run(users.touch_token(token, now))
    (listed,) = accounts().users.list_tokens()
    assert listed.last_used == pytest.approx(now)


def test_lockout_is_shared_by_every_node(accounts):
    a, b = accounts.first.users, accounts().users
    a.add_user("alice", PASSWORD)
    policy = LockoutPolicy(max_failures=3, window=60, duration=30)
    now = time.time()
    assert not run(a.record_failure("alice", policy, now))
    assert not run(b.record_failure("alice", policy, now))        # counted with the first
    assert run(a.record_failure("alice", policy, now))            # the third engages the lock
    wait, _ = run(b.password_state("alice", now + 1))
    assert wait == pytest.approx(29, abs=0.01)
    assert run(b.password_state("alice", now + 31))[0] == 0       # it expires
    (row,) = b.user_rows(now + 1)
    assert row[0] == "alice" and row[3] == pytest.approx(29, abs=0.01)
    b.unlock("alice")
    assert run(a.password_state("alice", now + 1))[0] == 0


def test_failures_outside_the_window_start_over(accounts):
    users = accounts.first.users
    policy = LockoutPolicy(max_failures=2, window=10, duration=30)
    now = time.time()
    assert not run(users.record_failure("x", policy, now))
    assert not run(users.record_failure("x", policy, now + 11))   # the first is forgotten
    assert run(users.record_failure("x", policy, now + 12))
    run(users.record_success("x"))
    assert run(users.password_state("x", now + 12))[0] == 0


def test_failures_arriving_at_once_all_count(accounts):
    """Ten wrong passwords at once on two nodes: exactly one of them engages the lock."""
    a, b = accounts.first.users, accounts().users
    policy = LockoutPolicy(max_failures=10, window=60, duration=30)
    now = time.time()

    async def burst() -> list[bool]:
        return await asyncio.gather(*((a if i % 2 else b).record_failure("alice", policy, now)
                                      for i in range(10)))
    assert sorted(run(burst())) == [False] * 9 + [True]
    assert run(a.password_state("alice", now))[0] > 0


def test_audit_is_shared_and_paged(accounts):
    first, second = accounts.first.audit, accounts().audit
    for i in range(5):
        first.record("token.create", "ok", "cli:test", None, None, token=f"t{i}")

    async def from_the_loop() -> None:          # the request path: written off the loop, in order
        second.record("login", "denied", None, "127.0.0.1", "repo", reason="wrong password")
        assert (await asyncio.to_thread(second.tail, 1))[0]["action"] == "login"
    run(from_the_loop())
    records = first.tail(3)
    assert [r["action"] for r in records] == ["token.create", "token.create", "login"]
    assert [r.get("token") for r in records[:2]] == ["t3", "t4"]
    assert records[2]["actor"] == "anonymous" and records[2]["reason"] == "wrong password"
    assert [r["token"] for r in first.tail(2, offset=2)] == ["t2", "t3"]
    assert len(second.tail(1000)) == 6 and first.tail(10, offset=100) == []

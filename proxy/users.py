"""Users, API tokens and the audit log, kept in depot's SQLite database.

Passwords are hashed with argon2; tokens are random, shown once, stored as sha256 (they carry
128+ bits of entropy, so a fast hash is enough and lookups stay cheap).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from depot.cache.db import Database

PERMS = ("read", "write", "delete", "admin")
RANK = {name: index for index, name in enumerate(PERMS, 1)}
USER_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"
TOKEN_PREFIX = "dpt_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    user TEXT,
    description TEXT NOT NULL DEFAULT '',
    repos TEXT NOT NULL,
    perm TEXT NOT NULL,
    expires REAL,
    created REAL NOT NULL,
    revoked REAL
);
"""

_hasher = PasswordHasher()


class UserError(ValueError):
    """A bad user name, password, permission or reference."""


@dataclass(frozen=True)
class Token:
    id: str
    user: str | None
    description: str
    repos: tuple[str, ...]       # ("*",) for every repository
    perm: str
    expires: float | None
    created: float
    revoked: float | None

    def covers(self, repo: str) -> bool:
        return "*" in self.repos or repo in self.repos

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


def _token_row(row: sqlite3.Row) -> Token:
    return Token(row["id"], row["user"], row["description"], tuple(json.loads(row["repos"])),
                 row["perm"], row["expires"], row["created"], row["revoked"])


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_user_name(name: str) -> str:
    if not name or len(name) > 64 or any(c not in USER_NAME_CHARS for c in name):
        raise UserError("user names are 1-64 characters from a-z 0-9 . _ -")
    return name


class UserStore:
    """Users and tokens (blocking methods for the CLI, async ones for the server)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.run_sync(lambda conn: conn.executescript(SCHEMA))

    # users ---------------------------------------------------------------------------
    def add_user(self, name: str, password: str, admin: bool = False) -> None:
        validate_user_name(name)
        if len(password) < 8:
            raise UserError("passwords need at least 8 characters")
        digest = _hasher.hash(password)

        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("INSERT INTO users (name, password_hash, admin, created) VALUES (?, ?, ?, ?)",
                             (name, digest, int(admin), time.time()))
            except sqlite3.IntegrityError:
                raise UserError(f"user {name!r} exists") from None
        self.db.run_sync(work)

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise UserError("passwords need at least 8 characters")
        digest = _hasher.hash(password)
        changed = self.db.run_sync(lambda conn: conn.execute(
            "UPDATE users SET password_hash = ? WHERE name = ?", (digest, name)).rowcount)
        if not changed:
            raise UserError(f"no user {name!r}")

    def user_exists(self, name: str) -> bool:
        return bool(self.db.run_sync(lambda conn: conn.execute(
            "SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()))

    def check_password(self, conn: sqlite3.Connection, name: str, password: str) -> tuple[str, bool] | None:
        """(name, admin) if the password is right (runs on the database thread)."""
        row = conn.execute("SELECT password_hash, admin FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            _hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        return name, bool(row["admin"])

    def is_admin(self, conn: sqlite3.Connection, name: str) -> bool:
        row = conn.execute("SELECT admin FROM users WHERE name = ?", (name,)).fetchone()
        return bool(row and row["admin"])

    # tokens --------------------------------------------------------------------------
    def create_token(self, user: str | None, repos: list[str], perm: str,
                     expires_in: float | None = None, description: str = "") -> tuple[Token, str]:
        """A new token and its secret (shown once). user None makes a deploy token."""
        if perm not in RANK:
            raise UserError(f"perm must be one of {', '.join(PERMS)}")
        if user is not None and not self.user_exists(user):
            raise UserError(f"no user {user!r}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(24)
        now = time.time()
        token = Token(secrets.token_hex(6), user, description, tuple(repos or ["*"]), perm,
                      now + expires_in if expires_in else None, now, None)
        self.db.run_sync(lambda conn: conn.execute(
            "INSERT INTO tokens (id, hash, user, description, repos, perm, expires, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token.id, token_hash(secret), user, description, json.dumps(list(token.repos)), perm,
             token.expires, now)))
        return token, secret

    async def create_token_async(self, user: str | None, repos: list[str], perm: str,
                                 expires_in: float | None = None, description: str = "") -> tuple[Token, str]:
        import asyncio
        return await asyncio.to_thread(self.create_token, user, repos, perm, expires_in, description)

    def find_token(self, conn: sqlite3.Connection, secret: str) -> Token | None:
        row = conn.execute("SELECT * FROM tokens WHERE hash = ?", (token_hash(secret),)).fetchone()
        return _token_row(row) if row else None

    def token_by_id(self, conn: sqlite3.Connection, token_id: str) -> Token | None:
        row = conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return _token_row(row) if row else None

    def list_tokens(self) -> list[Token]:
        return self.db.run_sync(lambda conn: [_token_row(r) for r in conn.execute(
            "SELECT * FROM tokens ORDER BY created")])

    def revoke(self, token_id: str) -> bool:
        return bool(self.db.run_sync(lambda conn: conn.execute(
            "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), token_id)).rowcount))


class AuditLog:
    """JSON lines: time, actor, client address, repository, action, result."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def record(self, action: str, result: str, actor: str | None = None, client: str | None = None,
               repository: str | None = None, **details: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "actor": actor or "anonymous", "client": client,
                           "repository": repository, "action": action, "result": result, **details},
                          sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def tail(self, limit: int = 1000) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()[-limit:]
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

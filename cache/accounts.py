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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .db import Database

# what a unit-of-work callback run on the database thread receives (Database.run)
Session = sqlite3.Connection

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
CREATE TABLE IF NOT EXISTS auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO auth_generation (id, value) VALUES (0, 0);
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

# Every change that takes a credential away (password change, token revocation) bumps the
# global generation (workers drop their credential caches when it moves) and the user's
# credential version (carried in Docker JWTs and compared on every use).
_BUMP_GENERATION = "UPDATE auth_generation SET value = value + 1 WHERE id = 0"
_BUMP_USER = "UPDATE users SET cred_version = cred_version + 1 WHERE name = ?"


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    for table, column, decl in (("users", "cred_version", "INTEGER NOT NULL DEFAULT 0"),
                                ("tokens", "last_used", "REAL")):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in columns:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        except sqlite3.OperationalError as exc:     # another worker added it first
            if "duplicate column" not in str(exc):
                raise


@dataclass(frozen=True)
class StoredUser:
    """What a password check needs of a user row."""

    name: str
    password_hash: str
    admin: bool
    version: int


def verify_password(password_hash: str, password: str) -> bool:
    """argon2 verification (CPU-bound, ~50-300 ms: never on the event loop or the DB thread)."""
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def dummy_hash() -> str:
    """A hash of a random password, verified for unknown names so they cost what known ones do."""
    return _hasher.hash(secrets.token_urlsafe(16))


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
    last_used: float | None = None

    def covers(self, repo: str) -> bool:
        return "*" in self.repos or repo in self.repos

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


def _token_row(row: sqlite3.Row) -> Token:
    return Token(row["id"], row["user"], row["description"], tuple(json.loads(row["repos"])),
                 row["perm"], row["expires"], row["created"], row["revoked"],
                 row["last_used"] if "last_used" in row.keys() else None)


LAST_USED_RESOLUTION = 60.0     # a token's last use is written at most this often (seconds)


def touch_token(conn: sqlite3.Connection, token: Token, now: float) -> None:
    """Record that a token authenticated a request (`depot token list` shows it)."""
    if token.last_used is None or now - token.last_used >= LAST_USED_RESOLUTION:
        conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token.id))


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
        db.run_sync(_migrate)

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

        def work(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                changed = conn.execute("UPDATE users SET password_hash = ?, cred_version = cred_version + 1"
                                       " WHERE name = ?", (digest, name)).rowcount
                conn.execute(_BUMP_GENERATION)
            return changed
        if not self.db.run_sync(work):
            raise UserError(f"no user {name!r}")

    def delete_user(self, name: str) -> None:
        """Remove a user and revoke their tokens; their credentials stop working at once."""
        def work(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                deleted = conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
                conn.execute("UPDATE tokens SET revoked = ? WHERE user = ? AND revoked IS NULL",
                             (time.time(), name))
                conn.execute(_BUMP_GENERATION)
            return deleted
        if not self.db.run_sync(work):
            raise UserError(f"no user {name!r}")

    def any_admin(self) -> bool:
        """Whether some admin user exists."""
        return bool(self.db.run_sync(lambda conn: conn.execute(
            "SELECT 1 FROM users WHERE admin = 1 LIMIT 1").fetchone() is not None))

    def user_rows(self, locked_for: Any) -> list[tuple[str, bool, float, float]]:
        """(name, admin, created, seconds still locked) of every user, by name."""
        def work(conn: sqlite3.Connection) -> list[tuple[str, bool, float, float]]:
            return [(r[0], bool(r[1]), r[2], locked_for(conn, r[0]))
                    for r in conn.execute("SELECT name, admin, created FROM users ORDER BY name")]
        return self.db.run_sync(work)

    def user_exists(self, name: str) -> bool:
        return bool(self.db.run_sync(lambda conn: conn.execute(
            "SELECT 1 FROM users WHERE name = ?", (name,)).fetchone()))

    def stored(self, conn: sqlite3.Connection, name: str) -> StoredUser | None:
        """The user's hash, admin flag and credential version (database thread; no hashing here)."""
        row = conn.execute("SELECT password_hash, admin, cred_version FROM users WHERE name = ?",
                           (name,)).fetchone()
        return StoredUser(name, row[0], bool(row[1]), row[2]) if row else None

    def is_admin(self, conn: sqlite3.Connection, name: str) -> bool:
        row = conn.execute("SELECT admin FROM users WHERE name = ?", (name,)).fetchone()
        return bool(row and row["admin"])

    def version(self, conn: sqlite3.Connection, name: str) -> int | None:
        """The user's credential version (None: no such user)."""
        row = conn.execute("SELECT cred_version FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def generation(conn: sqlite3.Connection) -> int:
        """The credential generation: moves whenever a credential is taken away."""
        row = conn.execute("SELECT value FROM auth_generation WHERE id = 0").fetchone()
        return row[0] if row else 0

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
        """Revoke a token; every worker stops accepting it (and its user's JWTs) at once."""
        def work(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                changed = conn.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                       (time.time(), token_id)).rowcount
                if changed:
                    row = conn.execute("SELECT user FROM tokens WHERE id = ?", (token_id,)).fetchone()
                    if row and row[0]:
                        conn.execute(_BUMP_USER, (row[0],))
                    conn.execute(_BUMP_GENERATION)
            return bool(changed)
        return self.db.run_sync(work)


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

    def tail(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Up to `limit` records, oldest first, ending `offset` records before the newest."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
            lines = lines[max(0, len(lines) - offset - limit):max(0, len(lines) - offset)]
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

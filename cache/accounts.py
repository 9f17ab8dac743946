"""Users, API tokens and the audit log: in depot's SQLite database (one node), or in the
shared PostgreSQL database with several nodes (cache.accounts_pg, same statements).

Passwords are hashed with argon2; tokens are random, shown once, stored as sha256 (they carry
128+ bits of entropy, so a fast hash is enough and lookups stay cheap).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import lockout

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
INSERT INTO auth_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;
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


def _token_row(row: Any) -> Token:
    return Token(row["id"], row["user"], row["description"], tuple(json.loads(row["repos"])),
                 row["perm"], row["expires"], row["created"], row["revoked"],
                 row["last_used"] if "last_used" in row.keys() else None)


LAST_USED_RESOLUTION = 60.0     # a token's last use is written at most this often (seconds)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_user_name(name: str) -> str:
    if not name or len(name) > 64 or any(c not in USER_NAME_CHARS for c in name):
        raise UserError("user names are 1-64 characters from a-z 0-9 . _ -")
    return name


class UserStore:
    """Users, tokens and lockout state (blocking methods for the CLI, async ones for requests).

    The statements are portable: this class runs them on depot's SQLite `Database`; the
    PostgreSQL form (cache.accounts_pg.PgAccounts, for several nodes) changes only the schema,
    the transaction block and where the token signing key lives.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        db.run_sync(self._migrate)

    def _migrate(self, conn: Any) -> None:
        _migrate(conn)
        conn.executescript(lockout.SCHEMA)

    def _transaction(self, conn: Any) -> ContextManager[None]:
        return _transaction(conn)

    def signing_key(self) -> bytes:
        """The HMAC key of Docker and session JWTs, shared by every worker (a file beside the database)."""
        return _load_secret(Path(self.db.path).parent / "token-secret")

    # users ---------------------------------------------------------------------------
    def add_user(self, name: str, password: str, admin: bool = False) -> None:
        """Create a user; UserError when the name is taken or the password too short."""
        validate_user_name(name)
        if len(password) < 8:
            raise UserError("passwords need at least 8 characters")
        digest = _hasher.hash(password)
        added = self.db.run_sync(lambda conn: conn.execute(
            "INSERT INTO users (name, password_hash, admin, created) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING", (name, digest, int(admin), time.time())).rowcount)
        if not added:
            raise UserError(f"user {name!r} exists")

    def set_password(self, name: str, password: str) -> None:
        """Change a password; the user's JWTs and cached credentials stop working at once."""
        if len(password) < 8:
            raise UserError("passwords need at least 8 characters")
        digest = _hasher.hash(password)

        def work(conn: Any) -> int:
            with self._transaction(conn):
                changed = conn.execute("UPDATE users SET password_hash = ?, cred_version = cred_version + 1"
                                       " WHERE name = ?", (digest, name)).rowcount
                conn.execute(_BUMP_GENERATION)
            return int(changed)
        if not self.db.run_sync(work):
            raise UserError(f"no user {name!r}")

    def delete_user(self, name: str) -> None:
        """Remove a user and revoke their tokens; their credentials stop working at once."""
        def work(conn: Any) -> int:
            with self._transaction(conn):
                deleted = conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
                conn.execute('UPDATE tokens SET revoked = ? WHERE "user" = ? AND revoked IS NULL',
                             (time.time(), name))
                conn.execute(_BUMP_GENERATION)
            return int(deleted)
        if not self.db.run_sync(work):
            raise UserError(f"no user {name!r}")

    def unlock(self, name: str) -> None:
        """Lift a lockout (forget the name's failed logins)."""
        self.db.run_sync(lambda conn: lockout.record_success(conn, name))

    def any_admin(self) -> bool:
        """Whether some admin user exists."""
        return bool(self.db.run_sync(lambda conn: conn.execute(
            "SELECT 1 FROM users WHERE admin = 1 LIMIT 1").fetchone() is not None))

    def user_rows(self, now: float) -> list[tuple[str, bool, float, float]]:
        """(name, admin, created, seconds still locked at `now`) of every user, by name."""
        rows = self.db.run_sync(lambda conn: conn.execute(
            "SELECT u.name, u.admin, u.created, l.locked_until FROM users u"
            " LEFT JOIN login_failures l ON l.name = u.name ORDER BY u.name").fetchall())
        return [(r[0], bool(r[1]), r[2], max(0.0, (r[3] or 0.0) - now)) for r in rows]

    def user_exists(self, name: str) -> bool:
        """Whether the user exists."""
        return self.stored_user(name) is not None

    def user_is_admin(self, name: str) -> bool:
        """Whether the user exists and is an admin."""
        stored = self.stored_user(name)
        return stored is not None and stored.admin

    def stored_user(self, name: str) -> StoredUser | None:
        """The user's row (blocking)."""
        return self.db.run_sync(lambda conn: _stored(conn, name))

    # the request path (async) -----------------------------------------------------------
    async def generation(self) -> int:
        """The credential generation: moves whenever a credential is taken away."""
        return int(await self.db.run(_generation))

    async def user_state(self, name: str) -> StoredUser | None:
        """The user's hash, admin flag and credential version (no hashing here)."""
        return await self.db.run(lambda conn: _stored(conn, name))

    async def password_state(self, name: str, now: float) -> tuple[float, StoredUser | None]:
        """(seconds the name stays locked, the user's row) in one round trip."""
        return await self.db.run(lambda conn: (lockout.locked_for(conn, name, now), _stored(conn, name)))

    async def record_failure(self, name: str, policy: lockout.LockoutPolicy, now: float) -> bool:
        """Count a wrong password; True when it engages the lock."""
        def work(conn: Any) -> bool:
            with self._transaction(conn):
                return lockout.record_failure(conn, name, policy, now)
        return await self.db.run(work)

    async def record_success(self, name: str) -> None:
        """A right password: the name's failures are forgotten."""
        await self.db.run(lambda conn: lockout.record_success(conn, name))

    async def resolve_token(self, secret: str | None = None,
                            token_id: str | None = None) -> tuple[Token | None, StoredUser | None]:
        """The token with this secret (or id) and its owner's row (None: a deploy token, or the
        owner is gone), in one round trip."""
        def work(conn: Any) -> tuple[Token | None, StoredUser | None]:
            column, value = ("hash", token_hash(secret)) if secret is not None else ("id", token_id)
            row = conn.execute(f"SELECT * FROM tokens WHERE {column} = ?", (value,)).fetchone()
            token = _token_row(row) if row else None
            owner = _stored(conn, token.user) if token is not None and token.user else None
            return token, owner
        return await self.db.run(work)

    async def touch_token(self, token: Token, now: float) -> None:
        """Record that a token authenticated a request (`depot token list` shows it); written
        at most every LAST_USED_RESOLUTION seconds."""
        if token.last_used is None or now - token.last_used >= LAST_USED_RESOLUTION:
            await self.db.run(lambda conn: conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?",
                                                        (now, token.id)))

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
            'INSERT INTO tokens (id, hash, "user", description, repos, perm, expires, created)'
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token.id, token_hash(secret), user, description, json.dumps(list(token.repos)), perm,
             token.expires, now)))
        return token, secret

    async def create_token_async(self, user: str | None, repos: list[str], perm: str,
                                 expires_in: float | None = None, description: str = "") -> tuple[Token, str]:
        """create_token off the event loop (argon2-free, but blocking on the database)."""
        return await asyncio.to_thread(self.create_token, user, repos, perm, expires_in, description)

    def list_tokens(self) -> list[Token]:
        """Every token, oldest first (secrets are never stored, so never shown)."""
        return self.db.run_sync(lambda conn: [_token_row(r) for r in conn.execute(
            "SELECT * FROM tokens ORDER BY created").fetchall()])

    def revoke(self, token_id: str) -> bool:
        """Revoke a token; every worker (and node) stops accepting it (and its user's JWTs) at once."""
        def work(conn: Any) -> bool:
            with self._transaction(conn):
                changed = conn.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                       (time.time(), token_id)).rowcount
                if changed:
                    row = conn.execute('SELECT "user" FROM tokens WHERE id = ?', (token_id,)).fetchone()
                    if row and row[0]:
                        conn.execute(_BUMP_USER, (row[0],))
                    conn.execute(_BUMP_GENERATION)
            return bool(changed)
        return self.db.run_sync(work)


def _stored(conn: Any, name: str) -> StoredUser | None:
    row = conn.execute("SELECT password_hash, admin, cred_version FROM users WHERE name = ?", (name,)).fetchone()
    return StoredUser(name, row[0], bool(row[1]), row[2]) if row else None


def _generation(conn: Any) -> int:
    row = conn.execute("SELECT value FROM auth_generation WHERE id = 0").fetchone()
    return row[0] if row else 0


def _load_secret(path: Path) -> bytes:
    """The HMAC key file: created once (O_EXCL), then read by every worker."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with open(fd, "wb") as handle:
            handle.write(secret)
        return secret


def audit_record(action: str, result: str, actor: str | None, client: str | None,
                 repository: str | None, details: dict[str, Any]) -> str:
    """One audit record as a JSON line (the same shape in the file and in PostgreSQL)."""
    return json.dumps({"time": round(time.time(), 3), "actor": actor or "anonymous", "client": client,
                       "repository": repository, "action": action, "result": result, **details},
                      sort_keys=True)


class AuditLog:
    """JSON lines: time, actor, client address, repository, action, result."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def record(self, action: str, result: str, actor: str | None = None, client: str | None = None,
               repository: str | None = None, **details: Any) -> None:
        """Append one record."""
        line = audit_record(action, result, actor, client, repository, details)
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

    def close(self) -> None:
        """Nothing held open (each record opens the file)."""

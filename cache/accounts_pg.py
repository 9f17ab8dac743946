"""Users, tokens, lockout state, the JWT signing key and the audit log in the shared PostgreSQL
database, so that several depot nodes agree on every credential at once: a user created, a
token issued or revoked, a name locked out on one node counts on every node for the next
request (the credential generation that workers compare on each request lives here too).

The statements are UserStore's (cache.accounts); only the schema, the transaction block and
the signing key's home differ.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ContextManager

from .accounts import UserStore, audit_record
from .meta_pg import SCHEMA_LOCK, PgConnection, PgDatabase

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    cred_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value BIGINT NOT NULL
);
INSERT INTO auth_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    "user" TEXT,
    description TEXT NOT NULL DEFAULT '',
    repos TEXT NOT NULL,
    perm TEXT NOT NULL,
    expires DOUBLE PRECISION,
    created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION,
    last_used DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens ("user");
CREATE TABLE IF NOT EXISTS login_failures (
    name TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first DOUBLE PRECISION NOT NULL,
    locked_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS auth_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    record TEXT NOT NULL
);
"""
SIGNING_KEY = "jwt-hmac"


class PgAccounts(UserStore):
    """UserStore on the shared PostgreSQL database (several nodes)."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)

    def _migrate(self, conn: Any) -> None:
        """Create the tables once; nodes starting at once wait on the schema lock, then find them."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            conn.conn.execute(SCHEMA)       # several statements, no parameters

    def _transaction(self, conn: Any) -> ContextManager[None]:
        return conn.transaction()  # type: ignore[no-any-return]

    def signing_key(self) -> bytes:
        """The HMAC key of Docker and session JWTs: made by the first node, read by all."""
        candidate = secrets.token_bytes(32)

        def work(conn: PgConnection) -> bytes:
            conn.execute("INSERT INTO auth_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                         (SIGNING_KEY, candidate))
            row = conn.execute("SELECT value FROM auth_secrets WHERE name = ?", (SIGNING_KEY,)).fetchone()
            assert row is not None      # inserted above, never deleted
            return bytes(row[0])
        return self.db.run_sync(work)  # type: ignore[no-any-return]


class PgAuditLog:
    """The audit log as rows of the shared database (every node's records in one place).

    On the event loop a record is written by a background thread (in order); without a loop
    (the CLI) it is written before record() returns. tail() first waits for this process's
    pending records.
    """

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depot-audit")

    def record(self, action: str, result: str, actor: str | None = None, client: str | None = None,
               repository: str | None = None, **details: Any) -> None:
        """Add one record."""
        line = audit_record(action, result, actor, client, repository, details)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._insert(line)
            return
        self._writer.submit(self._insert_logged, line)

    def _insert(self, line: str) -> None:
        self.db.run_sync(lambda conn: conn.execute("INSERT INTO audit (record) VALUES (?)", (line,)))

    def _insert_logged(self, line: str) -> None:
        try:
            self._insert(line)
        except Exception:          # the request it records has been answered already
            log.exception("audit record not written: %s", line)

    def tail(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Up to `limit` records, oldest first, ending `offset` records before the newest (blocking)."""
        self._writer.submit(lambda: None).result()
        rows = self.db.run_sync(lambda conn: conn.execute(
            "SELECT record FROM audit ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall())
        return [json.loads(row[0]) for row in reversed(rows)]

    def close(self) -> None:
        """Write what is pending."""
        self._writer.shutdown(wait=True)

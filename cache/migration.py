"""Copying a single-node store's metadata rows into the configured database (depot migrate)."""
from __future__ import annotations

from typing import Any

TABLES = {
    "entries": ("repo", "key", "digest", "size", "content_type", "headers", "etag", "last_modified", "kind",
                "fetched_at", "expires_at", "last_access"),
    "files": ("repo", "path", "digest", "size", "content_type", "meta", "created"),
    "published": ("repo", "path", "sha256", "created"),
    "pins": ("repo", "key", "sha256"),
    "counters": ("repo", "name", "value"),
    # the accounts (a user or token already in the target is kept as it is there)
    "users": ("name", "password_hash", "admin", "created", "cred_version"),
    "tokens": ("id", "hash", "user", "description", "repos", "perm", "expires", "created", "revoked", "last_used"),
}


def _columns(cols: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in cols)     # quoted: "user" is a keyword of PostgreSQL


def copy_rows(source_db: Any, target_db: Any) -> dict[str, int]:
    """The metadata rows, in one transaction on the target; rows already there are kept."""
    rows = {table: source_db.run_sync(lambda conn, t=table, c=cols: [tuple(r) for r in conn.execute(
        f"SELECT {_columns(c)} FROM {t}").fetchall()]) for table, cols in TABLES.items()}

    def work(conn: Any) -> dict[str, int]:
        counts = {}
        with _transaction(conn):
            for table, cols in TABLES.items():
                sql = (f"INSERT INTO {table} ({_columns(cols)}) VALUES ({', '.join('?' * len(cols))})"
                       " ON CONFLICT DO NOTHING")
                if rows[table]:
                    conn.executemany(sql, rows[table])
                counts[table] = len(rows[table])
        return counts
    return target_db.run_sync(work)


class _transaction:
    """PostgreSQL's transaction block, or BEGIN/COMMIT on SQLite."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.block = conn.transaction() if hasattr(conn, "transaction") else None

    def __enter__(self) -> None:
        if self.block is not None:
            self.block.__enter__()
        else:
            self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: Any) -> None:
        if self.block is not None:
            self.block.__exit__(*exc)
        else:
            self.conn.execute("ROLLBACK" if exc[0] else "COMMIT")

"""The SQLite database (WAL) shared by all worker processes: proxy entries and hosted files.

All statements run on one dedicated thread per process, so the event loop never blocks on
SQLite and writes from one process are serialised; other processes wait on busy_timeout.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    repo TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT,
    headers TEXT NOT NULL DEFAULT '{}',
    etag TEXT,
    last_modified TEXT,
    kind TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    expires_at REAL,
    last_access REAL NOT NULL,
    PRIMARY KEY (repo, key)
);
CREATE INDEX IF NOT EXISTS entries_access ON entries (last_access);
CREATE INDEX IF NOT EXISTS entries_digest ON entries (digest);
CREATE TABLE IF NOT EXISTS files (
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE INDEX IF NOT EXISTS files_digest ON files (digest);
-- what was ever published at a path of a hosted repository whose versions are immutable
-- (npm versions, PyPI files): kept after deletion, so that a path is never reused with other bytes
CREATE TABLE IF NOT EXISTS published (
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (repo, path)
);
-- the sha256 an immutable proxy file had when first fetched: outlives eviction, so that a
-- refetch is verified against the same bytes (or refused)
CREATE TABLE IF NOT EXISTS pins (
    repo TEXT NOT NULL,
    key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (repo, key)
);
CREATE TABLE IF NOT EXISTS counters (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (repo, name)
);
"""


class Database:
    """One SQLite connection used from a single worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depot-db")
        self._local = threading.local()
        self.run_sync(self._init)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _init(self, conn: sqlite3.Connection) -> None:
        conn.executescript(SCHEMA)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on the database thread and wait (for CLI and start-up code)."""
        return self._executor.submit(lambda: fn(self._connection())).result()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) on the database thread without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connection()))

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        def _close(_: sqlite3.Connection) -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None
        try:
            self.run_sync(_close)
        finally:
            self._executor.shutdown(wait=True)

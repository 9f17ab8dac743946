"""Metadata in PostgreSQL (psycopg 3 + a connection pool) for several depot nodes at once:
proxy entries, hosted catalog, tombstones, counters and the negative cache.

`PgDatabase` offers the same `run(fn)` / `run_sync(fn)` / `execute(sql, params)` as the SQLite
`Database`, with a connection adapter that takes the same `?` placeholders and gives rows that
index by name and position, so the engine's statements (stats, eviction, GC) run on both; the
statements that differ (upserts, create-only inserts, transactions) live in the subclasses
below. Blocking psycopg calls run on a thread pool the size of the connection pool: the event
loop never waits on the database, and nothing is bound to one event loop.

The schema is created at start inside a transaction holding an advisory lock, so nodes that
start at once do not collide on `CREATE TABLE IF NOT EXISTS`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from .catalog import ANY, Catalog, Write
from .retention import now as clock_now
from .entries import Entry, EntryIndex
from .entries import _row as _entry

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_LOCK = 0x64_65_70_6F_74  # "depot": the advisory lock that serialises schema creation

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    repo TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT,
    headers TEXT NOT NULL DEFAULT '{}',
    etag TEXT,
    last_modified TEXT,
    kind TEXT NOT NULL,
    fetched_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    last_access DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, key)
);
CREATE INDEX IF NOT EXISTS entries_access ON entries (last_access);
CREATE INDEX IF NOT EXISTS entries_digest ON entries (digest);
CREATE TABLE IF NOT EXISTS files (
    repo TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE INDEX IF NOT EXISTS files_digest ON files (digest);
CREATE TABLE IF NOT EXISTS tombstones (
    repo TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    digest TEXT NOT NULL,
    deleted DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE TABLE IF NOT EXISTS published (
    repo TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    sha256 TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE TABLE IF NOT EXISTS pins (
    repo TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (repo, key)
);
CREATE TABLE IF NOT EXISTS counters (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE TABLE IF NOT EXISTS negative (
    repo TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    status INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repo, key)
);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
"""
SCHEMA_VERSION = 1
PING_TIMEOUT = 3.0
JUST_WRITTEN = 0.5      # seconds an entry this process wrote may be ahead of the database (kept short:
#                         another node may evict it, and then this copy names a deleted object)


class Row(tuple):
    """A result row indexed by position or by column name (like sqlite3.Row)."""

    names: dict[str, int]

    def __getitem__(self, item: Any) -> Any:  # type: ignore[override]
        if isinstance(item, str):
            return tuple.__getitem__(self, self.names[item])
        return tuple.__getitem__(self, item)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row.names = names
        return row
    return make


def _sql(sql: str) -> str:
    """The engine's `?` placeholders as psycopg's `%s` (no statement holds a literal ? or %)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """The subset of sqlite3.Connection the engine uses, on one pooled psycopg connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        if not params:
            return self.conn.execute(sql.encode())  # bytes: taken as is, no placeholders parsed
        return self.conn.execute(_sql(sql), tuple(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(sql), [tuple(r) for r in rows])  # type: ignore[arg-type]

    def transaction(self) -> Any:
        """A transaction block (psycopg's): committed on exit, rolled back on an exception."""
        return self.conn.transaction()


class PgDatabase:
    """A psycopg connection pool; statements run on a thread pool of the same size."""

    kind = "postgresql"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 8) -> None:
        self.url = url
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False,
                                   kwargs={"autocommit": True, "row_factory": _row_factory},
                                   name="depot")
        self.pool.open(wait=True, timeout=30)
        self._executor = ThreadPoolExecutor(max_workers=max_size, thread_name_prefix="depot-pg")
        self.run_sync(create_schema)

    def run_sync(self, fn: Callable[[PgConnection], T]) -> T:
        """Run fn(conn) on a pooled connection and wait (CLI and start-up code)."""
        with self.pool.connection() as conn:
            return fn(PgConnection(conn))

    async def run(self, fn: Callable[[PgConnection], T]) -> T:
        """Run fn(conn) on a pooled connection without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, fn)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return await self.run(lambda conn: _fetch(conn.execute(sql, params)))

    def try_lock(self, name: str) -> "AdvisoryLock":
        """A cluster-wide lock by name (non-blocking: `.held` says whether it was taken)."""
        return AdvisoryLock(self.pool, name)

    def ping(self) -> None:
        """Raise when the database cannot be reached (healthz)."""
        with self.pool.connection(timeout=PING_TIMEOUT) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.pool.close()


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection kept until release()."""

    def __init__(self, pool: ConnectionPool, name: str) -> None:
        import hashlib
        self.pool = pool
        self.key = int.from_bytes(hashlib.sha256(f"depot-lock\0{name}".encode()).digest()[:8], "big", signed=True)
        self.conn: Any = pool.getconn(timeout=30)
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        self.held = bool(row and row[0])

    def release(self) -> None:
        if self.conn is None:
            return
        try:
            if self.held:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        finally:
            self.pool.putconn(self.conn)
            self.conn = None


def _fetch(cursor: psycopg.Cursor) -> list[Row]:
    return cursor.fetchall() if cursor.description else []  # type: ignore[return-value]


def create_schema(conn: PgConnection) -> None:
    """Create the tables once; concurrent starters wait on the advisory lock, then find them."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
        conn.conn.execute(SCHEMA)  # several statements, no parameters
        if conn.execute("SELECT version FROM schema_version").fetchone() is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


class PgEntryIndex(EntryIndex):
    """Proxy entries and the negative cache in PostgreSQL, shared by every node."""

    def __init__(self, db: PgDatabase, memory_entries: int = 100_000) -> None:  # noqa: D107
        from cachetools import LRUCache
        self.db = db  # type: ignore[assignment]
        self.memory = LRUCache(maxsize=memory_entries)
        self.accessed = {}
        self._purge_seen = 0

    def _purge_stamp(self) -> int:
        """No purge mark: get() reads the shared database every time (another node's purge shows)."""
        return 0

    def purged(self) -> None:
        """Entries were removed out of band: forget what this process holds."""
        self.memory.clear()

    async def get(self, repo: str, key: str) -> Entry | None:
        """The entry as the database has it: a row gone means another node evicted or deleted
        it (only an entry this process wrote a moment ago may be ahead of the database)."""
        rows = await self.db.execute("SELECT * FROM entries WHERE repo = ? AND key = ?", (repo, key))
        held = self.memory.get((repo, key))
        if not rows:
            if held is not None and time.time() - held.fetched_at < JUST_WRITTEN:
                return held
            self.memory.pop((repo, key), None)
            return None
        entry = _entry(rows[0])
        if held is not None and held.fetched_at > entry.fetched_at:
            return held
        self.memory[(repo, key)] = entry
        return entry

    async def put(self, entry: Entry) -> None:
        """Write (or replace) an entry; its blob must already be committed."""
        self.memory[(entry.repo, entry.key)] = entry
        await self.db.execute(
            "INSERT INTO entries (repo, key, digest, size, content_type, headers, etag,"
            " last_modified, kind, fetched_at, expires_at, last_access)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (repo, key) DO UPDATE SET digest = excluded.digest, size = excluded.size,"
            " content_type = excluded.content_type, headers = excluded.headers, etag = excluded.etag,"
            " last_modified = excluded.last_modified, kind = excluded.kind,"
            " fetched_at = excluded.fetched_at, expires_at = excluded.expires_at,"
            " last_access = excluded.last_access",
            (entry.repo, entry.key, entry.digest, entry.size, entry.content_type,
             json.dumps(entry.headers), entry.etag, entry.last_modified, entry.kind,
             entry.fetched_at, entry.expires_at, time.time()))

    # negative cache (blocking: the engine asks it from a worker thread) --------------------
    def is_negative(self, repo: str, key: str) -> bool:
        return self.db.run_sync(lambda conn: conn.execute(
            "SELECT 1 FROM negative WHERE repo = ? AND key = ? AND expires_at > ?",
            (repo, key, time.time())).fetchone()) is not None

    def set_negative(self, repo: str, key: str, ttl: float, status: int) -> None:
        if ttl <= 0:
            return
        self.db.run_sync(lambda conn: conn.execute(
            "INSERT INTO negative (repo, key, status, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (repo, key) DO UPDATE SET status = excluded.status,"
            " expires_at = excluded.expires_at", (repo, key, status, time.time() + ttl)))

    def clear_negative(self, repo: str, key: str) -> None:
        self.db.run_sync(lambda conn: conn.execute(
            "DELETE FROM negative WHERE repo = ? AND key = ?", (repo, key)))

    def purge_negative(self) -> int:
        """Drop expired negative entries (run now and then by one node)."""
        return self.db.run_sync(lambda conn: conn.execute(
            "DELETE FROM negative WHERE expires_at <= ?", (time.time(),)).rowcount)

    async def pin(self, repo: str, key: str, sha256: str) -> None:
        """Remember the bytes an immutable key had when first fetched (never evicted)."""
        await self.db.execute("INSERT INTO pins (repo, key, sha256) VALUES (?, ?, ?)"
                              " ON CONFLICT (repo, key) DO NOTHING", (repo, key, sha256))

    async def pinned(self, repo: str, key: str) -> str | None:
        """The sha256 an immutable key was first fetched with, if it ever was."""
        rows = await self.db.execute("SELECT sha256 FROM pins WHERE repo = ? AND key = ?", (repo, key))
        return rows[0]["sha256"] if rows else None

    def close(self) -> None:
        """Nothing of its own to close (the database is closed by its owner)."""


_INSERT_FILE = ("INSERT INTO files (repo, path, digest, size, content_type, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)")


class PgCatalog(Catalog):
    """Hosted files in PostgreSQL with the same atomic create / swap / batch semantics."""

    async def put(self, repo: str, path: str, digest: str, size: int,
                  content_type: str | None = None, meta: dict[str, Any] | None = None) -> None:
        """Create or replace the file at path."""
        await self.db.execute(
            _INSERT_FILE + " ON CONFLICT (repo, path) DO UPDATE SET digest = excluded.digest,"
            " size = excluded.size, content_type = excluded.content_type, meta = excluded.meta,"
            " created = excluded.created",
            (repo, path, digest, size, content_type, json.dumps(meta or {}), time.time()))

    async def put_new(self, repo: str, path: str, digest: str, size: int,
                      content_type: str | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Create the file only if the path is free; False if it already exists."""
        def work(conn: PgConnection) -> bool:
            cur = conn.execute(_INSERT_FILE + " ON CONFLICT (repo, path) DO NOTHING",
                               (repo, path, digest, size, content_type, json.dumps(meta or {}), time.time()))
            return cur.rowcount == 1
        return await self.db.run(work)  # type: ignore[arg-type]

    async def delete(self, repo: str, path: str, tombstone: bool = False) -> bool:
        """Remove a file; with `tombstone`, remember what it held as published for good."""
        def work(conn: PgConnection) -> bool:
            with conn.transaction():
                existed = conn.execute("SELECT 1 FROM files WHERE repo = ? AND path = ?",
                                       (repo, path)).fetchone() is not None
                _apply_pg(conn, repo, Write(path, "", 0, delete=True, once=tombstone))
            return existed
        return await self.db.run(work)  # type: ignore[arg-type]

    async def commit(self, repo: str, writes: list[Write]) -> bool:
        """Several writes in ONE transaction: all of them, or none when an expectation fails."""
        class Failed(Exception):
            pass

        def work(conn: PgConnection) -> bool:
            try:
                with conn.transaction():
                    for write in writes:
                        if not _apply_pg(conn, repo, write):
                            raise Failed()     # rolls every write back
            except Failed:
                return False
            return True
        return await self.db.run(work)  # type: ignore[arg-type]

    async def published_digest(self, repo: str, path: str) -> str | None:
        """The sha256 once published at `path` (even if deleted since); None if never."""
        rows = await self.db.execute("SELECT sha256 FROM published WHERE repo = ? AND path = ?", (repo, path))
        return rows[0]["sha256"] if rows else None

    async def remember(self, repo: str, path: str, sha256: str) -> None:
        """Record bytes as published at `path` unless something already is."""
        await self.db.execute("INSERT INTO published (repo, path, sha256, created) VALUES (?, ?, ?, ?)"
                              " ON CONFLICT (repo, path) DO NOTHING", (repo, path, sha256, clock_now()))

    async def tombstone(self, repo: str, path: str) -> str | None:
        """The digest once published for good at `path` (see published_digest)."""
        return await self.published_digest(repo, path)

    async def put_all_new(self, repo: str, rows: list[tuple[str, str, int, str | None, dict[str, Any]]]) -> bool:
        """Create every row in one transaction, only if none of the paths exists."""
        class Taken(Exception):
            pass

        def work(conn: PgConnection) -> bool:
            try:
                with conn.transaction():
                    for path, digest, size, content_type, meta in rows:
                        cur = conn.execute(_INSERT_FILE + " ON CONFLICT (repo, path) DO NOTHING",
                                           (repo, path, digest, size, content_type, json.dumps(meta),
                                            time.time()))
                        if cur.rowcount != 1:
                            raise Taken()      # rolls the whole batch back
            except Taken:
                return False
            return True
        return await self.db.run(work)  # type: ignore[arg-type]


def _apply_pg(conn: PgConnection, repo: str, write: Write) -> bool:
    """One write of a commit inside its transaction (the PostgreSQL form of catalog._apply)."""
    now = clock_now()
    if write.delete:
        if write.once:
            conn.execute("INSERT INTO published (repo, path, sha256, created)"
                         " SELECT repo, path, digest, ? FROM files WHERE repo = ? AND path = ?"
                         " ON CONFLICT (repo, path) DO NOTHING", (now, repo, write.path))
        conn.execute("DELETE FROM files WHERE repo = ? AND path = ?", (repo, write.path))
        return True
    row = (repo, write.path, write.digest, write.size, write.content_type, json.dumps(write.meta), now)
    if write.expect is None:
        done = conn.execute(_INSERT_FILE + " ON CONFLICT (repo, path) DO NOTHING", row).rowcount == 1
    elif write.expect == ANY:
        conn.execute(_INSERT_FILE + " ON CONFLICT (repo, path) DO UPDATE SET digest = excluded.digest,"
                     " size = excluded.size, content_type = excluded.content_type, meta = excluded.meta,"
                     " created = excluded.created", row)
        done = True
    else:
        done = conn.execute("UPDATE files SET digest = ?, size = ?, content_type = ?, meta = ?, created = ?"
                            " WHERE repo = ? AND path = ? AND digest = ?",
                            (write.digest, write.size, write.content_type, json.dumps(write.meta), now,
                             repo, write.path, write.expect)).rowcount == 1
    if done and write.once:
        verb = "UPDATE SET sha256 = excluded.sha256" if write.expect == ANY else "NOTHING"
        conn.execute("INSERT INTO published (repo, path, sha256, created) VALUES (?, ?, ?, ?)"
                     f" ON CONFLICT (repo, path) DO {verb}", (repo, write.path, write.digest, now))
    return done

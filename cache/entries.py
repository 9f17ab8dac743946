"""Proxy entries: what a proxy repository knows about one key, and the negative cache.

Entries live in SQLite (shared by workers); each process keeps recently used entries in
memory so a hit touches no database. Last-access times are batched and flushed periodically.
Negative entries (upstream 404/410) live in diskcache with their TTL as expiry.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import diskcache
from cachetools import LRUCache

from .db import Database


@dataclass(frozen=True)
class Entry:
    repo: str
    key: str
    digest: str
    size: int
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    kind: str = "immutable"
    fetched_at: float = 0.0
    expires_at: float | None = None   # None: never stale

    def refreshed(self, now: float, ttl: float | None) -> "Entry":
        return replace(self, fetched_at=now, expires_at=None if ttl is None else now + ttl)


def _row(row: sqlite3.Row) -> Entry:
    return Entry(row["repo"], row["key"], row["digest"], row["size"], row["content_type"],
                 json.loads(row["headers"]), row["etag"], row["last_modified"], row["kind"],
                 row["fetched_at"], row["expires_at"])


PURGE_MARK = "entries.purged"   # touched when entries are removed out of band


class EntryIndex:
    """Proxy entries with an in-process LRU in front of SQLite, plus the negative cache."""

    def __init__(self, db: Database, negative_dir: Path, memory_entries: int = 100_000) -> None:
        self.db = db
        self.memory: LRUCache[tuple[str, str], Entry] = LRUCache(maxsize=memory_entries)
        self.negative = diskcache.Cache(str(negative_dir), eviction_policy="none",
                                        size_limit=2**30, timeout=30)
        self.accessed: dict[tuple[str, str], float] = {}
        self._purge_mark = Path(db.path).parent / PURGE_MARK
        self._purge_seen = self._purge_stamp()

    def _purge_stamp(self) -> int:
        try:
            return self._purge_mark.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def purged(self) -> None:
        """Entries were removed out of band (admin purge, cleanup, the CLI): every process drops
        its in-memory copies at its next flush_access() (this one now)."""
        self._purge_mark.touch()
        os.utime(self._purge_mark)
        self._purge_seen = self._purge_stamp()
        self.memory.clear()

    def cached(self, repo: str, key: str) -> Entry | None:
        """The entry if this process holds it in memory (no I/O)."""
        return self.memory.get((repo, key))

    def touch(self, repo: str, key: str) -> None:
        self.accessed[(repo, key)] = time.time()

    async def get(self, repo: str, key: str) -> Entry | None:
        rows = await self.db.execute("SELECT * FROM entries WHERE repo = ? AND key = ?", (repo, key))
        entry = _row(rows[0]) if rows else None
        held = self.memory.get((repo, key))
        # a read that started before a concurrent put() in this process must not undo it; and the
        # same row read again keeps the held object (the hit fast path is valid while it is held)
        if held is not None and (entry is None or held.fetched_at > entry.fetched_at or held == entry):
            return held
        if entry is not None:
            self.memory[(repo, key)] = entry
        return entry

    async def put(self, entry: Entry) -> None:
        """Write (or replace) an entry; its blob must already be committed."""
        self.memory[(entry.repo, entry.key)] = entry
        now = time.time()
        await self.db.execute(
            "INSERT OR REPLACE INTO entries (repo, key, digest, size, content_type, headers, etag,"
            " last_modified, kind, fetched_at, expires_at, last_access)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.repo, entry.key, entry.digest, entry.size, entry.content_type,
             json.dumps(entry.headers), entry.etag, entry.last_modified, entry.kind,
             entry.fetched_at, entry.expires_at, now))

    async def pin(self, repo: str, key: str, sha256: str) -> None:
        """Remember the bytes an immutable key had when first fetched (never evicted)."""
        await self.db.execute("INSERT OR IGNORE INTO pins (repo, key, sha256) VALUES (?, ?, ?)",
                              (repo, key, sha256))

    async def pinned(self, repo: str, key: str) -> str | None:
        """The sha256 an immutable key was first fetched with, if it ever was."""
        rows = await self.db.execute("SELECT sha256 FROM pins WHERE repo = ? AND key = ?", (repo, key))
        return rows[0]["sha256"] if rows else None

    async def refresh(self, entry: Entry) -> None:
        """Update only the freshness times of an entry (after a 304)."""
        self.memory[(entry.repo, entry.key)] = entry
        await self.db.execute("UPDATE entries SET fetched_at = ?, expires_at = ? WHERE repo = ? AND key = ?",
                              (entry.fetched_at, entry.expires_at, entry.repo, entry.key))

    async def delete(self, repo: str, key: str) -> None:
        self.memory.pop((repo, key), None)
        await self.db.execute("DELETE FROM entries WHERE repo = ? AND key = ?", (repo, key))

    def forget(self, repo: str, key: str) -> None:
        """Drop the in-memory copy (e.g. its blob vanished: evicted by another process)."""
        self.memory.pop((repo, key), None)

    async def flush_access(self) -> None:
        """Write batched last-access times (eviction orders by them); drop in-memory entries
        when another process purged some (see purged())."""
        stamp = self._purge_stamp()
        if stamp != self._purge_seen:
            self._purge_seen = stamp
            self.memory.clear()
        if not self.accessed:
            return
        batch = [(t, repo, key) for (repo, key), t in self.accessed.items()]
        self.accessed = {}

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE entries SET last_access = ? WHERE repo = ? AND key = ?", batch)
        await self.db.run(work)

    # negative cache -------------------------------------------------------------------
    def is_negative(self, repo: str, key: str) -> bool:
        return self.negative.get(f"{repo}\0{key}") is not None

    def set_negative(self, repo: str, key: str, ttl: float, status: int) -> None:
        if ttl > 0:
            self.negative.set(f"{repo}\0{key}", status, expire=ttl)

    def clear_negative(self, repo: str, key: str) -> None:
        self.negative.delete(f"{repo}\0{key}")

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Per repository: entry count and bytes."""
        rows = await self.db.execute("SELECT repo, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes"
                                     " FROM entries GROUP BY repo")
        return {r["repo"]: {"entries": r["n"], "bytes": r["bytes"]} for r in rows}

    def close(self) -> None:
        self.negative.close()

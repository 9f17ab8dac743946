"""Hosted files: durable (repo, path) -> blob records with format-specific metadata."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .db import Database
from .retention import now as clock_now


@dataclass(frozen=True)
class HostedFile:
    repo: str
    path: str
    digest: str
    size: int
    content_type: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


ANY = "*"          # Write.expect: replace whatever the path holds


@dataclass(frozen=True)
class Write:
    """One file of an all-or-nothing commit.

    expect: None — the path must be free; a digest — the path must still hold it; ANY — replace.
    once: also remember the bytes as published at this path for good (see `published_digest`).
    delete: remove the path instead (nothing to expect; `once` remembers what it held).
    """

    path: str
    digest: str
    size: int
    content_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    expect: str | None = ANY
    once: bool = False
    delete: bool = False


def _row(row: sqlite3.Row) -> HostedFile:
    return HostedFile(row["repo"], row["path"], row["digest"], row["size"], row["content_type"],
                      json.loads(row["meta"]), row["created"])


class Catalog:
    """What users published; never evicted, removed only by explicit deletion."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, repo: str, path: str, digest: str, size: int,
                  content_type: str | None = None, meta: dict[str, Any] | None = None) -> None:
        """Create or replace the file at path."""
        await self.db.execute(
            "INSERT OR REPLACE INTO files (repo, path, digest, size, content_type, meta, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (repo, path, digest, size, content_type, json.dumps(meta or {}), clock_now()))

    async def put_new(self, repo: str, path: str, digest: str, size: int,
                      content_type: str | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Create the file only if the path is free; False if it already exists."""
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO files (repo, path, digest, size, content_type, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo, path, digest, size, content_type, json.dumps(meta or {}), clock_now()))
            return cur.rowcount == 1
        return await self.db.run(work)

    async def swap(self, repo: str, path: str, expect_digest: str | None, digest: str, size: int,
                   content_type: str | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Compare-and-swap: replace the file only if its digest is still `expect_digest`
        (None: create it only if absent). False when another writer changed it first."""
        if expect_digest is None:
            return await self.put_new(repo, path, digest, size, content_type, meta)

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE files SET digest = ?, size = ?, content_type = ?, meta = ?, created = ?"
                " WHERE repo = ? AND path = ? AND digest = ?",
                (digest, size, content_type, json.dumps(meta or {}), clock_now(), repo, path, expect_digest))
            return cur.rowcount == 1
        return await self.db.run(work)

    async def commit(self, repo: str, writes: list[Write]) -> bool:
        """Write several files in ONE transaction: all of them, or (when an expectation fails,
        or on any error) none. Blobs must be stored before; the rows are what publishes them."""
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not all(_apply(conn, repo, write) for write in writes):
                    conn.execute("ROLLBACK")
                    return False
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return await self.db.run(work)

    async def published_digest(self, repo: str, path: str) -> str | None:
        """The sha256 once published at `path` (even if deleted since); None if never."""
        rows = await self.db.execute("SELECT sha256 FROM published WHERE repo = ? AND path = ?", (repo, path))
        return rows[0]["sha256"] if rows else None

    async def remember(self, repo: str, path: str, sha256: str) -> None:
        """Record bytes as published at `path` unless something already is (before a deletion)."""
        await self.db.execute("INSERT OR IGNORE INTO published (repo, path, sha256, created) VALUES (?, ?, ?, ?)",
                              (repo, path, sha256, clock_now()))

    async def get(self, repo: str, path: str) -> HostedFile | None:
        rows = await self.db.execute("SELECT * FROM files WHERE repo = ? AND path = ?", (repo, path))
        return _row(rows[0]) if rows else None

    async def delete(self, repo: str, path: str, tombstone: bool = False) -> bool:
        """Remove a file; with `tombstone`, remember what it held as published for good, so the
        path can never take other bytes again (see published_digest)."""
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                existed = conn.execute("SELECT 1 FROM files WHERE repo = ? AND path = ?",
                                       (repo, path)).fetchone() is not None
                _apply(conn, repo, Write(path, "", 0, delete=True, once=tombstone))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return existed
        return await self.db.run(work)

    async def tombstone(self, repo: str, path: str) -> str | None:
        """The digest once published for good at `path` (None if never): see published_digest."""
        return await self.published_digest(repo, path)

    async def put_all_new(self, repo: str, rows: list[tuple[str, str, int, str | None, dict[str, Any]]]) -> bool:
        """Create every (path, digest, size, content_type, meta) in one transaction, only if
        none of the paths exists; False (and nothing written) otherwise."""
        return await self.commit(repo, [Write(path, digest, size, content_type, meta, expect=None)
                                        for path, digest, size, content_type, meta in rows])

    async def list(self, repo: str, prefix: str = "") -> list[HostedFile]:
        """Files of a repository whose path starts with prefix, ordered by path."""
        upper = prefix + "\U0010ffff"
        rows = await self.db.execute(
            "SELECT * FROM files WHERE repo = ? AND path >= ? AND path < ? ORDER BY path",
            (repo, prefix, upper))
        return [_row(r) for r in rows]

    async def update_meta(self, repo: str, path: str, meta: dict[str, Any]) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE files SET meta = ? WHERE repo = ? AND path = ?",
                               (json.dumps(meta), repo, path))
            return cur.rowcount > 0
        return await self.db.run(work)


def _apply(conn: sqlite3.Connection, repo: str, write: Write) -> bool:
    """One write of a commit (inside its transaction); False when its expectation fails."""
    if write.delete:
        if write.once:
            conn.execute("INSERT OR IGNORE INTO published (repo, path, sha256, created)"
                         " SELECT repo, path, digest, ? FROM files WHERE repo = ? AND path = ?",
                         (clock_now(), repo, write.path))
        conn.execute("DELETE FROM files WHERE repo = ? AND path = ?", (repo, write.path))
        return True
    values = (write.digest, write.size, write.content_type, json.dumps(write.meta), clock_now())
    if write.expect is None:
        done = conn.execute("INSERT OR IGNORE INTO files (digest, size, content_type, meta, created, repo, path)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)", (*values, repo, write.path)).rowcount == 1
    elif write.expect == ANY:
        done = conn.execute("INSERT OR REPLACE INTO files (digest, size, content_type, meta, created, repo, path)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)", (*values, repo, write.path)).rowcount == 1
    else:
        done = conn.execute("UPDATE files SET digest = ?, size = ?, content_type = ?, meta = ?, created = ?"
                            " WHERE repo = ? AND path = ? AND digest = ?",
                            (*values, repo, write.path, write.expect)).rowcount == 1
    if done and write.once:
        verb = "REPLACE" if write.expect == ANY else "IGNORE"
        conn.execute(f"INSERT OR {verb} INTO published (repo, path, sha256, created) VALUES (?, ?, ?, ?)",
                     (repo, write.path, write.digest, clock_now()))
    return done


def snapshot_files(conn: sqlite3.Connection, repos: list[str]) -> list[dict[str, Any]]:
    """Hosted files (all, or of `repos`) read in one statement: a consistent snapshot (backup)."""
    sql = "SELECT repo, path, digest, size, content_type, meta, created FROM files"
    params: tuple[str, ...] = ()
    if repos:
        sql += f" WHERE repo IN ({','.join('?' * len(repos))})"
        params = tuple(repos)
    rows = conn.execute(sql + " ORDER BY repo, path", params).fetchall()
    return [{"repo": r["repo"], "path": r["path"], "sha256": r["digest"], "size": r["size"],
             "content_type": r["content_type"], "meta": json.loads(r["meta"]), "created": r["created"]}
            for r in rows]


def restore_files(conn: sqlite3.Connection, files: list[dict[str, Any]],
                  replace: bool) -> tuple[int, int, list[tuple[str, str]]]:
    """One transaction: new rows inserted, identical ones kept, different ones replaced or
    reported as conflicts (backup import). Returns (restored, unchanged, conflicts)."""
    restored, unchanged, conflicts = 0, 0, []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for item in files:
            row = conn.execute("SELECT digest FROM files WHERE repo = ? AND path = ?",
                               (item["repo"], item["path"])).fetchone()
            if row is not None and row["digest"] == item["sha256"]:
                unchanged += 1
                continue
            if row is not None and not replace:
                conflicts.append((item["repo"], item["path"]))
                continue
            conn.execute(
                "INSERT OR REPLACE INTO files (repo, path, digest, size, content_type, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item["repo"], item["path"], item["sha256"], item["size"], item["content_type"],
                 json.dumps(item["meta"]), float(item["created"] or clock_now())))
            restored += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return restored, unchanged, conflicts

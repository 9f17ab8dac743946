"""Hosted files: durable (repo, path) -> blob records with format-specific metadata."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from .db import Database


@dataclass(frozen=True)
class HostedFile:
    repo: str
    path: str
    digest: str
    size: int
    content_type: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


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
            (repo, path, digest, size, content_type, json.dumps(meta or {}), time.time()))

    async def put_new(self, repo: str, path: str, digest: str, size: int,
                      content_type: str | None = None, meta: dict[str, Any] | None = None) -> bool:
        """Create the file only if the path is free; False if it already exists."""
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO files (repo, path, digest, size, content_type, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo, path, digest, size, content_type, json.dumps(meta or {}), time.time()))
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
                (digest, size, content_type, json.dumps(meta or {}), time.time(), repo, path, expect_digest))
            return cur.rowcount == 1
        return await self.db.run(work)

    async def get(self, repo: str, path: str) -> HostedFile | None:
        rows = await self.db.execute("SELECT * FROM files WHERE repo = ? AND path = ?", (repo, path))
        return _row(rows[0]) if rows else None

    async def delete(self, repo: str, path: str, tombstone: bool = False) -> bool:
        """Remove a file; with `tombstone`, remember its digest so the path can never be
        published again with other content."""
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT digest FROM files WHERE repo = ? AND path = ?", (repo, path)).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM files WHERE repo = ? AND path = ?", (repo, path))
                    if tombstone:
                        conn.execute("INSERT OR REPLACE INTO tombstones (repo, path, digest, deleted)"
                                     " VALUES (?, ?, ?, ?)", (repo, path, row["digest"], time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return row is not None
        return await self.db.run(work)

    async def tombstone(self, repo: str, path: str) -> str | None:
        """The digest a deleted, tombstoned path held, or None."""
        rows = await self.db.execute("SELECT digest FROM tombstones WHERE repo = ? AND path = ?", (repo, path))
        return rows[0]["digest"] if rows else None

    async def put_all_new(self, repo: str, rows: list[tuple[str, str, int, str | None, dict[str, Any]]]) -> bool:
        """Create every (path, digest, size, content_type, meta) in one transaction, only if
        none of the paths exists; False (and nothing written) otherwise."""
        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for path, digest, size, content_type, meta in rows:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO files (repo, path, digest, size, content_type, meta, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (repo, path, digest, size, content_type, json.dumps(meta), time.time()))
                    if cur.rowcount != 1:
                        conn.execute("ROLLBACK")
                        return False
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return True
        return await self.db.run(work)

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
                 json.dumps(item["meta"]), float(item["created"] or time.time())))
            restored += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return restored, unchanged, conflicts

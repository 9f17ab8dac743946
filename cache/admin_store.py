"""The admin API's queries (kept here: SQL stays in cache/): hosted files and proxy entries
paged by cursor, per-file download counts (batched like last-access times)."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from .db import Database

PAGE = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    count INTEGER NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (repo, path)
);
"""


@dataclass(frozen=True)
class FileRow:
    """A hosted file with its download count and last download time."""

    repo: str
    path: str
    digest: str
    size: int
    created: float
    meta: dict[str, Any]
    downloads: int
    last_download: float | None


@dataclass(frozen=True)
class EntryRow:
    """A cached proxy entry as the admin API shows it."""

    repo: str
    key: str
    digest: str
    size: int
    fetched_at: float
    last_access: float


class AdminStore:
    """Read hosted files and proxy entries page by page; count hosted downloads."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[tuple[str, str], tuple[int, float]] = {}
        db.run_sync(lambda conn: conn.executescript(SCHEMA))

    def downloaded(self, repo: str, path: str) -> None:
        """Count one download of a hosted file (written by flush())."""
        count, _ = self._pending.get((repo, path), (0, 0.0))
        self._pending[(repo, path)] = (count + 1, time.time())

    async def flush(self) -> None:
        """Write the batched download counts."""
        if not self._pending:
            return
        batch = [(repo, path, n, last) for (repo, path), (n, last) in self._pending.items()]
        self._pending = {}

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO downloads (repo, path, count, last) VALUES (?, ?, ?, ?) ON CONFLICT (repo, path)"
                " DO UPDATE SET count = count + excluded.count, last = MAX(last, excluded.last)", batch)
        await self.db.run(work)

    async def files_page(self, repos: list[str], after: tuple[str, str] | None = None,
                         prefix: str = "", limit: int = PAGE) -> list[FileRow]:
        """Hosted files of `repos` ordered by (repo, path), after the cursor `after`."""
        if not repos:
            return []
        marks = ",".join("?" * len(repos))
        after = after or ("", "")
        rows = await self.db.execute(
            "SELECT f.repo, f.path, f.digest, f.size, f.created, f.meta, d.count, d.last FROM files f"
            " LEFT JOIN downloads d ON d.repo = f.repo AND d.path = f.path"
            f" WHERE f.repo IN ({marks}) AND (f.repo, f.path) > (?, ?) AND f.path >= ? AND f.path < ?"
            " ORDER BY f.repo, f.path LIMIT ?",
            (*repos, after[0], after[1], prefix, prefix + "\U0010ffff", limit))
        return [FileRow(r["repo"], r["path"], r["digest"], r["size"], r["created"], json.loads(r["meta"]),
                        r["count"] or 0, r["last"]) for r in rows]

    async def iter_files(self, repos: list[str], prefix: str = "") -> AsyncIterator[FileRow]:
        """Every hosted file of `repos`, read one page at a time."""
        after: tuple[str, str] | None = None
        while True:
            page = await self.files_page(repos, after, prefix)
            for row in page:
                yield row
            if len(page) < PAGE:
                return
            after = (page[-1].repo, page[-1].path)

    async def entries_page(self, repo: str, after: str = "", unused_since: float | None = None,
                           contains: str = "", limit: int = PAGE) -> list[EntryRow]:
        """Proxy entries of `repo` ordered by key after `after`; only those not accessed since
        `unused_since` (when given) and whose key contains `contains`."""
        sql = ("SELECT repo, key, digest, size, fetched_at, last_access FROM entries"
               " WHERE repo = ? AND key > ? AND instr(key, ?) > 0")
        params: list[Any] = [repo, after, contains]
        if unused_since is not None:
            sql += " AND last_access < ?"
            params.append(unused_since)
        rows = await self.db.execute(sql + " ORDER BY key LIMIT ?", (*params, limit))
        return [EntryRow(r["repo"], r["key"], r["digest"], r["size"], r["fetched_at"], r["last_access"])
                for r in rows]

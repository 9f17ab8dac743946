"""Per-repository numbers for `depot stats`: entries and bytes, plus persisted hit/miss counts."""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Mapping

from .types import RepoConfig

from .db import Database
from .metrics import RepoMetrics


async def add_counts(db: Database, all_metrics: Iterable[RepoMetrics]) -> None:
    """Add each repository's result counts since the last flush to the counters table."""
    batch = [(m.repo, name, n) for m in all_metrics for name, n in m.take_unflushed().items()]
    if not batch:
        return

    def work(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO counters (repo, name, value) VALUES (?, ?, ?)"
                         " ON CONFLICT (repo, name) DO UPDATE SET value = counters.value + excluded.value", batch)
    await db.run(work)


def repository_stats(db: Database, repos: Mapping[str, RepoConfig]) -> list[dict[str, Any]]:
    """One row per configured repository (blocking; for the CLI)."""
    def work(conn: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any], dict[tuple[str, str], int]]:
        proxy = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT repo, COUNT(*), COALESCE(SUM(size), 0) FROM entries GROUP BY repo")}
        hosted = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT repo, COUNT(*), COALESCE(SUM(size), 0) FROM files GROUP BY repo")}
        counts = {(r[0], r[1]): r[2] for r in conn.execute("SELECT repo, name, value FROM counters")}
        return proxy, hosted, counts
    proxy, hosted, counts = db.run_sync(work)
    rows = []
    for repo in repos.values():
        entries, size = (proxy if repo.is_proxy else hosted).get(repo.name, (0, 0))
        hits = counts.get((repo.name, "hit"), 0) + counts.get((repo.name, "hosted"), 0)
        misses = counts.get((repo.name, "miss"), 0)
        rows.append({"name": repo.name, "format": repo.format, "type": repo.type, "entries": entries,
                     "bytes": size, "hits": hits, "misses": misses,
                     "stale": counts.get((repo.name, "stale"), 0),
                     "revalidated": counts.get((repo.name, "revalidated"), 0)})
    return rows

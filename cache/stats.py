"""Per-repository numbers for `depot stats`: entries and bytes, plus persisted hit/miss counts."""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Mapping

from .types import RepoConfig

from .db import Database
from .metrics import VIA_PREFIX, RepoMetrics


async def add_counts(db: Database, all_metrics: Iterable[RepoMetrics]) -> None:
    """Add each repository's result counts since the last flush to the counters table."""
    batch = [(m.repo, name, n) for m in all_metrics for name, n in m.take_unflushed().items()]
    if not batch:
        return

    def work(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO counters (repo, name, value) VALUES (?, ?, ?)"
                         " ON CONFLICT (repo, name) DO UPDATE SET value = value + excluded.value", batch)
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
        # a group answers nothing itself: it shows what its members served through it
        prefix = VIA_PREFIX if repo.is_group else ""
        count = lambda name: counts.get((repo.name, prefix + name), 0)  # noqa: E731
        rows.append({"name": repo.name, "format": repo.format, "type": repo.type, "entries": entries,
                     "bytes": size, "hits": count("hit") + count("hosted"), "misses": count("miss"),
                     "stale": count("stale"), "revalidated": count("revalidated"),
                     "negative": count("negative"), "errors": count("error"),
                     "counted_in_total": not repo.is_group})
    return rows

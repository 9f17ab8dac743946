"""Per-repository numbers for `depot stats`: entries and bytes, plus persisted hit/miss counts."""
from __future__ import annotations

import logging
import sqlite3
from typing import Any, Iterable, Mapping

from .types import RepoConfig

from . import activity
from .db import Database
from .metrics import VIA_PREFIX, RepoMetrics

log = logging.getLogger("depot.stats")


async def add_counts(db: Database, all_metrics: Iterable[RepoMetrics]) -> None:
    """Add each repository's result counts since the last flush to the counters table, and the
    same counts, bytes served, downloads and errors to the per-minute activity (cache.activity)."""
    all_metrics = list(all_metrics)
    batch = [(m.repo, name, n) for m in all_metrics for name, n in m.take_unflushed().items()]
    recent = activity.ActivityWriter(batch + [(m.repo, name, n) for m in all_metrics
                                              for name, n in m.take_bytes().items()])
    if not batch and recent.empty():
        return

    def work(conn: sqlite3.Connection) -> None:
        if batch:
            conn.executemany("INSERT INTO counters (repo, name, value) VALUES (?, ?, ?) ON CONFLICT (repo, name)"
                             " DO UPDATE SET value = counters.value + excluded.value", batch)
        try:
            recent.write(conn)
        except Exception:  # the UI's history must never cost the counters
            log.exception("writing recent activity failed")
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
        count = lambda name, repo=repo, prefix=prefix: counts.get((repo.name, prefix + name), 0)  # noqa: E731
        rows.append({"name": repo.name, "format": repo.format, "type": repo.type, "entries": entries,
                     "bytes": size, "hits": count("hit") + count("hosted"), "misses": count("miss"),
                     "stale": count("stale"), "revalidated": count("revalidated"),
                     "negative": count("negative"), "errors": count("error"),
                     "counted_in_total": not repo.is_group})
    return rows


GLOBAL_ROW = "-"           # counters-table rows that belong to no repository


def record_gc_run(db: Database, bytes_freed: int) -> None:
    """Persist one `depot gc` run in the counters table (blocking; called by the CLI)."""
    def work(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO counters (repo, name, value) VALUES (?, ?, ?)"
                         " ON CONFLICT (repo, name) DO UPDATE SET value = counters.value + excluded.value",
                         [(GLOBAL_ROW, "gc_runs", 1), (GLOBAL_ROW, "gc_freed_bytes", bytes_freed)])
    db.run_sync(work)


async def gc_totals(db: Database) -> dict[str, int]:
    """The totals `depot gc` runs persisted (gc_runs, gc_freed_bytes)."""
    rows = await db.execute("SELECT name, value FROM counters WHERE repo = ?", (GLOBAL_ROW,))
    return {row["name"]: row["value"] for row in rows}


async def persisted_counts(db: Database) -> dict[str, dict[str, int]]:
    """Result counts per repository as flushed to the database (all workers, across restarts)."""
    rows = await db.execute("SELECT repo, name, value FROM counters")
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["repo"], {})[row["name"]] = row["value"]
    return counts


async def hosted_stats(db: Database) -> dict[str, dict[str, int]]:
    """Per hosted repository: file count and bytes."""
    rows = await db.execute("SELECT repo, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM files GROUP BY repo")
    return {r["repo"]: {"entries": r["n"], "bytes": r["bytes"]} for r in rows}


async def entry_listing(db: Database, repo: str, prefix: str, limit: int) -> list[dict[str, Any]]:
    """Proxy entries of `repo` under `prefix` in key order (path, size, digest, time, kind)."""
    rows = await db.execute(
        "SELECT key AS path, size, digest, fetched_at AS time, kind FROM entries"
        " WHERE repo = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?",
        (repo, prefix, prefix + "\U0010ffff", limit))
    return [dict(r) for r in rows]

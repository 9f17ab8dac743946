"""Recent activity per repository, for the web UI's per-repository pages.

* per-minute request results and bytes served (the same increments as `depot_requests_total`,
  `depot_group_requests_total` and `depot_bytes_served_total`, so the sparklines add up with
  /-/metrics), kept for a little more than a day;
* downloads per package (a file whose path the format's `package_of()` names; index pages and
  metadata are not downloads);
* the last upstream failures and 5xx answers, with time and path.

The request path only appends to this process's pending tallies (`RECORDER`, no I/O); the
housekeeping flush (`stats.add_counts`, every 2 s and at shutdown) writes them to the metadata
store, SQLite or PostgreSQL, so every worker and node sees the same numbers. Formats are not
known here: the front door registers each format's `package_of` in `RESOLVERS`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

log = logging.getLogger("depot.activity")

# portable DDL (SQLite and PostgreSQL both accept these types)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS activity_minutes (repo TEXT NOT NULL, minute BIGINT NOT NULL,"
    " name TEXT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (repo, minute, name))",
    "CREATE INDEX IF NOT EXISTS activity_minutes_minute ON activity_minutes (minute)",
    "CREATE TABLE IF NOT EXISTS package_downloads (repo TEXT NOT NULL, package TEXT NOT NULL,"
    " count BIGINT NOT NULL, last DOUBLE PRECISION NOT NULL, PRIMARY KEY (repo, package))",
    "CREATE TABLE IF NOT EXISTS recent_errors (repo TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,"
    " kind TEXT NOT NULL, status TEXT NOT NULL, path TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS recent_errors_repo_at ON recent_errors (repo, at)",
)
KEEP_MINUTES = 26 * 60          # a day of sparkline, and some
KEEP_ERRORS = 50                # per repository
PRUNE_EVERY = 300.0             # seconds between prunes
MAX_PENDING_ERRORS = 1000       # a failing upstream under load must not grow memory
BYTES_PREFIX = "bytes:"         # activity names of bytes served by source (bytes:cache, bytes:upstream)
DOWNLOAD_RESULTS = frozenset({"hit", "miss", "stale", "revalidated", "hosted"})

Resolver = Callable[[str], "tuple[str, str] | None"]
RESOLVERS: dict[str, Resolver] = {}     # format name -> package_of(path within the repository)


@dataclass(frozen=True)
class ErrorRecord:
    """One upstream failure or 5xx answer."""

    repo: str
    at: float
    kind: str          # "upstream" (a fetch failed) or "answer" (a 5xx went to a client)
    status: str
    path: str
    detail: str


class ActivityRecorder:
    """This process's pending downloads and errors (cheap appends on the request path)."""

    def __init__(self) -> None:
        self.paths: dict[tuple[str, str, str], int] = {}
        self.errors: list[ErrorRecord] = []
        self.last_at = 0.0

    def download(self, repo: str, fmt: str, request: Any, result: str) -> None:
        """Count a GET answered with `result` as a download candidate (resolved at flush)."""
        if request is None or result not in DOWNLOAD_RESULTS or request.method != "GET":
            return
        key = (repo, fmt, request.path)
        self.paths[key] = self.paths.get(key, 0) + 1

    def error(self, repo: str, kind: str, status: int | str, path: str, detail: str = "") -> None:
        """Remember an upstream failure or a 5xx answer (bounded)."""
        if len(self.errors) < MAX_PENDING_ERRORS:
            self.last_at = max(time.time(), self.last_at + 1e-6)     # distinct times: "newest N" is exact
            self.errors.append(ErrorRecord(repo, self.last_at, kind, str(status), path[:500], detail[:300]))

    def take(self) -> tuple[dict[tuple[str, str, str], int], list[ErrorRecord]]:
        paths, errors = self.paths, self.errors
        self.paths, self.errors = {}, []
        return paths, errors


RECORDER = ActivityRecorder()


def path_in_repository(path: str) -> str:
    """The path a format sees, from the request path (`/<repo>/…` or `/v2/<repo>/…`)."""
    parts = path.lstrip("/").split("/", 2 if path.startswith("/v2/") else 1)
    return parts[-1] if len(parts) > 1 else ""


def packages_of(paths: dict[tuple[str, str, str], int]) -> dict[tuple[str, str], int]:
    """Downloads per (repository, package) from downloads per request path."""
    out: dict[tuple[str, str], int] = {}
    for (repo, fmt, path), count in paths.items():
        resolve = RESOLVERS.get(fmt)
        try:
            found = resolve(path_in_repository(path)) if resolve is not None else None
        except Exception:  # a format's parser must never break the flush
            found = None
        if found:
            out[(repo, found[0])] = out.get((repo, found[0]), 0) + count
    return out


class ActivityWriter:
    """Writes one flush (runs on the database thread: `write(conn)`)."""

    created: dict[int, Any] = {}     # the connections the schema was checked on (held: ids stay unique)
    last_prune = 0.0

    def __init__(self, minute_counts: Iterable[tuple[str, str, int]]) -> None:
        self.now = time.time()
        self.minute = int(self.now // 60)
        self.counts = [(repo, self.minute, name, n) for repo, name, n in minute_counts if n]
        paths, self.errors = RECORDER.take()
        self.downloads = packages_of(paths)

    def empty(self) -> bool:
        return not (self.counts or self.downloads or self.errors)

    def write(self, conn: Any) -> None:
        ensure_schema(conn)
        if self.counts:
            conn.executemany("INSERT INTO activity_minutes (repo, minute, name, value) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (repo, minute, name) DO UPDATE"
                             " SET value = activity_minutes.value + excluded.value", self.counts)
        if self.downloads:
            conn.executemany("INSERT INTO package_downloads (repo, package, count, last) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (repo, package) DO UPDATE SET count = package_downloads.count"
                             " + excluded.count, last = excluded.last",
                             [(repo, package, n, self.now) for (repo, package), n in self.downloads.items()])
        if self.errors:
            conn.executemany("INSERT INTO recent_errors (repo, at, kind, status, path, detail)"
                             " VALUES (?, ?, ?, ?, ?, ?)",
                             [(e.repo, e.at, e.kind, e.status, e.path, e.detail) for e in self.errors])
            for repo in {e.repo for e in self.errors}:
                conn.execute("DELETE FROM recent_errors WHERE repo = ? AND at < (SELECT at FROM recent_errors"
                             " WHERE repo = ? ORDER BY at DESC LIMIT 1 OFFSET ?)", (repo, repo, KEEP_ERRORS - 1))
        if self.now - ActivityWriter.last_prune > PRUNE_EVERY:
            ActivityWriter.last_prune = self.now
            conn.execute("DELETE FROM activity_minutes WHERE minute < ?", (self.minute - KEEP_MINUTES,))


def ensure_schema(conn: Any) -> None:
    """Create the activity tables once per connection (idempotent; a concurrent creator is
    tolerated: the statements are retried once)."""
    target = getattr(conn, "conn", conn)      # PostgreSQL: the pooled connection under the wrapper
    if ActivityWriter.created.get(id(target)) is target:
        return
    for attempt in (1, 2):
        try:
            for statement in SCHEMA:
                conn.execute(statement)
            break
        except Exception:
            if attempt == 2:
                raise
            time.sleep(0.2)      # another worker was creating the same tables
    ActivityWriter.created[id(target)] = target


# ------------------------------------------------------------------------------ reading
def history(conn: Any, repos: list[str], since_minute: int) -> dict[str, dict[int, dict[str, int]]]:
    """{repo: {minute: {name: value}}} for minutes >= since_minute."""
    ensure_schema(conn)
    out: dict[str, dict[int, dict[str, int]]] = {r: {} for r in repos}
    if not repos:
        return out
    marks = ",".join("?" * len(repos))
    for row in conn.execute(f"SELECT repo, minute, name, value FROM activity_minutes WHERE repo IN ({marks})"
                            " AND minute >= ?", (*repos, since_minute)).fetchall():
        out[row[0]].setdefault(int(row[1]), {})[row[2]] = int(row[3])
    return out


def top_packages(conn: Any, repo: str, limit: int) -> list[dict[str, Any]]:
    """The most downloaded packages of a repository (all time), with their last download."""
    ensure_schema(conn)
    rows = conn.execute("SELECT package, count, last FROM package_downloads WHERE repo = ?"
                        " ORDER BY count DESC, package LIMIT ?", (repo, limit)).fetchall()
    return [{"package": r[0], "downloads": int(r[1]), "last": float(r[2])} for r in rows]


def last_errors(conn: Any, repo: str, limit: int) -> list[dict[str, Any]]:
    """The newest upstream failures and 5xx answers of a repository."""
    ensure_schema(conn)
    rows = conn.execute("SELECT at, kind, status, path, detail FROM recent_errors WHERE repo = ?"
                        " ORDER BY at DESC LIMIT ?", (repo, limit)).fetchall()
    return [{"time": float(r[0]), "kind": r[1], "status": r[2], "path": r[3], "detail": r[4]} for r in rows]


class ActivityStore:
    """The read side for the UI (through the database's own thread or pool)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def history(self, repos: list[str], since_minute: int) -> dict[str, dict[int, dict[str, int]]]:
        return await self.db.run(lambda conn: history(conn, repos, since_minute))

    async def top_packages(self, repo: str, limit: int = 10) -> list[dict[str, Any]]:
        return await self.db.run(lambda conn: top_packages(conn, repo, limit))

    async def last_errors(self, repo: str, limit: int = 20) -> list[dict[str, Any]]:
        return await self.db.run(lambda conn: last_errors(conn, repo, limit))

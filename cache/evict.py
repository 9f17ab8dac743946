"""Keeping proxy content under cache.max_size (LRU), and blob garbage collection.

Only proxy entries are ever evicted; hosted files are referenced from the catalog and a
blob is deleted only when no entry and no hosted file references it.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from .blobs import BlobStore
from .db import Database

log = logging.getLogger("depot.evict")

Progress = Callable[[int, int], None]
EVICT_WAIT = 5.0


def _referenced(conn: sqlite3.Connection, digest: str) -> bool:
    row = conn.execute("SELECT 1 FROM entries WHERE digest = ? UNION ALL "
                       "SELECT 1 FROM files WHERE digest = ? LIMIT 1", (digest, digest)).fetchone()
    return row is not None


def _lock(db: Database, blobs: BlobStore, name: str) -> "_Lock":
    """One evictor / collector at a time: across the node's processes (flock), or across all
    nodes when the metadata is shared (the database's advisory lock)."""
    shared = getattr(db, "try_lock", None)
    return shared(name) if shared is not None else _Lock(blobs.tmp / f"{name}.lock")


class _Lock:
    """A non-blocking exclusive flock: one evictor / collector at a time across processes."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.held = True
        except BlockingIOError:
            self.held = False

    def release(self) -> None:
        os.close(self.fd)


@dataclass
class EvictionResult:
    entries: int = 0
    bytes_freed: int = 0
    by_repo: dict[str, int] | None = None


def evict(db: Database, blobs: BlobStore, max_size: int) -> EvictionResult:
    """Delete least recently used proxy entries until their total size fits (blocking).

    When another process or node is evicting, wait for it (up to EVICT_WAIT) and run again:
    its pass may have started before this process's last fill was counted."""
    lock = _lock(db, blobs, "evict")
    deadline = time.monotonic() + EVICT_WAIT
    while not lock.held and time.monotonic() < deadline:
        lock.release()
        time.sleep(0.05)
        lock = _lock(db, blobs, "evict")
    result = EvictionResult(by_repo={})
    try:
        if not lock.held:
            return result

        def work(conn: sqlite3.Connection) -> None:
            total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            if total <= max_size:
                return
            rows = conn.execute("SELECT repo, key, digest, size FROM entries ORDER BY last_access").fetchall()
            for row in rows:
                if total <= max_size:
                    break
                conn.execute("DELETE FROM entries WHERE repo = ? AND key = ?", (row["repo"], row["key"]))
                total -= row["size"]
                result.entries += 1
                assert result.by_repo is not None
                result.by_repo[row["repo"]] = result.by_repo.get(row["repo"], 0) + 1
                if not _referenced(conn, row["digest"]):
                    result.bytes_freed += blobs.delete(row["digest"])
        db.run_sync(work)
    finally:
        lock.release()
    if result.entries:
        log.info("evicted entries=%d bytes_freed=%d", result.entries, result.bytes_freed)
    return result


@dataclass
class GcResult:
    scanned: int = 0
    removed: int = 0
    bytes_freed: int = 0
    kept_young: int = 0


def collect(db: Database, blobs: BlobStore, dry_run: bool = False, grace: float = 300.0,
            progress: Progress | None = None) -> GcResult:
    """Mark (every digest referenced by an entry or hosted file) and sweep the blob store.

    Online: runs beside a serving depot. Blobs younger than `grace` seconds are kept, since a
    fetch may have committed its blob and not yet written its entry.
    """
    lock = _lock(db, blobs, "gc")
    result = GcResult()
    if not lock.held:
        lock.release()
        raise RuntimeError("another gc is running")
    try:
        marked = set(db.run_sync(lambda conn: [r[0] for r in conn.execute(
            "SELECT digest FROM entries UNION SELECT digest FROM files")]))
        stored = blobs.iter_digests()
        now = time.time()
        for index, (digest, size, mtime) in enumerate(stored, 1):
            result.scanned += 1
            if progress is not None:
                progress(index, len(stored))
            if digest in marked:
                continue
            if now - mtime < grace:
                result.kept_young += 1
                continue
            if db.run_sync(partial(_referenced, digest=digest)):
                continue
            result.removed += 1
            result.bytes_freed += size if dry_run else blobs.delete(digest)
        sweep = getattr(blobs, "stale_uploads", None)      # object storage: crashed multipart writers
        if sweep is not None and not dry_run:
            sweep()
    finally:
        lock.release()
    return result

"""Named exclusive locks held across every process of a node, or across every node.

For a read-check-write on several catalog records that other writers must not interleave with
(OCI: a manifest PUT checks that its blobs are recorded while a manifest deletion drops the
blob records no manifest references any more). With the metadata in SQLite (one node) the lock
is an flock on `tmp/locks/<hash>.lock`; with PostgreSQL it is a session advisory lock, so every
node shares it, and a node that dies releases it with its connection.

Waiting happens on a small dedicated thread pool, after an in-process asyncio lock per name,
so at most one thread per process waits for a name and the event loop never blocks.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

WAITERS = 4
HELD = 4           # locks one process holds at once (each holds a pooled connection on PostgreSQL)


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def release(self) -> None:
        os.close(self.fd)          # closing the descriptor drops the flock


class _PgLock:
    def __init__(self, pool: Any, key: int) -> None:
        self.pool = pool
        self.key = key
        self.conn = pool.getconn(timeout=30)
        try:
            self.conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except BaseException:
            pool.putconn(self.conn)
            raise

    def release(self) -> None:
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        finally:
            self.pool.putconn(self.conn)


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"depot-named\0{name}".encode()).digest()[:8], "big", signed=True)


class NamedLocks:
    """`async with locks.hold(name):` — exclusive across processes (SQLite) or nodes (PostgreSQL)."""

    def __init__(self, db: Any, tmp: Path) -> None:
        self.db = db
        self.dir = Path(tmp) / "locks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._local: dict[str, asyncio.Lock] = {}
        self._held: asyncio.Semaphore | None = None
        self._executor = ThreadPoolExecutor(max_workers=WAITERS, thread_name_prefix="depot-lock")

    def _acquire(self, name: str) -> Any:
        pool = getattr(self.db, "pool", None)
        if pool is not None:
            return _PgLock(pool, _key(name))
        return _FileLock(self.dir / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock")

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold the lock `name` for the block (waits for other holders)."""
        local = self._local.setdefault(name, asyncio.Lock())
        if self._held is None:
            self._held = asyncio.Semaphore(HELD)
        async with local, self._held:
            loop = asyncio.get_running_loop()
            waiting = loop.run_in_executor(self._executor, self._acquire, name)
            try:
                held = await asyncio.shield(waiting)
            except asyncio.CancelledError:     # taken after all: give it back
                waiting.add_done_callback(self._release_late)
                raise
            try:
                yield
            finally:
                await loop.run_in_executor(self._executor, held.release)

    def _release_late(self, waiting: Any) -> None:
        if not waiting.cancelled() and waiting.exception() is None:
            self._executor.submit(waiting.result().release)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

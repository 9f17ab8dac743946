"""Single flight across depot nodes that share one PostgreSQL database.

Within a node, cache/flight.py elects one leader per key among the node's workers (flock, state
files, a growing part file). With several nodes, that node-local leader also asks the cluster:

* `try_lead(fid)` takes a PostgreSQL session advisory lock on a dedicated connection, held for
  the whole fetch, and records (fid -> this node's internal URL) in `cluster_flights`. A node
  that dies (even kill -9) drops its connection and PostgreSQL releases the lock at once: the
  next node to miss takes over; nothing partial was committed (blobs are verified before they
  get their content address, entries are written after).
* A node that does not get the lock relays: it streams the body from the leader node's internal
  endpoint `/-/internal/flight/<fid>` into its own part file, so its clients follow it as today.
  The leader's endpoint holds the last bytes back until the body is verified and committed, so
  a relay never passes on a complete-looking bad body; after the stream the relay reads the
  entry the leader wrote. No second upstream GET, no second upload.

`LocalCoordinator` (one node) always leads and keeps today's behaviour.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Depot-Node-Token"
STATE_HEADER = "X-Depot-Flight"

CLUSTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_flights (
    fid TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL
);
"""


@dataclass
class Lease:
    """This node leads the fetch of `fid` across the cluster until released."""

    fid: str
    conn: Any = None          # the pooled connection holding the advisory lock


@dataclass(frozen=True)
class Leader:
    fid: str
    node: str                 # base URL of the leading node's internal endpoint


class Coordinator(Protocol):
    """Who fetches a key across nodes."""

    node_token: str

    async def try_lead(self, fid: str) -> Lease | None:
        """Lead the fetch of fid (a Lease) or None when another node leads it."""

    async def leader(self, fid: str) -> Leader | None:
        """The node leading fid now, if any."""

    async def release(self, lease: Lease) -> None:
        """Give up the lead (after the flight settled)."""


class LocalCoordinator:
    """One node: always the leader."""

    node_token = ""

    async def try_lead(self, fid: str) -> Lease | None:
        return Lease(fid)

    async def leader(self, fid: str) -> Leader | None:
        return None

    async def release(self, lease: Lease) -> None:
        return None


def _lock_key(fid: str) -> int:
    """A signed 64-bit advisory-lock key from the flight id (a sha256 hex)."""
    value = int(fid[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


class PgCoordinator:
    """Leader election with PostgreSQL session advisory locks; leaders advertise their node URL."""

    def __init__(self, url: str, node_url: str, max_leases: int = 64) -> None:
        from psycopg_pool import ConnectionPool
        self.node_url = node_url.rstrip("/")
        # the nodes trust each other's internal endpoint by a token derived from the shared URL
        self.node_token = hashlib.sha256(f"depot-node\0{url}".encode()).hexdigest()
        self.pool = ConnectionPool(url, min_size=1, max_size=max_leases, open=False,
                                   kwargs={"autocommit": True}, name="depot-leases")
        self.pool.open(wait=True, timeout=30)
        with self.pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x64_65_70_6F_74,))
                conn.execute(CLUSTER_SCHEMA.encode())

    def _try_lead(self, fid: str) -> Lease | None:
        conn = self.pool.getconn(timeout=30)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(fid),)).fetchone()
            if not got or not got[0]:
                self.pool.putconn(conn)
                return None
            conn.execute("INSERT INTO cluster_flights (fid, node, started) VALUES (%s, %s, %s)"
                         " ON CONFLICT (fid) DO UPDATE SET node = excluded.node, started = excluded.started",
                         (fid, self.node_url, time.time()))
            return Lease(fid, conn)
        except BaseException:
            self.pool.putconn(conn)
            raise

    async def try_lead(self, fid: str) -> Lease | None:
        return await asyncio.to_thread(self._try_lead, fid)

    def _leader(self, fid: str) -> Leader | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT node FROM cluster_flights WHERE fid = %s", (fid,)).fetchone()
        return Leader(fid, row[0]) if row else None

    async def leader(self, fid: str) -> Leader | None:
        return await asyncio.to_thread(self._leader, fid)

    def _release(self, lease: Lease) -> None:
        conn, lease.conn = lease.conn, None
        if conn is None:
            return
        try:
            conn.execute("DELETE FROM cluster_flights WHERE fid = %s AND node = %s", (lease.fid, self.node_url))
            conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(lease.fid),))
        finally:
            self.pool.putconn(conn)

    async def release(self, lease: Lease) -> None:
        await asyncio.to_thread(self._release, lease)

    def close(self) -> None:
        self.pool.close()

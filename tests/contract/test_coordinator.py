"""Contract of the cross-node flight Coordinator (cache/cluster.py) and the cluster-wide
maintenance lock, on PostgreSQL (the local coordinator always leads)."""
from __future__ import annotations

import asyncio

import pytest

from depot.cache.cluster import LocalCoordinator, PgCoordinator
from depot.cache.meta_pg import PgDatabase

FID = "ab" * 32


@pytest.fixture
def database_url(pg_cluster):
    return pg_cluster.new_database()


def test_one_leader_per_key_across_nodes(database_url):
    a, b = PgCoordinator(database_url, "http://node-a:1"), PgCoordinator(database_url, "http://node-b:2")
    try:
        async def scenario() -> None:
            lease = await a.try_lead(FID)
            assert lease is not None
            assert await b.try_lead(FID) is None                 # another node: follower
            assert await a.try_lead(FID) is None                 # even the same node's second ask
            assert (await b.leader(FID)).node == "http://node-a:1"
            other = await b.try_lead("cd" * 32)                  # other keys are independent
            assert other is not None
            await b.release(other)
            await a.release(lease)
            assert await b.leader(FID) is None
            taken = await b.try_lead(FID)                        # released: the next node leads
            assert taken is not None and (await a.leader(FID)).node == "http://node-b:2"
            await b.release(taken)
        asyncio.run(scenario())
    finally:
        a.close()
        b.close()


def test_a_dead_leader_is_taken_over(database_url):
    """A node that dies drops its connection: PostgreSQL frees the lock as soon as its backend
    notices (asynchronously: within moments, not necessarily before the next statement)."""
    import time
    a, b = PgCoordinator(database_url, "http://node-a:1"), PgCoordinator(database_url, "http://node-b:2")
    try:
        lease = asyncio.run(a.try_lead(FID))
        assert lease is not None and asyncio.run(b.try_lead(FID)) is None
        lease.conn.close()                                       # as if the process was killed
        deadline = time.monotonic() + 10
        while (taken := asyncio.run(b.try_lead(FID))) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert taken is not None and asyncio.run(b.leader(FID)).node == "http://node-b:2"
        asyncio.run(b.release(taken))
    finally:
        a.close()
        b.close()


def test_maintenance_lock_is_cluster_wide(database_url):
    one, two = PgDatabase(database_url), PgDatabase(database_url)
    try:
        held = one.try_lock("gc")
        assert held.held
        blocked = two.try_lock("gc")
        assert not blocked.held
        blocked.release()
        other = two.try_lock("evict")
        assert other.held
        other.release()
        held.release()
        again = two.try_lock("gc")
        assert again.held
        again.release()
    finally:
        one.close()
        two.close()


def test_local_coordinator_always_leads():
    coordinator = LocalCoordinator()
    assert asyncio.run(coordinator.try_lead(FID)) is not None
    assert asyncio.run(coordinator.leader(FID)) is None

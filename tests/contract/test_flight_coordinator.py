"""Contract of the flight coordinator (cache/flight.py behind cache/pull.py): the in-process one
(--workers 1) and the cross-process one (flock + state files) give the same guarantees: one
upstream fetch for concurrent misses, followers get the body while it downloads, a failed
fetch commits nothing and every follower sees the failure, never a short body."""
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from depot.cache.pull import FetchSpec, Kind, PullThrough, UpstreamFailed
from depot.cache.serve import MemoryCache
from depot.cache.storage import open_storage
from depot.cache.types import RepoConfig
from depot.upstreams.client import Timeouts, UpstreamClient

BODY = os.urandom(3 * 2**20)


async def _upstream(counts: dict[str, int], break_after: int | None) -> web.AppRunner:
    async def serve(request: web.Request) -> web.StreamResponse:
        counts[request.path] = counts.get(request.path, 0) + 1
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY))})
        await response.prepare(request)
        for offset in range(0, len(BODY), 256 * 1024):
            if break_after is not None and offset >= break_after:
                request.transport.close()          # the upstream dies mid-body
                return response
            await response.write(BODY[offset:offset + 256 * 1024])
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response
    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def _scenario(tmp: Path, cross_process: bool, break_after: int | None) -> tuple[list[Any], int, Any]:
    counts: dict[str, int] = {}
    runner = await _upstream(counts, break_after)
    port = runner.addresses[0][1]
    storage = open_storage(tmp / "data")
    client = UpstreamClient(Timeouts(5, 10), 0, None)
    pull = PullThrough(storage.entries, storage.blobs, MemoryCache(2**20, 2**16), client,
                       cross_process=cross_process)
    repo = RepoConfig("r", "generic", "proxy", upstream=f"http://127.0.0.1:{port}/")
    spec = FetchSpec(repo, "big.bin", f"http://127.0.0.1:{port}/big.bin", Kind.IMMUTABLE)

    async def one() -> Any:
        try:
            return await pull.read(await pull.open(spec))
        except UpstreamFailed as exc:
            return exc
    try:
        results = await asyncio.gather(*(one() for _ in range(12)))
        entry = await storage.entries.get("r", "big.bin")
    finally:
        await pull.close()
        await client.close()
        storage.close()
        await runner.cleanup()
    return results, counts.get("/big.bin", 0), entry


@pytest.mark.parametrize("cross_process", [False, True], ids=["in-process", "cross-process"])
def test_concurrent_misses_share_one_fetch(tmp_path: Path, cross_process: bool) -> None:
    results, fetches, entry = asyncio.run(_scenario(tmp_path, cross_process, None))
    assert fetches == 1
    assert all(isinstance(r, bytes) and hashlib.sha256(r).digest() == hashlib.sha256(BODY).digest() for r in results)
    assert entry is not None and entry.size == len(BODY)


@pytest.mark.parametrize("cross_process", [False, True], ids=["in-process", "cross-process"])
def test_a_broken_fetch_fails_every_follower_and_commits_nothing(tmp_path: Path, cross_process: bool) -> None:
    results, fetches, entry = asyncio.run(_scenario(tmp_path, cross_process, 1_000_000))
    assert fetches == 1
    assert all(isinstance(r, UpstreamFailed) for r in results), [type(r) for r in results]
    assert entry is None
    assert not any((tmp_path / "data" / "blobs" / "sha256").rglob("*.part"))

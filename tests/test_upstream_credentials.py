"""Credentials configured for an upstream are sent to that upstream only: a download host named by
its metadata (crates.io's static host, a CDN) never sees them."""
from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from depot.cache.pull import FetchSpec, Kind, PullThrough
from depot.cache.serve import MemoryCache
from depot.cache.storage import open_storage
from depot.cache.types import RepoConfig, UpstreamAuth
from depot.upstreams.client import Timeouts, UpstreamClient, same_origin


def test_same_origin() -> None:
    assert same_origin("https://a.example/x/y", "https://a.example/")
    assert not same_origin("https://b.example/x", "https://a.example/")
    assert not same_origin("http://a.example/x", "https://a.example/")
    assert not same_origin("https://a.example:8443/x", "https://a.example/")


async def _fetch_both(tmp: Path) -> dict[str, list[str | None]]:
    seen: dict[str, list[str | None]] = {"upstream": [], "download": []}

    def app_for(name: str) -> web.Application:
        async def serve(request: web.Request) -> web.Response:
            seen[name].append(request.headers.get("Authorization"))
            return web.Response(body=b"bytes of " + name.encode())
        app = web.Application()
        app.router.add_get("/{tail:.*}", serve)
        return app
    runners = []
    ports = {}
    for name in seen:
        runner = web.AppRunner(app_for(name))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        ports[name] = runner.addresses[0][1]
    storage = open_storage(tmp / "data")
    client = UpstreamClient(Timeouts(5, 10), 0, None)
    pull = PullThrough(storage.entries, storage.blobs, MemoryCache(2**20, 2**16), client, cross_process=False)
    repo = RepoConfig("r", "cargo", "proxy", upstream=f"http://127.0.0.1:{ports['upstream']}/",
                      auth=UpstreamAuth(token="s3cret-upstream-token"))
    try:
        for name in seen:
            spec = FetchSpec(repo, f"{name}.bin", f"http://127.0.0.1:{ports[name]}/{name}.bin", Kind.IMMUTABLE)
            await pull.read(await pull.open(spec))
    finally:
        await pull.close()
        await client.close()
        storage.close()
        for runner in runners:
            await runner.cleanup()
    return seen


def test_credentials_go_to_the_upstream_only(tmp_path: Path) -> None:
    seen = asyncio.run(_fetch_both(tmp_path))
    assert seen["upstream"] == ["Bearer s3cret-upstream-token"]
    assert seen["download"] == [None]

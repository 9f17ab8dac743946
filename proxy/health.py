"""/-/healthz (store writable, enough free space) and the answer to a full disk (507)."""
from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from depot.cache.storage import storage_full

from .config import HealthConfig

log = logging.getLogger("depot.health")

HEALTH: web.AppKey[HealthConfig] = web.AppKey("health", HealthConfig)
STORE_TMP: web.AppKey[Path] = web.AppKey("store_tmp", Path)
SHARED_TIMEOUT = 5.0        # seconds for the shared database or bucket to answer a health check
FULL_MESSAGE = "insufficient storage: depot's disk is full"


def free_space_problem(path: Path, health: HealthConfig) -> str | None:
    """Why free space is too low in `path`'s filesystem, or None."""
    st = os.statvfs(path)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if free < health.min_free_bytes:
        return f"low disk space: {free} bytes free, below health.min_free ({health.min_free_bytes} bytes)"
    if total and 100 * free / total < health.min_free_percent:
        return (f"low disk space: {100 * free / total:.1f}% free, "
                f"below health.min_free ({health.min_free_percent:g}%)")
    return None


async def healthz(request: web.Request) -> web.Response:
    """200 "ok" when the store is writable and has the configured free space; else 503 naming why."""
    tmp = request.app[STORE_TMP]
    try:
        fd, name = tempfile.mkstemp(dir=tmp, prefix="healthz-")
        os.close(fd)
        os.unlink(name)
        problem = free_space_problem(tmp, request.app[HEALTH])
    except OSError as exc:
        problem = f"store not writable: {exc.strerror}"
    if problem is not None:
        return web.Response(status=503, text=f"degraded: {problem}\n", headers={"Cache-Control": "no-store"})
    healthy, shared = await shared_stores(request)
    if not healthy:
        return web.Response(status=503, text="unhealthy\n" + shared, headers={"Cache-Control": "no-store"})
    return web.Response(text="ok\n" + shared, headers={"Cache-Control": "no-store"})


async def shared_stores(request: web.Request) -> tuple[bool, str]:
    """With several nodes: whether the shared database and bucket answer (each bounded in time),
    and a line per component; (True, '') on the embedded local store."""
    from .app import SERVICES
    services = request.app.get(SERVICES)
    storage = getattr(services, "storage", None)
    if storage is None or (storage.kind == "local" and storage.db is storage.local_db):
        return True, ""

    async def check(component: str) -> str:
        try:
            return str(await asyncio.wait_for(asyncio.to_thread(storage.check, component), SHARED_TIMEOUT))
        except asyncio.TimeoutError:
            return "timed out"
    names = ("database", "storage")
    verdicts = dict(zip(names, await asyncio.gather(*(check(n) for n in names)), strict=True))
    lines = "".join(f"{name}: {verdict}\n" for name, verdict in verdicts.items())
    return all(v == "ok" for v in verdicts.values()), lines


@web.middleware
async def disk_full(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A full disk on a service endpoint (/-/…) is a 507, not a bare 500 (formats answer it in
    their own error shape: proxy.app.run_format)."""
    try:
        return await handler(request)
    except Exception as exc:
        if not storage_full(exc):
            raise
        log.error("disk full method=%s path=%s: %s", request.method, request.path, exc)
        return web.Response(status=507, text=FULL_MESSAGE + "\n", headers={"Cache-Control": "no-store"})

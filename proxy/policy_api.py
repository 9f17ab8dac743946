"""GET /-/api/policy: the supply-chain policy's recent decisions (what was hidden or refused, and
why), limited to the repositories the caller may read (the one visibility rule). The UI's policy
page (proxy/ui_policy.py) lists the same decisions through `visible_decisions`."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from .visibility import readable


async def visible_decisions(request: web.Request, wanted: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` decisions on repositories the caller may read (only `wanted`'s if given),
    of every worker."""
    from .app import SERVICES
    services = request.app[SERVICES]
    may_read = await readable(request)
    names = {name for name, repo in services.repos.items() if may_read(repo) and (not wanted or name == wanted)}
    return [asdict(d) for d in await services.policy.decisions(names, limit)]


async def decisions(request: web.Request) -> web.Response:
    """Newest first; `?limit=` 1..500 (default 100), `?repository=` to narrow."""
    from .app import SERVICES
    services = request.app[SERVICES]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        return web.json_response({"error": "limit must be an integer from 1 to 500"}, status=400)
    out = await visible_decisions(request, request.query.get("repository"), limit)
    policy = services.policy.global_policy
    return web.json_response({"mode": policy.mode, "cooldown_seconds": policy.cooldown, "decisions": out},
                             headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app.router.add_get("/-/api/policy", decisions)

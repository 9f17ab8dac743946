"""npm's search and audit endpoints: hosted packages searched in place, everything else relayed
to the proxy's upstream as it is (never cached)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from depot.cache.api import UpstreamFailed

from . import npm_packument as pk
from .base import Ctx, FormatError

AUDIT_HEADERS = ("Content-Type", "Content-Encoding", "Accept", "Accept-Encoding", "npm-command")
RELAY_BODY_LIMIT = 32 * 2**20


def json_response(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    """`doc` as an uncacheable JSON answer (npm's registry answers and errors)."""
    return web.Response(status=status, body=json.dumps(doc).encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


async def search(ctx: Ctx) -> web.StreamResponse:
    """`/-/v1/search`: hosted packages (members of a group too); proxies relay upstream."""
    query = ctx.request.query
    text = query.get("text", "")
    size = _bounded_int(query.get("size"), 20, 1, 250)
    offset = _bounded_int(query.get("from"), 0, 0, 10**6)
    repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
    objects: list[dict[str, Any]] = []
    for repo in repos:
        if repo.is_hosted:
            objects.extend(await _search_hosted(ctx.for_repo(repo), text))
    if not objects and ctx.repo.is_proxy:
        return await relay(ctx, "GET", "-/v1/search")
    unique = list({o["package"]["name"]: o for o in reversed(objects)}.values())[::-1]
    return json_response(200, {"objects": unique[offset:offset + size], "total": len(unique),
                               "time": pk.iso_now()})


async def _search_hosted(ctx: Ctx, text: str) -> list[dict[str, Any]]:
    found = []
    for item in await ctx.hosted.list():
        if not item.path.endswith("/package.json"):
            continue
        doc = await asyncio.to_thread(pk.loads, await ctx.hosted.read(item))
        if doc.get("versions") and pk.search_matches(doc, text):
            found.append(pk.search_object(doc))
    return found


async def audit(ctx: Ctx) -> web.StreamResponse:
    """Security advisories: relayed to the (first) proxy upstream, never cached."""
    repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
    for repo in repos:
        if repo.is_proxy:
            return await relay(ctx.for_repo(repo), "POST", f"-/npm/v1/security/{ctx.match['rest']}")
    return json_response(200, {})


async def relay(ctx: Ctx, method: str, path: str) -> web.StreamResponse:
    """Pass the request through to the upstream of `ctx`'s proxy as it is (no caching)."""
    data = await ctx.read_body(RELAY_BODY_LIMIT) if method != "GET" else None
    if ctx.request.query_string:
        path += "?" + ctx.request.query_string
    headers = {h: ctx.request.headers[h] for h in AUDIT_HEADERS if h in ctx.request.headers}
    try:
        status, answered, body = await ctx.pull.relay(method, path, headers, data)
    except UpstreamFailed as exc:  # the client gets npm's error shape
        raise FormatError(502, f"upstream of {ctx.repo.name} failed: {exc.reason}") from None
    keep = {h: answered[h] for h in ("Content-Type", "Content-Encoding") if h in answered}
    return web.Response(status=status, body=body, headers={**keep, "Cache-Control": "no-store"})


def _bounded_int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(raw))) if raw is not None else default
    except ValueError:
        return default

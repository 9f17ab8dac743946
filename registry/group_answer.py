"""The group rule for formats whose hosted answers carry no X-Cache of their own: a hosted
member's file, answered through a group, is a HIT like any stored answer."""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from .base import Ctx


async def first_member_hit(ctx: Ctx, answer: Callable[[Ctx], Awaitable[web.StreamResponse]],
                           what: str) -> web.StreamResponse:
    """ctx.first_member(answer, what), with X-Cache: HIT on a member answer that has none."""
    response = await ctx.first_member(answer, what)
    if not response.prepared and "X-Cache" not in response.headers:
        response.headers["X-Cache"] = "HIT"
    return response

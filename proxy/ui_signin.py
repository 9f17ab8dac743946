"""Signing in to the web UI with the browser's own Basic challenge: `/-/ui/login` asks for
credentials (401 with `WWW-Authenticate: Basic`) until the browser sends a user's password or
token, then sends the browser back to the repositories, which it then sees as that user (the
browser repeats the credentials on every UI page and API call it makes). No session state
lives in depot, so there is no cookie to steal and no form to forge (nothing for CSRF)."""
from __future__ import annotations

from aiohttp import web

from . import visibility


async def login(request: web.Request) -> web.Response:
    """401 with the Basic challenge for anonymous callers; signed-in callers go to the UI."""
    principal = await visibility.caller(request)
    if principal.anonymous:
        raise web.HTTPUnauthorized(text="sign in with your depot user and password (or a token)\n",
                                   headers=visibility.CHALLENGE)
    raise web.HTTPSeeOther("./")


def setup(app: web.Application) -> None:
    """Register /-/ui/login."""
    app.router.add_get("/-/ui/login", login)

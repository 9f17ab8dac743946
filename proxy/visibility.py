"""One visibility rule for every listing endpoint: a repository appears (by name, entries,
bytes or metric labels) only to callers who may read it.

Used by /-/api/repositories, /-/api/stats, the web UI and /-/metrics. Metrics are also gated
as a whole: admins and the users named in `metrics.users` (password or token) see every
series; anyone else only when `metrics.anonymous` is true (the default), and then without the
series of the repositories they cannot read.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from depot.cache import metrics
from depot.registry.repo import RepoConfig

from .auth import ANONYMOUS, BadCredentials, Principal

ReadCheck = Callable[[RepoConfig], bool]
CHALLENGE = {"WWW-Authenticate": 'Basic realm="depot"'}
_REPOSITORY_LABEL = re.compile(rb'[{,]repository="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class MetricsPolicy:
    """Who may scrape /-/metrics besides admins."""

    anonymous: bool = True
    users: tuple[str, ...] = ()


METRICS_POLICY: web.AppKey[MetricsPolicy] = web.AppKey("metrics_policy", MetricsPolicy)


async def caller(request: web.Request) -> Principal:
    """The request's principal; 401 (Basic challenge) on bad credentials."""
    from .access import AUTH
    auth = request.app.get(AUTH)
    if auth is None:
        return ANONYMOUS
    try:
        return await auth.identify(request.headers, request.remote)
    except BadCredentials as exc:
        raise web.HTTPUnauthorized(text=f"authentication failed: {exc}\n", headers=CHALLENGE) from None


async def readable(request: web.Request) -> ReadCheck:
    """Which repositories the requester may read (access control); 401 on bad credentials."""
    from .access import AUTH
    auth = request.app.get(AUTH)
    if auth is None:
        return lambda repo: True
    principal = await caller(request)
    return lambda repo: auth.allowed(principal, repo, "read")


def filter_exposition(text: bytes, repos: dict[str, RepoConfig], may_read: ReadCheck) -> bytes:
    """The Prometheus text without the samples labelled with a repository the caller cannot read
    (configured repositories only; "-" and other labels are not repositories)."""
    hidden = {name.encode() for name, repo in repos.items() if not may_read(repo)}
    if not hidden:
        return text
    kept = []
    for line in text.split(b"\n"):
        if not line.startswith(b"#"):
            match = _REPOSITORY_LABEL.search(line)
            if match is not None and match.group(1) in hidden:
                continue
        kept.append(line)
    return b"\n".join(kept)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /-/metrics: the exposition, limited to what the caller may see."""
    from .access import AUTH
    from .app import SERVICES, SERVICES_CONFIG
    from .config import node_label
    auth, policy = request.app.get(AUTH), request.app.get(METRICS_POLICY, MetricsPolicy())
    principal = await caller(request)
    everything = auth is None or auth.is_admin(principal) or (
        principal.user is not None and principal.scopes is None and principal.user in policy.users)
    if not everything and not policy.anonymous:
        if principal.anonymous:
            raise web.HTTPUnauthorized(text="metrics need credentials (metrics.anonymous is false)\n",
                                       headers=CHALLENGE)
        raise web.HTTPForbidden(text=f"{principal.label} may not read metrics (metrics.users)\n")
    body = metrics.render(node_label(request.app[SERVICES_CONFIG]))
    if not everything:
        repos = request.app[SERVICES].repos
        body = filter_exposition(body, repos, await readable(request))
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})

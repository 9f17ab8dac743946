"""Access control on the request path: the check before every handler, the Docker token
service, the audit endpoint, and the first admin user."""
from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import replace
from typing import Mapping

from aiohttp import web

from depot.registry.base import Format, Route
from depot.registry.repo import RepoConfig

from .auth import ANONYMOUS, JWT_ACTIONS, Authenticator, BadCredentials, Principal
from depot.cache.accounts import RANK, UserError
from depot.cache.storage import AuditStorage

log = logging.getLogger("depot.access")

AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
AUDIT: web.AppKey[AuditStorage] = web.AppKey("audit", AuditStorage)

METHOD_PERMS = {"GET": "read", "HEAD": "read", "OPTIONS": "read", "DELETE": "delete"}
WRITE_ACTIONS = {"write": "publish", "delete": "delete"}
AUDIT_MAX_LIMIT = 1000


def required_perm(route: Route, method: str) -> str:
    return route.perm or METHOD_PERMS.get(method, "write")


def checked_repo(repo: RepoConfig, repos: Mapping[str, RepoConfig], perm: str) -> RepoConfig:
    """The repository whose permission applies: a group's deploy_to member for writes."""
    if repo.is_group and perm != "read" and repo.deploy_to:
        return repos[repo.deploy_to]
    return repo


def group_view(auth: Authenticator, principal: Principal, group: RepoConfig) -> RepoConfig | None:
    """For reading through a group: the group limited to the members the principal may read.

    None (ask for credentials, or refuse) when no member is readable, or when an anonymous
    caller could read only some of them and the group does not say anonymous reads are fine.
    """
    if principal.anonymous and group.anonymous_read is False and not auth.open_access:
        return None
    readable = tuple(m for m in group.members if auth.allowed(principal, auth.repos[m], "read"))
    if not readable:
        return None
    if len(readable) < len(group.members) and principal.anonymous and group.anonymous_read is not True:
        return None
    return group if len(readable) == len(group.members) else replace(group, members=readable)


def oci_scope_name(mount: str, match: re.Match[str] | None) -> str | None:
    """The Docker token scope name of an OCI route: <repo>/<image> (<image> on the mirror)."""
    image = match.groupdict().get("image") if match is not None else None
    if not image or not (mount == "/v2" or mount.startswith("/v2/")):
        return None
    prefix = mount[len("/v2"):].strip("/")
    return f"{prefix}/{image}" if prefix else image


async def authorize(request: web.Request, fmt: Format, repo: RepoConfig, route: Route,
                    base_url: str, scope_name: str | None = None
                    ) -> tuple[Principal, web.Response | None, RepoConfig]:
    """(principal, None, repository as seen) when allowed; else an error in the format's shape.

    A group is seen with only the members the caller may read; writes check deploy_to. A Docker
    JWT counts only on the OCI route (`scope_name`) and action its claims name.
    """
    auth, audit = request.app[AUTH], request.app[AUDIT]
    perm = required_perm(route, request.method)
    try:
        identified = await auth.identify(request.headers, request.remote, fmt.credentials(request.headers))
    except BadCredentials as exc:
        if not exc.audited:
            audit.record("authenticate", "denied", None, request.remote, repo.name, reason=str(exc))
        return ANONYMOUS, _challenge(fmt, base_url, f"authentication failed: {exc}"), repo
    principal = auth.for_route(identified, scope_name, perm)
    if perm == "none":
        return principal, None, repo
    if repo.is_group and perm == "read":
        view = group_view(auth, principal, repo)
        if view is not None:
            return principal, None, view
    target = checked_repo(repo, auth.repos, perm)
    if not (repo.is_group and perm == "read") and auth.allowed(principal, target, perm):
        return principal, None, repo
    return principal, _denied(request, fmt, base_url, identified, principal, target, perm, scope_name), repo


def _denied(request: web.Request, fmt: Format, base_url: str, identified: Principal, principal: Principal,
            target: RepoConfig, perm: str, scope_name: str | None) -> web.Response:
    """Audit a refusal and answer it: 401 with a challenge to anonymous callers, else 403.

    A Docker JWT whose claims do not name this route: 403 when its owner could not do it
    anyway, else a challenge for the missing scope (the client fetches a new token)."""
    auth, audit = request.app[AUTH], request.app[AUDIT]
    owner = replace(identified, scopes=None) if identified.scopes is not None else principal
    audit.record(WRITE_ACTIONS.get(perm, perm), "denied", owner.label, request.remote, target.name,
                 method=request.method, path=request.path)
    if identified.scopes is not None and not owner.anonymous and scope_name is not None:
        if not auth.allowed(owner, target, perm):
            return fmt.error(None, 403, f"{owner.label} may not {perm} {target.name}", "DENIED")
        scope = f'repository:{scope_name}:{JWT_ACTIONS.get(perm, perm)}'
        return _challenge(fmt, base_url, f"the token does not grant {scope}",
                          f',scope="{scope}",error="insufficient_scope"')
    if principal.anonymous:
        return _challenge(fmt, base_url, f"authentication required to {perm} {target.name}")
    return fmt.error(None, 403, f"{principal.label} may not {perm} {target.name}")


def _challenge(fmt: Format, base_url: str, message: str, extra: str = "") -> web.Response:
    response = fmt.error(None, 401, message, "UNAUTHORIZED")
    response.headers["WWW-Authenticate"] = fmt.challenge(base_url) + extra
    return response


def record_outcome(request: web.Request, route: Route, repo: RepoConfig, principal: Principal,
                   status: int, action: str | None = None) -> None:
    """Audit successful publishes and deletions; `action` (set by the handler, e.g. "delete"
    for an npm update that removed versions) overrides what the route's permission implies."""
    perm = required_perm(route, request.method)
    if perm in WRITE_ACTIONS and status < 400:
        target = checked_repo(repo, request.app[AUTH].repos, perm)
        request.app[AUDIT].record(action or WRITE_ACTIONS[perm], "ok", principal.label, request.remote,
                                  target.name, method=request.method, path=request.path, status=status)


_SCOPE = re.compile(r"^(repository|registry):([^:]+):([a-z*,]*)$")


async def docker_token(request: web.Request) -> web.Response:
    """GET /-/token?service=depot&scope=repository:<repo>/<image>:pull,push (Docker token spec)."""
    auth, audit = request.app[AUTH], request.app[AUDIT]
    try:
        principal = await auth.identify(request.headers, request.remote)
    except BadCredentials as exc:
        if not exc.audited:
            audit.record("login", "denied", None, request.remote, None, reason=str(exc))
        return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": str(exc)}]}, status=401,
                                 headers={"WWW-Authenticate": 'Basic realm="depot"'})
    granted = []
    for scope in request.query.getall("scope", []):
        for part in scope.split(" "):
            match = _SCOPE.match(part)
            if match:
                kind, name, actions = match.groups()
                granted.append((kind, name, _grantable(auth, principal, name, actions.split(","))))
    if not principal.anonymous:
        audit.record("login", "ok", principal.label, request.remote, None, service="docker")
    token = auth.docker_token(principal, granted)
    return web.json_response({"token": token, "access_token": token, "expires_in": 300})


def _grantable(auth: Authenticator, principal: Principal, name: str, actions: list[str]) -> list[str]:
    """The asked actions the principal may do on an OCI repository (nothing on other formats)."""
    repo = auth.scope_repo(name)
    if repo is None:
        return []
    wanted = {"pull": "read", "push": "write", "delete": "delete", "*": "admin"}
    rank = auth.rank(principal, repo)
    return [a for a in actions if a in wanted and rank >= RANK[wanted[a]]]


async def audit_endpoint(request: web.Request) -> web.Response:
    """GET /-/api/audit?limit=N&offset=M: audit records, newest last, skipping the M newest
    (admins only; limit 1..1000, default 1000)."""
    auth = request.app[AUTH]
    try:
        principal = await auth.identify(request.headers, request.remote)
    except BadCredentials:
        principal = ANONYMOUS
    if not auth.is_admin(principal):
        status = 401 if principal.anonymous else 403
        return web.json_response({"error": "admins only"}, status=status,
                                 headers={"WWW-Authenticate": 'Basic realm="depot"'} if status == 401 else {})
    limit = _int_param(request, "limit", 1000, 1, AUDIT_MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    if limit is None or offset is None:
        return web.json_response({"error": f"limit must be an integer 1..{AUDIT_MAX_LIMIT},"
                                           " offset an integer >= 0"}, status=400)
    return web.json_response(await asyncio.to_thread(request.app[AUDIT].tail, limit, offset))


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int | None:
    """An integer query parameter within [low, high]; None when it is not one."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


def bootstrap_admin(auth: Authenticator, audit: AuditStorage) -> str:
    """Create user `admin` from DEPOT_ADMIN_PASSWORD at first start. Returns what happened:
    "created", "exists" (some admin user exists), "absent" (none, and no password given) or
    "refused: <reason>"."""
    password = os.environ.get("DEPOT_ADMIN_PASSWORD")
    has_admin = auth.users.any_admin()
    if not password or auth.users.user_exists("admin"):
        return "exists" if has_admin else "absent"
    try:
        auth.users.add_user("admin", password, admin=True)
    except UserError as exc:
        if "exists" in str(exc):
            return "exists"
        return "exists" if has_admin else f"refused: {exc}"
    audit.record("user.add", "ok", "system", None, None, user="admin", admin=True)
    logging.getLogger("depot.server").info("created admin user from DEPOT_ADMIN_PASSWORD")
    return "created"


def setup(app: web.Application) -> None:
    """Register the token and audit endpoints (auth itself is created at startup)."""
    app.router.add_get("/-/token", docker_token)
    app.router.add_get("/v2/token", docker_token)
    app.router.add_get("/-/api/audit", audit_endpoint)

"""The administration API under /-/api/v1/ (JSON; errors as RFC 9457 problem details; cursor
pagination). The model is proxy/admin_ops.py (shared with the CLI); the OpenAPI 3.1 document
describing every endpoint is proxy/admin_openapi.py, served at /-/api/v1/openapi.json.

Package names and versions are path segments, percent-encoded (`@scope%2Fname`, `lib%2Falpine`);
a version that is empty (a generic file is its own package) is written `-`."""
from __future__ import annotations

import functools
import json
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import cleanup
from .access import AUDIT, AUTH
from .admin_ops import Admin, AdminError
from .admin_openapi import document
from .auth import BadCredentials
from .units import parse_duration

PREFIX = "/-/api/v1"
Context = Callable[[], tuple[Any, dict[str, Any]]]       # () -> (services, formats)
CONTEXT: web.AppKey[Context] = web.AppKey("admin_context", object)  # type: ignore[arg-type]
PROBLEM = "application/problem+json"
Handler = Callable[[web.Request, Admin], Awaitable[Any]]


def problem(status: int, title: str, detail: str, instance: str | None = None) -> web.Response:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    headers = {"WWW-Authenticate": 'Basic realm="depot"'} if status == 401 else {}
    return web.Response(status=status, body=json.dumps(body), content_type=PROBLEM, headers=headers)


def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Identify the caller, build their Admin view, run the handler; errors as problem details."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        auth = request.app[AUTH]
        try:
            principal = await auth.identify(request.headers)
        except BadCredentials as exc:
            return problem(401, "Unauthorized", f"authentication failed: {exc}", request.path)
        services, formats = request.app[CONTEXT]()
        admin = Admin(services, formats, functools.partial(auth.allowed, principal), principal.label,
                      request.app[AUDIT], request.remote, anonymous=principal.anonymous)
        try:
            result = await handler(request, admin)
        except AdminError as exc:
            return problem(exc.status, exc.title, exc.detail, request.path)
        return web.json_response(result, headers={"Cache-Control": "no-store"})
    return wrapper


def _version(raw: str) -> str:
    return "" if raw == "-" else raw


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AdminError(400, "Bad parameter", f"{name} must be an integer") from None
    if value < 1:
        raise AdminError(400, "Bad parameter", f"{name} must be at least 1")
    return value


def _duration(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_duration(raw)
    except (ValueError, TypeError) as exc:
        raise AdminError(400, "Bad parameter", f"{name}: {exc}") from None


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise AdminError(400, "Bad parameter", f"{name} must be true or false")
    return raw in ("true", "1")


@endpoint
async def list_packages(request: web.Request, admin: Admin) -> Any:
    q = request.query
    return await admin.packages(q.get("repository") or None, q.get("format") or None, q.get("q") or None,
                                q.get("sort") or "name", q.get("cursor") or None, _int(request, "limit", 100))


@endpoint
async def show_package(request: web.Request, admin: Admin) -> Any:
    return await admin.package(request.match_info["repo"], request.match_info["name"])


@endpoint
async def show_version(request: web.Request, admin: Admin) -> Any:
    m = request.match_info
    return await admin.version(m["repo"], m["name"], _version(m["version"]))


@endpoint
async def delete_version(request: web.Request, admin: Admin) -> Any:
    m = request.match_info
    return await admin.delete_version(m["repo"], m["name"], _version(m["version"]), request.query.get("file") or None)


@endpoint
async def list_images(request: web.Request, admin: Admin) -> Any:
    return await admin.images(request.query.get("repository") or None)


@endpoint
async def list_tags(request: web.Request, admin: Admin) -> Any:
    return await admin.tags(request.match_info["repo"], request.match_info["image"])


@endpoint
async def delete_tags(request: web.Request, admin: Admin) -> Any:
    regex = request.query.get("regex")
    if regex is None:
        raise AdminError(400, "Bad parameter", "regex is required (e.g. ^dev- ; .* for every tag)")
    return await admin.delete_tags(request.match_info["repo"], request.match_info["image"], regex,
                                   _flag(request, "dry_run"))


@endpoint
async def show_cache(request: web.Request, admin: Admin) -> Any:
    q = request.query
    return await admin.cache(request.match_info["repo"], _duration(request, "older_than"), q.get("q", ""),
                             q.get("cursor") or None, _int(request, "limit", 100))


@endpoint
async def purge_cache(request: web.Request, admin: Admin) -> Any:
    return await admin.purge(request.match_info["repo"], _duration(request, "older_than"),
                             request.query.get("q", ""), _flag(request, "dry_run"))


@endpoint
async def show_cleanup(request: web.Request, admin: Admin) -> Any:
    runs = cleanup.last_runs(admin.services.settings.data_dir)
    items = []
    for repo in sorted(admin.services.repos.values(), key=lambda r: r.name):
        if repo.is_group or not admin.allowed(repo, "read"):
            continue
        items.append({"repository": repo.name, "format": repo.format, "type": repo.type,
                      "policy": policy_json(repo), "last_run": runs.get(repo.name)})
    return {"items": items}


@endpoint
async def run_cleanup(request: web.Request, admin: Admin) -> Any:
    results = await cleanup.run(admin, request.query.get("repository") or None, _flag(request, "dry_run"))
    return {"items": results}


def policy_json(repo: Any) -> dict[str, Any]:
    r = repo.retention
    c = r.cleanup
    return {"cleanup": {k: getattr(c, k) for k in ("keep_n", "older_than", "name_regex", "name_regex_keep",
                                                    "keep_recently_used", "unused_for", "schedule")},
            "duplicates": r.duplicates, "duplicates_exception_regex": r.duplicates_exception_regex,
            "protected": [{"pattern": p.pattern, "perm": p.perm} for p in r.protected],
            "immutable_tags": list(r.immutable_tags)}


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(document(), headers={"Cache-Control": "no-store"})


ROUTES = (
    ("GET", "/packages", list_packages),
    ("GET", "/packages/{repo}/{name}", show_package),
    ("GET", "/packages/{repo}/{name}/{version}", show_version),
    ("DELETE", "/packages/{repo}/{name}/{version}", delete_version),
    ("GET", "/images", list_images),
    ("GET", "/images/{repo}/{image}/tags", list_tags),
    ("DELETE", "/images/{repo}/{image}/tags", delete_tags),
    ("GET", "/cache/{repo}", show_cache),
    ("DELETE", "/cache/{repo}", purge_cache),
    ("GET", "/cleanup", show_cleanup),
    ("POST", "/cleanup", run_cleanup),
)


async def not_found(request: web.Request) -> web.Response:
    return problem(404, "Not Found", f"no API endpoint {request.method} {request.path}", request.path)


def setup(app: web.Application, context: Context) -> None:
    """Register the API (before the repository routes)."""
    app[CONTEXT] = context
    app.router.add_get(PREFIX + "/openapi.json", openapi)
    for method, path, handler in ROUTES:
        app.router.add_route(method, PREFIX + path, handler)
    app.router.add_route("*", PREFIX + "/{tail:.*}", not_found)

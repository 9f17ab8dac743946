"""The aiohttp application: /-/ service endpoints and /<repo>/… dispatched to formats."""
from __future__ import annotations

import asyncio

import logging
import os
import re
import tempfile
from typing import Awaitable, Callable

from aiohttp import web

from depot.cache import metrics
from depot.cache.services import EngineSettings, Services
from depot.upstreams.client import without_credentials
from depot.registry import FORMATS
from depot.registry.base import Ctx, Format, FormatError, Route

from . import access, observe, ui
from .auth import Authenticator
from .config import Config
from .lockout import LockoutPolicy
from .users import AuditLog

log = logging.getLogger("depot.app")

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
FORMAT_INSTANCES: web.AppKey[dict[str, Format]] = web.AppKey("formats", dict)
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def settings_of(config: Config) -> EngineSettings:
    return EngineSettings(
        data_dir=config.data_dir, max_size=config.cache.max_size, memory_size=config.cache.memory_size,
        memory_item_max=config.cache.memory_item_max, connect_timeout=config.upstream.connect_timeout,
        read_timeout=config.upstream.read_timeout, retries=config.upstream.retries,
        ca_file=config.upstream.ca_file, client_timeout=config.client_timeout, workers=config.workers,
        public_url=config.public_url, trusted_proxies=config.trusted_proxies,
        policy=config.policy, osv_severity=config.osv_severity,
        storage_kind=config.storage.kind, s3=config.storage.s3_settings(), database_url=config.database_url,
        node_url=config.node_url or f"http://{config.listen}")


HEALTH_TIMEOUT = 5.0


async def healthz(request: web.Request) -> web.Response:
    """200 when the store is writable."""
    services = request.app[SERVICES]
    try:
        fd, name = tempfile.mkstemp(dir=services.blobs.tmp, prefix="healthz-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return web.Response(status=503, text=f"store not writable: {exc.strerror}\n")
    storage = services.storage
    if storage.kind == "local" and storage.db is storage.local_db:
        return web.Response(text="ok\n")
    # several nodes: the shared database and bucket must be reachable too
    async def check(component: str) -> str:
        try:
            return await asyncio.wait_for(asyncio.to_thread(storage.check, component), HEALTH_TIMEOUT)
        except asyncio.TimeoutError:
            return "timed out"
    names = ("database", "storage")
    checks = dict(zip(names, await asyncio.gather(*(check(n) for n in names)), strict=True))
    healthy = all(v == "ok" for v in checks.values())
    lines = "".join(f"{name}: {verdict}\n" for name, verdict in checks.items())
    return web.Response(status=200 if healthy else 503, text=("ok\n" if healthy else "unhealthy\n") + lines)


async def internal_flight(request: web.Request) -> web.StreamResponse:
    """Another node of the cluster relays this node's fetch in progress (cache/relay.py)."""
    return await request.app[SERVICES].pull.serve_flight(request, request.match_info["fid"])


async def metrics_endpoint(_: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def repositories(request: web.Request) -> web.Response:
    """JSON list of repositories with format, type, entry count and bytes."""
    services = request.app[SERVICES]
    proxy_stats = await services.entries.stats()
    rows = await services.meta_db.execute(
        "SELECT repo, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM files GROUP BY repo")
    hosted_stats = {r["repo"]: {"entries": r["n"], "bytes": r["bytes"]} for r in rows}
    listing = []
    for repo in services.repos.values():
        stat = (proxy_stats if repo.is_proxy else hosted_stats).get(repo.name, {"entries": 0, "bytes": 0})
        item = {"name": repo.name, "format": repo.format, "type": repo.type, **stat}
        if repo.is_proxy:
            item["upstream"] = without_credentials(repo.upstream or "")
        if repo.is_group:
            item["members"] = list(repo.members)
            item["deploy_to"] = repo.deploy_to
        listing.append(item)
    return web.json_response(listing)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route /<repo>/<path> to the repository's format."""
    services = request.app[SERVICES]
    name = request.match_info["repo"]
    repo = services.repos.get(name)
    if repo is None:
        raise web.HTTPNotFound(text=f"no repository named {name!r}\n")
    fmt = request.app[FORMAT_INSTANCES][repo.format]
    return await run_format(request, fmt, repo, request.match_info["tail"], f"/{name}")


async def run_format(request: web.Request, fmt: Format, repo, path: str, mount: str,
                     found: tuple[Route, re.Match[str]] | None = None) -> web.StreamResponse:
    """Find the route (unless given) and call the handler; FormatError becomes the format's
    error shape."""
    services = request.app[SERVICES]
    found = found or fmt.match(repo, request.method, path)
    ctx = None
    try:
        if found is None:
            allowed = sorted(set(fmt.allowed_methods(repo, path)))
            if allowed:
                response = fmt.error(None, 405, f"{request.method} not allowed here")
                response.headers["Allow"] = ", ".join(allowed)
                return response
            raise FormatError(404, f"no such endpoint in {repo.format} repository {repo.name}")
        route, match = found
        principal, denied, repo = await access.authorize(request, fmt, repo, route,
                                                   services.public_base(request) + mount)
        if denied is not None:
            return denied
        ctx = Ctx(request, repo, path, match, services, mount=mount, extra={"principal": principal, "format": fmt})
        handler: Callable[[Ctx], Awaitable[web.StreamResponse]] = getattr(fmt, route.handler)
        response = await handler(ctx)
        access.record_outcome(request, route, repo, principal, response.status)
        if not repo.is_hosted and not response.prepared and "X-Cache" not in response.headers:
            response.headers["X-Cache"] = "MISS"       # every proxy and group answer says where it came from
        return response
    except FormatError as exc:
        response = fmt.error(ctx, exc.status, exc.message, exc.code)
        response.headers.update(exc.headers)
        if not repo.is_hosted and "X-Cache" not in response.headers:
            response.headers["X-Cache"] = exc.x_cache or "MISS"
        return response
    except ConnectionResetError:
        # the client went away mid-request (e.g. an interrupted upload): nothing to answer
        log.info("client disconnected repo=%s method=%s path=%s", repo.name, request.method, path)
        return web.Response(status=499)


def with_hot_path(app: web.Application, handler: RequestHandler) -> RequestHandler:
    """Wrap the server's request handler: repeat hits on small proxy bodies are answered before
    routing and middlewares (the cost of those is most of a 1 KiB hit); the rest goes on."""
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            path = request.path
            end = path.find("/", 1)
            services = app.get(SERVICES)
            repo = services.repos.get(path[1:end]) if end > 1 and services is not None else None
            if repo is not None and repo.is_proxy and app[access.AUTH].anonymous_can_read(repo):
                hot = services.pull.hot_response(request, repo)  # type: ignore[union-attr]
                if hot is not None:
                    observe.RESPONSE_COUNTS.add((repo.name, repo.format, "200"))
                    return hot
        return await handler(request)
    return handle


def build_app(config: Config) -> web.Application:
    """The application for one process; services open on startup and close on cleanup."""
    app = web.Application(client_max_size=10 * 2**20)
    app[FORMAT_INSTANCES] = {name: cls() for name, cls in FORMATS.items()}

    async def services_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        services = Services(settings_of(config), config.repositories)
        app[SERVICES] = services
        policy = LockoutPolicy(config.login_max_failures, config.login_window, config.login_lockout)
        auth = Authenticator(services.db, config.data_dir, config.repositories, config.open_access, policy)
        audit = AuditLog(config.data_dir / "audit.log")
        app[access.AUTH], app[access.AUDIT] = auth, audit
        services.auth, services.audit = auth, audit    # for format handlers (npm login, …)
        services.policy.audit = lambda d: audit.record(
            f"policy-{d.action}", "denied" if d.mode == "enforce" else "reported", None, None, d.repository,
            package=d.package, version=d.version, rule=d.rule, mode=d.mode)
        await services.start()
        for fmt in app[FORMAT_INSTANCES].values():
            await fmt.start(services)
        yield
        for fmt in app[FORMAT_INSTANCES].values():
            await fmt.close()
        await services.close()

    app.cleanup_ctx.append(services_ctx)
    app.router.add_get("/-/healthz", healthz)
    app.router.add_get("/-/metrics", metrics_endpoint)
    app.router.add_get("/-/api/repositories", repositories)
    app.router.add_get("/-/internal/flight/{fid:[0-9a-f]{64}}", internal_flight)
    access.setup(app)
    ui.setup(app)  # web UI under /-/ui/, /-/api/stats, response-code metrics, process metrics
    if "oci" in FORMATS:
        app.router.add_route("*", "/v2{tail:.*}", dispatch_v2)
    app.router.add_route("*", "/{repo:[a-z0-9][a-z0-9._-]*}/{tail:.*}", dispatch)
    app.router.add_route("*", "/{tail:.*}", dispatch_root)
    return app


async def dispatch_root(request: web.Request) -> web.StreamResponse:
    """Paths outside /<repo>/ that a format declares in its root_routes."""
    path = request.match_info["tail"]
    services = request.app[SERVICES]
    for fmt in request.app[FORMAT_INSTANCES].values():
        for route in fmt.root_routes:
            match = route.pattern.match(path)
            if match is None or request.method not in route.methods:
                continue
            repo = fmt.root_repository(services.repos)
            if repo is not None:
                return await run_format(request, fmt, repo, path, f"/{repo.name}", (route, match))
    raise web.HTTPNotFound(text=f"no repository or endpoint at /{path}\n")


async def dispatch_v2(request: web.Request) -> web.StreamResponse:
    """OCI clients address /v2/<repo>/<image…>/… (or /v2/<image…>/… on a mirror repository)."""
    fmt = request.app[FORMAT_INSTANCES]["oci"]
    return await fmt.dispatch_v2(request, request.app[SERVICES], run_format)  # type: ignore[attr-defined]

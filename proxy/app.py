"""The aiohttp application: /-/ service endpoints and /<repo>/… dispatched to formats."""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from depot.cache.metrics import VIA_GROUP

from aiohttp import web

from depot.cache import stats
from depot.cache.api import Conflict, Protected
from depot.cache.services import EngineSettings, Services
from depot.upstreams.client import without_credentials
from depot.registry import FORMATS
from depot.registry.base import BODY_IDLE, Ctx, Format, FormatError, Route

from . import access, admin_api, cleanup, forward, health, observe, policy_api, ui, visibility
from .admin_ops import Admin
from .auth import Authenticator
from .config import Config
from depot.cache.lockout import LockoutPolicy

log = logging.getLogger("depot.app")

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
FORMAT_INSTANCES: web.AppKey[dict[str, Format]] = web.AppKey("formats", dict)
SERVICES_CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
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




async def internal_flight(request: web.Request) -> web.StreamResponse:
    """Another node of the cluster relays this node's fetch in progress (cache/relay.py)."""
    return await request.app[SERVICES].pull.serve_flight(request, request.match_info["fid"])


async def repositories(request: web.Request) -> web.Response:
    """JSON list of the repositories the caller may read, with format, type, entries and bytes."""
    services = request.app[SERVICES]
    may_read = await visibility.readable(request)
    proxy_stats = await services.entries.stats()
    hosted_stats = await stats.hosted_stats(services.meta_db)
    listing = []
    for repo in filter(may_read, services.repos.values()):
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
                                                         services.public_base(request) + mount,
                                                         access.oci_scope_name(mount, match))
        if denied is not None:
            return denied
        auth = request.app[access.AUTH]
        if repo.is_group:
            request[VIA_GROUP] = repo        # members' answers also count as served by the group
        # handlers re-check the caller on any other repository they switch to (Ctx.member)
        ctx = Ctx(request, repo, path, match, services, mount=mount,
                  extra={"principal": principal, "format": fmt, "perm": access.required_perm(route, request.method),
                         "allowed": functools.partial(auth.allowed, principal)})
        handler: Callable[[Ctx], Awaitable[web.StreamResponse]] = getattr(fmt, route.handler)
        response = await handler(ctx)
        access.record_outcome(request, route, repo, principal, response.status, ctx.extra.get("audit_action"))
        if not repo.is_hosted and not response.prepared and "X-Cache" not in response.headers:
            response.headers["X-Cache"] = "MISS"       # every proxy and group answer says where it came from
        return response
    except FormatError as exc:
        response = fmt.error(ctx, exc.status, exc.message, exc.code)
        response.headers.update(exc.headers)
        if "X-Depot-Policy" in exc.headers:   # clients that print only the status line show why
            response.set_status(exc.status, _reason_phrase(exc.message))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = fmt.challenge(services.public_base(request) + mount)
        if not repo.is_hosted and "X-Cache" not in response.headers:
            response.headers["X-Cache"] = exc.x_cache or "MISS"
        return response
    except (Protected, Conflict) as exc:
        # a retention rule refused a write or delete the handler did not wrap (engine_errors):
        # the format's own error shape, never a 500
        status = 403 if isinstance(exc, Protected) else 409
        return fmt.error(ctx, status, str(exc), "DENIED" if status == 403 else None)
    except ConnectionResetError:
        # the client went away mid-request (e.g. an interrupted upload): nothing to answer
        log.info("client disconnected repo=%s method=%s path=%s", repo.name, request.method, path)
        return web.Response(status=499)
    except Exception as exc:
        if not health.storage_full(exc):
            raise
        log.error("disk full repo=%s method=%s path=%s: %s", repo.name, request.method, path, exc)
        return fmt.error(ctx, 507, health.FULL_MESSAGE)


def _reason_phrase(message: str) -> str:
    """A message usable as an HTTP reason phrase (one line of printable ASCII, bounded)."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in message.splitlines()[0] if message)
    return text[:200] or "Forbidden"


def absolute_form(request: web.BaseRequest, mapped: list[forward.Mapping],
                  own_hosts: frozenset[str]) -> web.BaseRequest | web.Response:
    """A request whose target is an absolute URI (a client using depot as its plain HTTP proxy,
    e.g. apt's Acquire::http::Proxy, the apt-cacher-ng way): answered by the proxy repository whose
    upstream serves that URL, as if asked `/<repo>/<path>`; depot's own URLs (a name of this
    machine, or the public URL's host, on the port the request came in on) as usual; other hosts
    are refused (depot is not an open proxy)."""
    url = request.message.url
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = (str(sockname[0]), int(sockname[1])) if sockname else (request.host, url.port)
    target = forward.route(mapped, str(url))
    if target is None and not (url.port == port and (url.host or "").strip("[]") in own_hosts | {host}):
        return web.Response(status=403, text=f"depot: no proxy repository serves {url.host}\n")
    headers = request.headers.copy()
    headers["Host"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return request.clone(rel_url=target or url.path_qs, headers=headers)


def own_host_names(config: Config) -> frozenset[str]:
    """Names an absolute URI may give this machine (for requests to depot itself)."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    if config.public_url:
        names.add(urlsplit(config.public_url).hostname or "")
    return frozenset(n for n in names if n)


def with_hot_path(app: web.Application, handler: RequestHandler) -> RequestHandler:
    """Wrap the server's request handler: repeat hits on small proxy bodies are answered before
    routing and middlewares (the cost of those is most of a 1 KiB hit); the rest goes on.
    Absolute-URI requests (depot as a plain HTTP proxy) are mapped first."""
    mapped = forward.mappings(app[SERVICES_CONFIG].repositories.values())
    own_hosts = own_host_names(app[SERVICES_CONFIG])

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.message.url.is_absolute():
            mapped_request = absolute_form(request, mapped, own_hosts)
            if isinstance(mapped_request, web.Response):
                return mapped_request
            request = mapped_request
        if request.method in ("GET", "HEAD"):
            path = request.path
            end = path.find("/", 1)
            services = app.get(SERVICES)
            repo = services.repos.get(path[1:end]) if end > 1 and services is not None else None
            if (repo is not None and repo.is_proxy and app[access.AUTH].anonymous_can_read(repo)
                    and not _policy_applies(services, repo)):
                hot = services.pull.hot_response(request, repo)  # type: ignore[union-attr]
                if hot is not None:
                    observe.RESPONSE_COUNTS.add((repo.name, repo.format, "200"))
                    return hot
        return await handler(request)
    return handle


def _policy_applies(services: Services, repo) -> bool:  # type: ignore[no-untyped-def]
    """Whether a rule or advisory may refuse files of `repo`: then every request goes through the
    format's check (advisories imported at run time can deny a file that was hot a moment ago)."""
    policy = services.policy
    return policy.policy_for(repo).active or bool(policy.advisories.get(repo.format))


def build_app(config: Config) -> web.Application:
    """The application for one process; services open on startup and close on cleanup."""
    app = web.Application(client_max_size=10 * 2**20)
    app[FORMAT_INSTANCES] = {name: cls() for name, cls in FORMATS.items()}
    app[BODY_IDLE] = config.client_timeout      # body_chunks' idle limit for every upload path
    app[health.HEALTH], app[health.STORE_TMP] = config.health, config.data_dir / "tmp"
    app.middlewares.append(health.disk_full)
    app[SERVICES_CONFIG] = config

    async def services_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        services = Services(settings_of(config), config.repositories)
        app[SERVICES] = services
        policy = LockoutPolicy(config.login_max_failures, config.login_window, config.login_lockout)
        audit = services.storage.audit         # the node's file, or the shared database's rows
        auth = Authenticator(services.storage.accounts, config.data_dir, config.repositories, config.open_access,
                             policy, audit, config.login_token_ttl)
        app[access.AUTH], app[access.AUDIT] = auth, audit
        services.auth, services.audit = auth, audit    # for format handlers (npm login, …)
        services.policy.audit = lambda d: audit.record(
            f"policy-{d.action}", "denied" if d.mode == "enforce" else "reported", None, None, d.repository,
            package=d.package, version=d.version, rule=d.rule, mode=d.mode)
        await services.start()
        for fmt in app[FORMAT_INSTANCES].values():
            await fmt.start(services)
        schedule = asyncio.get_running_loop().create_task(cleanup.schedule_loop(
            lambda: Admin(services, app[FORMAT_INSTANCES], lambda repo, perm: True, "cleanup", audit),
            config.data_dir))
        yield
        schedule.cancel()
        for fmt in app[FORMAT_INSTANCES].values():
            await fmt.close()
        await services.close()

    app.cleanup_ctx.append(services_ctx)
    app.router.add_get("/-/healthz", health.healthz)
    app[visibility.METRICS_POLICY] = visibility.MetricsPolicy(config.metrics_anonymous, config.metrics_users)
    app.router.add_get("/-/metrics", visibility.metrics_endpoint)
    app.router.add_get("/-/api/repositories", repositories)
    app.router.add_get("/-/internal/flight/{fid:[0-9a-f]{64}}", internal_flight)
    access.setup(app)
    policy_api.setup(app)
    admin_api.setup(app, lambda: (app[SERVICES], app[FORMAT_INSTANCES]))   # /-/api/v1/
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

"""The seam between the front door and a format: routes, a request context, and errors.

A format module defines one Format subclass whose `routes` table maps
(methods, path regex, repository types) to handler methods. The path a handler
sees is the part after `/<repo>/`. Handlers get a Ctx and return an aiohttp
response; they use the engine services on `ctx.services` and never touch app setup.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar, Iterable

from aiohttp import web

from .repo import RepoConfig

if TYPE_CHECKING:  # pragma: no cover
    from depot.cache.services import Services

Handler = Callable[["Format", "Ctx"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One entry of a format's routing table."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str                      # name of the Format method
    types: frozenset[str] = frozenset({"hosted", "proxy", "group"})
    perm: str | None = None           # permission needed; None: read for GET/HEAD, delete for
                                      # DELETE, write otherwise; "none": anyone (e.g. a login)


def route(methods: str, pattern: str, handler: str, types: str = "hosted proxy group",
          perm: str | None = None) -> Route:
    """Build a Route: `route("GET HEAD", r"(?P<path>.+)", "get_file", "hosted group")`."""
    return Route(frozenset(methods.split()), re.compile(pattern + r"\Z"), handler, frozenset(types.split()),
                 perm)


@dataclass
class Ctx:
    """Everything a handler needs about the request it answers."""

    request: web.Request
    repo: RepoConfig
    path: str                          # the part after /<repo>/ (still percent-decoded by aiohttp)
    match: re.Match[str]
    services: "Services"
    mount: str = ""                     # URL prefix of this repository, e.g. "/pypi"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Absolute public URL of this repository's mount point (no trailing slash)."""
        return self.services.public_base(self.request) + self.mount

    def member(self, name: str) -> RepoConfig:
        return self.services.repos[name]

    def for_repo(self, repo: RepoConfig) -> "Ctx":
        """The same request seen by another repository (a group's member)."""
        return Ctx(self.request, repo, self.path, self.match, self.services,
                   mount=self.mount, extra=self.extra)


BODY_IDLE_TIMEOUT = 60.0
MIN_BODY_PROGRESS = 1024        # bytes an upload must advance by within each idle window
# the configured body idle timeout (config client_timeout), set by the front door on the app
BODY_IDLE: web.AppKey[float] = web.AppKey("body_idle", float)


async def body_chunks(request: web.Request, limit: int, idle: float | None = None,
                      chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The request body in chunks; 413 past `limit` bytes, 408 when the client stalls: it spent
    `idle` s (default: the configured client_timeout) of waiting without sending MIN_BODY_PROGRESS
    bytes, so a trickle of a byte every few seconds is cut off like silence is."""
    if idle is None:
        idle = request.config_dict.get(BODY_IDLE, BODY_IDLE_TIMEOUT)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise FormatError(413, f"body of {declared} bytes is larger than the limit of {limit}")
    loop = asyncio.get_running_loop()
    seen, waited, progress = 0, 0.0, 0      # waited: time spent waiting for the client this window
    while True:
        started = loop.time()
        try:
            chunk = await asyncio.wait_for(request.content.read(chunk_size), timeout=max(idle - waited, 0.01))
        except asyncio.TimeoutError:
            raise FormatError(408, f"client sent less than {MIN_BODY_PROGRESS} bytes in {idle:.0f} s") from None
        if not chunk:
            return
        waited += loop.time() - started
        progress += len(chunk)
        if progress >= MIN_BODY_PROGRESS:
            waited, progress = 0.0, 0
        seen += len(chunk)
        if seen > limit:
            raise FormatError(413, f"body larger than the limit of {limit} bytes")
        yield chunk


class FormatError(Exception):
    """Raised by handlers and parsers; rendered in the format's own error shape."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class Format:
    """Base class of every format; subclasses set `name` and `routes`."""

    name: ClassVar[str] = ""
    routes: ClassVar[tuple[Route, ...]] = ()

    @classmethod
    def default_upstream(cls) -> str | None:
        """Upstream used by a proxy repository that names none (None: must be configured)."""
        return None

    @classmethod
    def forward_prefixes(cls, repo: RepoConfig) -> list[tuple[str, str]]:
        """For forward-proxy mode: (absolute URL prefix, path under /<repo>/) pairs this proxy
        repository answers for. Default: its upstream maps onto the repository's root."""
        return [(repo.upstream, "")] if repo.upstream else []

    def match(self, repo: RepoConfig, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        """First route accepting this method, path and repository type."""
        for entry in self.routes:
            if method in entry.methods and repo.type in entry.types:
                found = entry.pattern.match(path)
                if found:
                    return entry, found
        return None

    def allowed_methods(self, repo: RepoConfig, path: str) -> Iterable[str]:
        """Methods that some route would accept on this path (for 405 answers)."""
        for entry in self.routes:
            if repo.type in entry.types and entry.pattern.match(path):
                yield from entry.methods

    def challenge(self, base_url: str) -> str:
        """WWW-Authenticate value sent with a 401 (Basic by default)."""
        return 'Basic realm="depot"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The format's error shape; plain text by default."""
        return web.Response(status=status, text=message.rstrip("\n") + "\n",
                            headers={"Cache-Control": "no-store"})

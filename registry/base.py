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

    def permits(self, repo: RepoConfig, perm: str) -> bool:
        """Whether the caller may `perm` (read, write, delete, admin) on `repo`.

        The front door (run_format) puts the caller's check in `extra["allowed"]`; a Ctx
        built without one (unit tests of pure handlers) is unrestricted.
        """
        check = self.extra.get("allowed")
        return True if check is None else bool(check(repo, perm))

    def require(self, perm: str, repo: RepoConfig | None = None) -> RepoConfig:
        """`repo` (default: this one) if the caller may `perm` it, else FormatError.

        Anonymous callers get 401; others 404 for an unreadable repository (as if it held
        nothing, like a group's read view) and 403 for a missing write/delete right.
        """
        repo = repo or self.repo
        if self.permits(repo, perm):
            return repo
        principal = self.extra.get("principal")
        anonymous = bool(getattr(principal, "anonymous", False))
        audit = getattr(self.services, "audit", None)
        if audit is not None:
            audit.record({"write": "publish"}.get(perm, perm), "denied", getattr(principal, "label", None),
                         self.request.remote, repo.name, method=self.request.method, path=self.request.path)
        if anonymous:
            raise FormatError(401, f"authentication required to {perm} {repo.name}", "UNAUTHORIZED")
        if perm == "read":
            raise FormatError(404, f"not found in {self.repo.name}")
        raise FormatError(403, f"{getattr(principal, 'label', 'caller')} may not {perm} {repo.name}", "DENIED")

    def member(self, name: str, perm: str = "read") -> RepoConfig:
        """Another repository (a group's member), after checking the caller may `perm` it."""
        return self.require(perm, self.services.repos[name])

    def deploy_target(self, perm: str | None = None) -> "Ctx":
        """This request seen by the repository that writes land in: a group's deploy_to member
        (checked for `perm`, default the permission the route needed), else this repository."""
        if not self.repo.is_group:
            return self
        if not self.repo.deploy_to:
            raise FormatError(405, f"group {self.repo.name} has no deploy_to member")
        return self.for_repo(self.member(self.repo.deploy_to, perm or self.extra.get("perm") or "read"))

    def for_repo(self, repo: RepoConfig) -> "Ctx":
        """The same request seen by another repository (a group's member)."""
        return Ctx(self.request, repo, self.path, self.match, self.services,
                   mount=self.mount, extra=self.extra)


BODY_IDLE_TIMEOUT = 60.0


async def body_chunks(request: web.Request, limit: int, idle: float = BODY_IDLE_TIMEOUT,
                      chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The request body in chunks; 413 past `limit` bytes, 408 when the client stalls for `idle` s."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise FormatError(413, f"body of {declared} bytes is larger than the limit of {limit}")
    seen = 0
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.read(chunk_size), timeout=idle)
        except asyncio.TimeoutError:
            raise FormatError(408, f"client sent nothing for {idle:.0f} s") from None
        if not chunk:
            return
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

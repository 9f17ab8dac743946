"""The seam between the front door and a format: routes, a request context, and errors.

A format module defines one Format subclass whose `routes` table maps
(methods, path regex, repository types) to handler methods. The path a handler
sees is the part after `/<repo>/`. Handlers get a Ctx and return an aiohttp
response. They reach the engine only through the Ctx: `ctx.pull` (pull-through),
`ctx.hosted` (published files), `ctx.body()`, the group helpers and `ctx.documents`;
API.md documents the contract; no format module reads `ctx.services` (tests/test_format_seam.py).
"""
from __future__ import annotations

import asyncio
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar, Iterable, Iterator, Mapping,
                    TypeVar)

from aiohttp import web

from depot.cache.api import (Cached, Conflict, DigestMismatch, FetchSpec, HostedApi, Kind, NotFound, PolicyHooks,
                             Protected, Published, PullApi, Staged, TooLarge, UpstreamFailed, merge_x_cache)
from depot.cache.documents import DocumentCache
from depot.cache.gate import VersionInfo

from .options import Option, parse_options
from .repo import RepoConfig

if TYPE_CHECKING:  # pragma: no cover
    from depot.cache.services import Services

T = TypeVar("T")

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
        if self.repo.is_proxy:
            raise FormatError(405, f"proxy repository {self.repo.name} does not accept uploads")
        if not self.repo.is_group:
            return self
        if not self.repo.deploy_to:
            raise FormatError(405, f"group {self.repo.name} has no deploy_to member")
        return self.for_repo(self.member(self.repo.deploy_to, perm or self.extra.get("perm") or "read"))

    def for_repo(self, repo: RepoConfig) -> "Ctx":
        """The same request seen by another repository (a group's member)."""
        return Ctx(self.request, repo, self.path, self.match, self.services,
                   mount=self.mount, extra=self.extra)

    # ------------------------------------------------------------ the engine, bound to ctx.repo
    @property
    def format(self) -> "Format | None":
        """The format answering this request."""
        return self.extra.get("format")

    @property
    def pull(self) -> PullApi:
        """Pull-through for this (proxy) repository, with the format's policy hooks bound."""
        fmt = self.format
        hooks = None if fmt is None else PolicyHooks(fmt.version_scheme, fmt.metadata_versions, fmt.filter_metadata)
        return PullApi(self.services, self.repo, hooks)

    @property
    def hosted(self) -> HostedApi:
        """Published files of this (hosted) repository."""
        fmt = self.format
        return HostedApi(self.services, self.repo, self.services.settings.client_timeout,
                         package_of=None if fmt is None else fmt.package_of,
                         may=lambda perm: self.permits(self.repo, perm))

    @property
    def documents(self) -> DocumentCache:
        """Rendered documents, memory-budgeted; key them by what they are rendered from."""
        return self.services.documents

    @property
    def principal(self) -> Any:
        """Who is calling (proxy.auth.Principal), as access control identified them."""
        return self.extra.get("principal")

    def session_token(self, ttl: int) -> str:
        """A signed bearer token standing for the caller for `ttl` seconds, for clients that log in
        once and then send `Authorization: Bearer` (Conan); revoking the caller's token revokes it."""
        auth = getattr(self.services, "auth", None)
        principal = self.principal
        if auth is None or principal is None or getattr(principal, "anonymous", True):
            raise FormatError(401, "authentication required")
        return str(auth.session_token(principal, ttl))

    def allowed(self, repo: RepoConfig, perm: str) -> bool:
        """Whether the caller holds `perm` on `repo` (same as permits())."""
        return self.permits(repo, perm)

    def body(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The request body in chunks: 413 past `limit` (default the repository's max_upload),
        408 when the client stalls longer than the configured client_timeout."""
        return body_chunks(self.request, self.repo.max_upload if limit is None else limit,
                           self.services.settings.client_timeout)

    async def read_body(self, limit: int | None = None) -> bytes:
        """The whole request body (same limits as body())."""
        return b"".join([chunk async for chunk in self.body(limit)])

    # ------------------------------------------------------------ groups: one rule for every format
    def members(self) -> list["Ctx"]:
        """A group's members as the caller may read them, in configured order."""
        return [self.for_repo(self.member(name)) for name in self.repo.members]

    async def first_member(self, answer: Callable[["Ctx"], Awaitable[T]], what: str = "") -> T:
        """Ask each member in order; the first answer wins. When none has it: the first
        member failure that is not a 404 (an upstream down may hide the file), else 404."""
        failure: FormatError | None = None
        for member in self.members():
            try:
                return await answer(member)
            except FormatError as exc:
                if exc.status != 404 and failure is None:
                    failure = exc
        raise failure or FormatError(404, f"{what or self.path} not found in {self.repo.name}")

    async def each_member(self, answer: Callable[["Ctx"], Awaitable[T]],
                          what: str = "") -> list[tuple["Ctx", T]]:
        """Every member's answer, in order, for documents merged across members. Members that
        fail are left out while at least one answers; when none does, the rule of first_member."""
        results: list[tuple[Ctx, T]] = []
        failure: FormatError | None = None
        for member in self.members():
            try:
                results.append((member, await answer(member)))
            except FormatError as exc:
                if exc.status != 404 and failure is None:
                    failure = exc
        if not results:
            raise failure or FormatError(404, f"{what or self.path} not found in {self.repo.name}")
        return results

    # ------------------------------------------------------------ proxy conveniences
    async def open_upstream(self, spec: FetchSpec) -> Cached:
        """pull.open() with the engine's outcomes as FormatErrors (404, 502/504); a download of a
        version the supply-chain policy hides is refused (403, naming the rule)."""
        await self.check_policy(spec.key)
        try:
            return await self.pull.open(spec)
        except NotFound as exc:
            raise FormatError(404, f"{spec.key} not found upstream of {self.repo.name}",
                              x_cache=exc.x_cache) from None
        except UpstreamFailed as exc:
            raise FormatError(exc.status, f"upstream of {self.repo.name} failed: {exc.reason}") from None

    async def check_policy(self, key: str) -> None:
        """Refuse (403) a file of a version the policy hides; the format's package_of() names it."""
        fmt = self.format
        if fmt is None:
            return
        package_version = fmt.package_of(key)
        pull = self.pull
        if package_version is None or not pull.policy_active():
            return
        published = None
        if not pull.knows_publish_time(*package_version):
            published = await fmt.publish_time(self, *package_version)
        verdict = pull.check_download(key, package_version, published)
        if verdict is not None:
            raise FormatError(403, verdict.message(*package_version), code="DENIED",
                              headers={"X-Depot-Policy": verdict.header()})

    async def fetch_upstream(self, spec: FetchSpec) -> tuple[Cached, bytes]:
        """open_upstream() then the whole body (for metadata the format parses)."""
        cached = await self.open_upstream(spec)
        try:
            return cached, await self.pull.read(cached)
        except UpstreamFailed as exc:
            raise FormatError(exc.status, f"upstream of {self.repo.name} failed: {exc.reason}") from None

    async def publish(self, path: str, body: bytes | AsyncIterator[bytes], **kwargs: Any) -> Published:
        """ctx.hosted.publish() with its failures as FormatErrors (409, 400, 413)."""
        with engine_errors(self.repo):
            return await self.hosted.publish(path, body, **kwargs)

    async def stage(self, body: bytes | AsyncIterator[bytes] | None = None, expect_sha256: str | None = None,
                    max_size: int | None = None) -> Staged:
        """ctx.hosted.stage() of `body` (default: the request body, streamed with the limits)."""
        with engine_errors(self.repo):
            return await self.hosted.stage(self.body(max_size) if body is None else body, expect_sha256, max_size)

    async def record(self, path: str, staged: Staged, **kwargs: Any) -> Published:
        """ctx.hosted.record() of a staged upload, with its failures as FormatErrors."""
        with engine_errors(self.repo):
            return await self.hosted.record(path, staged.digest, staged.size, **kwargs)

    # ------------------------------------------------------------ added for OCI (issue 11)
    def repository(self, name: str) -> RepoConfig | None:
        """The configured repository `name` (None: no such repository), without any access
        check: ask allowed(repo, perm) before reading from it (OCI cross-repository mounts)."""
        return self.services.repos.get(name)

    def repositories(self, fmt: str | None = None) -> list[RepoConfig]:
        """Every configured repository (of format `fmt`), in configuration order, unchecked."""
        return [r for r in self.services.repos.values() if fmt is None or r.format == fmt]

    @property
    def client_timeout(self) -> float:
        """The idle timeout of request bodies (config `client_timeout`), for formats that read a
        body their own way (PyPI's multipart upload); body() and read_body() apply it already."""
        return float(self.services.settings.client_timeout)

    async def login(self, user: str, password: str, service: str) -> str | None:
        """A client's password login (legacy `npm login`): the authenticator's one password check
        (lockout and audit included), then an expiring token with the user's own rights (never
        admin), audited as a login. None when depot runs without an authenticator (open access);
        FormatError 401 for a wrong password or a locked name."""
        auth = getattr(self.services, "auth", None)
        if auth is None:
            return None
        try:
            principal = await auth.check_password(user, password, self.request.remote, service)
        except auth.Refused as exc:
            raise FormatError(401, f"login failed for {user}: {exc}") from None
        token = str(await auth.login_token(principal, f"{service} login"))
        audit = getattr(self.services, "audit", None)
        if audit is not None:
            audit.record("login", "ok", principal.label, self.request.remote, self.repo.name, service=service)
        return token


@contextmanager
def engine_errors(repo: RepoConfig) -> Iterator[None]:
    """Engine exceptions of hosted writes as FormatErrors: Conflict 409, Protected 403, DigestMismatch 400,
    TooLarge 413 (the format's error() renders them)."""
    try:
        yield
    except Conflict as exc:
        raise FormatError(409, str(exc)) from None
    except Protected as exc:
        raise FormatError(403, str(exc), "DENIED") from None
    except DigestMismatch as exc:
        raise FormatError(400, f"checksum mismatch: {exc}") from None
    except TooLarge:
        raise FormatError(413, f"upload larger than {repo.max_upload} bytes") from None


def x_cache_of(responses: Iterable[web.StreamResponse]) -> str | None:
    """The X-Cache of an answer merged from members' answers (one precedence for every format)."""
    return merge_x_cache(r.headers.get("X-Cache") for r in responses)


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


def standard_repositories(fmt: str, prefix: str | None = None) -> dict[str, dict[str, Any]]:
    """The usual trio for the embedded default: `<p>-remote` (proxy of the format's default
    upstream), `<p>-local` (hosted) and `<p>` (group of both, deploying to the hosted one)."""
    p = prefix or fmt
    return {f"{p}-remote": {"format": fmt, "type": "proxy"},
            f"{p}-local": {"format": fmt, "type": "hosted"},
            p: {"format": fmt, "type": "group", "members": [f"{p}-local", f"{p}-remote"],
                "deploy_to": f"{p}-local", "anonymous_read": True}}


class FormatError(Exception):
    """Raised by handlers and parsers; rendered in the format's own error shape."""

    def __init__(self, status: int, message: str, code: str | None = None, x_cache: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})
        self.x_cache = x_cache        # for proxy answers: HIT when a cached 404 (negative cache)


class Format:
    """Base class of every format; subclasses set `name` and `routes`."""

    name: ClassVar[str] = ""
    routes: ClassVar[tuple[Route, ...]] = ()
    # routes at depot's root, outside /<repo>/ (e.g. /.well-known/terraform.json); the handler's
    # ctx is bound to root_repository() and ctx.path is the path without its leading "/"
    root_routes: ClassVar[tuple[Route, ...]] = ()
    # typed per-repository options, validated when the config is loaded (see registry/options.py)
    options: ClassVar[Mapping[str, Option]] = {}
    # how the supply-chain policy reads version ranges of this format: pep440 | semver | maven | generic
    version_scheme: ClassVar[str] = "generic"
    # a deleted version's files keep their bytes reserved for good (tombstones; see admin_delete)
    immutable_versions: ClassVar[bool] = False

    @classmethod
    def parse_options(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The repository's `options:` checked against cls.options (ValueError names the key)."""
        return parse_options(cls.options, raw)

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        """Repositories of this format in the embedded default config (name -> raw settings)."""
        return {}

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm` for this format's lockfile: (jobs, notes) from registry.warm_plans, or
        None when this format does not read that file (the generic planners are tried then)."""
        return None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]] | None:
        """"How to use this repository" for the UI and README: (title, text) pairs with the
        repository's URL filled in (`insecure`: plain http, clients may need a flag); None: none."""
        return None

    def credentials(self, headers: Mapping[str, str]) -> str | None:
        """A token the format's clients send in a header of their own (X-NuGet-ApiKey, …);
        None when the standard Authorization header carries them."""
        return None

    def root_repository(self, repos: Mapping[str, RepoConfig]) -> RepoConfig | None:
        """The repository root routes answer for: the first one of this format whose options say
        `root: true`, else the first group, hosted, then proxy repository of this format."""
        mine = [r for r in repos.values() if r.format == self.name]
        flagged = [r for r in mine if r.options.get("root")]
        for candidates in (flagged, [r for r in mine if r.is_group], [r for r in mine if r.is_hosted], mine):
            if candidates:
                return candidates[0]
        return None

    # -------------------------------------------------------------- policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        """(package, version) a stored or proxied file belongs to, or None (an index, a
        document). The admin API groups files by it; the supply-chain policy refuses direct
        downloads of hidden versions with it."""
        return None

    async def admin_delete(self, hosted: HostedApi, package: str, version: str, paths: list[str]) -> None:
        """Delete one version (or tag) of a hosted package for the admin API and cleanup: `paths`
        are its files as package_of() grouped them. By default each file goes; formats whose
        index documents name versions (npm's packument, OCI manifests) override it. With
        `immutable_versions` the paths stay reserved for the bytes they held (tombstones)."""
        for path in paths:
            await hosted.delete(path, tombstone=self.immutable_versions)

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """The versions a metadata document offers clients to resolve from, with publish times
        where the document has them; None when `path` is not such a document."""
        return None

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        """The document without the hidden (package, version) pairs, kept consistent (latest
        tags, counts). Only called for paths metadata_versions() understood."""
        return body

    def metadata_key_for(self, package: str) -> str | None:
        """The key (path) of the proxy metadata document listing `package`'s versions, so a
        download the client found elsewhere (a lockfile) is still judged with its publish time."""
        return None

    async def publish_time(self, ctx: Ctx, package: str, version: str) -> float | None:
        """When `version` of `package` was published upstream (None: unknown); by default read
        from the metadata document at metadata_key_for(package), through the cache."""
        key = self.metadata_key_for(package)
        if key is None or not ctx.repo.is_proxy:
            return None
        try:
            cached = await ctx.pull.open(ctx.pull.spec(key, kind=Kind.METADATA))
            body = await ctx.pull.read(cached)
        except (NotFound, UpstreamFailed):
            return None
        for info in self.metadata_versions(key, body) or []:
            if info.package == package and info.version == version:
                return info.published
        return None

    async def start(self, services: "Services") -> None:
        """Called once per process after the engine started (background tasks, keys, …)."""

    async def close(self) -> None:
        """Called once per process before the engine closes."""

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

"""npm: packuments, tarballs, publish, dist-tags, deprecate, unpublish, search, audit relay.

Protocol translation only; the document work lives in npm_packument (pure) and the upload
checks in npm_publish (pure). A proxy fetches ONE document per package (the full packument),
stores it with its tarball index and tarball URLs on a placeholder base, and renders it per
client (abbreviated or not, on the client's own base URL), keeping the rendered bytes.
Every proxied tarball fetch is verified (see _proxy_tarball); everything derived from an
upstream is keyed by repository.
Hosted documents live in the catalog at `<name>/package.json`, tarballs at `<name>/-/<file>`.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
import shutil
import subprocess
import threading
from dataclasses import replace
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from cachetools import LRUCache

from depot.cache.api import ANY, Cached, FetchSpec, Kind, NotFound, UpstreamFailed, Write, respond_bytes

from . import npm_packument as pk
from . import npm_publish as pub
from . import npm_search
from .base import Ctx, Format, FormatError, engine_errors, route
from .npm_policy import decided_token, policy_filtered, publish_time_in
from .npm_search import json_response as _json
from .repo import RepoConfig

log = logging.getLogger("depot.npm")

NAME = r"(?P<name>@[^/]+/[^/]+|[^/@][^/]*)"
FILE = r"(?P<file>[^/]+\.tgz)"
REV = r"(?P<rev>[^/]+)"
_TARBALL_PATH = re.compile(r"(?:tarball/(?P<pname>@[^/]+/[^/]+|[^/@][^/]*)/|(?P<name>@[^/]+/[^/]+|[^/@][^/]*)/-/)"
                           r"(?P<file>[^/]+\.tgz)")
# Passing headers to pull.respond also keeps packuments out of the engine's hot path, which
# is keyed by request path alone: a packument's body depends on Accept and on the Host too.
METADATA_HEADERS = {"Cache-Control": "no-cache"}
TARBALL_TYPE = "application/octet-stream"
Mutate = Callable[[dict[str, Any]], Awaitable[list[Write]]]   # edits a hosted document
FILL_INDEXES = 4096                 # packuments whose tarball index is remembered from their fill


@functools.lru_cache(maxsize=1)
def npm_config_registry(timeout: float = 30.0) -> str | None:
    """What `npm config get registry` prints on this machine (None without npm)."""
    exe = shutil.which("npm")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "config", "get", "registry"], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    url = out.stdout.strip()
    return url.rstrip("/") if out.returncode == 0 and url.startswith(("http://", "https://")) else None


def _name(ctx: Ctx) -> str:
    name = pk.parse_name(ctx.match["name"])
    if name is None:
        raise FormatError(400, f"invalid package name {ctx.match['name']!r}")
    return name


def _file(ctx: Ctx, name: str) -> str:
    filename = ctx.match["file"]
    if not pk.TARBALL_FILE.match(filename) or not filename.startswith(pk.bare_name(name) + "-"):
        raise FormatError(400, f"invalid tarball name {filename!r} for {name}")
    return filename


class Npm(Format):
    name = "npm"
    version_scheme = "semver"
    routes = (
        route("GET HEAD", r"-/ping", "ping", perm="none"),
        route("GET", r"-/whoami", "whoami"),
        route("PUT", r"-/user/org\.couchdb\.user:(?P<user>[^/]+)", "add_user", perm="none"),
        route("POST", r"-/v1/login", "web_login", perm="none"),
        route("GET", r"-/v1/search", "search"),
        route("POST", r"-/npm/v1/security/(?P<rest>[a-z/]+)", "audit", perm="read"),
        route("GET HEAD", rf"-/package/{NAME}/dist-tags", "get_tags"),
        route("PUT DELETE", rf"-/package/{NAME}/dist-tags/(?P<tag>[^/]+)", "set_tag", "hosted group",
              perm="write"),
        route("GET HEAD", rf"{NAME}/-/{FILE}", "tarball"),
        route("DELETE", rf"{NAME}/-/{FILE}/-rev/{REV}", "delete_tarball", "hosted group"),
        route("PUT", rf"{NAME}/-rev/{REV}", "update", "hosted group"),
        route("DELETE", rf"{NAME}/-rev/{REV}", "delete_package", "hosted group"),
        route("GET HEAD", rf"{NAME}/(?P<spec>[^/]+)", "version"),
        route("GET HEAD", NAME, "packument"),
        route("PUT", NAME, "publish", "hosted group"),
    )

    def __init__(self) -> None:
        self._rendered: LRUCache[tuple[Any, ...], bytes] = LRUCache(maxsize=256 * 2**20, getsizeof=len)
        # tarball indexes by (repository, stored packument digest): never shared across upstreams
        self._indexes: LRUCache[tuple[str, str], dict[str, dict[str, str]]] = LRUCache(maxsize=512)
        # tarball indexes taken from packuments as they were filled, by (repository, package)
        self._fill_indexes: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._fill_lock = threading.Lock()
        self._locks: LRUCache[tuple[str, str], asyncio.Lock] = LRUCache(maxsize=4096)

    @classmethod
    def default_upstream(cls) -> str | None:
        return npm_config_registry()

    def package_of(self, path: str) -> tuple[str, str] | None:
        """(name, version) of a hosted tarball `<name>/-/<base>-<version>.tgz` or a proxied one
        `tarball/<name>/<file>`; packuments belong to no version."""
        found = _TARBALL_PATH.fullmatch(path)
        if found is None:
            return None
        name, filename = found["name"] or found["pname"], found["file"]
        base = name.rsplit("/", 1)[-1]
        if not filename.startswith(base + "-") or len(filename) <= len(base) + 5:
            return None
        return name, filename[len(base) + 1: -len(".tgz")]

    async def admin_delete(self, hosted: Any, package: str, version: str, paths: list[str]) -> None:
        """Drop the version from the hosted packument (clients stop resolving it), then its
        tarball; the version number stays used (tombstone), as with npm unpublish."""
        def mutate(old: bytes | None) -> bytes | None:
            if old is None:
                return None
            doc = pk.loads(old)
            return pk.dumps(doc) if pk.remove_version(doc, version) is not None else None

        await hosted.update_document(f"{package}/package.json", mutate, content_type=pk.JSON_TYPE)
        for path in paths:
            await hosted.delete(path, tombstone=True)

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        doc: dict[str, Any] = {"error": message}
        if code:
            doc["code"] = code
        return _json(status, doc)

    # ------------------------------------------------------------------ small endpoints
    async def ping(self, ctx: Ctx) -> web.StreamResponse:
        return _json(200, {})

    async def whoami(self, ctx: Ctx) -> web.StreamResponse:
        principal = ctx.extra.get("principal")
        name = getattr(principal, "user", None) or getattr(principal, "label", None)
        return _json(200, {"username": name if name and name != "anonymous" else "anonymous"})

    async def add_user(self, ctx: Ctx) -> web.StreamResponse:
        """Legacy `npm login`/`adduser`: check the password (the authenticator's one path, with
        lockout and audit) and hand out an expiring token with the user's own rights, never admin.

        Without an authenticator (open appliance) any name gets a throw-away token.
        """
        body = await ctx.read_body(64 * 1024)
        doc = pub.parse_json_body(body or b"{}")
        user = str(doc.get("name") or ctx.match["user"])
        token = await ctx.login(user, str(doc.get("password") or ""), "npm") or secrets.token_urlsafe(24)
        return _json(201, {"ok": True, "id": f"org.couchdb.user:{user}", "rev": "1-0", "token": token})

    async def web_login(self, ctx: Ctx) -> web.StreamResponse:
        raise FormatError(404, "web login is not supported; use npm login --auth-type=legacy")

    # ------------------------------------------------------------------ packuments
    async def packument(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /<name>`: the full or abbreviated document."""
        name = _name(ctx)
        abbreviated = pk.wants_abbreviated(ctx.request.headers.get("Accept")) \
            and "write" not in ctx.request.query
        ctype = pk.ABBREVIATED_TYPE if abbreviated else pk.JSON_TYPE
        if ctx.repo.is_group and "write" in ctx.request.query:
            ctx = ctx.deploy_target("read")       # the caller must be able to read that member
        sources = await self._sources(ctx, name, abbreviated)
        if not sources:
            raise FormatError(404, f"package {name} not found")
        body, token = await self._combine(sources, abbreviated)
        if any(s.status == "HIT" and s.hosted for s in sources):
            ctx.pull.count("hosted")
        headers = {**METADATA_HEADERS, "X-Cache": pk.x_cache(sources)}
        return respond_bytes(ctx.request, body, ctype, headers, digest=token)

    async def _sources(self, ctx: Ctx, name: str, abbreviated: bool) -> list[pk.Source]:
        """The rendered document of every member holding the package (hosted or proxied)."""
        repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
        found: list[pk.Source] = []
        failure: FormatError | None = None
        for repo in repos:
            member = ctx.for_repo(repo)
            try:
                if repo.is_hosted:
                    source = await self._hosted_rendered(member, name, abbreviated)
                    if source is not None:
                        found.append(source)
                else:
                    found.append(await self._proxy_rendered(member, name, abbreviated))
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = FormatError(exc.status, f"upstream of {repo.name} failed: {exc.reason}")
        if not found and failure is not None:
            raise failure
        return found

    async def _combine(self, sources: list[pk.Source], abbreviated: bool) -> tuple[bytes, str]:
        """One body from several members (merged, hosted first); cached by the members' tokens."""
        if len(sources) == 1:
            return sources[0].body, sources[0].token
        token = hashlib.sha256("|".join([*(s.token for s in sources), str(abbreviated)]).encode()).hexdigest()
        merged = self._rendered.get(("merge", token))
        if merged is None:
            merged = await asyncio.to_thread(pk.merge_bodies, [s.body for s in sources])
            self._rendered[("merge", token)] = merged
        return merged, token

    async def _document(self, ctx: Ctx, name: str, abbreviated: bool) -> dict[str, Any]:
        """The (merged) document parsed, for the rare endpoints that need to look inside."""
        sources = await self._sources(ctx, name, abbreviated)
        if not sources:
            raise FormatError(404, f"package {name} not found")
        body, _ = await self._combine(sources, abbreviated)
        return await asyncio.to_thread(pk.offload, pk.loads, body)

    async def _proxy_packument(self, ctx: Ctx, name: str) -> Cached:
        """The upstream's full packument: ONE cache entry per package and repository, whatever
        the variant or the Host asked for (both are applied when rendering)."""
        repo = ctx.repo
        url = _upstream_url(repo, pk.escaped_name(name))
        spec = FetchSpec(repo, f"packument/{name}", url, Kind.METADATA,
                         transform=self._packument_transform(repo.name, name, url),
                         request_headers={"Accept": pk.JSON_TYPE}, content_type=pk.JSON_TYPE)
        return await ctx.pull.open(spec)

    async def _proxy_rendered(self, ctx: Ctx, name: str, abbreviated: bool) -> pk.Source:
        """The proxied document for this client's base URL and variant (rendered once, kept),
        without the versions the supply-chain policy hides (filtered before abbreviating)."""
        cached = await self._proxy_packument(ctx, name)
        assert cached.entry is not None          # a transformed fill is never streamed
        base = ctx.base_url
        digest, hidden_token = cached.entry.digest, ""
        stored: bytes | None = None
        if ctx.pull.policy_active():
            decided = decided_token(ctx, digest)
            if decided is None or self._rendered.get(("proxy", digest, decided, base, abbreviated)) is None:
                stored, decided = await policy_filtered(ctx, digest, await ctx.pull.read(cached),
                                                        self._rendered)
            hidden_token = decided
        key = ("proxy", digest, hidden_token, base, abbreviated)
        body = self._rendered.get(key)
        if body is None:
            if stored is None:
                stored = await ctx.pull.read(cached)
            body = await asyncio.to_thread(pk.render_proxied, stored, base, abbreviated)
            self._rendered[key] = body
        ctx.pull.count_served(ctx.request, cached.status.lower())
        token = hashlib.sha256(f"{digest}|{hidden_token}|{base}|{abbreviated}".encode()).hexdigest()
        return pk.Source(body, token, cached.status)

    async def publish_time(self, ctx: Ctx, package: str, version: str) -> float | None:
        """From this proxy's (cached) packument of the package."""
        if not ctx.repo.is_proxy:
            return None
        try:
            stored = await ctx.pull.read(await self._proxy_packument(ctx, package))
        except (NotFound, UpstreamFailed):
            return None
        return await publish_time_in(stored, version)

    async def version(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /<name>/<version|tag>`: one manifest, taken from the full document."""
        name = _name(ctx)
        manifest = pk.version_document(await self._document(ctx, name, False), ctx.match["spec"])
        if manifest is None:
            raise FormatError(404, f"version {ctx.match['spec']} of {name} not found")
        return respond_bytes(ctx.request, pk.dumps(manifest), pk.JSON_TYPE, METADATA_HEADERS)

    # ------------------------------------------------------------------ tarballs
    async def tarball(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /<name>/-/<file>.tgz`: hosted file, or pulled and verified against the packument."""
        name = _name(ctx)
        filename = _file(ctx, name)
        repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
        failure: FormatError | None = None
        for repo in repos:
            member = ctx.for_repo(repo)
            try:
                if repo.is_hosted:
                    found = await member.hosted.get(f"{name}/-/{filename}")
                    if found is not None:
                        return member.hosted.serve(member.request, replace(found, content_type=TARBALL_TYPE),
                                                   x_cache="HIT")
                    continue
                cached = await self._proxy_tarball(member, name, filename)
                return member.pull.respond(member.request, cached)
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = failure or FormatError(exc.status, f"upstream of {repo.name} failed: {exc.reason}")
        raise failure or FormatError(404, f"{name}/-/{filename} not found")

    async def _proxy_tarball(self, ctx: Ctx, name: str, filename: str) -> Cached:
        """A proxied tarball. Every fetch is verified: against the integrity of this repository's
        packument, and (by the engine) a refetch after eviction against its first fetch's sha256."""
        repo = ctx.repo
        key = f"tarball/{name}/{filename}"
        await ctx.check_policy(key)           # a hidden version: 403 naming the rule
        url = _upstream_url(repo, f"{name}/-/{filename}")
        if await ctx.pull.stored(key) is not None:
            return await ctx.pull.open(FetchSpec(repo, key, url, Kind.IMMUTABLE, content_type=TARBALL_TYPE))
        info = await self._tarball_info(ctx, name, filename)
        if info is None:
            log.info("npm tarball not listed in its packument repo=%s file=%s", repo.name, filename)
            raise NotFound(key)
        if info.get("url") and _same_origin(info["url"], repo.upstream or ""):
            url = info["url"]          # where the upstream says it is (never another host)
        spec = FetchSpec(repo, key, url, Kind.IMMUTABLE, content_type=TARBALL_TYPE,
                         expect_integrity=pk.tarball_sri(info))
        return await ctx.pull.open(spec)

    def _packument_transform(self, repo: str, name: str, url: str) -> Callable[[bytes], bytes]:
        """Store the packument (index line + document) and, for ordinary sizes, remember its
        tarball index, so the first tarball request after the fill need not read it back."""
        def transform(body: bytes) -> bytes:
            out = pk.store_proxied(body, name, url)
            if len(body) < pk.OFFLOAD_THRESHOLD:
                index = pk.stored_index(out)
                with self._fill_lock:
                    self._fill_indexes[(repo, name)] = index
                    if len(self._fill_indexes) > FILL_INDEXES:
                        self._fill_indexes.pop(next(iter(self._fill_indexes)))
            return out
        return transform

    async def _tarball_info(self, ctx: Ctx, name: str, filename: str) -> dict[str, str] | None:
        """`{version, integrity, shasum, url}` of a tarball, from this repository's packument."""
        repo = ctx.repo
        with self._fill_lock:
            info = self._fill_indexes.get((repo.name, name), {}).get(filename)
        if info is not None:
            return info
        cached = await self._proxy_packument(ctx, name)
        assert cached.entry is not None
        index = self._indexes.get((repo.name, cached.entry.digest))
        if index is None:
            stored = await ctx.pull.read(cached)
            index = await asyncio.to_thread(pk.stored_index, stored)
            self._indexes[(repo.name, cached.entry.digest)] = index
        return index.get(filename)

    # ------------------------------------------------------------------ hosted documents
    async def _hosted_doc(self, ctx: Ctx, name: str) -> tuple[dict[str, Any], str] | None:
        found = await ctx.hosted.get(f"{name}/package.json")
        if found is None:
            return None
        body = await ctx.hosted.read(found)
        return await asyncio.to_thread(pk.offload, pk.loads, body), found.digest

    async def _hosted_rendered(self, ctx: Ctx, name: str, abbreviated: bool) -> pk.Source | None:
        found = await ctx.hosted.get(f"{name}/package.json")
        if found is None:
            return None
        key = (found.digest, ctx.base_url, abbreviated)
        body = self._rendered.get(key)
        if body is None:
            stored = await ctx.hosted.read(found)
            body = await asyncio.to_thread(pk.render_stored, stored, ctx.base_url, abbreviated)
            self._rendered[key] = body
        token = hashlib.sha256(f"{found.digest}|{ctx.base_url}|{abbreviated}".encode()).hexdigest()
        return pk.Source(body, token, "HIT", hosted=True)

    async def _change(self, ctx: Ctx, name: str, mutate: Mutate, create: bool = False) -> dict[str, Any]:
        """Read-modify-write the hosted document; `await mutate(doc)` edits it (or raises
        FormatError) and returns the other files to write along with it.

        The document and those files are committed in ONE catalog transaction (all or nothing),
        guarded by a compare-and-swap on the document (retried when another writer, maybe in
        another worker process, got there first); serialised in this process by a lock.
        """
        path = f"{name}/package.json"
        async with self._lock(ctx.repo, name):
            for _ in range(20):
                current = await self._hosted_doc(ctx, name)
                if current is None and not create:
                    raise FormatError(404, f"package {name} not found")
                doc, expect = current if current is not None else (pk.new_hosted(name), None)
                writes = await mutate(doc)
                data = pk.dumps(doc)
                staged = await ctx.hosted.stage(data, max_size=len(data))   # written by depot: no upload limit
                document = Write(path, staged.digest, staged.size, pk.JSON_TYPE, {"rev": doc.get("_rev")},
                                 expect=expect)
                if await ctx.hosted.commit([*writes, document]):
                    return doc
        raise FormatError(409, f"document update conflict on {name}; try again")

    def _lock(self, repo: RepoConfig, name: str) -> asyncio.Lock:
        lock = self._locks.get((repo.name, name))
        if lock is None:
            lock = self._locks[(repo.name, name)] = asyncio.Lock()
        return lock

    def _writable(self, ctx: Ctx) -> Ctx:
        return ctx.deploy_target()

    # ------------------------------------------------------------------ publish and updates
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /<name>`: a publish (with `_attachments`) or a metadata update (deprecate).

        All or nothing: the tarball blob is stored first, then its catalog row, the record
        that this version had these bytes, and the new document in one transaction; a failure
        anywhere leaves nothing that blocks a retry. A version number is never reused with
        other bytes, not even after it was unpublished (unless the repository allows overwrite).
        """
        ctx = self._writable(ctx)
        name = _name(ctx)
        limit = min(int(ctx.repo.options.get("max_tarball_size", pub.MAX_TARBALL)), ctx.repo.max_upload)
        body = await ctx.read_body(limit * 4 // 3 + pub.MAX_MANIFEST + 65536)
        incoming = await asyncio.to_thread(pub.parse_json_body, body)
        if not pub.is_publish(incoming):
            return await self._apply_update(ctx, name, incoming, rev=None)
        release = await asyncio.to_thread(pub.parse_publish, incoming, name, limit)
        path = f"{name}/-/{release.filename}"
        overwrite = ctx.hosted.overwrite_allowed(path=path)
        with engine_errors(ctx.repo):
            await ctx.hosted.check_write(path, hashlib.sha256(release.tarball).hexdigest())  # protection, duplicates
        current = await self._hosted_doc(ctx, name)
        if current is not None and release.version in current[0]["versions"] and not overwrite:
            raise _republish(release)
        staged = await ctx.stage(release.tarball)
        digest, size = staged.digest, staged.size
        before = await ctx.hosted.published_digest(path)
        if before is not None and before != digest and not overwrite:
            raise FormatError(403, f"{name}@{release.version} was published before with other content; "
                                   "a version number is never reused")
        meta = {"version": release.version, "integrity": release.integrity, "shasum": release.shasum}

        async def add(doc: dict[str, Any]) -> list[Write]:
            if release.version in doc["versions"] and not overwrite:
                raise _republish(release)
            # a row without a version in the document is an orphan (a publish that died before
            # this was atomic): replace it, since no document ever pointed at it
            orphan = None if overwrite else await ctx.hosted.get(path)
            pk.add_version(doc, release.manifest, release.filename, release.tags)
            expect = ANY if overwrite else (orphan.digest if orphan else None)
            return [Write(path, digest, size, TARBALL_TYPE, meta, expect=expect, once=True)]

        doc = await self._change(ctx, name, add, create=True)
        ctx.hosted.count_publish()
        return _json(201, {"ok": True, "id": name, "rev": doc["_rev"], "success": True})

    async def update(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /<name>/-rev/<rev>`: npm unpublish (one version) and deprecate send the document."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        body = await ctx.read_body(min(64 * 2**20, ctx.repo.max_upload + pub.MAX_MANIFEST))
        incoming = await asyncio.to_thread(pub.parse_json_body, body)
        return await self._apply_update(ctx, name, incoming, rev=ctx.match["rev"])

    async def _apply_update(self, ctx: Ctx, name: str, incoming: dict[str, Any],
                            rev: str | None) -> web.StreamResponse:
        """A metadata PUT. Removing versions is a deletion: it needs the `delete` permission,
        is audited as one, and drops the versions' tarballs in the same commit."""
        async def apply(doc: dict[str, Any]) -> list[Write]:
            if rev is not None and rev != doc.get("_rev"):
                raise FormatError(409, f"document update conflict: revision {rev} is not current")
            try:
                removed = pk.apply_update(doc, incoming)
            except ValueError as exc:
                raise FormatError(400, str(exc)) from None
            if removed:
                ctx.require("delete")
                ctx.extra["audit_action"] = "delete"
                with engine_errors(ctx.repo):          # protected packages (the engine's rule)
                    for version in removed:
                        await ctx.hosted.check_write(f"{name}/-/{pk.tarball_filename(name, version)}", delete=True)
            return [Write(f"{name}/-/{pk.tarball_filename(name, v)}", "", 0, delete=True, once=True)
                    for v in removed]

        doc = await self._change(ctx, name, apply)
        return _json(200, {"ok": True, "id": name, "rev": doc["_rev"]})

    async def delete_tarball(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /<name>/-/<file>/-rev/<rev>`: the last step of `npm unpublish name@version`."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        filename = _file(ctx, name)
        current = await self._hosted_doc(ctx, name)
        if current is not None and any((m.get("dist") or {}).get("tarball") == filename
                                       for m in current[0]["versions"].values()):
            raise FormatError(409, f"{filename} still belongs to a published version")
        await ctx.hosted.commit([Write(f"{name}/-/{filename}", "", 0, delete=True, once=True)])
        return _json(200, {"ok": True})

    async def delete_package(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /<name>/-rev/<rev>`: unpublish every version (their numbers stay used)."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        async with self._lock(ctx.repo, name):
            if await self._hosted_doc(ctx, name) is None:
                raise FormatError(404, f"package {name} not found")
            with engine_errors(ctx.repo):
                for found in await ctx.hosted.list(f"{name}/-/"):
                    await ctx.hosted.check_write(found.path, delete=True, current=found)
            doomed = [Write(found.path, "", 0, delete=True, once=found.path.startswith(f"{name}/-/"))
                      for found in await ctx.hosted.list(f"{name}/")
                      if found.path == f"{name}/package.json" or found.path.startswith(f"{name}/-/")]
            await ctx.hosted.commit(doomed)
        return _json(200, {"ok": True})

    # ------------------------------------------------------------------ dist-tags
    async def get_tags(self, ctx: Ctx) -> web.StreamResponse:
        doc = await self._document(ctx, _name(ctx), True)
        return _json(200, doc.get("dist-tags") or {})

    async def set_tag(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT|DELETE /-/package/<name>/dist-tags/<tag>` on a hosted repository."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        tag = pub.check_tag(ctx.match["tag"])
        version = None
        if ctx.request.method == "PUT":
            version = pub.parse_tag_body(await ctx.read_body(4096))

        async def retag(doc: dict[str, Any]) -> list[Write]:
            if version is not None:
                if version not in doc["versions"]:
                    raise FormatError(404, f"version {version} of {name} not found")
                doc["dist-tags"][tag] = version
            elif tag == "latest":
                raise FormatError(400, "the latest tag cannot be removed")
            elif doc["dist-tags"].pop(tag, None) is None:
                raise FormatError(404, f"{tag} is not a dist-tag on {name}")
            pk.touch(doc)
            return []

        doc = await self._change(ctx, name, retag)
        return _json(201 if version else 200, {"ok": True, "id": name, "rev": doc["_rev"]})

    # ------------------------------------------------------------------ search and audit
    async def search(self, ctx: Ctx) -> web.StreamResponse:
        """`/-/v1/search`: hosted packages (members of a group too); proxies relay upstream."""
        return await npm_search.search(ctx)

    async def audit(self, ctx: Ctx) -> web.StreamResponse:
        """Security advisories: relayed to the (first) proxy upstream, never cached."""
        return await npm_search.audit(ctx)


# ---------------------------------------------------------------------- helpers

def _republish(release: pub.Publish) -> FormatError:
    return FormatError(403, f"cannot publish over the previously published version "
                            f"{release.name}@{release.version}")


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.scheme in ("http", "https")


def _upstream_url(repo: RepoConfig, path: str) -> str:
    assert repo.upstream is not None
    return repo.upstream.rstrip("/") + "/" + path


FORMAT = Npm

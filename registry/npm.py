"""npm: packuments, tarballs, publish, dist-tags, deprecate, unpublish, search, audit relay.

Protocol translation only; the document work lives in npm_packument (pure) and the upload
checks in npm_publish (pure). Proxy packuments are rewritten and abbreviated once, at fill
time, and stored per (variant, public base URL); a hit serves the stored bytes as they are.
Hosted documents live in the catalog at `<name>/package.json`, tarballs at `<name>/-/<file>`.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import secrets
import shutil
import subprocess
import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from aiohttp import web
from cachetools import LRUCache

from depot.cache.pull import Cached, FetchSpec, Kind, NotFound, UpstreamFailed
from depot.cache.serve import respond_blob, respond_bytes

from . import npm_packument as pk
from . import npm_publish as pub
from .base import Ctx, Format, FormatError, body_chunks, route
from .repo import RepoConfig

log = logging.getLogger("depot.npm")

NAME = r"(?P<name>@[^/]+/[^/]+|[^/@][^/]*)"
FILE = r"(?P<file>[^/]+\.tgz)"
REV = r"(?P<rev>[^/]+)"
# Passing headers to pull.respond also keeps packuments out of the engine's hot path, which
# is keyed by request path alone: a packument's body depends on Accept and on the Host too.
METADATA_HEADERS = {"Cache-Control": "no-cache"}
TARBALL_TYPE = "application/octet-stream"
FILL_INDEXES = 4096                 # packuments whose tarball index is remembered from their fill
AUDIT_HEADERS = ("Content-Type", "Content-Encoding", "Accept", "Accept-Encoding", "npm-command")


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


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(doc).encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


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


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Npm(Format):
    name = "npm"
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
        self._indexes: LRUCache[str, dict[str, dict[str, str]]] = LRUCache(maxsize=512)
        # tarball indexes taken from packuments as they were filled (written from fill threads)
        self._fill_indexes: dict[str, dict[str, dict[str, str]]] = {}
        self._fill_lock = threading.Lock()
        self._locks: LRUCache[tuple[str, str], asyncio.Lock] = LRUCache(maxsize=4096)

    @classmethod
    def default_upstream(cls) -> str | None:
        return npm_config_registry()

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
        body = await _read_body(ctx.request, 64 * 1024)
        doc = pub.parse_json_body(body or b"{}")
        user = str(doc.get("name") or ctx.match["user"])
        auth = getattr(ctx.services, "auth", None)
        token = secrets.token_urlsafe(24)
        if auth is not None:
            try:
                principal = await auth.check_password(user, str(doc.get("password") or ""),
                                                      ctx.request.remote, "npm")
            except auth.Refused as exc:     # wrong password or locked name
                raise FormatError(401, f"login failed for {user}: {exc}") from None
            token = await auth.login_token(principal, "npm login")
            if ctx.services.audit is not None:
                ctx.services.audit.record("login", "ok", principal.label, ctx.request.remote, ctx.repo.name,
                                          service="npm")
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
            ctx = ctx.for_repo(self._deploy_target(ctx))
        sources = await self._sources(ctx, name, abbreviated)
        if not sources:
            raise FormatError(404, f"package {name} not found")
        if len(sources) == 1 and isinstance(sources[0][1], Cached):
            return ctx.services.pull.respond(ctx.request, sources[0][1], METADATA_HEADERS)
        body, token = await self._combine(ctx, sources, abbreviated)
        ctx.services.metrics.hosted(ctx.repo)
        headers = {**METADATA_HEADERS, "X-Cache": _x_cache(s for _, s in sources)}
        return respond_bytes(ctx.request, body, ctype, headers, digest=token)

    async def _sources(self, ctx: Ctx, name: str, abbreviated: bool) -> list[tuple[str, Any]]:
        """(member name, rendered bytes or Cached) for every member holding the package."""
        repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
        found: list[tuple[str, Any]] = []
        failure: FormatError | None = None
        for repo in repos:
            member = ctx.for_repo(repo)
            try:
                if repo.is_hosted:
                    body = await self._hosted_rendered(member, name, abbreviated)
                    if body is not None:
                        found.append((repo.name, body))
                else:
                    found.append((repo.name, await self._proxy_packument(member, name, abbreviated)))
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = FormatError(exc.status, f"upstream of {repo.name} failed: {exc.reason}")
        if not found and failure is not None:
            raise failure
        return found

    async def _combine(self, ctx: Ctx, sources: list[tuple[str, Any]],
                       abbreviated: bool) -> tuple[bytes, str | None]:
        """One body from several members (merged, hosted first); cached by the members' digests."""
        tokens = [_token(source) for _, source in sources]
        token = None if None in tokens else \
            hashlib.sha256("|".join([*map(str, tokens), str(abbreviated)]).encode()).hexdigest()
        merged = self._rendered.get(("merge", token)) if token else None
        if merged is None:
            parts = [await ctx.services.pull.read(s) if isinstance(s, Cached) else s for _, s in sources]
            merged = await asyncio.to_thread(pk.merge_bodies, parts)
            if token:
                self._rendered[("merge", token)] = merged
        return merged, token

    async def _document(self, ctx: Ctx, name: str, abbreviated: bool) -> dict[str, Any]:
        """The (merged) document parsed, for the rare endpoints that need to look inside."""
        sources = await self._sources(ctx, name, abbreviated)
        if not sources:
            raise FormatError(404, f"package {name} not found")
        body, _ = await self._combine(ctx, sources, abbreviated)
        return await asyncio.to_thread(pk.offload, pk.loads, body)

    async def _proxy_packument(self, ctx: Ctx, name: str, abbreviated: bool) -> Cached:
        """The rewritten upstream packument (variant and base URL are part of the key)."""
        repo, base = ctx.repo, ctx.base_url
        assert repo.upstream is not None
        variant = "corgi" if abbreviated else "full"
        accept = f"{pk.ABBREVIATED_TYPE}; q=1.0, application/json; q=0.8" if abbreviated else pk.JSON_TYPE
        spec = FetchSpec(
            repo, f"packument/{name}/{variant}/{_short(base)}", _upstream_url(repo, pk.escaped_name(name)),
            Kind.METADATA, transform=self._packument_transform(name, base, abbreviated,
                                                               _upstream_url(repo, pk.escaped_name(name))),
            request_headers={"Accept": accept},
            content_type=pk.ABBREVIATED_TYPE if abbreviated else pk.JSON_TYPE)
        return await ctx.services.pull.open(spec)

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
                    found = await member.services.catalog.get(repo.name, f"{name}/-/{filename}")
                    if found is not None:
                        member.services.metrics.hosted(repo)
                        return respond_blob(member.request, found.digest, found.size, TARBALL_TYPE,
                                            {"X-Cache": "HIT"}, blobs=member.services.blobs,
                                            memory=member.services.memory)
                    continue
                cached = await self._proxy_tarball(member, name, filename)
                return member.services.pull.respond(member.request, cached)
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = failure or FormatError(exc.status, f"upstream of {repo.name} failed: {exc.reason}")
        raise failure or FormatError(404, f"{name}/-/{filename} not found")

    async def _proxy_tarball(self, ctx: Ctx, name: str, filename: str) -> Cached:
        repo, services = ctx.repo, ctx.services
        key = f"tarball/{name}/{filename}"
        url = _upstream_url(repo, f"{name}/-/{filename}")
        entry = services.entries.cached(repo.name, key) or await services.entries.get(repo.name, key)
        if entry is not None:
            return await services.pull.open(FetchSpec(repo, key, url, Kind.IMMUTABLE))
        with self._fill_lock:
            info = self._fill_indexes.get(name, {}).get(filename)
        if info is None:
            info = (await self._tarball_index(ctx, name)).get(filename)
        if info is None:
            log.info("npm tarball not listed in its packument repo=%s file=%s", repo.name, filename)
            raise NotFound(key)
        if info.get("url") and _same_origin(info["url"], repo.upstream or ""):
            url = info["url"]          # where the upstream says it is (never another host)
        spec = FetchSpec(repo, key, url, Kind.IMMUTABLE, content_type=TARBALL_TYPE,
                         expect_integrity=pk.tarball_sri(info))
        return await services.pull.open(spec)

    def _packument_transform(self, name: str, base: str, abbreviated: bool,
                             url: str) -> Callable[[bytes], bytes]:
        """Rewrite the packument and, for ordinary sizes, remember its tarball index, so the
        first tarball request after a packument miss does not fetch the packument again."""
        def transform(body: bytes) -> bytes:
            out = pk.transform_packument(body, base_url=base, name=name, abbreviated=abbreviated)
            if len(body) < pk.OFFLOAD_THRESHOLD:
                index = json.loads(pk.tarball_index_json(body, packument_url=url))
                with self._fill_lock:
                    self._fill_indexes[name] = index
                    if len(self._fill_indexes) > FILL_INDEXES:
                        self._fill_indexes.pop(next(iter(self._fill_indexes)))
            return out
        return transform

    async def _tarball_index(self, ctx: Ctx, name: str) -> dict[str, dict[str, str]]:
        """`{file: {version, integrity, shasum, url}}` from the upstream packument (own cache key)."""
        repo = ctx.repo
        url = _upstream_url(repo, pk.escaped_name(name))
        spec = FetchSpec(repo, f"index/{name}", url, Kind.METADATA,
                         transform=functools.partial(pk.tarball_index_json, packument_url=url),
                         request_headers={"Accept": f"{pk.ABBREVIATED_TYPE}; q=1.0, application/json; q=0.8"},
                         content_type=pk.JSON_TYPE)
        cached = await ctx.services.pull.open(spec)
        digest = cached.entry.digest if cached.entry else None
        index = self._indexes.get(digest) if digest else None
        if index is None:
            index = await asyncio.to_thread(json.loads, await ctx.services.pull.read(cached))
            if digest:
                self._indexes[digest] = index
        return index

    # ------------------------------------------------------------------ hosted documents
    async def _hosted_doc(self, ctx: Ctx, name: str) -> tuple[dict[str, Any], str] | None:
        found = await ctx.services.catalog.get(ctx.repo.name, f"{name}/package.json")
        if found is None:
            return None
        body = await ctx.services.blobs.read(found.digest)
        return await asyncio.to_thread(pk.offload, pk.loads, body), found.digest

    async def _hosted_rendered(self, ctx: Ctx, name: str, abbreviated: bool) -> bytes | None:
        found = await ctx.services.catalog.get(ctx.repo.name, f"{name}/package.json")
        if found is None:
            return None
        key = (found.digest, ctx.base_url, abbreviated)
        body = self._rendered.get(key)
        if body is None:
            stored = await ctx.services.blobs.read(found.digest)
            body = await asyncio.to_thread(pk.render_stored, stored, ctx.base_url, abbreviated)
            self._rendered[key] = body
        return body

    async def _change(self, ctx: Ctx, name: str, mutate: Callable[[dict[str, Any]], None],
                      create: bool = False) -> dict[str, Any]:
        """Read-modify-write the hosted document; `mutate(doc)` edits it or raises FormatError.

        Serialised in this process by a lock, and across worker processes by a
        compare-and-swap on the catalog entry (retried when another writer got there first).
        """
        path, services = f"{name}/package.json", ctx.services
        async with self._lock(ctx.repo, name):
            for _ in range(20):
                current = await self._hosted_doc(ctx, name)
                if current is None and not create:
                    raise FormatError(404, f"package {name} not found")
                doc, expect = current if current is not None else (pk.new_hosted(name), None)
                mutate(doc)
                digest, size = await services.blobs.put_bytes(pk.dumps(doc))
                if await services.catalog.swap(ctx.repo.name, path, expect, digest, size,
                                               pk.JSON_TYPE, {"rev": doc.get("_rev")}):
                    return doc
        raise FormatError(409, f"document update conflict on {name}; try again")

    def _lock(self, repo: RepoConfig, name: str) -> asyncio.Lock:
        lock = self._locks.get((repo.name, name))
        if lock is None:
            lock = self._locks[(repo.name, name)] = asyncio.Lock()
        return lock

    def _deploy_target(self, ctx: Ctx) -> RepoConfig:
        if ctx.repo.is_group:
            if not ctx.repo.deploy_to:
                raise FormatError(405, f"group {ctx.repo.name} has no deploy_to member")
            return ctx.member(ctx.repo.deploy_to)
        return ctx.repo

    def _writable(self, ctx: Ctx) -> Ctx:
        return ctx.for_repo(self._deploy_target(ctx)) if ctx.repo.is_group else ctx

    # ------------------------------------------------------------------ publish and updates
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /<name>`: a publish (with `_attachments`) or a metadata update (deprecate)."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        limit = int(ctx.repo.options.get("max_tarball_size", pub.MAX_TARBALL))
        body = await _read_body(ctx.request, limit * 4 // 3 + pub.MAX_MANIFEST + 65536)
        incoming = await asyncio.to_thread(pub.parse_json_body, body)
        if not pub.is_publish(incoming):
            return await self._apply_update(ctx, name, incoming, rev=None)
        release = await asyncio.to_thread(pub.parse_publish, incoming, name, limit)
        overwrite = ctx.repo.allow_overwrite

        def add(doc: dict[str, Any]) -> None:
            if release.version in doc["versions"] and not overwrite:
                raise _republish(release)
            pk.add_version(doc, release.manifest, release.filename, release.tags)

        current = await self._hosted_doc(ctx, name)
        if current is not None and release.version in current[0]["versions"] and not overwrite:
            raise _republish(release)
        path = await self._store_tarball(ctx, release)
        try:
            doc = await self._change(ctx, name, add, create=True)
        except FormatError:
            await ctx.services.catalog.delete(ctx.repo.name, path)
            raise
        ctx.services.metrics.publish(ctx.repo)
        return _json(201, {"ok": True, "id": name, "rev": doc["_rev"], "success": True})

    async def _store_tarball(self, ctx: Ctx, release: pub.Publish) -> str:
        """Store the tarball at `<name>/-/<file>` (claimed atomically unless overwriting)."""
        services, path = ctx.services, f"{release.name}/-/{release.filename}"
        digest, size = await services.blobs.put_bytes(release.tarball)
        meta = {"version": release.version, "integrity": release.integrity, "shasum": release.shasum}
        if ctx.repo.allow_overwrite:
            await services.catalog.put(ctx.repo.name, path, digest, size, TARBALL_TYPE, meta)
        elif not await services.catalog.put_new(ctx.repo.name, path, digest, size, TARBALL_TYPE, meta):
            raise _republish(release)
        return path

    async def update(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /<name>/-rev/<rev>`: npm unpublish (one version) and deprecate send the document."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        body = await _read_body(ctx.request, 64 * 2**20)
        incoming = await asyncio.to_thread(pub.parse_json_body, body)
        return await self._apply_update(ctx, name, incoming, rev=ctx.match["rev"])

    async def _apply_update(self, ctx: Ctx, name: str, incoming: dict[str, Any],
                            rev: str | None) -> web.StreamResponse:
        removed: list[str] = []

        def apply(doc: dict[str, Any]) -> None:
            if rev is not None and rev != doc.get("_rev"):
                raise FormatError(409, f"document update conflict: revision {rev} is not current")
            try:
                removed[:] = pk.apply_update(doc, incoming)
            except ValueError as exc:
                raise FormatError(400, str(exc)) from None

        doc = await self._change(ctx, name, apply)
        for version in removed:
            filename = pk.tarball_filename(name, version)
            await ctx.services.catalog.delete(ctx.repo.name, f"{name}/-/{filename}")
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
        await ctx.services.catalog.delete(ctx.repo.name, f"{name}/-/{filename}")
        return _json(200, {"ok": True})

    async def delete_package(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /<name>/-rev/<rev>`: unpublish every version."""
        ctx = self._writable(ctx)
        name = _name(ctx)
        async with self._lock(ctx.repo, name):
            if await self._hosted_doc(ctx, name) is None:
                raise FormatError(404, f"package {name} not found")
            for found in await ctx.services.catalog.list(ctx.repo.name, f"{name}/"):
                if found.path == f"{name}/package.json" or found.path.startswith(f"{name}/-/"):
                    await ctx.services.catalog.delete(ctx.repo.name, found.path)
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
            version = pub.parse_tag_body(await _read_body(ctx.request, 4096))

        def retag(doc: dict[str, Any]) -> None:
            if version is not None:
                if version not in doc["versions"]:
                    raise FormatError(404, f"version {version} of {name} not found")
                doc["dist-tags"][tag] = version
            elif tag == "latest":
                raise FormatError(400, "the latest tag cannot be removed")
            elif doc["dist-tags"].pop(tag, None) is None:
                raise FormatError(404, f"{tag} is not a dist-tag on {name}")
            pk.touch(doc)

        doc = await self._change(ctx, name, retag)
        return _json(201 if version else 200, {"ok": True, "id": name, "rev": doc["_rev"]})

    # ------------------------------------------------------------------ search and audit
    async def search(self, ctx: Ctx) -> web.StreamResponse:
        """`/-/v1/search`: hosted packages (members of a group too); proxies relay upstream."""
        query = ctx.request.query
        text = query.get("text", "")
        size = _bounded_int(query.get("size"), 20, 1, 250)
        offset = _bounded_int(query.get("from"), 0, 0, 10**6)
        repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
        objects: list[dict[str, Any]] = []
        for repo in repos:
            if repo.is_hosted:
                objects.extend(await self._search_hosted(ctx.for_repo(repo), text))
        if not objects and ctx.repo.is_proxy:
            return await self._relay(ctx, "GET", "-/v1/search")
        seen: set[str] = set()
        unique = [o for o in objects if not (o["package"]["name"] in seen or seen.add(o["package"]["name"]))]
        return _json(200, {"objects": unique[offset:offset + size], "total": len(unique),
                           "time": pk.iso_now()})

    async def _search_hosted(self, ctx: Ctx, text: str) -> list[dict[str, Any]]:
        found = []
        for item in await ctx.services.catalog.list(ctx.repo.name):
            if not item.path.endswith("/package.json"):
                continue
            doc = await asyncio.to_thread(pk.loads, await ctx.services.blobs.read(item.digest))
            if doc.get("versions") and pk.search_matches(doc, text):
                found.append(pk.search_object(doc))
        return found

    async def audit(self, ctx: Ctx) -> web.StreamResponse:
        """Security advisories: relayed to the (first) proxy upstream, never cached."""
        repos = [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]
        for repo in repos:
            if repo.is_proxy:
                return await self._relay(ctx.for_repo(repo), "POST", f"-/npm/v1/security/{ctx.match['rest']}")
        return _json(200, {})

    async def _relay(self, ctx: Ctx, method: str, path: str) -> web.StreamResponse:
        """Pass a request through to the upstream as it is (no caching)."""
        repo = ctx.repo
        data = await _read_body(ctx.request, 32 * 2**20) if method != "GET" else None
        url = _upstream_url(repo, path)
        if ctx.request.query_string:
            url += "?" + ctx.request.query_string
        headers = {h: ctx.request.headers[h] for h in AUDIT_HEADERS if h in ctx.request.headers}
        try:
            response = await ctx.services.upstream.request(method, url, headers, auth=repo.auth, data=data)
        except Exception as exc:  # UpstreamError and friends: the client gets npm's error shape
            raise FormatError(502, f"upstream of {repo.name} failed: {exc}") from None
        async with response:
            body = await response.read()
            keep = {h: response.headers[h] for h in ("Content-Type", "Content-Encoding") if h in response.headers}
        return web.Response(status=response.status, body=body, headers={**keep, "Cache-Control": "no-store"})


# ---------------------------------------------------------------------- helpers

def _republish(release: pub.Publish) -> FormatError:
    return FormatError(403, f"cannot publish over the previously published version "
                            f"{release.name}@{release.version}")


def _x_cache(sources: Any) -> str:
    """What a combined document reports: the worst of its proxied members' cache statuses."""
    statuses = {s.status for s in sources if isinstance(s, Cached)}
    for status in ("STALE", "MISS", "REVALIDATED"):
        if status in statuses:
            return status
    return "HIT"


def _token(source: Any) -> str | None:
    """What identifies a member's document: its stored digest, or the hash of rendered bytes."""
    if isinstance(source, Cached):
        return source.entry.digest if source.entry is not None else None
    return hashlib.sha256(source).hexdigest()


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.scheme in ("http", "https")


def _upstream_url(repo: RepoConfig, path: str) -> str:
    assert repo.upstream is not None
    return repo.upstream.rstrip("/") + "/" + path


def _bounded_int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(raw))) if raw is not None else default
    except ValueError:
        return default


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with 413 (and stalled clients with 408)."""
    return b"".join([chunk async for chunk in body_chunks(request, limit, chunk_size=1 << 20)])


FORMAT = Npm

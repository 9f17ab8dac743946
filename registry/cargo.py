"""Cargo sparse registries: proxy (crates.io by default), hosted (`cargo publish`, yank) and group.

Paths under /<repo>/ (the index URL is `sparse+<depot>/<repo>/`):
  config.json                                   generated: dl and api point at this repository
  1/a, 2/ab, 3/a/abc, ab/cd/abcd…               index files (lower-case names)
  api/v1/crates/<crate>/<version>/download      the .crate
  api/v1/crates/new (PUT), …/<v>/yank (DELETE), …/<v>/unyank (PUT), …/owners, api/v1/crates?q=
Proxy: index files are metadata (revalidated with ETag/Last-Modified), kept byte for byte; a
.crate is immutable, fetched from the upstream config.json's `dl` and verified against the
index's `cksum`. Hosted: depot writes the index line itself (compare-and-swap, visible before
the publish answers). Group: index files merged line by line, the first member wins per version.
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from typing import Any

from aiohttp import web

from depot.cache.api import Cached, Kind, merge_x_cache

from . import cargo_index as ci
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .repo import RepoConfig
from .tree import in_thread
from .warm_plans import Job

INDEX_TYPE = "text/plain; charset=utf-8"
CRATE_TYPE = "application/x-tar"
CRATE = r"api/v1/crates/(?P<name>[^/]+)/(?P<version>[^/]+)"
WARNINGS: dict[str, Any] = {"warnings": {"invalid_categories": [], "invalid_badges": [], "other": []}}
STORED_CRATE = re.compile(r"crates/(?P<name>[^/]+)/(?P<version>[^/]+)\.crate\Z")
DOWNLOAD = re.compile(CRATE + r"/download\Z")
INDEX = re.compile(rf"(?:{ci.INDEX_PATH})\Z")


def crate_path(name: str, version: str) -> str:
    """Where a .crate is kept (hosted path and proxy cache key)."""
    return f"crates/{name.lower()}/{version}.crate"


def document_response(request: web.Request, body: bytes, content_type: str,
                      x_cache: str | None = None) -> web.Response:
    """A generated document with a content ETag (cargo revalidates index files with it)."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if x_cache:
        headers["X-Cache"] = x_cache
    wanted = request.headers.get("If-None-Match", "")
    if etag in (tag.strip() for tag in wanted.split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def _checked(name: str, version: str | None = None) -> tuple[str, str]:
    try:
        return ci.check_name(name), ci.check_version(version) if version is not None else ""
    except ci.CargoError as exc:
        raise FormatError(400, str(exc)) from None


class Cargo(Format):
    """The sparse registry protocol and cargo's registry web API."""

    name = "cargo"
    routes = (
        route("GET HEAD", r"config\.json", "config"),
        route("GET HEAD", rf"(?P<path>{ci.INDEX_PATH})", "index_file"),
        route("GET HEAD", CRATE + r"/download", "download"),
        route("PUT", r"api/v1/crates/new", "publish", "hosted group"),
        route("DELETE", CRATE + r"/yank", "yank", "hosted group", perm="write"),
        route("PUT", CRATE + r"/unyank", "unyank", "hosted group"),
        route("GET", r"api/v1/crates/(?P<name>[^/]+)/owners", "owners", "hosted group"),
        route("PUT DELETE", r"api/v1/crates/(?P<name>[^/]+)/owners", "change_owners", "hosted group", perm="write"),
        route("GET", r"api/v1/crates", "search", "hosted group"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://index.crates.io/"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("cargo")

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        config = (f'# ~/.cargo/config.toml\n[registries.depot]\nindex = "sparse+{url}/"\n\n'
                  '# use it for crates.io dependencies too\n[source.crates-io]\nreplace-with = "depot"\n'
                  f'[source.depot]\nregistry = "sparse+{url}/"')
        out = [("cargo", config)]
        if not repo.is_proxy:
            out.append(("publish", "cargo login --registry depot   # paste a depot token\n"
                                   "cargo publish --registry depot\n"
                                   "# private repositories: in config.toml\n"
                                   '# [registry]\n# global-credential-providers = ["cargo:token"]'))
        return out

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> Cargo.lock`: the index file and the .crate of every registry package."""
        if filename != "Cargo.lock" and "[[package]]" not in text:
            return None
        try:
            packages = tomllib.loads(text).get("package") or []
        except tomllib.TOMLDecodeError as exc:
            from .warm_plans import PlanError
            raise PlanError(f"Cargo.lock cannot be parsed: {exc}") from None
        jobs, notes, names = [], [], set()
        for package in packages:
            name, version, source = package.get("name"), package.get("version"), package.get("source") or ""
            if not source.startswith(("registry+", "sparse+")):
                if source:
                    notes.append(f"not from a registry, skipped: {name} {version} ({source.split('#')[0]})")
                continue
            if name.lower() not in names:
                names.add(name.lower())
                jobs.append(Job(f"{mount}/{ci.index_path(name)}"))
            jobs.append(Job(f"{mount}/api/v1/crates/{name}/{version}/download"))
        return jobs, notes

    def challenge(self, base_url: str) -> str:
        return f'Cargo login_url="{base_url}/"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        return web.json_response({"errors": [{"detail": message}]}, status=status,
                                 headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ install
    async def config(self, ctx: Ctx) -> web.StreamResponse:
        """config.json pointing at this repository as the client addressed it (group or not)."""
        base = ctx.base_url
        doc = {"dl": f"{base}/api/v1/crates", "api": base,
               # cargo sends its token only after a 401; from then on it must send it everywhere
               "auth-required": "Authorization" in ctx.request.headers}
        # answered here with no upstream contact: a HIT for proxies and groups
        return document_response(ctx.request, json.dumps(doc).encode(), "application/json",
                                 None if ctx.repo.is_hosted else "HIT")

    def index_spec(self, ctx: Ctx, path: str) -> Any:
        return ctx.pull.spec(path, self.upstream_url(ctx.repo, path), Kind.METADATA, content_type=INDEX_TYPE)

    @staticmethod
    def upstream_url(repo: RepoConfig, path: str) -> str:
        return (repo.upstream or "").rstrip("/") + "/" + path

    async def member_index(self, ctx: Ctx, path: str) -> tuple[bytes, str | None]:
        """One repository's index file and the X-Cache of that answer."""
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(path)
            if stored is None:
                raise FormatError(404, f"{path} not found in {ctx.repo.name}")
            return await ctx.hosted.read(stored), "HIT"
        cached, body = await ctx.fetch_upstream(self.index_spec(ctx, path))
        return body, cached.status

    async def index_file(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["path"]
        if ci.index_path(path.rsplit("/", 1)[-1]) != path:
            raise FormatError(404, f"{path} is not an index path")
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(path)
            if stored is None:
                raise FormatError(404, f"{path} not found in {ctx.repo.name}")
            return ctx.hosted.serve(ctx.request, stored)
        if ctx.repo.is_proxy:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(self.index_spec(ctx, path)))
        answers = await ctx.each_member(lambda m: self.member_index(m, path), path)
        body = ci.merge_index(body for _, (body, _) in answers)
        x_cache = merge_x_cache(xc for _, (_, xc) in answers)
        return document_response(ctx.request, body, INDEX_TYPE, x_cache)

    async def download(self, ctx: Ctx) -> web.StreamResponse:
        name, version = _checked(ctx.match["name"], ctx.match["version"])
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.member_download(m, name, version, "HIT"))
        return await self.member_download(ctx, name, version)

    async def member_download(self, ctx: Ctx, name: str, version: str,
                              x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(crate_path(name, version))
            if stored is None:
                raise FormatError(404, f"{name} {version} not found in {ctx.repo.name}")
            return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)
        return ctx.pull.respond(ctx.request, await self.proxy_crate(ctx, name, version))

    async def proxy_crate(self, ctx: Ctx, name: str, version: str) -> Cached:
        """The .crate from the upstream's `dl`, verified against the cksum of its index line."""
        key = crate_path(name, version)
        stored = await ctx.pull.peek(key)
        if stored is not None:          # immutable and stored: answered without index or config.json
            return Cached("HIT", ctx.repo, stored)
        _, index = await ctx.fetch_upstream(self.index_spec(ctx, ci.index_path(name)))
        entry = ci.find_version(index, version)
        cksum = str((entry or {}).get("cksum", ""))
        if entry is None or not re.fullmatch(r"[0-9a-f]{64}", cksum):
            raise FormatError(404, f"{name} {version} is not in the index of {ctx.repo.name}'s upstream")
        spec = ctx.pull.spec("config.json", self.upstream_url(ctx.repo, "config.json"), Kind.METADATA)
        _, config = await ctx.fetch_upstream(spec)
        try:
            dl = json.loads(config)["dl"]
        except (ValueError, KeyError, TypeError):
            raise FormatError(502, f"the upstream config.json of {ctx.repo.name} has no dl") from None
        url = ci.download_url(str(dl), str(entry.get("name") or name), version, cksum)
        return await ctx.open_upstream(ctx.pull.spec(key, url, Kind.IMMUTABLE, expect_sha256=cksum,
                                                     content_type=CRATE_TYPE))

    # ------------------------------------------------------------------ publish, yank, owners
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        body = await target.read_body()
        try:
            upload = ci.parse_frame(body)
            line = ci.index_line(upload)
            await in_thread(ci.check_crate, upload)
        except ci.CargoError as exc:
            raise FormatError(400, str(exc)) from None
        await self.claim_name(target, upload.name)
        path = ci.index_path(upload.name)
        stored = await target.hosted.get(path)
        if stored is not None and any(ci.same_version(e["vers"], upload.version)
                                      for e in ci.index_lines(await target.hosted.read(stored))):
            raise FormatError(400, f"crate version `{upload.version}` is already uploaded")
        published = await target.publish(crate_path(upload.name, upload.version), upload.crate,
                                          content_type=CRATE_TYPE, overwrite=False)
        try:
            await target.hosted.update_document(path, lambda old: ci.add_line(old, line), content_type=INDEX_TYPE)
        except ci.CargoError as exc:              # a concurrent publish of the same version won
            if published.created:
                await target.hosted.delete(published.file.path)
            raise FormatError(400, str(exc)) from None
        target.hosted.count_publish()
        return web.json_response(WARNINGS)

    async def claim_name(self, target: Ctx, name: str) -> None:
        """Names are unique as crates.io compares them (case, '-' and '_'): the first spelling stays."""
        def claim(old: bytes | None) -> bytes | None:
            if old is None:
                return name.encode()
            if old.decode() != name:
                raise FormatError(400, f"crate `{name}` conflicts with the existing crate `{old.decode()}`")
            return None
        await target.hosted.update_document(f"names/{ci.canonical(name)}", claim, content_type="text/plain")

    async def set_yanked(self, ctx: Ctx, yanked: bool) -> web.StreamResponse:
        name, version = _checked(ctx.match["name"], ctx.match["version"])
        target = ctx.deploy_target("write")
        path = ci.index_path(name)
        if await target.hosted.get(path) is None:
            raise FormatError(404, f"crate `{name}` does not exist in {target.repo.name}")
        try:
            await target.hosted.update_document(path, lambda old: ci.set_yanked(old, version, yanked))
        except ci.CargoError as exc:
            raise FormatError(404, f"crate `{name}`: {exc}") from None
        return web.json_response({"ok": True})

    async def yank(self, ctx: Ctx) -> web.StreamResponse:
        return await self.set_yanked(ctx, True)

    async def unyank(self, ctx: Ctx) -> web.StreamResponse:
        return await self.set_yanked(ctx, False)

    async def owners(self, ctx: Ctx) -> web.StreamResponse:
        """Owners are depot's repository permissions; the crate must exist."""
        name, _ = _checked(ctx.match["name"])
        target = ctx.deploy_target("read")
        if await target.hosted.get(ci.index_path(name)) is None:
            raise FormatError(404, f"crate `{name}` does not exist in {target.repo.name}")
        return web.json_response({"users": [{"id": 1, "login": target.repo.name,
                                             "name": f"users with write permission on {target.repo.name}"}]})

    async def change_owners(self, ctx: Ctx) -> web.StreamResponse:
        await self.owners(ctx)
        return web.json_response({"ok": True, "msg": "owners are managed as depot repository permissions"})

    async def search(self, ctx: Ctx) -> web.StreamResponse:
        """Crates of the (deploy) hosted repository whose name contains `q`."""
        target = ctx.deploy_target("read")
        query = ci.canonical(ctx.request.query.get("q", ""))
        try:
            per_page = max(1, min(int(ctx.request.query.get("per_page", "10")), 100))
        except ValueError:
            raise FormatError(400, "per_page must be an integer") from None
        found = []
        for claim in await target.hosted.list("names/"):
            if query in claim.path[len("names/"):]:
                name = (await target.hosted.read(claim)).decode()
                stored = await target.hosted.get(ci.index_path(name))
                versions = [e["vers"] for e in ci.index_lines(await target.hosted.read(stored))] if stored else []
                found.append({"name": name, "max_version": versions[-1] if versions else "", "description": None})
        return web.json_response({"crates": found[:per_page], "meta": {"total": len(found)}})

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = DOWNLOAD.match(path) or STORED_CRATE.match(path)
        return (found["name"], found["version"]) if found else None

    async def admin_delete(self, hosted: Any, package: str, version: str, paths: list[str]) -> None:
        """Drop the version's line from the sparse index (cargo stops resolving it), then the
        .crate; the version number stays used (tombstone), as on crates.io."""
        def drop(old: bytes | None) -> bytes | None:
            if old is None:
                return None
            kept = [e for e in ci.index_lines(old) if not ci.same_version(e["vers"], version)]
            return ci.render_lines(kept)

        await hosted.update_document(ci.index_path(package), drop, content_type=INDEX_TYPE)
        for path in paths:
            await hosted.delete(path, tombstone=True)

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """The versions of an index file. Index lines carry no publish time, so `published` is
        None: the policy has to use the time depot first saw a version instead."""
        if not INDEX.match(path):
            return None
        return [VersionInfo(str(e.get("name", "")), e["vers"]) for e in ci.index_lines(body)]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        """The index file without the hidden versions (the other lines byte for byte)."""
        keep = [raw for raw in body.splitlines(keepends=True)
                if not any((e.get("name"), e["vers"]) in hidden for e in ci.index_lines(raw))]
        return b"".join(keep)


FORMAT = Cargo

"""Composer (PHP): proxy (Packagist by default), hosted (zip upload) and group, metadata v2.

Paths under /<repo>/ (composer.json: `{"type": "composer", "url": "<depot>/<repo>"}`):
  packages.json                          metadata-url `<repo>/p2/%package%.json` (+ available-packages)
  p2/<vendor>/<name>.json, …~dev.json    per-package metadata (tags / branches)
  dists/<vendor>/<name>/<version>.zip    a hosted dist (its sha1 is the `shasum`)
  dists/<vendor>/<name>/<version>/<reference>.zip   a proxied dist
  PUT packages/<vendor>/<name>/<version>.zip, POST packages (multipart `package`, `version`)
Proxy: p2 documents are metadata, expanded from Packagist's minified form, every dist URL
pointing at depot; a dist is fetched on first use from its original URL only when that URL is
on the upstream's own origin or on a host in the repository's `dist_hosts` (no open proxy),
verified against `shasum` when the upstream gives one. Hosted: the zip's composer.json names
the package (it must match) and the version is validated; versions are immutable. Group: p2
documents merged per package, the first member wins per version.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import BodyPartReader, web

from depot.cache.api import BASE_PLACEHOLDER, Cached, Kind, merge_x_cache, respond_bytes, parse_time

from . import composer_meta as cm
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .options import Option, string_list
from .repo import RepoConfig
from .tree import in_thread
from .warm_plans import Job

JSON = "application/json"
PACKAGE = r"(?P<package>[a-z0-9._-]+/[a-z0-9._-]+)"
P2 = re.compile(r"p2/" + PACKAGE + r"(?P<dev>~dev)?\.json\Z")
HOSTED_DIST = re.compile(r"dists/" + PACKAGE + r"/(?P<version>[^/]+)\.zip\Z")
PROXY_DIST = re.compile(r"dists/" + PACKAGE + r"/(?P<version>[^/]+)/(?P<ref>[A-Za-z0-9._-]+)\.zip\Z")
GITHUB_DIST_HOSTS = ["api.github.com", "codeload.github.com"]


def json_answer(request: web.Request, body: bytes, x_cache: str | None = None,
                last_modified: str | None = None) -> web.StreamResponse:
    headers = {"Cache-Control": "no-cache"}
    if x_cache:
        headers["X-Cache"] = x_cache
    return respond_bytes(request, body, JSON, headers, last_modified=last_modified)


def rebase(body: bytes, base_url: str) -> bytes:
    return body.replace(BASE_PLACEHOLDER.encode(), base_url.rstrip("/").encode())


class Composer(Format):
    """Composer repository (metadata v2) with uploads."""

    name = "composer"
    routes = (
        route("GET HEAD", r"packages\.json", "packages_json"),
        route("GET HEAD", r"p2/[a-z0-9._-]+/[a-z0-9._-]+(~dev)?\.json", "p2"),
        route("GET HEAD", r"dists/(?P<path>.+\.zip)", "dist"),
        route("PUT", r"packages/" + PACKAGE + r"/(?P<version>[^/]+)\.zip", "upload", "hosted group"),
        route("POST", r"packages", "upload_form", "hosted group"),
    )
    options = {"dist_hosts": Option(string_list, (), "hosts (host or host:port) a proxy may fetch dists "
                                                     "from besides its upstream's own origin")}

    @classmethod
    def default_upstream(cls) -> str:
        return "https://repo.packagist.org"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        repos = standard_repositories("composer")
        # Packagist's dists are source-host zipballs: allowed explicitly, and only those hosts
        repos["composer-remote"]["options"] = {"dist_hosts": list(GITHUB_DIST_HOSTS)}
        return repos

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        config: dict[str, Any] = {"repositories": [{"type": "composer", "url": url}, {"packagist.org": False}]}
        if insecure:
            config["config"] = {"secure-http": False}
        out = [("composer.json", json.dumps(config, indent=2))]
        if not repo.is_proxy:
            out.append(("publish (a zip with composer.json inside)",
                        f"curl -u USER:TOKEN -T pkg.zip {url}/packages/vendor/name/1.0.0.zip"))
        return out

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> composer.lock`: the p2 document of every locked package, then its dist."""
        if not filename.endswith("composer.lock"):
            return None
        try:
            lock = json.loads(text)
        except ValueError as exc:
            from .warm_plans import PlanError
            raise PlanError(f"composer.lock cannot be parsed: {exc}") from None
        jobs, notes = [], []
        for package in (lock.get("packages") or []) + (lock.get("packages-dev") or []):
            name, version = package.get("name", ""), package.get("version", "")
            if not cm.NAME.match(name):
                notes.append(f"skipped: {name!r}")
                continue
            doc = f"{mount}/{cm.p2_path(name, cm.is_dev(version))}"
            jobs.append(Job(doc, then=functools.partial(dist_jobs, name=name, version=version)))
        return jobs, notes

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        return web.json_response({"status": "error", "message": message}, status=status,
                                 headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ metadata
    async def packages_json(self, ctx: Ctx) -> web.StreamResponse:
        """The root document, answered without upstream contact."""
        doc: dict[str, Any] = {"packages": [], "metadata-url": f"{ctx.base_url}/p2/%package%.json"}
        members = ctx.members() if ctx.repo.is_group else [ctx]
        if all(m.repo.is_hosted for m in members):
            names = {f.path[3:].removesuffix(".json").removesuffix("~dev")
                     for m in members for f in await m.hosted.list("p2/")}
            doc["available-packages"] = sorted(names)
        return json_answer(ctx.request, json.dumps(doc).encode(), None if ctx.repo.is_hosted else "HIT")

    async def p2(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.path
        if ctx.repo.is_proxy:
            spec = ctx.pull.spec(path, kind=Kind.METADATA, content_type=JSON,
                                 transform=cm_transform)
            return await ctx.pull.answer(ctx.request, await ctx.open_upstream(spec), path, base_url=ctx.base_url)
        if ctx.repo.is_hosted:
            stored = await self.hosted_p2(ctx, path)
            return json_answer(ctx.request, rebase(await ctx.hosted.read(stored), ctx.base_url),
                               last_modified=stored.meta.get("last_modified"))
        answers = await ctx.each_member(lambda m: self.member_p2(m, path), path)
        bodies = [body for _, (body, _) in answers]
        merged = await in_thread(cm.merge_p2, bodies) if len(bodies) > 1 else bodies[0]
        return json_answer(ctx.request, rebase(merged, ctx.base_url), merge_x_cache(x for _, (_, x) in answers))

    async def hosted_p2(self, ctx: Ctx, path: str) -> Any:
        stored = await ctx.hosted.get(path)
        if stored is None:
            raise FormatError(404, f"{path} not found in {ctx.repo.name}")
        return stored

    async def member_p2(self, member: Ctx, path: str) -> tuple[bytes, str]:
        """A member's p2 document with BASE_PLACEHOLDER URLs (a proxy's: policy-filtered)."""
        if member.repo.is_hosted:
            return await member.hosted.read(await self.hosted_p2(member, path)), "HIT"
        cached, body = await member.fetch_upstream(
            member.pull.spec(path, kind=Kind.METADATA, content_type=JSON, transform=cm_transform))
        versions = self.metadata_versions(path, body)
        hidden = member.pull.hidden(versions) if versions else {}
        return (self.filter_metadata(path, body, frozenset(hidden)) if hidden else body), cached.status

    # ------------------------------------------------------------------ dists
    async def dist(self, ctx: Ctx) -> web.StreamResponse:
        path = "dists/" + ctx.match["path"]
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.member_dist(m, path, "HIT"), path)
        return await self.member_dist(ctx, path)

    async def member_dist(self, ctx: Ctx, path: str, x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(path) if HOSTED_DIST.match(path) else None
            if stored is None:
                raise FormatError(404, f"{path} not found in {ctx.repo.name}")
            return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)
        found = PROXY_DIST.match(path)
        if found is None:
            raise FormatError(404, f"{path} is not a dist of {ctx.repo.name}")
        stored = await ctx.pull.peek(path)
        if stored is not None:          # immutable and stored: answered without the metadata
            await ctx.check_policy(path)
            return ctx.pull.respond(ctx.request, Cached("HIT", ctx.repo, stored))
        name, version = found["package"], cm.decode_version(found["version"])
        doc = cm.p2_path(name, cm.is_dev(version))
        _, body = await ctx.fetch_upstream(ctx.pull.spec(doc, kind=Kind.METADATA, content_type=JSON,
                                                         transform=cm_transform))
        dist = await in_thread(cm.find_dist, body, name, version, found["ref"])
        origin = (dist or {}).get(cm.UPSTREAM_URL)
        if not isinstance(origin, str):
            raise FormatError(404, f"{name} {version} ({found['ref']}) is not in {ctx.repo.name}'s upstream metadata")
        self.check_dist_host(ctx, origin)
        shasum = str(dist.get("shasum") or "")
        integrity = None
        if re.fullmatch(r"[0-9a-f]{40}", shasum):
            integrity = "sha1-" + base64.b64encode(bytes.fromhex(shasum)).decode()
        spec = ctx.pull.spec(path, origin, Kind.IMMUTABLE, expect_integrity=integrity, content_type="application/zip")
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    @staticmethod
    def check_dist_host(ctx: Ctx, url: str) -> None:
        """Dists come from the upstream's own origin or an allow-listed host, nowhere else."""
        target, upstream = urlsplit(url), urlsplit(ctx.repo.upstream or "")
        if target.scheme in ("http", "https") and (target.scheme, target.netloc) == (upstream.scheme, upstream.netloc):
            return
        allowed = ctx.repo.options.get("dist_hosts") or ()
        if target.scheme in ("http", "https") and (target.hostname in allowed or target.netloc in allowed):
            return
        raise FormatError(403, f"dist host {target.netloc or url!r} is not in the dist_hosts of {ctx.repo.name}")

    # ------------------------------------------------------------------ uploads
    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        staged = await target.stage()
        return await self.store(target, staged, ctx.match["package"], unquote(ctx.match["version"]))

    async def upload_form(self, ctx: Ctx) -> web.StreamResponse:
        """multipart/form-data: `package` (the zip) and optionally `version`."""
        target = ctx.deploy_target()
        if not ctx.request.content_type.startswith("multipart/"):
            raise FormatError(400, "POST a multipart form with a `package` file (and `version`)")
        reader = await ctx.request.multipart()
        staged, version = None, None
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "package" and staged is None:
                staged = await target.stage(part_chunks(part))
            elif part.name == "version":
                version = (await part.read(decode=True))[:200].decode("utf-8", "replace").strip() or None
        if staged is None:
            raise FormatError(400, "the form has no `package` file")
        return await self.store(target, staged, None, version)

    async def store(self, target: Ctx, staged: Any, name: str | None, version: str | None) -> web.StreamResponse:
        data = await target.hosted.read_staged(staged)
        try:
            composer = await in_thread(cm.read_composer_json, data)
            name, version = cm.check_upload(composer, name, version)
        except cm.ComposerError as exc:
            raise FormatError(400, str(exc)) from None
        doc_path = cm.p2_path(name, cm.is_dev(version))
        stored = await target.hosted.get(doc_path)
        existing = cm.parse_p2(await target.hosted.read(stored)).get(name, []) if stored else []
        if any(v.get("version_normalized") == cm.normalize(version) for v in existing):
            raise FormatError(409, f"{name} {version} already exists in {target.repo.name}")
        path = cm.dist_path(name, version)
        published = await target.record(path, staged, content_type="application/zip", overwrite=False,
                                        meta={"package": name, "version": version})
        if not published.created:
            raise FormatError(409, f"{name} {version} already exists in {target.repo.name}")
        entry = cm.version_entry(composer, name, version, cm.sha1(data), time.time())
        try:
            await target.hosted.update_document(doc_path, lambda old: cm.add_version(old, name, entry),
                                                content_type=JSON)
        except cm.ComposerError as exc:            # a concurrent upload of the same version won
            await target.hosted.delete(path)
            raise FormatError(409, str(exc)) from None
        target.hosted.count_publish()
        return web.json_response({"status": "success", "package": name, "version": version,
                                  "dist": entry["dist"]["url"].replace(BASE_PLACEHOLDER, target.base_url),
                                  "shasum": entry["dist"]["shasum"]}, status=201)

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = PROXY_DIST.match(path) or HOSTED_DIST.match(path)
        return (found["package"], cm.decode_version(found["version"])) if found else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        if not P2.match(path):
            return None
        try:
            packages = cm.parse_p2(body)
        except cm.ComposerError:
            return []
        return [VersionInfo(name, str(v.get("version")), parse_time(v.get("time")))
                for name, versions in packages.items() for v in versions]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        packages = cm.parse_p2(body)
        return cm.render_p2({name: [v for v in versions if (name, str(v.get("version"))) not in hidden]
                             for name, versions in packages.items()})

    def metadata_key_for(self, package: str) -> str | None:
        return cm.p2_path(package, False)


def cm_transform(body: bytes) -> bytes:
    """Fill-time rewrite of an upstream p2 document (a worker thread); bad JSON is kept as an
    empty document rather than stored broken."""
    try:
        return cm.rewrite_p2(body)
    except cm.ComposerError:
        return cm.render_p2({})


async def part_chunks(part: Any) -> Any:
    while chunk := await part.read_chunk(256 * 1024):
        yield chunk


def dist_jobs(body: bytes, url: str, name: str, version: str) -> list[Job]:
    """The dist URL of one locked version, from its (rebased) p2 document."""
    try:
        versions = cm.parse_p2(body).get(name, [])
    except cm.ComposerError:
        return []
    return [Job(v["dist"]["url"]) for v in versions
            if v.get("version") == version and isinstance(v.get("dist"), dict) and v["dist"].get("url")]


FORMAT = Composer

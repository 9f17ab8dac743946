"""Chef Supermarket (`format: chef`): what Berkshelf, Policyfiles and knife read.

Paths, relative to `/<repo>/` (Berksfile: `source '<depot>/<repo>'`; knife:
`knife supermarket install X --supermarket-site <depot>/<repo>`):

* `GET universe` — every cookbook version with `location_path` (`<repo>/api/v1`), `download_url`
  and dependencies. Hosted: built from the stored cookbooks; proxy: the upstream's (metadata,
  revalidated), every location rewritten to depot at fill time; group: merged (first member wins).
* `GET api/v1/cookbooks/<name>`, `GET api/v1/cookbooks/<name>/versions/<v>` (`1_2_3` or `1.2.3`) —
  cookbook and version documents; `…/download` answers 302 to `files/<name>/<name>-<v>.tar.gz`,
  the tarball (immutable; a proxy fetches the upstream's `…/download` once).
* `POST api/v1/cookbooks` — upload (multipart `tarball`, plus knife's `cookbook` JSON): the
  tarball's `<name>/metadata.json` is checked; `DELETE api/v1/cookbooks/<name>/versions/<v>`.
  depot authenticates with its own tokens (Basic/Bearer), not Chef's signed X-Ops headers, so
  `knife supermarket share` cannot upload here: use curl (see the snippets).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, Kind, merge_x_cache, parse_time

from . import chef_docs as cd
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .group_answer import first_member_hit
from .json_answer import json_answer
from .longtail_warm import plan_berksfile_lock
from .multipart import form_fields
from .repo import RepoConfig
from .tree import in_thread

N, V = cd.NAME, cd.VERSION
TARBALL_TYPE = "application/x-gzip"
CODES = {400: "INVALID_DATA", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT"}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Chef(Format):
    """Supermarket API: hosted, proxy and group."""

    name = "chef"
    routes = (
        route("GET HEAD", r"universe", "universe"),
        route("POST", r"api/v1/cookbooks", "upload", "hosted group"),
        route("GET HEAD", rf"api/v1/cookbooks/(?P<name>{N})", "cookbook"),
        route("GET HEAD", rf"api/v1/cookbooks/(?P<name>{N})/versions/(?P<version>{V})", "version"),
        route("DELETE", rf"api/v1/cookbooks/(?P<name>{N})/versions/(?P<version>{V})", "delete", "hosted group"),
        route("GET HEAD", rf"api/v1/cookbooks/(?P<name>{N})/versions/(?P<version>{V})/download", "download"),
        route("GET HEAD", rf"files/(?P<name>{N})/(?P=name)-(?P<version>{V})\.tar\.gz", "file"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("chef")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://supermarket.chef.io"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """Berksfile.lock: every locked version's archive."""
        return plan_berksfile_lock(mount, text) if filename == "Berksfile.lock" else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("Berksfile", f"source '{url}'"),
               ("knife", f"knife supermarket install <cookbook> --supermarket-site {url}")]
        if not repo.is_proxy:
            out.append(("upload", f"curl -u USER:TOKEN -F tarball=@mycookbook-1.0.0.tar.gz {url}/api/v1/cookbooks"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Supermarket's shape: {"error_code": "NOT_FOUND", "error_messages": ["…"]}."""
        return web.json_response({"error_code": code or CODES.get(status, "ERROR"), "error_messages": [message]},
                                 status=status, headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = re.fullmatch(rf"files/({N})/\1-({V})\.tar\.gz", path)
        return (found[1], found[2]) if found else None

    # ------------------------------------------------------------------ supply-chain policy
    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """universe and cookbook documents (no publish times: deny/allow rules), version documents
        (`published_at`: the cooldown too)."""
        try:
            offered = cd.offered_versions(path, body)
        except (ValueError, AttributeError):
            return None
        return None if offered is None else [VersionInfo(n, v, parse_time(t)) for n, v, t in offered]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        return cd.without(path, body, hidden)

    async def publish_time(self, ctx: Ctx, package: str, version: str) -> float | None:
        """From the upstream's version document (`published_at`), through the cache."""
        if not ctx.repo.is_proxy:
            return None
        key = f"api/v1/cookbooks/{package}/versions/{version.replace('.', '_')}"
        try:
            _, body = await ctx.fetch_upstream(self._version_spec(ctx, key))
            return parse_time(json.loads(body).get("published_at"))
        except (FormatError, ValueError, AttributeError):
            return None

    # ------------------------------------------------------------------ universe
    async def universe(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_proxy:
            cached = await ctx.open_upstream(self._universe_spec(ctx))
            return await ctx.pull.answer(ctx.request, cached, "universe", base_url=ctx.base_url)
        universe, x_cache = await self._universe(ctx)
        return json_answer(ctx.request, universe, {"X-Cache": x_cache})

    def _universe_spec(self, ctx: Ctx) -> Any:
        return ctx.pull.spec("universe", kind=Kind.METADATA, content_type="application/json",
                             transform=lambda body: cd.rewrite_universe(body, BASE_PLACEHOLDER))

    async def _universe(self, ctx: Ctx) -> tuple[dict[str, Any], str]:
        if ctx.repo.is_hosted:
            universe: dict[str, Any] = {}
            for f in await ctx.hosted.list("files/"):
                meta = f.meta.get("chef")
                if meta:
                    universe.setdefault(meta["name"], {})[meta["version"]] = cd.universe_entry(
                        ctx.base_url, meta["name"], meta["version"], meta.get("dependencies") or {})
            return universe, "HIT"
        if ctx.repo.is_proxy:
            cached, body = await ctx.fetch_upstream(self._universe_spec(ctx))
            hidden = ctx.pull.hidden(await in_thread(self.metadata_versions, "universe", body) or [])
            if hidden:
                body = await in_thread(cd.without, "universe", body, frozenset(hidden))
            text = body.replace(BASE_PLACEHOLDER.encode(), ctx.base_url.encode())
            return await in_thread(json.loads, text), cached.status
        answers = await ctx.each_member(self._universe, "universe")
        merged = await in_thread(cd.merge_universes, [u for _, (u, _) in answers])
        return merged, merge_x_cache(s for _, (_, s) in answers) or "HIT"

    # ------------------------------------------------------------------ cookbook and version documents
    async def _hosted_versions(self, ctx: Ctx, name: str) -> list[tuple[str, dict[str, Any], str, int]]:
        return [(f.meta["chef"]["version"], f.meta["chef"], _iso(f.created), f.size)
                for f in await ctx.hosted.list(f"files/{name}/") if f.meta.get("chef", {}).get("name") == name]

    def _version_spec(self, ctx: Ctx, key: str) -> Any:
        upstream = (ctx.repo.upstream or "").rstrip("/")

        def rewrite(body: bytes) -> bytes:       # at fill time; a failure stores nothing (502)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise ValueError(f"the upstream's {key} is not a Supermarket JSON document")
            return body.replace(upstream.encode(), BASE_PLACEHOLDER.encode())
        return ctx.pull.spec(key, kind=Kind.METADATA, content_type="application/json", transform=rewrite)

    async def _proxied(self, ctx: Ctx, key: str) -> web.StreamResponse:
        return await ctx.pull.answer(ctx.request, await ctx.open_upstream(self._version_spec(ctx, key)), key,
                                     base_url=ctx.base_url)

    async def cookbook(self, ctx: Ctx) -> web.StreamResponse:
        name = ctx.match["name"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.cookbook, f"cookbook {name}")
        if ctx.repo.is_proxy:
            return await self._proxied(ctx, f"api/v1/cookbooks/{name}")
        versions = await self._hosted_versions(ctx, name)
        if not versions:
            raise FormatError(404, f"cookbook {name} not found")
        return json_answer(ctx.request, cd.cookbook_doc(ctx.base_url, name, [v[:3] for v in versions]),
                           {"X-Cache": "HIT"})

    async def version(self, ctx: Ctx) -> web.StreamResponse:
        name, version = ctx.match["name"], cd.dotted(ctx.match["version"])
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.version, f"cookbook {name} {version}")
        if ctx.repo.is_proxy:
            await ctx.check_policy(f"files/{name}/{name}-{version}.tar.gz")    # a hidden version: 403, the rule
            return await self._proxied(ctx, f"api/v1/cookbooks/{name}/versions/{version.replace('.', '_')}")
        for v, meta, published, size in await self._hosted_versions(ctx, name):
            if v == version:
                return json_answer(ctx.request, cd.version_doc(ctx.base_url, name, meta, size, published),
                                   {"X-Cache": "HIT"})
        raise FormatError(404, f"cookbook {name} {version} not found")

    async def download(self, ctx: Ctx) -> web.StreamResponse:
        name, version = ctx.match["name"], cd.dotted(ctx.match["version"])
        if ctx.repo.is_hosted and await ctx.hosted.get(f"files/{name}/{name}-{version}.tar.gz") is None:
            raise FormatError(404, f"cookbook {name} {version} not found")
        return web.Response(status=302, headers={"Location": f"{ctx.base_url}/files/{name}/{name}-{version}.tar.gz",
                                                 "Cache-Control": "no-cache"})

    async def file(self, ctx: Ctx) -> web.StreamResponse:
        name, version = ctx.match["name"], ctx.match["version"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.file, f"cookbook {name} {version}")
        path = f"files/{name}/{name}-{version}.tar.gz"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"cookbook {name} {version} not found")
            return ctx.hosted.serve(ctx.request, found)
        if await ctx.pull.peek(path) is None:
            # only a version the upstream documents is downloaded: a server that is no Supermarket
            # (a Chef server answers 200 with nothing there) must not leave an empty cookbook cached
            key = f"api/v1/cookbooks/{name}/versions/{version.replace('.', '_')}"
            await ctx.fetch_upstream(self._version_spec(ctx, key))
        url = f"{(ctx.repo.upstream or '').rstrip('/')}/api/v1/cookbooks/{name}/versions/{version}/download"
        spec = ctx.pull.spec(path, url, Kind.IMMUTABLE, content_type=TARBALL_TYPE)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    # ------------------------------------------------------------------ upload and delete
    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        tarball = (await form_fields(ctx, ("tarball", "cookbook"))).get("tarball")
        if not tarball:
            raise FormatError(400, "no tarball in the request (multipart field 'tarball')")
        try:
            meta = await in_thread(cd.cookbook_metadata, tarball)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        name, version = meta["name"], meta["version"]
        published = await target.publish(f"files/{name}/{name}-{version}.tar.gz", tarball, content_type=TARBALL_TYPE,
                                         overwrite=False, meta={"chef": meta})
        target.hosted.count_publish()
        return web.json_response({"uri": f"{ctx.base_url}/api/v1/cookbooks/{name}"},
                                 status=201 if published.created else 200)

    async def delete(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target("delete")
        name, version = ctx.match["name"], cd.dotted(ctx.match["version"])
        if not await target.hosted.delete(f"files/{name}/{name}-{version}.tar.gz", tombstone=True):
            raise FormatError(404, f"cookbook {name} {version} not found")
        return web.json_response({"uri": f"{ctx.base_url}/api/v1/cookbooks/{name}"})


FORMAT = Chef

"""Puppet Forge (`format: puppet`): the Forge v3 API that `puppet module install`, r10k and Bolt use.

Paths, relative to `/<repo>/` (`puppet module install --module_repository <depot>/<repo>`; r10k:
`forge: {baseurl: <depot>/<repo>}`); every URI in the answers is relative to that mount, as the
clients prefix it:

* `GET v3/releases?module=<owner>-<name>[&limit&offset]` — the module's releases, newest version
  first, paginated (`pagination.next`). `GET v3/releases/<slug>-<version>`, `GET v3/modules/<slug>`.
  Hosted: built from the tarballs stored (metadata.json read at publish); proxy: the upstream's
  release pages (metadata, revalidated after metadata_ttl); group: the members' releases merged
  (the first member having a version wins).
* `GET v3/files/<slug>-<version>.tar.gz` — the module, immutable; a proxy fetches only files its
  upstream's releases list, verified against their `file_sha256`.
* `POST v3/releases` — publish (`pdk release`, puppet-blacksmith): multipart field `file` or the raw
  tarball; its metadata.json is checked (name `<owner>-<name>`, semantic version, dependencies).
  A published version never takes other bytes.
"""
from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache

from . import puppet_releases as pr
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .group_answer import first_member_hit
from .json_answer import json_answer
from .longtail_warm import plan_puppetfile
from .multipart import form_fields
from .repo import RepoConfig
from .tree import in_thread

TARBALL_TYPE = "application/octet-stream"
MAX_PAGES = 50
SHA256 = re.compile(r"[0-9a-f]{64}")


def _page_key(slug: str, offset: int) -> str:
    return f"v3/releases?module={slug}&offset={offset}"


def _public(release: dict[str, Any]) -> dict[str, Any]:
    """A release as answered: its file_uri relative to the mount, whatever the upstream wrote."""
    uri = str(release.get("file_uri") or "")
    if not uri.startswith("/v3/files/"):
        return {**release, "file_uri": "/v3/files/" + urlsplit(uri).path.rsplit("/", 1)[-1]}
    return release


class Puppet(Format):
    """Forge v3: hosted, proxy and group."""

    name = "puppet"
    version_scheme = "semver"
    routes = (
        route("GET HEAD", r"v3/releases", "releases"),
        route("POST", r"v3/releases", "publish", "hosted group"),
        route("GET HEAD", rf"v3/releases/(?P<slug>{pr.SLUG})-(?P<version>{pr.VERSION})", "release"),
        route("GET HEAD", rf"v3/modules/(?P<slug>{pr.SLUG})", "module"),
        route("GET HEAD", rf"v3/files/(?P<file>{pr.FILE.pattern})", "file"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("puppet")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://forgeapi.puppet.com"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """Puppetfile: every locked version's archive."""
        return plan_puppetfile(mount, text) if filename == "Puppetfile" else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("puppet module", f"puppet module install <owner>-<module> --module_repository {url}"),
               ("r10k.yaml", f"forge:\n  baseurl: '{url}'")]
        if not repo.is_proxy:
            out.append(("publish", f"curl -H 'Authorization: Bearer TOKEN' -F file=@owner-mod-1.0.0.tar.gz "
                                   f"{url}/v3/releases"))
        return out

    def challenge(self, base_url: str) -> str:
        return 'Bearer realm="depot"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The Forge's shape: {"message": "<status> …", "errors": ["…"]}."""
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return web.json_response({"message": f"{status} {reason}", "errors": [message]}, status=status,
                                 headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = pr.FILE.fullmatch(path.removeprefix("v3/files/")) if path.startswith("v3/files/") else None
        return (found["slug"], found["version"]) if found else None

    def metadata_key_for(self, package: str) -> str | None:
        return _page_key(package, 0)

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        if not path.startswith("v3/releases?"):
            return None
        doc = json.loads(body)
        return [VersionInfo(str(r.get("module", {}).get("slug") or r["metadata"]["name"]).replace("/", "-"),
                            str(r.get("version")), pr.epoch_of(r.get("created_at")))
                for r in doc.get("results") or [] if isinstance(r, dict)]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        doc = json.loads(body)
        doc["results"] = [r for r in doc.get("results") or []
                          if (str(r.get("module", {}).get("slug")), str(r.get("version"))) not in hidden]
        return json.dumps(doc).encode()

    # ------------------------------------------------------------------ the releases of a module
    async def _all(self, ctx: Ctx, slug: str) -> tuple[list[dict[str, Any]], str]:
        """Every release of `slug` in this repository (newest first) and the X-Cache."""
        if ctx.repo.is_hosted:
            out = []
            for f in await ctx.hosted.list(f"v3/files/{slug}-"):
                meta = f.meta.get("puppet")
                if meta and meta["metadata"]["name"] == slug:
                    out.append(pr.release_doc(meta["metadata"], f.size, meta["md5"], f.digest, f.created))
            return pr.sort_releases(out), "HIT"
        if ctx.repo.is_proxy:
            return await self._proxy_releases(ctx, slug)
        answers = await ctx.each_member(lambda m: self._all(m, slug), f"module {slug}")
        merged = [r for _, (releases, _) in answers for r in releases]
        return pr.sort_releases(merged), merge_x_cache(s for _, (_, s) in answers) or "HIT"

    async def _proxy_releases(self, ctx: Ctx, slug: str) -> tuple[list[dict[str, Any]], str]:
        upstream = (ctx.repo.upstream or "").rstrip("/")
        out: list[dict[str, Any]] = []
        statuses = []
        offset: int | None = 0
        for _ in range(MAX_PAGES):
            if offset is None:
                break
            url = f"{upstream}/v3/releases?module={slug}&limit={pr.MAX_LIMIT}&offset={offset}"
            spec = ctx.pull.spec(_page_key(slug, offset), url, Kind.METADATA, content_type="application/json")
            try:
                cached, body = await ctx.fetch_upstream(spec)
            except FormatError as exc:
                if exc.status == 404:
                    break
                raise
            statuses.append(cached.status)
            try:
                doc = json.loads(body)
                out += [r for r in doc.get("results") or [] if isinstance(r, dict) and r.get("version")]
                nxt = (doc.get("pagination") or {}).get("next")
            except (ValueError, AttributeError):
                raise FormatError(502, f"the upstream's releases of {slug} are not usable") from None
            offset = int(parse_qs(urlsplit(nxt).query).get("offset", ["0"])[0]) if nxt else None
        # the supply-chain policy: versions it hides (deny rules, cooldown on created_at) are left out
        hidden = ctx.pull.hidden(VersionInfo(slug, str(r["version"]), pr.epoch_of(r.get("created_at"))) for r in out)
        out = [r for r in out if (slug, str(r["version"])) not in hidden]
        return pr.sort_releases(out), merge_x_cache(statuses) or "HIT"

    # ------------------------------------------------------------------ answers
    async def releases(self, ctx: Ctx) -> web.StreamResponse:
        query = {k: v for k, v in ctx.request.query.items()}
        slug = str(query.get("module", "")).replace("/", "-")
        if not re.fullmatch(pr.SLUG, slug):
            raise FormatError(400, "give the module as ?module=<owner>-<name>")
        releases, x_cache = await self._all(ctx, slug)
        try:
            doc = pr.page([_public(r) for r in releases], query)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        return json_answer(ctx.request, doc, {"X-Cache": x_cache})

    async def release(self, ctx: Ctx) -> web.StreamResponse:
        slug, version = ctx.match["slug"], ctx.match["version"]
        releases, x_cache = await self._all(ctx, slug)
        for found in releases:
            if found.get("version") == version:
                return json_answer(ctx.request, _public(found), {"X-Cache": x_cache})
        raise FormatError(404, f"release {slug}-{version} not found")

    async def module(self, ctx: Ctx) -> web.StreamResponse:
        slug = ctx.match["slug"]
        releases, x_cache = await self._all(ctx, slug)
        if not releases:
            raise FormatError(404, f"module {slug} not found")
        return json_answer(ctx.request, pr.module_doc(slug, [_public(r) for r in releases]), {"X-Cache": x_cache})

    async def file(self, ctx: Ctx) -> web.StreamResponse:
        file = ctx.match["file"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.file, file)
        path = f"v3/files/{file}"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{file} not found")
            return ctx.hosted.serve(ctx.request, found)
        await ctx.check_policy(path)            # before the (filtered) release list: a hidden version is a 403
        if await ctx.pull.peek(path) is not None:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(path, None, Kind.IMMUTABLE)))
        slug = pr.FILE.fullmatch(file)
        if slug is None:
            raise FormatError(404, f"{file} is not a module release file")
        releases, _ = await self._all(ctx, slug["slug"])
        for release in releases:
            uri = str(release.get("file_uri") or "")
            if urlsplit(uri).path.rsplit("/", 1)[-1] == file:
                url = uri if uri.startswith(("http://", "https://")) else (ctx.repo.upstream or "").rstrip("/") + uri
                sha = str(release.get("file_sha256") or "").lower()
                spec = ctx.pull.spec(path, url, Kind.IMMUTABLE, content_type=TARBALL_TYPE,
                                     expect_sha256=sha if SHA256.fullmatch(sha) else None)
                return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))
        raise FormatError(404, f"{file} is not a release of the upstream")

    # ------------------------------------------------------------------ publish
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        if ctx.request.content_type.startswith("multipart/form-data"):
            data = (await form_fields(ctx, ("file",))).get("file")
        else:
            data = await ctx.read_body()
        if not data:
            raise FormatError(400, "no module in the request (multipart field 'file')")
        try:
            meta = await in_thread(pr.module_metadata, data)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        md5, _ = await in_thread(pr.digests, data)
        path = f"v3/files/{meta['name']}-{meta['version']}.tar.gz"
        published = await target.publish(path, data, content_type=TARBALL_TYPE, overwrite=False,
                                         meta={"puppet": {"metadata": meta, "md5": md5}})
        target.hosted.count_publish()
        return web.json_response({"uri": f"/v3/releases/{meta['name']}-{meta['version']}",
                                  "slug": f"{meta['name']}-{meta['version']}", "file_sha256": published.file.digest},
                                 status=201 if published.created else 200)


FORMAT = Puppet

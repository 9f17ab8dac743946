"""Helm chart repositories (`format: helm`): index.yaml, charts, provenance, the ChartMuseum API.

Paths, relative to `/<repo>/`:

* `GET index.yaml` — hosted: generated from the charts stored (Chart.yaml read from each .tgz at
  publish, kept with compare-and-swap so concurrent publishes never lose one another), chart URLs
  relative (`charts/<name>-<version>.tgz`); proxy: the upstream's index (metadata, revalidated)
  parsed once at fill time in a worker thread, every chart URL pointing at depot; group: the
  members' indexes merged (the first member having a version wins).
* `GET charts/<name>-<version>.tgz[.prov]` — charts and provenance files, immutable. A proxy
  fetches only charts its upstream's index lists, from the URL the index gave (relative or
  absolute), verified against the index's digest.
* ChartMuseum API (helm cm-push, CI scripts): `POST api/charts` (raw .tgz, or multipart `chart`
  and optional `prov`), `POST api/prov`, `DELETE api/charts/<name>/<version>`,
  `GET api/charts[/<name>[/<version>]]`. A version already published with other bytes is refused
  (409) unless the repository sets `allow_overwrite`. `PUT charts/<file>` works too.

OCI charts (`helm push oci://…`) go through the OCI registry (`format: oci`), not here.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any, Awaitable, Callable

from aiohttp import web
from cachetools import LRUCache

from depot.cache.api import BASE_PLACEHOLDER, Kind, Staged, UpstreamFailed, merge_x_cache, parse_time

from . import helm_index as hi
from .infra_warm import HELM_LOCKS, plan_chart_lock
from .base import Ctx, FormatError, VersionInfo, route, standard_repositories
from .multipart import form_fields
from .repo import RepoConfig
from .tree import Rewrite, TreeFormat, in_thread, rule

INDEX = "index.yaml"
YAML_TYPE = "application/x-yaml"
CHART_TYPE = "application/gzip"
CHART_PATH = re.compile(r"charts/(?P<file>[^/]+\.tgz)(?P<prov>\.prov)?")
CHART_FILE = re.compile(r"(?P<name>.+?)-(?P<version>v?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)"
                        r"\.tgz(\.prov)?")
PARSED_INDEXES = 8          # chart lookups of proxy indexes kept per process (by index digest)


def _rewrite(body: bytes, rw: Rewrite) -> bytes:
    try:
        return hi.rewrite_proxy_index(body, rw.upstream, rw.base)
    except hi.BadChart as exc:
        raise ValueError(f"upstream index.yaml of {rw.repo.name} is not usable: {exc}") from None


def _bad(exc: Exception) -> FormatError:
    return FormatError(400, str(exc))


class Helm(TreeFormat):
    """Chart repository over the static-tree helper, plus the ChartMuseum upload API."""

    name = "helm"
    tree = (rule(r"index\.yaml", "metadata", rewrite=_rewrite, content_type=YAML_TYPE),
            rule(r"charts/[^/]+\.tgz", content_type=CHART_TYPE),
            rule(r"charts/[^/]+\.tgz\.prov", content_type="application/pgp-signature"))
    routes = (
        route("POST", r"api/charts", "api_upload", "hosted group"),
        route("POST", r"api/prov", "api_prov", "hosted group"),
        route("GET HEAD", r"api/charts(?:/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?)?", "api_list"),
        route("DELETE", r"api/charts/(?P<name>[^/]+)/(?P<version>[^/]+)", "api_delete", "hosted group"),
        *TreeFormat.routes,
    )

    def __init__(self) -> None:
        self._lookups: LRUCache[tuple[str, str], asyncio.Task[dict[str, tuple[str, str | None]]]] = \
            LRUCache(maxsize=PARSED_INDEXES)

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("helm")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://charts.helm.sh/stable"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """Chart.lock (or a v1 requirements.lock): every locked chart."""
        return plan_chart_lock(mount, text) if filename in HELM_LOCKS else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("helm", f"helm repo add {repo.name} {url}\nhelm repo update\n"
                        f"helm install my-release {repo.name}/<chart>")]
        if not repo.is_proxy:
            out.append(("publish (ChartMuseum API)",
                        f"curl -u USER:TOKEN --data-binary @mychart-0.1.0.tgz {url}/api/charts"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """ChartMuseum's shape: {"error": "…"}."""
        return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = CHART_PATH.fullmatch(path)
        parsed = CHART_FILE.fullmatch(found["file"]) if found else None
        return (parsed["name"], parsed["version"]) if parsed else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        if path != INDEX:
            return None
        index = hi.parse_index(body)
        return [VersionInfo(name, str(cv.get("version")), parse_time(cv.get("created")))
                for name, versions in index["entries"].items() for cv in versions]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        index = hi.parse_index(body)
        for name, versions in index["entries"].items():
            index["entries"][name] = [cv for cv in versions if (name, str(cv.get("version"))) not in hidden]
        return hi.dump_json(index)

    # ------------------------------------------------------------------ index documents
    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path != INDEX:
            return None
        found = await ctx.hosted.get(INDEX)
        if found is not None:
            return ctx.hosted.serve(ctx.request, found)
        return web.Response(body=hi.dump_json(hi.empty_index()), content_type=YAML_TYPE)

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path != INDEX:
            return None
        body, x_cache, key = await self._group_index(ctx)
        etag = hashlib.sha256(repr(key).encode()).hexdigest()
        if ctx.request.headers.get("If-None-Match") == f'"{etag}"':
            return web.Response(status=304, headers={"ETag": f'"{etag}"', "X-Cache": x_cache or "HIT"})
        return web.Response(body=body, content_type=YAML_TYPE,
                            headers={"ETag": f'"{etag}"', "X-Cache": x_cache or "HIT", "Cache-Control": "no-cache"})

    async def _index_body(self, ctx: Ctx) -> tuple[bytes, str | None, Any]:
        """(index document with absolute URLs rebased onto ctx.base_url, X-Cache, render key) of
        any repository type."""
        key, x_cache, load = await self._index_source(ctx)
        return await load(), x_cache, key

    async def _index_source(self, ctx: Ctx) -> tuple[Any, str | None, Callable[[], Awaitable[bytes]]]:
        """(render key, X-Cache, loader of the document): a group re-reads its members' documents
        (a proxy's may be 20 MB) only when its merged render is not cached already."""
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(INDEX)

            async def hosted() -> bytes:
                return await ctx.hosted.read(found) if found else hi.dump_json(hi.empty_index())
            return (ctx.repo.name, found.digest if found else None), "HIT", hosted
        if ctx.repo.is_proxy:
            cached = await ctx.open_upstream(self._index_spec(ctx))

            async def proxied() -> bytes:
                try:
                    body = await ctx.pull.read(cached)
                except UpstreamFailed as exc:
                    raise FormatError(exc.status, f"upstream of {ctx.repo.name} failed: {exc.reason}") from None
                return body.replace(BASE_PLACEHOLDER.encode(), ctx.base_url.encode())
            digest = cached.entry.digest if cached.entry is not None else None
            if digest is None:                      # still streaming in: key it by its content
                body = await proxied()
                digest = hashlib.sha256(body).hexdigest()
                return (ctx.repo.name, digest), cached.status, _constant(body)
            return (ctx.repo.name, digest), cached.status, proxied
        body, x_cache, key = await self._group_index(ctx)
        return key, x_cache, _constant(body)

    async def _group_index(self, ctx: Ctx) -> tuple[bytes, str | None, Any]:
        answers = await ctx.each_member(self._index_source, INDEX)
        key = ("helm-group", ctx.base_url, tuple(k for _, (k, _, _) in answers))
        x_cache = merge_x_cache(s for _, (_, s, _) in answers)
        found = ctx.documents.get(key)
        if found is None:
            bodies = [await load() for _, (_, _, load) in answers]
            try:
                found = await in_thread(lambda: hi.dump_json(hi.merge_indexes(hi.parse_index(b) for b in bodies)))
            except hi.BadChart as exc:
                raise FormatError(502, f"a member's index.yaml is not usable: {exc}") from None
            ctx.documents.put(key, found)
        return found, x_cache, key

    async def index_of(self, ctx: Ctx) -> dict[str, Any]:
        """The parsed index of this repository (for the API listing)."""
        body, _, _ = await self._index_body(ctx)
        try:
            return await in_thread(hi.parse_index, body)
        except hi.BadChart as exc:
            raise FormatError(502, str(exc)) from None

    # ------------------------------------------------------------------ proxy
    def _index_spec(self, ctx: Ctx) -> Any:
        return self.fetch_spec(ctx, INDEX, self.tree[0])

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        found = CHART_PATH.fullmatch(path)
        if found is None:
            return await super().serve_proxy(ctx, path)
        entry = self.classify(ctx.repo, path)
        assert entry is not None
        if await ctx.pull.peek(path) is not None:        # stored: no need to consult the index
            spec = ctx.pull.spec(path, None, Kind.IMMUTABLE, content_type=entry.content_type)
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))
        sources = await self._chart_sources(ctx)
        source = sources.get(found["file"])
        if source is None:
            raise FormatError(404, f"{found['file']} is not in the index of {ctx.repo.name}")
        url, digest = source
        spec = ctx.pull.spec(path, url + (found["prov"] or ""), Kind.IMMUTABLE, content_type=entry.content_type,
                             expect_sha256=None if found["prov"] else digest)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    async def _chart_sources(self, ctx: Ctx) -> dict[str, tuple[str, str | None]]:
        """Chart file -> (upstream URL, sha256) from the stored index, parsed once per index digest
        in a worker thread (concurrent misses share the parse)."""
        cached = await ctx.open_upstream(self._index_spec(ctx))
        digest = cached.entry.digest if cached.entry is not None else None
        task = self._lookups.get((ctx.repo.name, digest)) if digest else None
        if task is None or (task.done() and task.exception() is not None):
            try:
                body = await ctx.pull.read(cached)
            except UpstreamFailed as exc:
                raise FormatError(exc.status, f"upstream of {ctx.repo.name} failed: {exc.reason}") from None
            task = asyncio.ensure_future(in_thread(lambda: hi.chart_sources(hi.parse_index(body))))
            self._lookups[(ctx.repo.name, digest or hashlib.sha256(body).hexdigest())] = task
        try:
            return await asyncio.shield(task)
        except hi.BadChart as exc:
            raise FormatError(502, f"upstream index.yaml is not usable: {exc}") from None

    # ------------------------------------------------------------------ hosted: PUT charts/<file>
    async def validate_upload(self, ctx: Ctx, path: str, staged: Staged) -> dict[str, Any]:
        found = CHART_PATH.fullmatch(path)
        if found is None:
            raise FormatError(400, "only charts/<name>-<version>.tgz and their .prov files can be uploaded")
        data = await ctx.hosted.read_staged(staged)
        try:
            if found["prov"]:
                if await in_thread(hi.prov_chart_file, data) != found["file"]:
                    raise FormatError(400, f"the provenance file is not about {found['file']}")
                return {}
            meta = await in_thread(hi.chart_metadata, data)
        except hi.BadChart as exc:
            raise _bad(exc) from None
        expected = hi.chart_filename(meta["name"], meta["version"])
        if expected != found["file"]:
            raise FormatError(400, f"the chart is {expected}, not {found['file']}")
        return {"chart": meta, "digest": staged.digest}

    async def after_upload(self, ctx: Ctx, path: str, meta: dict[str, Any]) -> None:
        if "chart" in meta:
            await self._index_add(ctx, meta["chart"], meta["digest"])

    async def after_delete(self, ctx: Ctx, path: str) -> None:
        found = CHART_PATH.fullmatch(path)
        if found and not found["prov"]:
            await self._index_remove(ctx, found["file"])

    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        if not CHART_PATH.fullmatch(ctx.match["path"]):
            raise FormatError(400, "only charts/<name>-<version>.tgz and their .prov files can be uploaded")
        return await super().put_path(ctx)

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        if not CHART_PATH.fullmatch(ctx.match["path"]):
            raise FormatError(405, "index.yaml is generated; delete charts instead")
        return await super().delete_path(ctx)

    async def _index_add(self, ctx: Ctx, meta: dict[str, Any], digest: str) -> None:
        entry = hi.index_entry(meta, digest, "charts/" + hi.chart_filename(meta["name"], meta["version"]))
        await ctx.hosted.update_document(INDEX, lambda old: in_thread(hi.add_version, old, entry),
                                         content_type=YAML_TYPE)

    async def _index_remove(self, ctx: Ctx, filename: str) -> None:
        await ctx.hosted.update_document(INDEX, lambda old: in_thread(hi.remove_chart, old, filename),
                                         content_type=YAML_TYPE)

    # ------------------------------------------------------------------ ChartMuseum API
    async def api_upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        if ctx.request.content_type.startswith("multipart/form-data"):
            parts = await form_fields(ctx, ("chart", "prov"))
            chart, prov = parts.get("chart"), parts.get("prov")
        else:
            chart, prov = await ctx.read_body(), None
        if not chart:
            raise FormatError(400, "no chart in the request (raw .tgz body, or multipart field 'chart')")
        try:
            meta = await in_thread(hi.chart_metadata, chart)
            filename = hi.chart_filename(meta["name"], meta["version"])
            if prov is not None and await in_thread(hi.prov_chart_file, prov) != filename:
                raise FormatError(400, f"the provenance file is not about {filename}")
        except hi.BadChart as exc:
            raise _bad(exc) from None
        path, digest = "charts/" + filename, hashlib.sha256(chart).hexdigest()
        existing = await target.hosted.get(path)
        if existing is not None and not target.repo.allow_overwrite and existing.digest != digest:
            raise FormatError(409, f"{filename} already exists")
        published = await target.publish(path, chart, content_type=CHART_TYPE, meta={"chart": meta, "digest": digest})
        if prov is not None:
            await target.publish(path + ".prov", prov, content_type="application/pgp-signature")
        target.hosted.count_publish()
        await self._index_add(target, meta, published.file.digest)
        return web.json_response({"saved": True}, status=201)

    async def api_prov(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        if ctx.request.content_type.startswith("multipart/form-data"):
            prov = (await form_fields(ctx, ("prov",))).get("prov")
        else:
            prov = await ctx.read_body()
        if not prov:
            raise FormatError(400, "no provenance file in the request")
        try:
            filename = await in_thread(hi.prov_chart_file, prov)
        except hi.BadChart as exc:
            raise _bad(exc) from None
        await target.publish(f"charts/{filename}.prov", prov, content_type="application/pgp-signature")
        target.hosted.count_publish()
        return web.json_response({"saved": True}, status=201)

    async def api_delete(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target("delete")
        filename = hi.chart_filename(ctx.match["name"], ctx.match["version"])
        if not await target.hosted.delete("charts/" + filename):
            raise FormatError(404, f"{filename} not found")
        await target.hosted.delete(f"charts/{filename}.prov")
        await self._index_remove(target, filename)
        return web.json_response({"deleted": True})

    async def api_list(self, ctx: Ctx) -> web.StreamResponse:
        index = await self.index_of(ctx)
        name, version = ctx.match["name"], ctx.match["version"]
        if name is None:
            return web.json_response(index["entries"])
        versions = index["entries"].get(name)
        if not versions:
            raise FormatError(404, "chart not found")
        if version is None:
            return web.json_response(versions)
        for cv in versions:
            if cv.get("version") == version or (version == "latest" and cv is versions[0]):
                return web.json_response(cv)
        raise FormatError(404, "improper constraint: " + version)


def _constant(body: bytes) -> Callable[[], Awaitable[bytes]]:
    async def load() -> bytes:
        return body
    return load


FORMAT = Helm

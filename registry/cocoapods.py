"""CocoaPods CDN sources (`format: cocoapods`): the layout `pod repo add-cdn` and `pod install` read.

Paths, relative to `/<repo>/` (Podfile: `source '<depot>/<repo>/'`):

* `CocoaPods-version.yml`, `all_pods_versions_<a>_<b>_<c>.txt` (a, b, c: the first hex digits of
  md5(pod name); lines `Pod/1.0.0/1.1.0`), `deprecated_podspecs.txt`, `all_pods.txt` — metadata:
  proxied and revalidated (ETag, If-None-Match), generated for hosted repositories, shards merged
  in groups.
* `Specs/<a>/<b>/<c>/<Pod>/<version>/<Pod>.podspec.json` — immutable. A `source.http` archive is
  rewritten to depot (`pods/<Pod>/<version>/<file>`) when the podspec is served (so the podspec's
  checksum in Podfile.lock differs from the CDN's); git sources are left as they are: depot cannot
  cache them.
* `pods/<Pod>/<version>/<file>` — the archive: hosted, or fetched once from the URL the upstream's
  podspec names (verified against its `sha256` when it has one).
* `POST api/pods` — hosted publish (multipart fields `podspec`, the JSON, and `archive`, a .tar.gz
  or .zip): the archive is stored and the podspec's source set to it, the shard updated.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, Conflict, Kind, merge_x_cache

from . import cocoapods_specs as cs
from .base import Ctx, FormatError, VersionInfo, route, standard_repositories
from .longtail_warm import plan_podfile_lock
from .multipart import form_fields
from .repo import RepoConfig
from .tarball_meta import check_archive
from .tree import TreeFormat, in_thread, rule

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
EMPTY_DOCS = {"deprecated_podspecs.txt": b"", "all_pods.txt": b""}


def _answer(request: web.Request, body: bytes, content_type: str, x_cache: str) -> web.Response:
    """A generated document with a strong ETag (CocoaPods revalidates with If-None-Match)."""
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    headers = {"ETag": etag, "X-Cache": x_cache, "Cache-Control": "no-cache"}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


class CocoaPods(TreeFormat):
    """CDN source layout: hosted, proxy and group."""

    name = "cocoapods"
    tree = (rule(r"CocoaPods-version\.yml", "metadata", content_type="text/yaml"),
            rule(cs.SHARD_FILE.pattern, "metadata", content_type=TEXT_TYPE),
            rule(r"deprecated_podspecs\.txt|all_pods\.txt", "metadata", content_type=TEXT_TYPE),
            rule(cs.SPEC.pattern, content_type=JSON_TYPE),
            rule(cs.ARCHIVE.pattern, content_type="application/octet-stream"))
    routes = (route("POST", r"api/pods", "upload", "hosted group"), *TreeFormat.routes)

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("cocoapods")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://cdn.cocoapods.org"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """Podfile.lock: every locked version's archive."""
        return plan_podfile_lock(mount, text) if filename == "Podfile.lock" else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("Podfile", f"source '{url}/'\npod '<Pod>'"), ("pod repo", f"pod repo add-cdn depot {url}/")]
        if not repo.is_proxy:
            out.append(("publish", f"curl -u USER:TOKEN -F podspec=@My.podspec.json -F archive=@My-1.0.0.tar.gz "
                                   f"{url}/api/pods"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Trunk's shape: {"error": "…"} (the CDN client prints the status and body)."""
        return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = cs.SPEC.fullmatch(path) or cs.ARCHIVE.fullmatch(path)
        return (found["pod"], found["version"]) if found else None

    # ------------------------------------------------------------------ supply-chain policy
    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """The version shards (`Pod/1.0.0/1.1.0` lines). The CDN carries no publish times, so
        deny/allow rules apply and the cooldown does not (podspec and archive downloads of a
        hidden version are refused through package_of)."""
        if not cs.SHARD_FILE.fullmatch(path):
            return None
        return [VersionInfo(pod, v) for pod, versions in cs.parse_shard(body).items() for v in versions]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        pods = {pod: [v for v in versions if (pod, v) not in hidden] for pod, versions in cs.parse_shard(body).items()}
        return cs.dump_shard({pod: versions for pod, versions in pods.items() if versions})

    # ------------------------------------------------------------------ hosted documents
    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path == "CocoaPods-version.yml":
            return _answer(ctx.request, cs.VERSION_YML.encode(), "text/yaml", "HIT")
        if path in EMPTY_DOCS:
            return _answer(ctx.request, EMPTY_DOCS[path], TEXT_TYPE, "HIT")
        if cs.SHARD_FILE.fullmatch(path):
            found = await ctx.hosted.get(path)
            return _answer(ctx.request, await ctx.hosted.read(found) if found else b"", TEXT_TYPE, "HIT")
        if cs.SPEC.fullmatch(path):
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{path} not found")
            body = (await ctx.hosted.read(found)).replace(BASE_PLACEHOLDER.encode(), ctx.base_url.encode())
            return _answer(ctx.request, body, JSON_TYPE, "HIT")
        return None

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if not cs.SHARD_FILE.fullmatch(path):
            return None
        answers = await ctx.each_member(lambda m: self._shard(m, path), path)
        merged: dict[str, list[str]] = {}
        for _, (body, _) in answers:
            for pod, versions in cs.parse_shard(body).items():
                merged.setdefault(pod, [])
                merged[pod] += [v for v in versions if v not in merged[pod]]
        return _answer(ctx.request, cs.dump_shard(merged), TEXT_TYPE,
                       merge_x_cache(s for _, (_, s) in answers) or "HIT")

    async def _shard(self, ctx: Ctx, path: str) -> tuple[bytes, str]:
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            return (await ctx.hosted.read(found) if found else b""), "HIT"
        if ctx.repo.is_proxy:
            cached, body = await ctx.fetch_upstream(self.fetch_spec(ctx, path, self.tree[1]))
            hidden = ctx.pull.hidden(self.metadata_versions(path, body) or [])
            return (self.filter_metadata(path, body, frozenset(hidden)) if hidden else body), cached.status
        raise FormatError(404, f"{path}: groups of groups are not served")   # pragma: no cover

    # ------------------------------------------------------------------ proxy: podspecs and archives
    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        if cs.SPEC.fullmatch(path):
            cached, body = await ctx.fetch_upstream(self.fetch_spec(ctx, path, self.tree[3]))
            key = ("cocoapods-spec", cached.entry.digest if cached.entry else hashlib.sha256(body).hexdigest(),
                   ctx.base_url)
            rewritten = ctx.documents.get(key)
            if rewritten is None:
                try:
                    rewritten = await in_thread(cs.rewrite_podspec, body, ctx.base_url)
                except (ValueError, KeyError, TypeError):
                    raise FormatError(502, f"the upstream's {path} is not a podspec") from None
                ctx.documents.put(key, rewritten)
            return _answer(ctx.request, rewritten, JSON_TYPE, cached.status)
        found = cs.ARCHIVE.fullmatch(path)
        if found is None:
            return await super().serve_proxy(ctx, path)
        if await ctx.pull.peek(path) is not None:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(path, None, Kind.IMMUTABLE)))
        spec_path = cs.spec_path(found["pod"], found["version"])
        _, body = await ctx.fetch_upstream(self.fetch_spec(ctx, spec_path, self.tree[3]))
        try:
            podspec = json.loads(body)
        except ValueError:
            raise FormatError(502, f"the upstream's {spec_path} is not JSON") from None
        url = cs.http_source(podspec)
        if url is None or cs.archive_name(url) != found["file"]:
            raise FormatError(404, f"{found['file']} is not the source the upstream's podspec names")
        sha = str(podspec["source"].get("sha256") or "").lower()
        spec = ctx.pull.spec(path, url, Kind.IMMUTABLE, content_type="application/octet-stream",
                             expect_sha256=sha if re.fullmatch(r"[0-9a-f]{64}", sha) else None)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    # ------------------------------------------------------------------ hosted publish
    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        raise FormatError(405, "publish with POST api/pods (multipart podspec and archive)")

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        raise FormatError(405, "published pods cannot be deleted")

    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        parts = await form_fields(ctx, ("podspec", "archive"))
        if not parts.get("podspec") or not parts.get("archive"):
            raise FormatError(400, "send multipart fields podspec (JSON) and archive (.tar.gz or .zip)")
        try:
            podspec = await in_thread(cs.check_podspec, parts["podspec"])
            kind = await in_thread(check_archive, parts["archive"])
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        pod, version = podspec["name"], podspec["version"]
        archive = f"pods/{pod}/{version}/{pod}-{version}.{kind}"
        digest = hashlib.sha256(parts["archive"]).hexdigest()
        podspec["source"] = {"http": f"{BASE_PLACEHOLDER}/{archive}", "sha256": digest}
        spec_path = cs.spec_path(pod, version)
        existing = await target.hosted.get(spec_path)
        if existing is not None:              # a released version never changes (lockfiles pin its checksum)
            if json.loads(await target.hosted.read(existing)) != podspec:
                raise FormatError(409, f"{pod} {version} is already published")
            return web.json_response({"name": pod, "version": version, "sha256": digest}, status=200)
        try:
            await target.hosted.publish_all([
                (archive, parts["archive"], "application/octet-stream", {"pod": pod, "version": version}),
                (spec_path, json.dumps(podspec, indent=2).encode(), JSON_TYPE, {"pod": pod, "version": version})])
        except Conflict:
            raise FormatError(409, f"{pod} {version} is already published") from None
        await target.hosted.update_document(cs.shard_path(pod), lambda old: cs.add_version(old, pod, version),
                                            content_type=TEXT_TYPE)
        target.hosted.count_publish()
        return web.json_response({"name": pod, "version": version, "sha256": digest}, status=201)


FORMAT = CocoaPods

"""Dart pub (`format: pub`): the hosted pub repository spec v2, proxy and group.

Paths under /<repo>/ (the hosted-url is `<depot>/<repo>`):

* `GET api/packages/<name>` — the version listing (`Accept: application/vnd.pub.v2+json`) with
  `archive_url` under the repository the client asked and `archive_sha256`. Hosted: rendered
  from a per-package record kept with compare-and-swap; proxy: the upstream's listing (metadata,
  revalidated) rewritten once at fill time; group: the members' listings merged (first wins).
* `GET packages/<name>/versions/<version>.tar.gz` — archives, immutable; a proxy fetches the URL
  the upstream listing gave, verified against its `archive_sha256`.
* Publish (`dart pub publish`): `GET api/packages/versions/new` -> `{url, fields}`, multipart
  `POST` of `file` to that URL -> 204 with `Location`, `GET` of it -> `{"success": …}`.
Errors are pub's `{"error": {"code", "message"}}`; 401s carry `Bearer realm="pub"`.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import BodyPartReader, web

from depot.cache.api import BASE_PLACEHOLDER, Kind, merge_x_cache

from . import pub_meta as pm
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .repo import RepoConfig
from .tree import in_thread
from .warm_plans import Job, PlanError

PUB_JSON = "application/vnd.pub.v2+json"
ARCHIVE_TYPE = "application/octet-stream"
NAME = r"(?P<name>[a-z_][a-z0-9_]*)"
VERSION = r"(?P<version>[0-9][0-9A-Za-z.+-]*)"
CODES = {400: "InvalidInput", 401: "MissingAuthentication", 403: "InsufficientPermissions", 404: "NotFound",
         405: "MethodNotAllowed", 409: "PackageRejected", 413: "PackageRejected"}


def _record(name: str) -> str:
    return f"meta/{name}.json"


def _json(body: bytes, x_cache: str | None = None) -> web.Response:
    headers = {"Cache-Control": "no-cache"}
    if x_cache:
        headers["X-Cache"] = x_cache
    return web.Response(body=body, content_type=PUB_JSON, headers=headers)


class Pub(Format):
    """Hosted pub repository spec v2."""

    name = "pub"
    version_scheme = "semver"
    routes = (
        route("GET HEAD", r"api/packages/versions/new", "new_upload", "hosted group", perm="write"),
        route("POST", r"api/packages/versions/upload", "upload", "hosted group"),
        route("GET HEAD", r"api/packages/versions/finalize", "finalize", "hosted group", perm="write"),
        route("GET HEAD", rf"api/packages/{NAME}", "listing"),
        route("GET HEAD", rf"api/packages/{NAME}/versions/{VERSION}", "version_info"),
        route("GET HEAD", rf"packages/{NAME}/versions/{VERSION}\.tar\.gz", "archive"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("pub")

    @classmethod
    def default_upstream(cls) -> str:
        return "https://pub.dev"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> pubspec.lock`: the listing and archive of every hosted package."""
        if filename != "pubspec.lock":
            return None
        try:
            packages = (yaml.safe_load(text) or {}).get("packages") or {}
        except yaml.YAMLError as exc:
            raise PlanError(f"pubspec.lock cannot be parsed: {exc}") from None
        jobs, notes = [], []
        for name, entry in sorted(packages.items()):
            if not isinstance(entry, dict) or entry.get("source") != "hosted" or not pm.NAME.match(str(name)):
                notes.append(f"not from a pub repository, skipped: {name}")
                continue
            jobs += [Job(f"{mount}/api/packages/{name}", accept=PUB_JSON),
                     Job(f"{mount}/{pm.archive_path(str(name), str(entry.get('version')))}")]
        return jobs, notes

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("dart pub", f"export PUB_HOSTED_URL={url}\ndart pub get")]
        if not repo.is_proxy:
            out.append(("publish", f"dart pub token add {url}   # paste a depot token\n"
                                   f"# pubspec.yaml: publish_to: {url}\ndart pub publish"))
        return out

    def challenge(self, base_url: str) -> str:
        return f'Bearer realm="pub", message="create a depot token and run: dart pub token add {base_url}"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        body = {"error": {"code": code or CODES.get(status, "Error"), "message": message}}
        return web.Response(body=json.dumps(body).encode(), status=status, content_type=PUB_JSON,
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        parts = path.split("/")
        if len(parts) == 4 and parts[0] == "packages" and parts[2] == "versions" and parts[3].endswith(".tar.gz"):
            return parts[1], parts[3][:-len(".tar.gz")]
        return None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        if not path.startswith("api/packages/"):
            return None
        doc = pm.parse_listing(body)
        return [VersionInfo(str(doc.get("name")), v["version"], pm.epoch(v.get("published")))
                for v in doc["versions"]]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        return pm.without(body, hidden)

    def metadata_key_for(self, package: str) -> str | None:
        return f"api/packages/{package}"

    # ------------------------------------------------------------------ install
    async def listing(self, ctx: Ctx) -> web.StreamResponse:
        name = ctx.match["name"]
        if ctx.repo.is_proxy:
            cached = await ctx.open_upstream(self._listing_spec(ctx, name))
            return await ctx.pull.answer(ctx.request, cached, f"api/packages/{name}",
                                         headers={"Content-Type": PUB_JSON}, base_url=ctx.base_url)
        body, x_cache = await self._listing_body(ctx, name)
        return _json(body, x_cache)

    async def version_info(self, ctx: Ctx) -> web.StreamResponse:
        """The deprecated single-version endpoint, answered from the listing."""
        body, x_cache = await self._listing_body(ctx, ctx.match["name"])
        found = pm.find(pm.parse_listing(body), ctx.match["version"])
        if found is None:
            raise FormatError(404, f"version {ctx.match['version']} of {ctx.match['name']} not found")
        return _json(json.dumps(found).encode(), x_cache)

    async def _listing_body(self, ctx: Ctx, name: str) -> tuple[bytes, str | None]:
        """(listing with archive URLs under ctx.base_url, X-Cache) of any repository type."""
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(_record(name))
            if stored is None:
                raise FormatError(404, f"package {name} not found in {ctx.repo.name}")
            return pm.render_hosted(await ctx.hosted.read(stored), ctx.base_url), "HIT"
        if ctx.repo.is_proxy:
            cached, body = await ctx.fetch_upstream(self._listing_spec(ctx, name))
            key = f"api/packages/{name}"          # the policy, as the proxy's own answer has it
            hidden = ctx.pull.hidden(self.metadata_versions(key, body) or [])
            if hidden:
                body = self.filter_metadata(key, body, frozenset(hidden))
            return body.replace(BASE_PLACEHOLDER.encode(), ctx.base_url.encode()), cached.status
        answers = await ctx.each_member(lambda m: self._listing_body(m, name), f"package {name}")
        docs = [pm.parse_listing(body) for _, (body, _) in answers]
        return await in_thread(pm.merge, name, docs), merge_x_cache(xc for _, (_, xc) in answers)

    def _listing_spec(self, ctx: Ctx, name: str) -> Any:
        def rewrite(body: bytes) -> bytes:
            try:
                return pm.rewrite_upstream(body, name, BASE_PLACEHOLDER)
            except pm.BadPackage as exc:
                raise ValueError(f"upstream listing of {name} is not usable: {exc}") from None
        return ctx.pull.spec(f"api/packages/{name}", None, Kind.METADATA, transform=rewrite, content_type=PUB_JSON,
                             request_headers={"Accept": PUB_JSON})

    async def archive(self, ctx: Ctx) -> web.StreamResponse:
        name, version = ctx.match["name"], ctx.match["version"]
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self._member_archive(m, name, version, "HIT"))
        return await self._member_archive(ctx, name, version)

    async def _member_archive(self, ctx: Ctx, name: str, version: str,
                              x_cache: str | None = None) -> web.StreamResponse:
        path = pm.archive_path(name, version)
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(path)
            if stored is None:
                raise FormatError(404, f"{name} {version} not found in {ctx.repo.name}")
            return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)
        if await ctx.pull.peek(path) is not None:        # immutable and stored: no listing needed
            cached = await ctx.open_upstream(ctx.pull.spec(path, None, Kind.IMMUTABLE, content_type=ARCHIVE_TYPE))
            return ctx.pull.respond(ctx.request, cached)
        _, body = await ctx.fetch_upstream(self._listing_spec(ctx, name))
        entry = pm.find(pm.parse_listing(body), version)
        if entry is None or not isinstance(entry.get(pm.UPSTREAM_URL), str):
            raise FormatError(404, f"{name} {version} is not in the upstream listing of {ctx.repo.name}")
        sha = entry.get("archive_sha256")
        spec = ctx.pull.spec(path, entry[pm.UPSTREAM_URL], Kind.IMMUTABLE, content_type=ARCHIVE_TYPE,
                             expect_sha256=sha.lower() if isinstance(sha, str) and len(sha) == 64 else None)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    # ------------------------------------------------------------------ publish
    async def new_upload(self, ctx: Ctx) -> web.StreamResponse:
        ctx.deploy_target()
        return _json(json.dumps({"url": f"{ctx.base_url}/api/packages/versions/upload", "fields": {}}).encode())

    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        data = await _file_part(ctx)
        try:
            pubspec = await in_thread(pm.pubspec_of, data)
        except pm.BadPackage as exc:
            raise FormatError(400, str(exc), code="InvalidPackage") from None
        name, version = pubspec["name"], pubspec["version"]
        record = await target.hosted.get(_record(name))
        if record is not None and pm.find(json.loads(await target.hosted.read(record)), version):
            raise FormatError(400, f"version {version} of {name} already exists", code="PackageRejected")
        published = await target.publish(pm.archive_path(name, version), data, content_type=ARCHIVE_TYPE,
                                          overwrite=False)
        try:
            await target.hosted.update_document(
                _record(name), lambda old: pm.add_version(old, pubspec, published.file.digest),
                content_type="application/json")
        except pm.BadPackage as exc:          # a concurrent publish of the same version won
            raise FormatError(400, str(exc), code="PackageRejected") from None
        target.hosted.count_publish()
        finalize = f"{ctx.base_url}/api/packages/versions/finalize?package={quote(name)}&version={quote(version)}"
        return web.Response(status=204, headers={"Location": finalize})

    async def finalize(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        name, version = ctx.request.query.get("package", ""), ctx.request.query.get("version", "")
        record = await target.hosted.get(_record(name)) if pm.NAME.match(name) else None
        if record is None or pm.find(json.loads(await target.hosted.read(record)), version) is None:
            raise FormatError(404, f"no upload of {name} {version} to finalize")
        message = f"Successfully uploaded {name} version {version} to {target.repo.name}."
        return _json(json.dumps({"success": {"message": message}}).encode())


async def _file_part(ctx: Ctx) -> bytes:
    """The `file` field of the multipart upload, bounded by the repository's max_upload."""
    if not ctx.request.content_type.startswith("multipart/form-data"):
        raise FormatError(400, "the upload must be multipart/form-data with a `file` field")
    total, found = 0, None
    try:
        reader = await ctx.request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise FormatError(400, "nested multipart is not supported")
            chunks = []
            while chunk := await part.read_chunk(256 * 1024):
                total += len(chunk)
                if total > ctx.repo.max_upload:
                    raise FormatError(413, f"upload larger than {ctx.repo.max_upload} bytes")
                chunks.append(chunk)
            if part.name == "file":
                found = b"".join(chunks)
    except (ValueError, AssertionError) as exc:
        raise FormatError(400, f"malformed multipart body: {exc}") from None
    if not found:
        raise FormatError(400, "no `file` field in the upload")
    return found


FORMAT = Pub

"""Swift Package Registry (`format: swift`, SE-0292 with SE-0391 publishing): hosted, proxy, group.

Paths under /<repo>/ (`swift package-registry set <depot>/<repo>`):

* `GET {scope}/{name}` — releases, each URL under the repository the client asked; a proxy
  rewrites its upstream's list once at fill time; a group merges its members' lists.
* `GET {scope}/{name}/{version}` — release metadata with the source archive's `checksum`
  (`resources`), `metadata` and `publishedAt` (the supply-chain policy's publish time).
* `GET {scope}/{name}/{version}.zip` — the source archive, immutable, with `Digest`; a proxy
  verifies it against the checksum of the release metadata.
* `GET {scope}/{name}/{version}/Package.swift[?swift-version=X]` — manifests (a missing variant
  is a 303 to the unqualified one), `Link` to every `Package@swift-*.swift` alternate.
* `GET identifiers?url=` — package identifiers of a repository URL (`repositoryURLs` metadata).
* `PUT {scope}/{name}/{version}` — publish: multipart `source-archive`, `metadata`, optional
  signatures; 201 with `Location`; 409 when the version exists; 422 for an unusable archive.
* `POST login` — 200 when the credentials are good.
Every answer carries `Content-Version: 1`; errors are problem details; an `Accept` asking for
another API version is refused (415).
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, Kind, merge_x_cache

from . import swift_meta as sm
from .base import Ctx, Format, FormatError, VersionInfo, engine_errors, route, standard_repositories
from .multipart import form_fields
from .pub_meta import epoch
from .repo import RepoConfig
from .tree import in_thread

CV = {"Content-Version": "1"}
API_JSON = "application/vnd.swift.registry.v1+json"
ACCEPTS = {"json": API_JSON, "zip": "application/vnd.swift.registry.v1+zip",
           "swift": "application/vnd.swift.registry.v1+swift"}
PKG = rf"(?P<scope>{sm.SCOPE})/(?P<name>{sm.NAME})"
VER = r"(?P<version>[0-9][0-9A-Za-z.+-]*?)"
ACCEPT_VERSION = re.compile(r"application/vnd\.swift\.registry\.v(\d+)")
PUBLISH_FIELDS = ("source-archive", "source-archive-signature", "metadata", "metadata-signature")


def _check_accept(ctx: Ctx) -> None:
    for found in ACCEPT_VERSION.finditer(ctx.request.headers.get("Accept", "")):
        if found.group(1) != "1":
            raise FormatError(415, f"unsupported API version v{found.group(1)}: this registry speaks v1")


def _json(body: Any, status: int = 200, x_cache: str | None = None, headers: dict[str, str] | None = None
          ) -> web.Response:
    extra = {**CV, "Cache-Control": "no-cache", **(headers or {})}
    if x_cache:
        extra["X-Cache"] = x_cache
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return web.Response(body=data, status=status, content_type="application/json", headers=extra)


def _record_path(scope: str, name: str) -> str:
    return f"meta/{sm.package_key(scope, name)}.json"


def _archive_path(scope: str, name: str, version: str) -> str:
    return f"{sm.package_key(scope, name)}/{version}.zip"


def _manifest_path(scope: str, name: str, version: str, filename: str) -> str:
    return f"{sm.package_key(scope, name)}/{version}/{filename}"


class Swift(Format):
    """The registry service specification."""

    name = "swift"
    version_scheme = "semver"
    routes = (
        route("GET HEAD", r"identifiers", "identifiers"),
        route("POST", r"login", "login", "hosted group", perm="read"),
        route("GET HEAD", rf"{PKG}/{VER}\.zip", "archive"),
        route("GET HEAD", rf"{PKG}/{VER}/Package\.swift", "manifest"),
        route("PUT", rf"{PKG}/{VER}", "publish", "hosted group"),
        route("GET HEAD", rf"{PKG}/{VER}(?:\.json)?", "release"),
        route("GET HEAD", rf"{PKG}(?:\.json)?", "releases"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        """No public Swift registry is a safe default upstream: hosted and group only."""
        repos = standard_repositories("swift")
        del repos["swift-remote"]
        repos["swift"]["members"] = ["swift-local"]
        return repos

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("swift", f"swift package-registry set {url}/\n"
                         "# Package.swift: .package(id: \"scope.name\", from: \"1.0.0\")\nswift package resolve")]
        if not repo.is_proxy:
            out.append(("publish", f"swift package-registry login {url}/ --token TOKEN\n"
                                   f"swift package-registry publish scope.name 1.0.0 --url {url}/"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        body = {"detail": message, "status": status}
        return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/problem+json",
                            headers={**CV, "Content-Language": "en", "Cache-Control": "no-store"})

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = re.fullmatch(r"([^/]+)/([^/]+)/([^/]+)\.zip", path)
        return (f"{found[1]}.{found[2]}", found[3]) if found else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """Release lists (`<scope>/<name>`: no publish times, deny/allow rules) and release
        metadata (`<scope>/<name>/<version>`: `publishedAt`, the cooldown too)."""
        listing = re.fullmatch(r"([^/]+)/([^/]+)", path)
        found = re.fullmatch(r"([^/]+)/([^/]+)/([^/]+)", path)
        if not (found or listing) or path.startswith(("meta/", "identifiers")):
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if listing:
            releases = doc.get("releases") if isinstance(doc, dict) else None
            return [VersionInfo(f"{listing[1]}.{listing[2]}", str(v)) for v in releases or {}]
        assert found is not None
        stamp = doc.get("publishedAt") or (doc.get("metadata") or {}).get("originalPublicationTime")
        return [VersionInfo(f"{found[1]}.{found[2]}", found[3], epoch(stamp))]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        listing = re.fullmatch(r"([^/]+)/([^/]+)", path)
        if not listing:
            return body
        doc = json.loads(body)
        package = f"{listing[1]}.{listing[2]}"
        doc["releases"] = {v: item for v, item in doc["releases"].items() if (package, v) not in hidden}
        return json.dumps(doc).encode()

    async def publish_time(self, ctx: Ctx, package: str, version: str) -> float | None:
        """From the release metadata document (`publishedAt`), through the cache."""
        scope, _, name = package.partition(".")
        try:
            _, body = await ctx.fetch_upstream(self._release_spec(ctx, scope, name, version))
        except FormatError:
            return None
        infos = self.metadata_versions(f"{scope}/{name}/{version}", body) or []
        return infos[0].published if infos else None

    # ------------------------------------------------------------------ specs (proxy)
    def _releases_spec(self, ctx: Ctx, scope: str, name: str) -> Any:
        def rewrite(body: bytes) -> bytes:
            try:
                return sm.rewrite_releases(body, BASE_PLACEHOLDER, scope, name)
            except sm.BadRelease as exc:
                raise ValueError(str(exc)) from None
        return ctx.pull.spec(sm.package_key(scope, name), self._up(ctx, f"{scope}/{name}"), Kind.METADATA,
                             transform=rewrite, content_type="application/json",
                             request_headers={"Accept": ACCEPTS["json"]})

    def _release_spec(self, ctx: Ctx, scope: str, name: str, version: str) -> Any:
        return ctx.pull.spec(f"{sm.package_key(scope, name)}/{version}", self._up(ctx, f"{scope}/{name}/{version}"),
                             Kind.METADATA, content_type="application/json",
                             request_headers={"Accept": ACCEPTS["json"]})

    @staticmethod
    def _up(ctx: Ctx, path: str) -> str:
        return (ctx.repo.upstream or "").rstrip("/") + "/" + path

    # ------------------------------------------------------------------ releases
    async def releases(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        scope, name = ctx.match["scope"], ctx.match["name"]
        if ctx.repo.is_proxy:
            cached = await ctx.open_upstream(self._releases_spec(ctx, scope, name))
            return await ctx.pull.answer(ctx.request, cached, sm.package_key(scope, name), headers=CV,
                                         base_url=ctx.base_url)
        doc, x_cache = await self._releases_of(ctx, scope, name)
        latest = next(iter(doc["releases"]), None)
        links = {"Link": f'<{ctx.base_url}/{scope}/{name}/{latest}>; rel="latest-version"'} if latest else {}
        return _json(doc, x_cache=x_cache, headers=links)

    async def _releases_of(self, ctx: Ctx, scope: str, name: str) -> tuple[dict[str, Any], str | None]:
        if ctx.repo.is_hosted:
            record = await self._record(ctx, scope, name)
            return sm.releases_doc(record["releases"], ctx.base_url, scope, name), "HIT"
        if ctx.repo.is_proxy:
            cached, body = await ctx.fetch_upstream(self._releases_spec(ctx, scope, name))
            key = sm.package_key(scope, name)
            hidden = ctx.pull.hidden(self.metadata_versions(key, body) or [])
            if hidden:
                body = self.filter_metadata(key, body, frozenset(hidden))
            body = body.replace(BASE_PLACEHOLDER.encode(), ctx.base_url.encode())
            return sm.parse_releases(body), cached.status
        answers = await ctx.each_member(lambda m: self._releases_of(m, scope, name), f"{scope}.{name}")
        versions = [v for _, (doc, _) in answers for v in doc["releases"]]
        return sm.releases_doc(versions, ctx.base_url, scope, name), merge_x_cache(xc for _, (_, xc) in answers)

    async def _record(self, ctx: Ctx, scope: str, name: str) -> dict[str, Any]:
        stored = await ctx.hosted.get(_record_path(scope, name))
        if stored is None:
            raise FormatError(404, f"package {scope}.{name} not found in {ctx.repo.name}")
        return json.loads(await ctx.hosted.read(stored))

    async def release(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        scope, name, version = ctx.match["scope"], ctx.match["name"], ctx.match["version"]
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self._member_release(m, scope, name, version, "HIT"))
        return await self._member_release(ctx, scope, name, version)

    async def _member_release(self, ctx: Ctx, scope: str, name: str, version: str,
                              x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_proxy:
            await ctx.check_policy(f"{scope}/{name}/{version}.zip")       # a hidden release: 403, the rule
            cached = await ctx.open_upstream(self._release_spec(ctx, scope, name, version))
            return ctx.pull.respond(ctx.request, cached, CV)
        record = await self._record(ctx, scope, name)
        if version not in record["releases"]:
            raise FormatError(404, f"release {version} of {scope}.{name} not found")
        return _json(sm.release_doc(record, version), x_cache=x_cache)

    # ------------------------------------------------------------------ archives and manifests
    async def archive(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        scope, name, version = ctx.match["scope"], ctx.match["name"], ctx.match["version"]
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self._member_archive(m, scope, name, version, "HIT"))
        return await self._member_archive(ctx, scope, name, version)

    async def _member_archive(self, ctx: Ctx, scope: str, name: str, version: str,
                              x_cache: str | None = None) -> web.StreamResponse:
        path = _archive_path(scope, name, version)
        headers = {**CV, "Content-Disposition": f'attachment; filename="{name}-{version}.zip"',
                   "Cache-Control": "public, immutable"}
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(path)
            if stored is None:
                raise FormatError(404, f"release {version} of {scope}.{name} not found")
            return ctx.hosted.serve(ctx.request, stored, headers={**headers, "Digest": _digest(stored.digest)},
                                    x_cache=x_cache)
        checksum = None
        if await ctx.pull.peek(path) is None:          # not stored yet: the release metadata says what to expect
            _, body = await ctx.fetch_upstream(self._release_spec(ctx, scope, name, version))
            checksum = sm.archive_checksum(body)
        spec = ctx.pull.spec(path, self._up(ctx, f"{scope}/{name}/{version}.zip"), Kind.IMMUTABLE,
                             expect_sha256=checksum, content_type="application/zip",
                             request_headers={"Accept": ACCEPTS["zip"]})
        cached = await ctx.open_upstream(spec)
        digest = cached.entry.digest if cached.entry is not None else checksum
        return ctx.pull.respond(ctx.request, cached, {**headers, **({"Digest": _digest(digest)} if digest else {})})

    async def manifest(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        scope, name, version = ctx.match["scope"], ctx.match["name"], ctx.match["version"]
        wanted = ctx.request.query.get("swift-version")
        if wanted is not None and not re.fullmatch(r"\d+(\.\d+){0,2}", wanted):
            raise FormatError(400, f"swift-version {wanted!r} is not a Swift version")
        filename = f"Package@swift-{wanted}.swift" if wanted else "Package.swift"
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self._member_manifest(m, scope, name, version, filename, "HIT"))
        return await self._member_manifest(ctx, scope, name, version, filename)

    async def _member_manifest(self, ctx: Ctx, scope: str, name: str, version: str, filename: str,
                               x_cache: str | None = None) -> web.StreamResponse:
        headers = {**CV, "Content-Disposition": f'attachment; filename="{filename}"', "Content-Type": "text/x-swift"}
        if ctx.repo.is_proxy:
            query = "" if filename == "Package.swift" else "?swift-version=" + filename[len("Package@swift-"):-6]
            spec = ctx.pull.spec(_manifest_path(scope, name, version, filename),
                                 self._up(ctx, f"{scope}/{name}/{version}/Package.swift{query}"), Kind.IMMUTABLE,
                                 content_type="text/x-swift", request_headers={"Accept": ACCEPTS["swift"]},
                                 keep_headers=("Link",))
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec), headers)
        record = await self._record(ctx, scope, name)
        entry = record["releases"].get(version)
        if entry is None:
            raise FormatError(404, f"release {version} of {scope}.{name} not found")
        if filename not in entry["manifests"]:
            if filename == "Package.swift":
                raise FormatError(404, "the release has no Package.swift")
            return web.Response(status=303, headers={**CV, "Location": f"{ctx.base_url}/{scope}/{name}/{version}/"
                                                                         "Package.swift"})
        stored = await ctx.hosted.get(_manifest_path(scope, name, version, filename))
        if stored is None:
            raise FormatError(404, f"{filename} of {scope}.{name} {version} not found")
        if filename == "Package.swift":
            headers["Link"] = ", ".join(
                f'<{ctx.base_url}/{scope}/{name}/{version}/Package.swift?swift-version={alt[14:-6]}>; rel="alternate"; '
                f'filename="{alt}"; swift-tools-version="{tools}"'
                for alt, tools in sorted(entry["manifests"].items()) if alt != "Package.swift" and tools)
            if not headers["Link"]:
                del headers["Link"]
        return ctx.hosted.serve(ctx.request, stored, headers=headers, x_cache=x_cache)

    # ------------------------------------------------------------------ identifiers, login
    async def identifiers(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        url = ctx.request.query.get("url")
        if not url:
            raise FormatError(400, "the url query parameter is required")
        ids, x_cache = await self._identifiers_of(ctx, url)
        if not ids:
            raise FormatError(404, f"no package is registered for {url}")
        return _json({"identifiers": ids}, x_cache=x_cache)

    async def _identifiers_of(self, ctx: Ctx, url: str) -> tuple[list[str], str | None]:
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(sm.url_key(url))
            return (json.loads(await ctx.hosted.read(stored))["identifiers"] if stored else []), "HIT"
        if ctx.repo.is_proxy:
            spec = ctx.pull.spec(sm.url_key(url), self._up(ctx, "identifiers?url=" + quote(url, safe="")),
                                 Kind.METADATA, content_type="application/json",
                                 request_headers={"Accept": ACCEPTS["json"]})
            try:
                cached, body = await ctx.fetch_upstream(spec)
            except FormatError as exc:
                if exc.status == 404:
                    return [], exc.x_cache
                raise
            ids = json.loads(body).get("identifiers", [])
            return [i for i in ids if isinstance(i, str)], cached.status
        answers = await ctx.each_member(lambda m: self._identifiers_of(m, url), url)
        merged: list[str] = []
        for _, (ids, _) in answers:
            merged.extend(i for i in ids if i not in merged)
        return merged, merge_x_cache(xc for _, (_, xc) in answers)

    async def login(self, ctx: Ctx) -> web.StreamResponse:
        if "Authorization" not in ctx.request.headers:
            raise FormatError(401, "credentials required")
        return web.Response(status=200, headers=CV)

    # ------------------------------------------------------------------ publish
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        _check_accept(ctx)
        scope, name, version = ctx.match["scope"], ctx.match["name"], ctx.match["version"]
        if not sm.SEMVER.match(version):
            raise FormatError(400, f"version {version!r} is not a semantic version")
        target = ctx.deploy_target()
        if not ctx.request.content_type.startswith("multipart/form-data"):
            raise FormatError(415, "the publish request must be multipart/form-data")
        parts = await form_fields(ctx, PUBLISH_FIELDS, malformed=422, decode_base64=True)
        archive = parts.get("source-archive")
        if not archive:
            raise FormatError(422, "no source-archive part in the request")
        try:
            release = await in_thread(sm.read_archive, archive)
            metadata = sm.parse_metadata(parts.get("metadata"))
        except sm.BadRelease as exc:
            raise FormatError(422, str(exc)) from None
        signature = None
        if parts.get("source-archive-signature"):
            fmt = ctx.request.headers.get("X-Swift-Package-Signature-Format", "cms-1.0.0")
            signature = (base64.b64encode(parts["source-archive-signature"]).decode(), fmt)
        stored = await target.hosted.get(_record_path(scope, name))
        if stored is not None and version in json.loads(await target.hosted.read(stored))["releases"]:
            raise FormatError(409, f"a release with version {version} already exists")
        checksum = await _publish_files(target, scope, name, version, archive, release)
        entry = sm.release_entry(checksum, metadata, release.manifests, signature)
        package_id = f"{scope}.{name}"
        try:
            await target.hosted.update_document(_record_path(scope, name),
                                                lambda old: sm.add_release(old, package_id, version, entry),
                                                content_type="application/json")
        except sm.BadRelease as exc:
            raise FormatError(409, str(exc)) from None
        for url in metadata.get("repositoryURLs", []):
            await target.hosted.update_document(sm.url_key(url), lambda old: sm.add_identifier(old, package_id),
                                                content_type="application/json")
        target.hosted.count_publish()
        return web.Response(status=201, headers={**CV, "Location": f"{ctx.base_url}/{scope}/{name}/{version}"})


async def _publish_files(target: Ctx, scope: str, name: str, version: str, archive: bytes,
                         release: sm.Release) -> str:
    """Store the archive and its manifests all or nothing; the archive's sha256."""
    items: list[tuple[str, bytes, str | None, dict[str, Any] | None]] = [
        (_archive_path(scope, name, version), archive, "application/zip", None)]
    items += [(_manifest_path(scope, name, version, fn), body, "text/x-swift", None)
              for fn, body in release.manifests.items()]
    with engine_errors(target.repo):
        files = await target.hosted.publish_all(items)
    return files[0].digest


def _digest(hex_digest: str) -> str:
    return "sha-256=" + base64.b64encode(bytes.fromhex(hex_digest)).decode()


FORMAT = Swift

"""Generic files: PUT/GET/HEAD/DELETE any path (hosted), any static HTTP tree (proxy), groups.

Hosted: `PUT /<repo>/<path>` (optional `X-Checksum-Sha256`), `GET`/`HEAD` with ETag, Range and
conditional requests, `DELETE`. Proxy: `GET /<repo>/<path>` pulls `<upstream>/<path>`; paths
matching `metadata_patterns` are metadata (metadata_ttl), everything else is immutable: it is
pinned to the sha256 of its first fetch, so a refetch after eviction must bring the same bytes.

Reuse rule: a generic path is a location, not a version. With `allow_overwrite` off a PUT
over an existing path is refused (409); with it on, it replaces the file. Once a path is
DELETEd (which needs the `delete` permission) it is free, and may be PUT again with other
bytes. Formats whose paths name released versions (npm, PyPI) never reuse them instead.
"""
from __future__ import annotations

import fnmatch
import mimetypes
import re
import time
from urllib.parse import quote

from aiohttp import web

from depot.cache.blobs import DigestMismatch, TooLarge
from depot.cache.pull import FetchSpec, Kind, NotFound, UpstreamFailed
from depot.cache.serve import http_date, respond_blob

from .base import Ctx, Format, FormatError, body_chunks, route
from .repo import RepoConfig

PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._+~-]+$")
MAX_PATH = 1024


def validate_path(path: str) -> str:
    """A safe relative path: names from [A-Za-z0-9._+~-], no '..' or '.', no empty segment."""
    if not path or len(path.encode()) > MAX_PATH:
        raise FormatError(400, f"path must be 1 to {MAX_PATH} bytes")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or not PATH_SEGMENT.match(segment):
            raise FormatError(400, f"invalid path segment {segment!r}: use [A-Za-z0-9._+~-], no '..'")
    return path


def content_type_for(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class Generic(Format):
    name = "generic"
    routes = (
        route("GET HEAD", r"(?P<path>.*)", "get_hosted", "hosted"),
        route("PUT", r"(?P<path>.*)", "put", "hosted group"),
        route("DELETE", r"(?P<path>.*)", "delete", "hosted group"),
        route("GET HEAD", r"(?P<path>.*)", "get_proxy", "proxy"),
        route("GET HEAD", r"(?P<path>.*)", "get_group", "group"),
    )

    async def get_hosted(self, ctx: Ctx, x_cache: str | None = None) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        found = await ctx.services.catalog.get(ctx.repo.name, path)
        if found is None:
            raise FormatError(404, f"{path} not found in {ctx.repo.name}")
        ctx.services.metrics.hosted(ctx.repo)
        headers = {"X-Cache": x_cache} if x_cache else None
        return respond_blob(ctx.request, found.digest, found.size, found.content_type, headers,
                            blobs=ctx.services.blobs, memory=ctx.services.memory,
                            last_modified=found.meta.get("last_modified"))

    async def get_proxy(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        repo = ctx.repo
        assert repo.upstream is not None
        kind = Kind.METADATA if _is_metadata(repo, path) else Kind.IMMUTABLE
        url = repo.upstream.rstrip("/") + "/" + quote(path)
        try:
            cached = await ctx.services.pull.open(FetchSpec(repo, path, url, kind))
        except NotFound:
            raise FormatError(404, f"{path} not found upstream of {repo.name}") from None
        except UpstreamFailed as exc:
            raise FormatError(exc.status, f"upstream of {repo.name} failed: {exc.reason}") from None
        return ctx.services.pull.respond(ctx.request, cached)

    async def get_group(self, ctx: Ctx) -> web.StreamResponse:
        failure: FormatError | None = None
        for name in ctx.repo.members:
            member = ctx.for_repo(ctx.member(name))
            try:
                if member.repo.is_hosted:
                    return await self.get_hosted(member, x_cache="HIT")
                return await self.get_proxy(member)
            except FormatError as exc:
                if exc.status != 404:
                    failure = failure or exc
        raise failure or FormatError(404, f"{ctx.match['path']} not found in {ctx.repo.name}")

    def _target(self, ctx: Ctx) -> RepoConfig:
        return ctx.deploy_target().repo

    async def put(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = self._target(ctx)
        services = ctx.services
        if not target.allow_overwrite and await services.catalog.get(target.name, path) is not None:
            raise FormatError(409, f"{path} already exists in {target.name} (allow_overwrite is off)")
        expect = ctx.request.headers.get("X-Checksum-Sha256")
        if expect is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect):
            raise FormatError(400, "X-Checksum-Sha256 must be 64 hex digits")
        try:
            digest, size = await services.blobs.put_stream(body_chunks(ctx.request, target.max_upload,
                                                                       services.settings.client_timeout),
                                                           expect, target.max_upload)
        except DigestMismatch as exc:
            raise FormatError(400, f"checksum mismatch: {exc}") from None
        except TooLarge:
            raise FormatError(413, f"upload larger than {target.max_upload} bytes") from None
        ctype = ctx.request.headers.get("Content-Type") or content_type_for(path)
        if ctype == "application/x-www-form-urlencoded":  # curl's default for --data-binary
            ctype = content_type_for(path)
        await services.catalog.put(target.name, path, digest, size, ctype,
                                   {"last_modified": http_date(time.time())})
        services.metrics.publish(target)
        return web.json_response({"path": path, "sha256": digest, "size": size}, status=201,
                                 headers={"ETag": f'"{digest}"'})

    async def delete(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = self._target(ctx)
        if not await ctx.services.catalog.delete(target.name, path):
            raise FormatError(404, f"{path} not found in {target.name}")
        return web.Response(status=204)


def _is_metadata(repo: RepoConfig, path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in repo.metadata_patterns)


FORMAT = Generic

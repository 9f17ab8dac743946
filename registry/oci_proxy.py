"""Pull-through for OCI registries (Docker Hub by default) on top of the engine's PullThrough.

* Blobs and manifests by digest are immutable (`expect_sha256` = the digest): fetched once,
  single flight, verified, cached forever. Blob keys are per repository (`blobs/<digest>`), so
  every image and every client of a repository shares one upstream GET per blob.
* Manifests by tag are metadata keyed by image, tag and the client's Accept variant. Within
  `metadata_ttl` they come from the cache; after it, a HEAD upstream (free on Docker Hub)
  compares `Docker-Content-Digest`: unchanged -> the entry is refreshed; changed -> refetch;
  429/5xx/timeout -> the stale copy is served (`X-Cache: STALE`). A fetched tag also records
  its manifest under the digest key, so the client's follow-up GET by digest is a hit.
* Upstream auth is the Docker token flow (upstreams/docker_auth.py); a token is only asked
  for when the request has to go upstream.
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping

from aiohttp import web
from prometheus_client import Gauge
from yarl import URL

from depot.cache.entries import Entry
from depot.cache.policy import STALE_IF_ERROR
from depot.cache.pull import Cached, FetchSpec, Kind, NotFound, UpstreamFailed
from depot.upstreams.client import UpstreamError
from depot.upstreams.docker_auth import DockerAuth

from .base import Ctx
from .oci_manifest import DEFAULT_ACCEPT, OciError, accept_variant, hex_of, is_digest

DOCKER_HUB = "https://registry-1.docker.io"
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io", "docker.io",
                              "registry.hub.docker.com"})
MANIFEST_HEADERS = ("Docker-Content-Digest", "RateLimit-Remaining", "RateLimit-Limit")

RATELIMIT_REMAINING = Gauge("depot_upstream_ratelimit_remaining",
                            "Last ratelimit-remaining an upstream registry reported", ("repository",),
                            multiprocess_mode="mostrecent")


def upstream_image(upstream: str, image: str) -> str:
    """The image name upstream: Docker Hub's official images live under `library/`."""
    host = URL(upstream).host or ""
    if host in DOCKER_HUB_HOSTS and "/" not in image:
        return "library/" + image
    return image


def ratelimit_value(header: str | None) -> int | None:
    """`ratelimit-remaining: 76;w=21600` -> 76."""
    if not header:
        return None
    found = re.match(r"\s*(\d+)", header)
    return int(found[1]) if found else None


def _identity(body: bytes) -> bytes:
    return body


class OciProxy:
    """Proxy handlers; one per process (holds the token cache)."""

    def __init__(self) -> None:
        self._auth: DockerAuth | None = None

    def auth(self, ctx: Ctx) -> DockerAuth:
        if self._auth is None or self._auth.client is not ctx.services.upstream:
            self._auth = DockerAuth(ctx.services.upstream)
        return self._auth

    def _base(self, ctx: Ctx) -> str:
        return (ctx.repo.upstream or DOCKER_HUB).rstrip("/")

    def _url(self, ctx: Ctx, image: str, tail: str) -> str:
        base = self._base(ctx)
        return f"{base}/v2/{upstream_image(base, image)}/{tail}"

    async def _stored(self, ctx: Ctx, key: str) -> tuple[bool, Entry | None]:
        """(fresh, entry): whether a usable entry within its TTL exists, and the entry if any."""
        entries = ctx.services.entries
        entry = entries.cached(ctx.repo.name, key) or await entries.get(ctx.repo.name, key)
        if entry is None or not ctx.services.blobs.exists(entry.digest):
            return False, None
        return entry.expires_at is None or time.time() < entry.expires_at, entry

    async def _headers(self, ctx: Ctx, image: str, key: str) -> dict[str, str]:
        """Authorization for the upstream, only when the key has to be fetched or revalidated."""
        if (await self._stored(ctx, key))[0]:
            return {}
        base = self._base(ctx)
        try:
            return await self.auth(ctx).headers(base, upstream_image(base, image), ctx.repo.auth)
        except UpstreamError:
            return {}   # the engine will fail too, and serve a stale copy if it has one

    async def _open(self, ctx: Ctx, spec: FetchSpec, what: str) -> Cached:
        try:
            return await ctx.services.pull.open(spec)
        except NotFound:
            code = "BLOB_UNKNOWN" if what == "blob" else "MANIFEST_UNKNOWN" if what == "manifest" \
                else "NAME_UNKNOWN"
            raise OciError(404, code, f"{what} not found upstream of {ctx.repo.name}") from None
        except UpstreamFailed as exc:
            message = f"upstream of {ctx.repo.name} failed: {exc.reason}"
            if re.match(r"upstream answered 429\b", exc.reason):   # nothing cached to answer with
                raise OciError(429, "TOOMANYREQUESTS", message) from None
            raise OciError(exc.status, "UNKNOWN", message) from None

    # ---------------------------------------------------------------- manifests
    async def manifest(self, ctx: Ctx, image: str, ref: str) -> web.StreamResponse:
        accept, variant = accept_variant(", ".join(ctx.request.headers.getall("Accept", [])))
        url = self._url(ctx, image, f"manifests/{ref}")
        if is_digest(ref):
            key = f"{image}/manifests/{ref}"
            headers = {"Accept": f"{accept}, {DEFAULT_ACCEPT}", **await self._headers(ctx, image, key)}
            spec = FetchSpec(ctx.repo, key, url, Kind.IMMUTABLE, expect_sha256=hex_of(ref),
                             transform=_identity, request_headers=headers, keep_headers=MANIFEST_HEADERS)
            cached = await self._open(ctx, spec, "manifest")
        else:
            key = f"{image}/manifests/{ref}@{variant}"
            headers = {"Accept": accept, **await self._headers(ctx, image, key)}
            spec = FetchSpec(ctx.repo, key, url, Kind.METADATA, transform=_identity,
                             request_headers=headers, keep_headers=MANIFEST_HEADERS)
            cached = await self._revalidate_tag(ctx, spec) or await self._open_tag(ctx, spec, image, ref)
            await self._alias_digest(ctx, image, cached)
        self._note_ratelimit(ctx, cached)
        extra = {}
        if cached.entry is not None:
            extra["Docker-Content-Digest"] = "sha256:" + cached.entry.digest
        return ctx.services.pull.respond(ctx.request, cached, extra)

    async def _open_tag(self, ctx: Ctx, spec: FetchSpec, image: str, ref: str) -> Cached:
        """Open a tag; when upstream fails, a stored "all" variant the client accepts will do."""
        try:
            return await self._open(ctx, spec, "manifest")
        except OciError as exc:
            if exc.status < 500 or spec.key.endswith("@all"):
                raise
            other = await ctx.services.entries.get(ctx.repo.name, f"{image}/manifests/{ref}@all")
            accepted = (spec.request_headers or {}).get("Accept", "")
            if other is None or not other.content_type or other.content_type not in accepted \
                    or not ctx.services.blobs.exists(other.digest):
                raise
            return Cached("STALE", ctx.repo, other)

    async def _revalidate_tag(self, ctx: Ctx, spec: FetchSpec) -> Cached | None:
        """An expired tag: HEAD upstream and keep the entry if the digest is unchanged.

        None: let the engine fetch (no entry, or the digest changed, or upstream said 404).
        """
        fresh, stale = await self._stored(ctx, spec.key)
        if fresh or stale is None:
            return None
        try:
            response = await ctx.services.upstream.request("HEAD", spec.url, spec.request_headers or {},
                                                           auth=ctx.repo.auth)
        except UpstreamError:
            return Cached("STALE", ctx.repo, stale)
        async with response:
            status, headers = response.status, response.headers
        self._set_ratelimit(ctx, headers.get("RateLimit-Remaining"))
        ctx.services.pull.metrics(ctx.repo).upstream_status(status)
        if status in (401, 403):           # token expired or revoked: ask for a new one next time
            self.auth(ctx).forget(self._base(ctx))
        if status in STALE_IF_ERROR or status >= 500 or status in (401, 403):
            return Cached("STALE", ctx.repo, stale)
        if status == 200 and headers.get("Docker-Content-Digest") == "sha256:" + stale.digest:
            fresh = stale.refreshed(time.time(), ctx.repo.metadata_ttl)
            await ctx.services.entries.refresh(fresh)
            return Cached("REVALIDATED", ctx.repo, fresh)
        return None

    async def _alias_digest(self, ctx: Ctx, image: str, cached: Cached) -> None:
        """Record a manifest fetched by tag under its digest key too (no second upstream GET)."""
        entry = cached.entry
        if entry is None or cached.status == "HIT":
            return
        key = f"{image}/manifests/sha256:{entry.digest}"
        if ctx.services.entries.cached(ctx.repo.name, key) is not None:
            return
        headers = {k: v for k, v in entry.headers.items() if k == "Docker-Content-Digest"}
        await ctx.services.entries.put(Entry(ctx.repo.name, key, entry.digest, entry.size,
                                             entry.content_type, headers, kind=Kind.IMMUTABLE.value,
                                             fetched_at=time.time()))

    def _note_ratelimit(self, ctx: Ctx, cached: Cached) -> None:
        if cached.status not in ("MISS", "REVALIDATED") or cached.entry is None:
            return
        self._set_ratelimit(ctx, _header(cached.entry.headers, "RateLimit-Remaining"))

    def _set_ratelimit(self, ctx: Ctx, header: str | None) -> None:
        value = ratelimit_value(header)
        if value is not None:
            RATELIMIT_REMAINING.labels(ctx.repo.name).set(value)

    # ---------------------------------------------------------------- blobs and listings
    async def blob(self, ctx: Ctx, image: str, digest: str) -> web.StreamResponse:
        key = f"blobs/{digest}"
        spec = FetchSpec(ctx.repo, key, self._url(ctx, image, f"blobs/{digest}"), Kind.IMMUTABLE,
                         expect_sha256=hex_of(digest), request_headers=await self._headers(ctx, image, key))
        cached = await self._open(ctx, spec, "blob")
        return ctx.services.pull.respond(ctx.request, cached, {"Docker-Content-Digest": digest})

    async def tags(self, ctx: Ctx, image: str) -> web.StreamResponse:
        query = ctx.request.query_string
        key = f"{image}/tags/list?{query}"
        url = self._url(ctx, image, "tags/list") + (f"?{query}" if query else "")
        spec = FetchSpec(ctx.repo, key, url, Kind.METADATA, request_headers=await self._headers(ctx, image, key),
                         keep_headers=("Link",), content_type="application/json")
        cached = await self._open(ctx, spec, "repository")
        link = _header(_kept(cached), "Link")
        extra = {}
        if link:
            base = self._base(ctx)
            extra["Link"] = link.replace(f"/v2/{upstream_image(base, image)}/", f"{ctx.mount}/{image}/")
        return ctx.services.pull.respond(ctx.request, cached, extra)

    async def referrers(self, ctx: Ctx, image: str, digest: str) -> web.StreamResponse:
        artifact_type = ctx.request.query.get("artifactType", "")
        key = f"{image}/referrers/{digest}?{artifact_type}"
        url = self._url(ctx, image, f"referrers/{digest}")
        if artifact_type:
            url = str(URL(url).update_query({"artifactType": artifact_type}))
        spec = FetchSpec(ctx.repo, key, url, Kind.METADATA, request_headers=await self._headers(ctx, image, key),
                         keep_headers=("OCI-Filters-Applied",))
        cached = await self._open(ctx, spec, "manifest")
        return ctx.services.pull.respond(ctx.request, cached)


def _kept(cached: Cached) -> Mapping[str, str]:
    if cached.entry is not None:
        return cached.entry.headers
    if cached.stream is not None:
        return cached.stream[0].headers
    return {}


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value)
    return None

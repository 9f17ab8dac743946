"""Pull-through for OCI registries (Docker Hub by default) on top of the engine's PullThrough.

* Blobs and manifests by digest are immutable (`expect_sha256` = the digest): fetched once,
  single flight, verified, cached forever. Blob keys are per repository (`blobs/<digest>`), so
  every image and every client of a repository shares one upstream GET per blob.
* sha512 digests pass through to the upstream and are verified as the bytes arrive (the
  engine's SRI check); the store keeps them under their sha256 like everything else.
* Manifests by tag are metadata keyed by image, tag and the Accept variant asked upstream
  (only manifest media types count: see accept_variant). Within `metadata_ttl` they come from
  the cache; after it, a HEAD upstream (free on Docker Hub), run by the engine's flight leader
  so that N concurrent clients cost one HEAD, compares `Docker-Content-Digest`: unchanged ->
  the entry is refreshed; changed -> refetch; 429/5xx/timeout -> the stale copy is served
  (`X-Cache: STALE`). A fetched tag also records its manifest under the digest key, so the
  client's follow-up GET by digest is a hit.
* HEAD of a blob that is not stored is a HEAD upstream: nothing is fetched or stored.
* Tag lists are cached once per image and paged here; referrers are cached once per subject
  and filtered here, with the referrers tag schema as the fallback of an upstream without the
  referrers API.
* Upstream auth is the Docker token flow (upstreams/docker_auth.py); a token is only asked
  for when the request has to go upstream.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from cachetools import LRUCache
from prometheus_client import Gauge
from yarl import URL

from depot.cache.api import (Cached, DockerAuth, Entry, FetchSpec, Kind, NotFound, UpstreamFailed, VersionInfo,
                             respond_bytes)
from depot.cache.policy import STALE_IF_ERROR
from depot.upstreams.client import UpstreamError

from .base import Ctx
from .oci_manifest import (DEFAULT_ACCEPT, OCI_INDEX, OciError, accept_variant, algorithm_of, hex_of,
                           is_digest, referrers_index, sri_of, tags_page)

DOCKER_HUB = "https://registry-1.docker.io"
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io", "docker.io",
                              "registry.hub.docker.com"})
HEAD_SIZES = 10_000
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
    """Proxy handlers; one per process (the engine holds the upstream token cache)."""

    def __init__(self) -> None:
        # (repository, digest) -> (size, when): what an upstream HEAD said of a blob not stored
        # here, trusted for the repository's metadata_ttl (a blob's size never changes, but the
        # upstream may drop it)
        self._sizes: LRUCache[tuple[str, str], tuple[str, float]] = LRUCache(maxsize=HEAD_SIZES)

    def auth(self, ctx: Ctx) -> DockerAuth:
        """The Docker token flow of this process's upstream client (the engine's)."""
        return ctx.pull.docker_auth()

    def _base(self, ctx: Ctx) -> str:
        return (ctx.repo.upstream or DOCKER_HUB).rstrip("/")

    def _url(self, ctx: Ctx, image: str, tail: str) -> str:
        base = self._base(ctx)
        return f"{base}/v2/{upstream_image(base, image)}/{tail}"

    async def _stored(self, ctx: Ctx, key: str) -> tuple[bool, Entry | None]:
        """(fresh, entry): whether a usable entry within its TTL exists, and the entry if any."""
        return await ctx.pull.stored_entry(key)

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
            return await ctx.pull.open(spec)
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
            spec = FetchSpec(ctx.repo, key, url, Kind.IMMUTABLE, expect_sha256=_sha256_hex(ref),
                             expect_integrity=sri_of(ref), transform=_identity, request_headers=headers,
                             keep_headers=MANIFEST_HEADERS)
            cached = await self._open(ctx, spec, "manifest")
        else:
            key = f"{image}/manifests/{ref}@{variant}"
            await ctx.check_policy(key)          # deny/allow rules on tags (403 DENIED)
            headers = {"Accept": accept, **await self._headers(ctx, image, key)}
            spec = FetchSpec(ctx.repo, key, url, Kind.METADATA, transform=_identity,
                             request_headers=headers, keep_headers=MANIFEST_HEADERS)
            spec.revalidate = self._head_check(ctx, spec)
            cached = await self._open_tag(ctx, spec, image, ref, variant)
            await self._alias_digest(ctx, image, cached)
        self._note_ratelimit(ctx, cached)
        extra = {}
        if cached.entry is not None:
            extra["Docker-Content-Digest"] = ref if is_digest(ref) else "sha256:" + cached.entry.digest
        return ctx.pull.respond(ctx.request, cached, extra)

    async def _open_tag(self, ctx: Ctx, spec: FetchSpec, image: str, ref: str, variant: str) -> Cached:
        """Open a tag; when upstream fails, a stored "all" variant the client accepts will do.

        A 404 for a narrow variant (a client taking only some manifest types) may come from
        content negotiation rather than a missing tag: it is answered, not remembered."""
        try:
            return await self._open(ctx, spec, "manifest")
        except OciError as exc:
            if exc.status == 404 and variant != "all":
                await ctx.pull.forget_missing(spec.key)
            if exc.status < 500 or variant == "all":
                raise
            _fresh, other = await ctx.pull.stored_entry(f"{image}/manifests/{ref}@all")
            accepted = (spec.request_headers or {}).get("Accept", "")
            if other is None or not other.content_type or other.content_type not in accepted:
                raise
            return Cached("STALE", ctx.repo, other)

    def _head_check(self, ctx: Ctx, spec: FetchSpec) -> Callable[[Entry], Awaitable[str | None]]:
        """The revalidation of an expired tag (run by the engine inside single flight): a HEAD
        upstream (free on Docker Hub) comparing Docker-Content-Digest with the stored copy."""
        async def check(stale: Entry) -> str | None:
            try:
                status, headers = await ctx.pull.upstream_head(spec.url, spec.request_headers)
            except UpstreamFailed:
                return "stale"
            self._set_ratelimit(ctx, headers.get("RateLimit-Remaining"))
            if status in (401, 403):           # token expired or revoked: ask for a new one next time
                self.auth(ctx).forget(self._base(ctx))
            if status in STALE_IF_ERROR or status >= 500 or status in (401, 403):
                return "stale"
            if status == 200 and headers.get("Docker-Content-Digest") == "sha256:" + stale.digest:
                return "fresh"
            return None
        return check

    async def _alias_digest(self, ctx: Ctx, image: str, cached: Cached) -> None:
        """Record a manifest fetched by tag under its digest key too (no second upstream GET)."""
        entry = cached.entry
        if entry is None or cached.status == "HIT":
            return
        headers = {k: v for k, v in entry.headers.items() if k == "Docker-Content-Digest"}
        await ctx.pull.alias(f"{image}/manifests/sha256:{entry.digest}", entry, headers)

    def _note_ratelimit(self, ctx: Ctx, cached: Cached) -> None:
        if cached.status not in ("MISS", "REVALIDATED") or cached.entry is None:
            return
        self._set_ratelimit(ctx, _header(cached.entry.headers, "RateLimit-Remaining"))

    def _set_ratelimit(self, ctx: Ctx, header: str | None) -> None:
        value = ratelimit_value(header)
        if value is not None:
            RATELIMIT_REMAINING.labels(ctx.repo.name).set(value)

    # ---------------------------------------------------------------- blobs
    async def blob(self, ctx: Ctx, image: str, digest: str) -> web.StreamResponse:
        key = f"blobs/{digest}"
        if ctx.request.method == "HEAD":
            answer = await self._head_blob(ctx, image, digest, key)
            if answer is not None:
                return answer
        spec = FetchSpec(ctx.repo, key, self._url(ctx, image, f"blobs/{digest}"), Kind.IMMUTABLE,
                         expect_sha256=_sha256_hex(digest), expect_integrity=sri_of(digest),
                         request_headers=await self._headers(ctx, image, key))
        cached = await self._open(ctx, spec, "blob")
        return ctx.pull.respond(ctx.request, cached, {"Docker-Content-Digest": digest})

    async def _head_blob(self, ctx: Ctx, image: str, digest: str, key: str) -> web.Response | None:
        """HEAD of a blob not stored here: answered from a HEAD upstream, storing nothing (a
        client checking whether a layer exists must not cost the whole layer). None: it is
        stored (or being fetched), answer from the store."""
        if (await self._stored(ctx, key))[1] is not None:
            return None
        if await ctx.pull.is_missing(key):
            raise OciError(404, "BLOB_UNKNOWN", f"blob not found upstream of {ctx.repo.name}")
        known = self._sizes.get((ctx.repo.name, digest))
        if known is not None and time.time() - known[1] < (ctx.repo.metadata_ttl or 0):
            return _blob_head(known[0], digest, "HIT")
        url = self._url(ctx, image, f"blobs/{digest}")
        try:
            status, headers = await ctx.pull.upstream_head(url, await self._headers(ctx, image, key))
        except UpstreamFailed as exc:
            raise OciError(exc.status, "UNKNOWN", f"upstream of {ctx.repo.name} failed: {exc.reason}") from None
        length = headers.get("Content-Length")
        if status in (404, 410):
            await ctx.pull.remember_missing(key, status)
            raise OciError(404, "BLOB_UNKNOWN", f"blob not found upstream of {ctx.repo.name}")
        if status != 200 or length is None:
            if status in (401, 403):
                self.auth(ctx).forget(self._base(ctx))
            return None                    # let the GET path fetch (and report its failure)
        self._sizes[(ctx.repo.name, digest)] = (length, time.time())
        return _blob_head(length, digest, "MISS")

    # ---------------------------------------------------------------- listings
    async def tags(self, ctx: Ctx, image: str) -> web.StreamResponse:
        """The upstream's tag list, fetched and cached once per image (the key holds nothing of
        the query) and paged here by `n` and `last` exactly as a hosted repository pages."""
        key = f"{image}/tags/list"
        spec = FetchSpec(ctx.repo, key, self._url(ctx, image, "tags/list"), Kind.METADATA,
                         request_headers=await self._headers(ctx, image, key), content_type="application/json")
        cached = await self._open(ctx, spec, "repository")
        try:
            doc = json.loads(await ctx.pull.read(cached))
            tags = doc.get("tags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ValueError("tags is not a list of strings")
        except (ValueError, AttributeError, UpstreamFailed) as exc:
            raise OciError(502, "UNKNOWN", f"upstream of {ctx.repo.name} sent a bad tag list: {exc}") from None
        hidden = ctx.pull.hidden(VersionInfo(image, tag, None) for tag in tags)
        tags = [tag for tag in tags if (image, tag) not in hidden]
        ctx.pull.count_served(ctx.request, cached.status.lower())
        body, headers = tags_page(ctx.mount, image, tags, ctx.request.query.get("n"),
                                  ctx.request.query.get("last"))
        return web.json_response(body, headers={**headers, "X-Cache": cached.status})

    async def referrers(self, ctx: Ctx, image: str, digest: str) -> web.StreamResponse:
        """The referrers API; where the upstream has none (404), the referrers tag schema
        (`<alg>-<hex>` tagging an index), as the distribution spec tells clients to fall back.
        The artifactType filter is applied here, so the cache key holds no query."""
        artifact_type = ctx.request.query.get("artifactType", "")
        found, status = await self.referrer_descriptors(ctx, image, digest)
        headers = {"X-Cache": status}
        if artifact_type:
            found = [d for d in found if d.get("artifactType") == artifact_type]
            headers["OCI-Filters-Applied"] = "artifactType"
        return respond_bytes(ctx.request, referrers_index(found), OCI_INDEX, headers)

    async def referrer_descriptors(self, ctx: Ctx, image: str, digest: str) -> tuple[list[dict[str, Any]], str]:
        """(descriptors of the manifests whose subject is `digest`, X-Cache status)."""
        key = f"{image}/referrers/{digest}"
        spec = FetchSpec(ctx.repo, key, self._url(ctx, image, f"referrers/{digest}"), Kind.METADATA,
                         request_headers=await self._headers(ctx, image, key), content_type=OCI_INDEX)
        try:
            cached = await self._open(ctx, spec, "manifest")
        except OciError as exc:
            if exc.status != 404:
                raise
            return await self._referrers_tag(ctx, image, digest)
        return _descriptors(await self._read(ctx, cached)), cached.status

    async def _referrers_tag(self, ctx: Ctx, image: str, digest: str) -> tuple[list[dict[str, Any]], str]:
        algorithm, hexd = digest.split(":", 1)
        tag = f"{algorithm[:32]}-{hexd[:64]}"
        accept, variant = accept_variant(OCI_INDEX)
        key = f"{image}/manifests/{tag}@{variant}"
        headers = {"Accept": accept, **await self._headers(ctx, image, key)}
        spec = FetchSpec(ctx.repo, key, self._url(ctx, image, f"manifests/{tag}"), Kind.METADATA,
                         transform=_identity, request_headers=headers, keep_headers=MANIFEST_HEADERS)
        try:
            cached = await self._open(ctx, spec, "manifest")
        except OciError as exc:
            if exc.status != 404:
                raise
            return [], "MISS"             # neither API nor tag: nothing refers to it
        return _descriptors(await self._read(ctx, cached)), cached.status

    async def _read(self, ctx: Ctx, cached: Cached) -> bytes:
        try:
            body = await ctx.pull.read(cached)
        except UpstreamFailed as exc:
            raise OciError(502, "UNKNOWN", f"upstream of {ctx.repo.name} failed: {exc.reason}") from None
        ctx.pull.count_served(ctx.request, cached.status.lower())
        return body


def _blob_head(length: str, digest: str, status: str) -> web.Response:
    """The answer to HEAD of a blob known only from an upstream HEAD (no body is stored)."""
    return web.Response(status=200, headers={
        "Content-Type": "application/octet-stream", "Content-Length": length, "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes", "X-Cache": status})


def _sha256_hex(digest: str) -> str | None:
    """The store address a digest promises (None for sha512: checked as an SRI instead)."""
    return hex_of(digest) if algorithm_of(digest) == "sha256" else None


def _descriptors(body: bytes) -> list[dict[str, Any]]:
    """The `manifests` of an image index (the referrers answer, or a referrers-schema tag)."""
    try:
        doc = json.loads(body)
        found = doc.get("manifests") or []
    except (ValueError, AttributeError):
        raise OciError(502, "UNKNOWN", "upstream sent an invalid referrers index") from None
    if not isinstance(found, list):
        raise OciError(502, "UNKNOWN", "upstream sent an invalid referrers index")
    return [d for d in found if isinstance(d, dict)]


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value)
    return None

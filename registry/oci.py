"""OCI Distribution v1.1 / Docker Registry v2: hosted registry, pull-through proxy, mirror mode.

Clients address `/v2/<repo>/<image…>/…` where `<repo>` is a depot repository of format oci;
a repository with `mirror: true` also answers `/v2/<image…>/…` (first segment not an oci
repository) so that a Docker daemon's `registry-mirrors` works. Hosted data lives in the
catalog (see registry/oci_store.py), reached through the engine's HostedApi; upload sessions are
the engine's (`ctx.hosted.uploads`: any worker of any node continues one); the proxy side is in
registry/oci_proxy.py. Errors use the spec's JSON shape with its codes.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable

from aiohttp import web

from depot.cache.api import DigestMismatch, HostedApi, TooLarge, UploadSession, respond_bytes

from . import oci_admin, oci_proxy
from .base import Ctx, Format, FormatError, engine_errors, route
from .oci_manifest import (HEX_LENGTHS, MAX_MANIFEST, OCI_INDEX, Manifest, OciError, algorithm_of, error_body,
                           is_digest, page, parse_manifest, read_reference, referrers_index, tags_page, validate_digest,
                           hex_of, validate_name, validate_reference)
from .oci_store import HostedStore, tag_path
from .oci_uploads import RangeInvalid, UploadUnknown, parse_content_range
from .repo import RepoConfig

log = logging.getLogger("depot.oci")
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
DEFAULT_MAX_UPLOAD = 10 * 2**30
CHUNK = 256 * 1024
DEFAULT_CODES = {400: "UNSUPPORTED", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN",
                 405: "UNSUPPORTED", 408: "BLOB_UPLOAD_INVALID", 409: "DENIED", 413: "SIZE_INVALID",
                 416: "BLOB_UPLOAD_INVALID",
                 429: "TOOMANYREQUESTS"}
RunFormat = Callable[..., Awaitable[web.StreamResponse]]
IMG = r"(?P<image>[^/].*?)"
WRITES = "hosted group"          # a group writes to its deploy_to member


_HOSTED_TAG = re.compile(r"(?P<image>.+)/_tags/(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127})")
_TAG_KEY = re.compile(r"(?P<image>.+)/manifests/(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127})(@[^/]*)?")


class Oci(Format):
    """The oci format: `dispatch_v2` maps /v2/… onto a repository and a route below."""

    name = "oci"
    routes = (
        route("GET HEAD", IMG + r"/manifests/(?P<ref>[^/]+)", "get_manifest", "hosted"),
        route("PUT", IMG + r"/manifests/(?P<ref>[^/]+)", "put_manifest", WRITES),
        route("DELETE", IMG + r"/manifests/(?P<ref>[^/]+)", "delete_manifest", WRITES),
        route("POST", IMG + r"/blobs/uploads/?", "start_upload", WRITES),
        route("GET", IMG + r"/blobs/uploads/(?P<uuid>[^/]+)", "upload_status", WRITES, perm="write"),
        route("PATCH", IMG + r"/blobs/uploads/(?P<uuid>[^/]+)", "upload_chunk", WRITES),
        route("PUT", IMG + r"/blobs/uploads/(?P<uuid>[^/]+)", "finish_upload", WRITES),
        route("DELETE", IMG + r"/blobs/uploads/(?P<uuid>[^/]+)", "cancel_upload", WRITES, perm="write"),
        route("GET HEAD", IMG + r"/blobs/(?P<digest>[^/]+)", "get_blob", "hosted"),
        route("DELETE", IMG + r"/blobs/(?P<digest>[^/]+)", "delete_blob", WRITES),
        route("GET", IMG + r"/tags/list", "list_tags", "hosted"),
        route("GET", IMG + r"/referrers/(?P<digest>[^/]+)", "referrers", "hosted"),
        route("GET", r"_catalog", "catalog", "hosted"),
        route("GET HEAD", IMG + r"/manifests/(?P<ref>[^/]+)", "proxy_manifest", "proxy"),
        route("GET HEAD", IMG + r"/blobs/(?P<digest>[^/]+)", "proxy_blob", "proxy"),
        route("GET", IMG + r"/tags/list", "proxy_tags", "proxy"),
        route("GET", IMG + r"/referrers/(?P<digest>[^/]+)", "proxy_referrers", "proxy"),
        route("GET HEAD", IMG + r"/manifests/(?P<ref>[^/]+)", "group_manifest", "group"),
        route("GET HEAD", IMG + r"/blobs/(?P<digest>[^/]+)", "group_blob", "group"),
        route("GET", IMG + r"/tags/list", "group_tags", "group"),
        route("GET", IMG + r"/referrers/(?P<digest>[^/]+)", "group_referrers", "group"),
    )

    def __init__(self) -> None:
        self.proxy = oci_proxy.OciProxy()

    @classmethod
    def default_upstream(cls) -> str | None:
        return oci_proxy.DOCKER_HUB

    # ---------------------------------------------------------------- plumbing
    def store(self, ctx: Ctx) -> HostedStore:
        """The OCI records of ctx's (hosted) repository."""
        return HostedStore(ctx.hosted)

    def challenge(self, base_url: str) -> str:
        """A Docker token challenge pointing at depot's token service (`/-/token`)."""
        base = re.sub(r"/v2(/[^/]*)?\Z", "", base_url)
        return f'Bearer realm="{base}/-/token",service="depot"'

    def package_of(self, path: str) -> tuple[str, str] | None:
        """(image, tag) of a manifest-by-tag key (proxy; for the supply-chain policy, tags by
        pattern: `deny: ["library/node@<18"]`) or of a hosted tag record `<image>/_tags/<tag>`
        (admin API, retention rules); digests and blobs belong to no tag."""
        found = _TAG_KEY.fullmatch(path) or _HOSTED_TAG.fullmatch(path)
        return (found["image"], found["tag"]) if found else None

    async def admin_delete(self, hosted: Any, package: str, version: str, paths: list[str]) -> None:
        """Untag; a manifest left without tags goes too (with the blob records only it used),
        so that `depot gc` reclaims its layers."""
        await oci_admin.untag(hosted, package, version)

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The spec's error JSON."""
        code = code or DEFAULT_CODES.get(status, "UNKNOWN")
        return web.Response(status=status, body=error_body(code, message), content_type="application/json",
                            headers={"Cache-Control": "no-store", **API_VERSION})

    async def dispatch_v2(self, request: web.Request, engine: Any, run_format: RunFormat) -> web.StreamResponse:
        """Route `/v2…` to a repository: `/v2/<repo>/…`, or `/v2/<image>/…` on a mirror repository.

        `engine` is the front door's handle, used here only for routing and access control
        (repos, auth, public_base); storage is reached through HostedApi alone."""
        tail = request.match_info.get("tail", "")
        if tail in ("", "/"):
            if request.method not in ("GET", "HEAD"):
                return self.error(None, 405, "method not allowed")
            return await self._ping(request, engine)
        path = tail[1:] if tail.startswith("/") else None
        if not path:
            return self.error(None, 404, "not found", "NAME_UNKNOWN")
        if path.rstrip("/") == "_catalog":
            response = await self.catalog_all(request, engine)
        else:
            first, _, rest = path.partition("/")
            repo = engine.repos.get(first)
            if repo is not None and repo.format == self.name:
                response = await run_format(request, self, repo, rest, f"/v2/{first}")
            else:
                mirror = _mirror(engine.repos)
                if mirror is None:
                    return self.error(None, 404, f"no oci repository named {first!r}", "NAME_UNKNOWN")
                response = await run_format(request, self, mirror, path, "/v2")
        response.headers.update(API_VERSION)
        return response

    async def _ping(self, request: web.Request, engine: Any) -> web.Response:
        """`GET /v2/`: 200, or 401 with the token challenge when access control is on and the
        request carries no valid credentials (clients only authenticate after a challenge here)."""
        auth = getattr(engine, "auth", None)
        if auth is not None and not auth.open_access:
            try:
                known = ("Authorization" in request.headers
                         and await auth.identify(request.headers, request.remote) is not None)
            except Exception:  # BadCredentials: answer the challenge again
                known = False
            if not known:
                response = self.error(None, 401, "authentication required", "UNAUTHORIZED")
                response.headers["WWW-Authenticate"] = self.challenge(engine.public_base(request) + "/v2")
                return response
        return web.json_response({}, headers=API_VERSION)

    def _image(self, ctx: Ctx) -> str:
        return validate_name(ctx.match["image"])

    # ---------------------------------------------------------------- hosted: manifests
    async def get_manifest(self, ctx: Ctx) -> web.StreamResponse:
        image = self._image(ctx)
        ref = read_reference(ctx.match["ref"])
        found = await self.store(ctx).resolve(image, ref)
        if found is None:
            raise OciError(404, "MANIFEST_UNKNOWN", f"manifest {ref} not found in {image}")
        digest = str(found.meta.get("digest") or "sha256:" + found.digest)   # as it was pushed
        try:      # serve() counts the hosted answer and the download (keep_recently_used)
            return ctx.hosted.serve(ctx.request, found, {"Docker-Content-Digest": digest})
        except FileNotFoundError:
            raise OciError(404, "MANIFEST_UNKNOWN", f"manifest {ref} has no stored bytes") from None

    async def put_manifest(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        ref = validate_reference(ctx.match["ref"])
        body = await _read_limited(ctx, MAX_MANIFEST)
        algorithm = algorithm_of(ref) if is_digest(ref) else "sha256"
        manifest = parse_manifest(body, ctx.request.headers.get("Content-Type"), algorithm)
        tags = [] if is_digest(ref) else [ref]
        tags += [validate_reference(t) for t in ctx.request.query.getall("tag", []) if not is_digest(t)]
        if is_digest(ref) and ref != manifest.digest:
            raise OciError(400, "DIGEST_INVALID", "manifest digest does not match the reference",
                           {"expected": ref, "actual": manifest.digest})
        await self._record_manifest(ctx, image, manifest, body, tags)
        ctx.hosted.count_publish()
        headers = {"Location": f"{ctx.base_url}/{image}/manifests/{manifest.digest}",
                   "Docker-Content-Digest": manifest.digest}
        if manifest.subject:
            headers["OCI-Subject"] = manifest.subject
        tagged = [t for t in tags if t != ref]
        if tagged:                       # the spec: one OCI-Tag value per tag a `?tag=` created
            headers["OCI-Tag"] = ", ".join(dict.fromkeys(tagged))
        return web.Response(status=201, headers=headers)

    async def _record_manifest(self, ctx: Ctx, image: str, manifest: Manifest, body: bytes,
                               tags: list[str]) -> None:
        """Check what the manifest references and record it, under the repository's manifest
        lock (no deletion can drop a blob record between the check and the commit)."""
        store = self.store(ctx)
        async with store.lock():
            missing = await store.missing_blobs(manifest.blobs)
            missing += await store.missing_manifests(image, manifest.manifests)
            if not missing:
                with engine_errors(ctx.repo):      # protected and immutable tags (the engine's rule)
                    for tag in tags:
                        await ctx.hosted.check_write(tag_path(image, tag), manifest.sha256 or hex_of(manifest.digest))
                    await ctx.hosted.stage(body, manifest.sha256, MAX_MANIFEST)
                if not await store.put_manifest(image, manifest, tags):
                    missing = await store.missing_blobs(manifest.blobs)
            if missing:
                raise OciError(400, "MANIFEST_BLOB_UNKNOWN", f"manifest references unknown blobs: "
                               f"{', '.join(missing)}", {"digests": missing})

    async def delete_manifest(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        ref = validate_reference(ctx.match["ref"])
        store = self.store(ctx)
        async with store.lock():
            with engine_errors(ctx.repo):      # a protected or immutable tag stays
                for record in await ctx.hosted.list(f"{image}/_tags/"):
                    if record.path == tag_path(image, ref) or record.meta.get("digest") == ref:
                        await ctx.hosted.check_write(record.path, delete=True, current=record)
            if is_digest(ref):
                deleted = await store.delete_manifest(image, ref)
            else:
                deleted = await store.delete_tag(image, ref)
        if not deleted:
            raise OciError(404, "MANIFEST_UNKNOWN", f"manifest {ref} not found in {image}")
        return web.Response(status=202)

    # ---------------------------------------------------------------- hosted: blobs
    async def get_blob(self, ctx: Ctx) -> web.StreamResponse:
        self._image(ctx)
        digest = validate_digest(ctx.match["digest"])
        found = await self.store(ctx).blob(digest)
        if found is None:
            raise OciError(404, "BLOB_UNKNOWN", f"blob {digest} not found", {"digest": digest})
        try:
            return ctx.hosted.serve(ctx.request, found, {"Docker-Content-Digest": digest})
        except FileNotFoundError:
            raise OciError(404, "BLOB_UNKNOWN", f"blob {digest} has no stored bytes") from None

    async def delete_blob(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        self._image(ctx)
        digest = validate_digest(ctx.match["digest"])
        if not await self.store(ctx).delete_blob(digest):
            raise OciError(404, "BLOB_UNKNOWN", f"blob {digest} not found", {"digest": digest})
        return web.Response(status=202)

    def _max_upload(self, repo: RepoConfig) -> int:
        return int(getattr(repo, "max_upload", None) or DEFAULT_MAX_UPLOAD)

    def _blob_created(self, ctx: Ctx, image: str, digest: str) -> web.Response:
        return web.Response(status=201, headers={"Location": f"{ctx.base_url}/{image}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest})

    def _upload_headers(self, ctx: Ctx, image: str, upload_id: str, size: int) -> dict[str, str]:
        return {"Location": f"{ctx.base_url}/{image}/blobs/uploads/{upload_id}",
                "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": upload_id,
                "OCI-Chunk-Min-Length": "0"}

    async def start_upload(self, ctx: Ctx) -> web.StreamResponse:
        """POST: a new session, a single-request upload (?digest=) or a mount (?mount=&from=)."""
        ctx = self._target(ctx)
        image = self._image(ctx)
        query = ctx.request.query
        if "mount" in query:
            mounted = await self._mount(ctx, image, validate_digest(query["mount"]), query.get("from"))
            if mounted is not None:
                return mounted
        algorithm = query.get("digest-algorithm")
        if algorithm is not None and algorithm not in HEX_LENGTHS:
            raise OciError(400, "UNSUPPORTED", f"digest algorithm {algorithm!r} is not supported")
        if "digest" in query:
            digest = validate_digest(query["digest"])
            await self._store_stream(ctx, digest, None)
            return self._blob_created(ctx, image, digest)
        upload = await ctx.hosted.uploads.create(image)
        return web.Response(status=202, headers=self._upload_headers(ctx, image, upload.id, 0))

    async def _mount(self, ctx: Ctx, image: str, digest: str, source: str | None) -> web.Response | None:
        """Link a blob another oci repository holds; None: fall back to a normal upload."""
        candidates: list[HostedApi] = [ctx.hosted]
        if source:
            repo = ctx.repository(source.split("/", 1)[0])
            if repo is not None and repo.format == self.name and repo.is_hosted and ctx.allowed(repo, "read"):
                candidates.insert(0, ctx.for_repo(repo).hosted)
        for hosted in candidates:
            found = await HostedStore(hosted).blob(digest)
            if found is not None and await hosted.blob_stored(found.digest):
                await self.store(ctx).add_blob(digest, found.size, found.digest)
                return self._blob_created(ctx, image, digest)
        return None

    async def _store_stream(self, ctx: Ctx, digest: str, upload: UploadSession | None) -> int:
        """Store the request body (plus an upload's earlier chunks) as the blob `digest`."""
        limit = self._max_upload(ctx.repo)
        chunks = ctx.body(limit)
        try:
            if upload is None:
                stored, size = await ctx.hosted.uploads.store(chunks, digest, limit)
            else:
                stored, size = await ctx.hosted.uploads.finish(upload, chunks, digest, limit)
        except DigestMismatch as exc:
            raise OciError(400, "DIGEST_INVALID", "uploaded content does not match the digest",
                           {"expected": digest, "actual": f"{algorithm_of(digest)}:{exc.actual}"}) from None
        except TooLarge:
            raise OciError(413, "SIZE_INVALID", f"blob larger than {limit} bytes") from None
        await self.store(ctx).add_blob(digest, size, stored)
        ctx.hosted.count_publish()
        return size

    async def _session(self, ctx: Ctx, image: str) -> UploadSession:
        try:
            return await ctx.hosted.uploads.get(ctx.match["uuid"], image)
        except UploadUnknown:
            raise OciError(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown") from None

    async def upload_status(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        upload = await self._session(ctx, image)
        return web.Response(status=204, headers=self._upload_headers(ctx, image, upload.id, upload.size))

    async def upload_chunk(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        upload = await self._session(ctx, image)
        uploads = ctx.hosted.uploads
        try:
            window = parse_content_range(ctx.request.headers.get("Content-Range"))
            limit = self._max_upload(ctx.repo)
            size = await uploads.append(upload, ctx.body(limit), window[0] if window else None, limit)
        except RangeInvalid as exc:
            now = await self._session(ctx, image)
            headers = self._upload_headers(ctx, image, upload.id, now.size)
            return web.Response(status=416, body=error_body("BLOB_UPLOAD_INVALID", str(exc)),
                                content_type="application/json", headers=headers)
        except (TooLarge, FormatError) as exc:
            if isinstance(exc, FormatError) and exc.status != 413:
                raise               # a stalled client: the session keeps what arrived (resumable)
            await uploads.cancel(upload)
            raise OciError(413, "SIZE_INVALID", "upload too large") from None
        return web.Response(status=202, headers=self._upload_headers(ctx, image, upload.id, size))

    async def finish_upload(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        upload = await self._session(ctx, image)
        digest = validate_digest(ctx.request.query.get("digest", ""))
        try:
            window = parse_content_range(ctx.request.headers.get("Content-Range"))
        except RangeInvalid as exc:
            raise OciError(416, "BLOB_UPLOAD_INVALID", str(exc)) from None
        if window is not None and window[0] != upload.size:
            raise OciError(416, "BLOB_UPLOAD_INVALID", "chunk out of order")
        await self._store_stream(ctx, digest, upload)
        return self._blob_created(ctx, image, digest)

    async def cancel_upload(self, ctx: Ctx) -> web.StreamResponse:
        ctx = self._target(ctx)
        image = self._image(ctx)
        await ctx.hosted.uploads.cancel(await self._session(ctx, image))
        return web.Response(status=204)

    # ---------------------------------------------------------------- hosted: listings
    async def list_tags(self, ctx: Ctx) -> web.StreamResponse:
        image = self._image(ctx)
        store = self.store(ctx)
        tags = await store.tags(image)
        if not tags and not await store.has_image(image):
            raise OciError(404, "NAME_UNKNOWN", f"repository {image} not known", {"name": image})
        body, headers = tags_page(ctx.mount, image, tags, ctx.request.query.get("n"), ctx.request.query.get("last"))
        return web.json_response(body, headers=headers)

    async def referrers(self, ctx: Ctx) -> web.StreamResponse:
        image = self._image(ctx)
        digest = validate_digest(ctx.match["digest"])
        artifact_type = ctx.request.query.get("artifactType") or None
        found = await self.store(ctx).referrers(image, digest, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        return respond_bytes(ctx.request, referrers_index(found), OCI_INDEX, headers)

    async def catalog(self, ctx: Ctx) -> web.StreamResponse:
        names = await self.store(ctx).images()
        return self._catalog_page(ctx.request, [f"{ctx.repo.name}/{n}" for n in names])

    async def catalog_all(self, request: web.Request, engine: Any) -> web.StreamResponse:
        """`/v2/_catalog`: images of every hosted oci repository, as `<repo>/<image>`."""
        if request.method != "GET":
            return self.error(None, 405, "method not allowed")
        names: list[str] = []
        readable = await _readable(request, engine)
        for repo in engine.repos.values():
            if repo.format == self.name and repo.is_hosted and readable(repo):
                store = HostedStore(HostedApi(engine, repo, 0.0))
                names += [f"{repo.name}/{n}" for n in await store.images()]
        try:
            return self._catalog_page(request, names)
        except FormatError as exc:
            return self.error(None, exc.status, exc.message, exc.code)

    def _catalog_page(self, request: web.Request, names: list[str]) -> web.Response:
        shown, more = page(names, request.query.get("n"), request.query.get("last"))
        headers = {}
        if more and shown:
            headers["Link"] = f'</v2/_catalog?n={request.query["n"]}&last={shown[-1]}>; rel="next"'
        return web.json_response({"repositories": shown}, headers=headers)

    # ---------------------------------------------------------------- groups
    def _target(self, ctx: Ctx) -> Ctx:
        """Writes to a group go to its deploy_to member."""
        if ctx.repo.is_group and not ctx.repo.deploy_to:
            raise OciError(405, "UNSUPPORTED", f"group {ctx.repo.name} has no deploy_to member")
        return ctx.deploy_target()

    async def _first(self, ctx: Ctx, hosted: str, proxy: str, code: str) -> web.StreamResponse:
        """The first member's answer that is not a 404."""
        failure: FormatError | None = None
        for name in ctx.repo.members:
            member = ctx.for_repo(ctx.member(name))
            handler = hosted if member.repo.is_hosted else proxy if member.repo.is_proxy else None
            if handler is None:
                continue
            try:
                return await getattr(self, handler)(member)
            except FormatError as exc:
                if exc.status != 404:
                    failure = failure or exc
        if failure is not None:
            raise failure
        raise OciError(404, code, f"not found in any member of {ctx.repo.name}")

    async def group_manifest(self, ctx: Ctx) -> web.StreamResponse:
        return await self._first(ctx, "get_manifest", "proxy_manifest", "MANIFEST_UNKNOWN")

    async def group_blob(self, ctx: Ctx) -> web.StreamResponse:
        return await self._first(ctx, "get_blob", "proxy_blob", "BLOB_UNKNOWN")

    async def group_tags(self, ctx: Ctx) -> web.StreamResponse:
        """Tags of every hosted member (proxies answer for themselves), merged."""
        image = self._image(ctx)
        tags: set[str] = set()
        for name in ctx.repo.members:
            member = ctx.member(name)
            if member.is_hosted:
                tags.update(await self.store(ctx.for_repo(member)).tags(image))
        if not tags:
            return await self._first(ctx, "list_tags", "proxy_tags", "NAME_UNKNOWN")
        body, headers = tags_page(ctx.mount, image, sorted(tags), ctx.request.query.get("n"),
                                  ctx.request.query.get("last"))
        return web.json_response(body, headers=headers)

    async def group_referrers(self, ctx: Ctx) -> web.StreamResponse:
        """Referrers recorded in every hosted member, merged."""
        image = self._image(ctx)
        digest = validate_digest(ctx.match["digest"])
        artifact_type = ctx.request.query.get("artifactType") or None
        found: list[dict[str, Any]] = []
        for name in ctx.repo.members:
            member = ctx.member(name)
            if member.is_hosted:
                found += await self.store(ctx.for_repo(member)).referrers(image, digest, artifact_type)
            elif member.is_proxy:
                try:
                    listed, _ = await self.proxy.referrer_descriptors(ctx.for_repo(member), image, digest)
                except FormatError as exc:   # a merged listing: one failing upstream hides nothing else
                    log.warning("referrers of %s from %s failed: %s", digest, name, exc.message)
                    continue
                found += [d for d in listed if not artifact_type or d.get("artifactType") == artifact_type]
        found = list({d.get("digest"): d for d in found}.values())
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        return respond_bytes(ctx.request, referrers_index(found), OCI_INDEX, headers)

    # ---------------------------------------------------------------- proxy
    async def proxy_manifest(self, ctx: Ctx) -> web.StreamResponse:
        return await self.proxy.manifest(ctx, self._image(ctx), read_reference(ctx.match["ref"]))

    async def proxy_blob(self, ctx: Ctx) -> web.StreamResponse:
        return await self.proxy.blob(ctx, self._image(ctx), validate_digest(ctx.match["digest"]))

    async def proxy_tags(self, ctx: Ctx) -> web.StreamResponse:
        return await self.proxy.tags(ctx, self._image(ctx))

    async def proxy_referrers(self, ctx: Ctx) -> web.StreamResponse:
        return await self.proxy.referrers(ctx, self._image(ctx), validate_digest(ctx.match["digest"]))


async def _readable(request: web.Request, engine: Any) -> Callable[[RepoConfig], bool]:
    """Which repositories the caller may read (all of them when access control is off)."""
    auth = getattr(engine, "auth", None)
    if auth is None or auth.open_access:
        return lambda repo: True
    try:
        principal = await auth.identify(request.headers, request.remote)
    except Exception:  # bad credentials: treated as anonymous
        principal = None
    if principal is None:
        return lambda repo: bool(auth.anonymous_can_read(repo))
    return lambda repo: bool(auth.allowed(principal, repo, "read"))


def _mirror(repos: dict[str, RepoConfig]) -> RepoConfig | None:
    """The first oci repository marked `mirror: true`."""
    for repo in repos.values():
        if repo.format == "oci" and repo.mirror:
            return repo
    return None


async def _read_limited(ctx: Ctx, limit: int) -> bytes:
    """The request body, or SIZE_INVALID past `limit` bytes (408 when the client stalls)."""
    try:
        return await ctx.read_body(limit)
    except FormatError as exc:
        if exc.status == 413:
            raise OciError(413, "SIZE_INVALID", f"body larger than {limit} bytes") from None
        raise


FORMAT = Oci

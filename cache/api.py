"""The engine as format handlers see it: pull-through and hosted storage for one repository.

`PullApi` and `HostedApi` are thin, repository-bound views over the engine services; a format
reaches storage only through them (via `Ctx.pull` / `Ctx.hosted`), never through the stores.
Everything here is format-agnostic: paths are opaque strings chosen by the format.
"""
from __future__ import annotations

import asyncio
import builtins
import hashlib
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import (TYPE_CHECKING, Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Iterable, Mapping,
                    TypeVar)

from aiohttp import web

from .blobs import DigestMismatch, TooLarge
from .catalog import ANY, HostedFile, Write
from .documents import BASE_PLACEHOLDER, rebase
from .entries import Entry
from .gate import Verdict, VersionInfo, parse_time
from .pull import Cached, FetchSpec, Kind, NotFound, UpstreamFailed
from .serve import StreamingResponse, blob_headers, http_date, respond_blob, respond_bytes
from .types import RepoConfig
from .uploads import RangeInvalid, RepoUploads, UploadSession, UploadUnknown
from depot.upstreams.client import UpstreamError
from depot.upstreams.docker_auth import DockerAuth

if TYPE_CHECKING:  # pragma: no cover
    from .services import Services

T = TypeVar("T")

__all__ = ["PullApi", "HostedApi", "Conflict", "Published", "Cached", "FetchSpec", "Kind", "NotFound",
           "UpstreamFailed", "Staged", "Protected", "DigestMismatch", "TooLarge", "HostedFile", "Entry",
           "BASE_PLACEHOLDER", "X_CACHE_PRECEDENCE", "merge_x_cache", "PolicyHooks", "Verdict", "VersionInfo",
           "parse_time", "respond_bytes", "respond_blob", "http_date", "StreamingResponse",
           "Write", "ANY", "RepoUploads", "UploadSession", "UploadUnknown", "RangeInvalid", "DockerAuth"]

# When a group answer merges several members, the X-Cache it reports is the "worst" of theirs:
# a STALE part means the upstream is failing (the most important thing to see), then MISS.
X_CACHE_PRECEDENCE = ("STALE", "MISS", "REVALIDATED", "HIT")


def merge_x_cache(values: Iterable[str | None]) -> str | None:
    """The X-Cache of an answer merged from several members' answers (see X_CACHE_PRECEDENCE)."""
    seen = {v for v in values if v}
    for value in X_CACHE_PRECEDENCE:
        if value in seen:
            return value
    return None


class Conflict(Exception):
    """A publish or document update collided with stored content (duplicate, tombstone, race)."""


class Protected(Exception):
    """The caller lacks the permission a protected package or tag requires (403)."""


@dataclass(frozen=True)
class Published:
    """What `HostedApi.publish` did: the stored file and whether it was created or replaced."""

    file: HostedFile
    created: bool            # False: identical content was already stored at that path


@dataclass(frozen=True)
class Staged:
    """An upload stored in the blob store and not yet recorded at any path."""

    digest: str
    size: int


@dataclass(frozen=True)
class PolicyHooks:
    """What the supply-chain policy needs from a format (bound by Ctx from Format hooks)."""

    scheme: str
    versions: Callable[[str, bytes], "list[VersionInfo] | None"]
    filter: Callable[[str, bytes, frozenset[tuple[str, str]]], bytes]


class PullApi:
    """Pull-through for one proxy repository (single flight, verification, stale-if-error)."""

    def __init__(self, services: "Services", repo: RepoConfig, hooks: PolicyHooks | None = None) -> None:
        self._services = services
        self.repo = repo
        self.hooks = hooks

    def spec(self, key: str, url: str | None = None, kind: Kind = Kind.IMMUTABLE, **fields: Any) -> FetchSpec:
        """A FetchSpec for this repository; `url` defaults to `<upstream>/<key>`."""
        if url is None:
            assert self.repo.upstream is not None, f"{self.repo.name} has no upstream"
            url = self.repo.upstream.rstrip("/") + "/" + key
        return FetchSpec(self.repo, key, url, kind, **fields)

    async def open(self, spec: FetchSpec) -> Cached:
        """The stored entry or a fetch streaming in; raises NotFound / UpstreamFailed."""
        return await self._services.pull.open(spec)

    async def peek(self, key: str) -> Entry | None:
        """What is stored for `key` (fresh or not), without contacting the upstream."""
        return await self._services.entries.get(self.repo.name, key)

    def respond(self, request: web.Request, cached: Cached,
                headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Stream an opened key (Range, HEAD, ETag/304, X-Cache; in-flight fetches too)."""
        return self._services.pull.respond(request, cached, headers)

    async def respond_rebased(self, request: web.Request, cached: Cached, base_url: str,
                              headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Answer with a body stored with BASE_PLACEHOLDER in place of the repository's URL
        (see cache.documents), rebased onto `base_url`: one stored copy and one upstream
        fetch whatever Host the client used; the rebased body is kept in the document cache."""
        return await self.answer(request, cached, None, headers, base_url)

    async def answer(self, request: web.Request, cached: Cached, key: str | None = None,
                     headers: Mapping[str, str] | None = None, base_url: str | None = None) -> web.StreamResponse:
        """THE way a format answers with an opened key: metadata documents pass the supply-chain
        policy (hidden versions removed; `key` names the document for the format's hook), bodies
        stored with BASE_PLACEHOLDER are rebased onto `base_url`, everything else streams."""
        judge = self._judge()
        entry = cached.entry
        # a first answer still streaming in has no entry yet: its kind comes with it, so the
        # policy filters the MISS too, not only later HITs
        is_metadata = (entry.kind if entry is not None else cached.kind) == Kind.METADATA.value
        if (judge is None or not is_metadata or key is None) and base_url is None:
            return self.respond(request, cached, headers)
        body = await self.read(cached)
        digest = entry.digest if entry is not None else hashlib.sha256(body).hexdigest()
        rendered, extra = body, dict(headers or {})
        if judge is not None and is_metadata and key is not None:
            rendered = self._documents().get_or_render(
                ("policy", self.repo.name, digest, self._services.policy.version_key()),
                lambda: self._filtered(key, body, judge))
        if base_url is not None:
            source = rendered
            rendered = self._documents().get_or_render(("rebase", hashlib.sha256(source).hexdigest()
                                                        if source is not body else digest, base_url),
                                                       lambda: rebase(source, base_url))
        self._count_answer(cached, len(rendered), request)
        stored_headers = dict(entry.headers) if entry is not None else {}
        content_type = (entry.content_type if entry is not None else None) or "application/octet-stream"
        out = {**stored_headers, "X-Cache": cached.status, **extra}
        validator = hashlib.sha256(f"{digest} {base_url} {len(rendered)}".encode()).hexdigest()
        response = respond_bytes(request, rendered, content_type, out, digest=validator)
        if judge is None:          # a rebased HIT: the same for every request with this Host
            self._remember(request, cached, response, rendered, content_type, out, validator,
                           host_bound=base_url is not None and not self._services.settings.public_url)
        return response

    def _documents(self) -> Any:
        return self._services.documents

    def _judge(self) -> Any:
        if self.hooks is None:
            return None
        return self._services.policy.judge(self.repo, self.hooks.scheme)

    def _filtered(self, key: str, body: bytes, judge: Any) -> bytes:
        """The document without the versions the policy hides (report mode: unchanged, counted)."""
        assert self.hooks is not None
        versions = self.hooks.versions(key, body)
        if not versions:
            return body
        hidden = self.hidden(versions)
        return self.hooks.filter(key, body, frozenset(hidden)) if hidden else body

    def hidden(self, versions: Iterable[VersionInfo]) -> dict[tuple[str, str], Verdict]:
        """For formats that filter parsed metadata themselves: the (package, version) pairs the
        policy hides from this repository's answers (decisions counted and audited; empty in
        report mode). Publish times are remembered for the download check."""
        judge = self._judge()
        if judge is None:
            return {}
        versions = list(versions)
        service = self._services.policy
        for info in versions:
            service.remember(self.repo.name, info.package, info.version, info.published)
        hidden = judge.hidden((v.package, v.version, v.published) for v in versions)
        for (package, version), verdict in hidden.items():
            service.record(self.repo, package, version, verdict, judge.policy.mode, "hidden")
        return {} if judge.policy.mode == "report" else hidden

    def _count_answer(self, cached: Cached, size: int, request: web.Request) -> None:
        pull = self._services.pull
        metrics = pull.count(request, cached.repo, cached.status.lower())
        if cached.entry is not None:
            pull.entries.touch(cached.entry.repo, cached.entry.key)
        if request.method != "HEAD":
            (metrics.from_cache if cached.status == "HIT" else metrics.from_upstream).inc(size)

    def check_download(self, key: str, package_version: tuple[str, str] | None,
                       published: float | None = None) -> Verdict | None:
        """The policy's verdict on downloading `key` (None: allowed, or report mode)."""
        judge = self._judge()
        if judge is None or package_version is None:
            return None
        package, version = package_version
        if published is None:
            _known, published = self._services.policy.publish_time(self.repo.name, package, version)
        verdict = judge.verdict(package, version, published)
        if verdict is None:
            return None
        self._services.policy.record(self.repo, package, version, verdict, judge.policy.mode, "refused")
        return None if judge.policy.mode == "report" else verdict

    def policy_version(self) -> tuple[Any, ...]:
        """Changes whenever the policy's decisions may change (key filtered renders with it)."""
        return self._services.policy.version_key()

    def policy_active(self) -> bool:
        """Whether any rule or advisory concerns this repository."""
        return self._judge() is not None

    def knows_publish_time(self, package: str, version: str) -> bool:
        """Whether a metadata document seen by this process listed that version."""
        return self._services.policy.publish_time(self.repo.name, package, version)[0]

    async def read(self, cached: Cached) -> bytes:
        """The whole stored (transformed) body, waiting for an in-flight fetch."""
        return await self._services.pull.read(cached)

    async def open_read(self, spec: FetchSpec) -> tuple[Cached, bytes]:
        """open() then read(): for metadata a format parses (merged, filtered, rendered)."""
        cached = await self.open(spec)
        return cached, await self.read(cached)

    def count(self, result: str) -> None:
        """Count one answer of this repository (hit, miss, negative, error, hosted)."""
        self._services.pull.metrics(self.repo).result(result)

    def count_served(self, request: web.Request, result: str) -> None:
        """Count one answer of this repository to `request` and, when the request came through a
        group, as served by that group: for formats that answer a document merged from several
        members (each member that contributed counts its own result)."""
        self._services.pull.count(request, self.repo, result)

    async def stored(self, key: str) -> Cached | None:
        """What is stored for `key` while its bytes are here, as a HIT (freshness not checked, the
        upstream not contacted; this process's memory first, no I/O then); None otherwise. For
        immutable files a format can answer without reading the metadata that locates them."""
        entries = self._services.entries
        entry = entries.cached(self.repo.name, key) or await entries.get(self.repo.name, key)
        if entry is None or not self._services.pull.usable(entry):
            return None
        return Cached("HIT", self.repo, entry)

    async def relay(self, method: str, path: str, headers: Mapping[str, str] | None = None,
                    data: bytes | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """Pass one request through to this repository's upstream, uncached: `path` (with its
        query string) is relative to the upstream URL, so the repository's upstream credentials
        go nowhere else. Returns (status, headers, body); UpstreamFailed(502) when it fails."""
        assert self.repo.upstream is not None, f"{self.repo.name} has no upstream"
        url = self.repo.upstream.rstrip("/") + "/" + path.lstrip("/")
        try:
            response = await self._services.upstream.request(method, url, headers, auth=self.repo.auth, data=data)
            async with response:
                body = await response.read()
                return response.status, response.headers.copy(), body
        except Exception as exc:  # UpstreamError, connection resets while reading
            raise UpstreamFailed(502, str(exc)) from None

    async def stored_entry(self, key: str) -> tuple[bool, Entry | None]:
        """(fresh, entry): the entry stored for `key` whose bytes are still in the blob store
        (None when there is none), and whether it is within its TTL. Nothing goes upstream."""
        entries = self._services.entries
        entry = entries.cached(self.repo.name, key) or await entries.get(self.repo.name, key)
        if entry is None or not await _blob_present(self._services.blobs, entry.digest):
            return False, None
        return entry.expires_at is None or time.time() < entry.expires_at, entry

    async def is_missing(self, key: str) -> bool:
        """Whether the upstream said 404 for `key` within negative_ttl (the negative cache)."""
        return bool(await asyncio.to_thread(self._services.entries.is_negative, self.repo.name, key))

    async def remember_missing(self, key: str, status: int = 404) -> None:
        """Remember an upstream 404/410 learnt outside open() (a HEAD) for negative_ttl."""
        await asyncio.to_thread(self._services.entries.set_negative, self.repo.name, key,
                                self.repo.negative_ttl, status)

    async def forget_missing(self, key: str) -> None:
        """Drop a remembered 404 (an answer that depended on the request, not on the key)."""
        await asyncio.to_thread(self._services.entries.clear_negative, self.repo.name, key)

    async def alias(self, key: str, entry: Entry, headers: Mapping[str, str] | None = None) -> None:
        """Record the stored body of `entry` under `key` too, as immutable (OCI: a manifest
        fetched by tag is also its digest's answer): no second upstream fetch."""
        if self._services.entries.cached(self.repo.name, key) is not None:
            return
        await self._services.entries.put(Entry(self.repo.name, key, entry.digest, entry.size, entry.content_type,
                                               dict(headers or {}), kind=Kind.IMMUTABLE.value,
                                               fetched_at=time.time()))

    async def upstream_head(self, url: str, headers: Mapping[str, str] | None = None) -> tuple[int, Mapping[str, str]]:
        """A HEAD upstream with the repository's credentials (status, headers), counted in the
        upstream metrics; UpstreamFailed (502/504) when the upstream cannot be reached."""
        try:
            response = await self._services.upstream.request("HEAD", url, dict(headers or {}), auth=self.repo.auth)
        except UpstreamError as exc:
            raise UpstreamFailed(504 if exc.timed_out else 502, exc.reason) from None
        async with response:
            status, answer = response.status, response.headers.copy()
        self._services.pull.metrics(self.repo).upstream_status(status)
        return status, answer

    def docker_auth(self) -> DockerAuth:
        """The Docker token flow for this process's upstream client (tokens cached per process)."""
        client = self._services.upstream
        found = _DOCKER_AUTH.get(client)
        if found is None:
            found = _DOCKER_AUTH[client] = DockerAuth(client)
        return found

    def respond_derived(self, request: web.Request, cached: Cached, body: bytes, content_type: str,
                        headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Answer bytes computed from an opened entry alone (a checksum sidecar of it): ETag,
        304, Range and HEAD handled, X-Cache the entry's. A HIT's answer is remembered for the
        hot path (valid while that entry is unchanged, like a plain hit), so repeat requests
        skip routing and the format. Counting the answer is the caller's."""
        out = {"X-Cache": cached.status, **(headers or {})}
        validator = hashlib.sha256(body).hexdigest()
        response = respond_bytes(request, body, content_type, out, digest=validator)
        if self._judge() is None:
            self._remember(request, cached, response, body, content_type, out, validator)
        return response

    def _remember(self, request: web.Request, cached: Cached, response: web.StreamResponse, body: bytes,
                  content_type: str, headers: Mapping[str, str], validator: str, host_bound: bool = False) -> None:
        """Keep a derived 200 answer to a HIT for the hot path (see PullThrough.remember_answer)."""
        if cached.status != "HIT" or cached.entry is None or response.status != 200:
            return
        self._services.pull.remember_answer(request, cached.entry, body,
                                            blob_headers(validator, content_type, headers, None), host_bound)

class HostedApi:
    """Durable published files of one hosted repository."""

    def __init__(self, services: "Services", repo: RepoConfig, client_timeout: float,
                 package_of: Callable[[str], tuple[str, str] | None] | None = None,
                 may: Callable[[str], bool] | None = None) -> None:
        self._services = services
        self.repo = repo
        self._idle = client_timeout
        self._package_of = package_of
        self._may = may

    async def check_write(self, path: str, digest: str | None = None, *, delete: bool = False,
                          current: HostedFile | None = None) -> None:
        """THE retention rule of every hosted write (record() runs it; formats that commit several
        records themselves call it per path first): a protected package or tag needs its minimum
        permission (Protected); an immutable tag never moves nor goes (Conflict); with
        `duplicates: deny` a taken path is never written again, even with the same bytes (Conflict)."""
        found = self._package_of(path) if self._package_of is not None else None
        if found is None:
            return
        package, version = found
        rules = self.repo.retention
        needed = rules.protection(package, version)
        if needed is not None and self._may is not None and not self._may(needed):
            raise Protected(f"{package} {version} is protected in {self.repo.name}: "
                            f"changing it needs the {needed} permission")
        current = current if current is not None else await self.get(path)
        if current is None:
            return
        if rules.immutable(package, version) and (delete or current.digest != digest):
            raise Conflict(f"{package}:{version} is an immutable tag in {self.repo.name}")
        if not delete and rules.duplicates_denied(package, version):
            raise Conflict(f"{package} {version} already exists in {self.repo.name} (duplicates are denied)")

    async def get(self, path: str) -> HostedFile | None:
        """The stored file at `path`, or None."""
        return await self._services.catalog.get(self.repo.name, path)

    async def list(self, prefix: str = "", after: str | None = None, limit: int | None = None) -> list[HostedFile]:
        """Files under `prefix` ordered by path; `after`/`limit` page through big repositories."""
        files = await self._services.catalog.list(self.repo.name, prefix)
        if after is not None:
            files = [f for f in files if f.path > after]
        return files if limit is None else files[:limit]

    async def read(self, file: HostedFile) -> bytes:
        """The bytes of a stored file (small documents; stream big files with serve())."""
        body = self._services.memory.get(file.digest)
        if body is None:
            body = await self._services.blobs.read(file.digest)
            self._services.memory.put(file.digest, body)
        return body

    async def publish(self, path: str, body: bytes | AsyncIterator[bytes], *, content_type: str | None = None,
                      meta: Mapping[str, Any] | None = None, expect_sha256: str | None = None,
                      overwrite: bool | None = None, max_size: int | None = None) -> Published:
        """Store `body` at `path` in one step: the blob is verified and stored first, then the
        record is created atomically. `overwrite` (default: the repository's allow_overwrite)
        decides whether other content may replace what is there; identical content is accepted.
        Raises Conflict, DigestMismatch or TooLarge; nothing is recorded then."""
        staged = await self.stage(body, expect_sha256, max_size)
        return await self.record(path, staged.digest, staged.size, content_type=content_type, meta=meta,
                                 overwrite=overwrite)

    async def stage(self, body: bytes | AsyncIterator[bytes], expect_sha256: str | None = None,
                    max_size: int | None = None) -> "Staged":
        """Store bytes (verified, bounded by max_size or the repository's max_upload) without
        recording them anywhere yet: validate with read_staged(), then record(). A staged blob
        nothing records is reclaimed by GC after its grace period."""
        limit = self.repo.max_upload if max_size is None else max_size
        blobs = self._services.blobs
        if isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) > limit:
                raise TooLarge(f"larger than {limit} bytes")
            digest, size = await blobs.put_bytes(bytes(body), expect_sha256)
        else:
            digest, size = await blobs.put_stream(body, expect_sha256, limit)
        return Staged(digest, size)

    async def read_staged(self, staged: "Staged") -> bytes:
        """The bytes of a staged upload (for parsing the package inside)."""
        return await self._services.blobs.read(staged.digest)

    async def record(self, path: str, digest: str, size: int, *, content_type: str | None = None,
                     meta: Mapping[str, Any] | None = None, overwrite: bool | None = None) -> Published:
        """Record an already stored blob at `path` (see publish for the overwrite rule)."""
        catalog = self._services.catalog
        allow = self.overwrite_allowed(overwrite, path)
        await self.check_write(path, digest)
        meta = {"last_modified": http_date(time.time()), **(meta or {})}
        stone = await catalog.tombstone(self.repo.name, path)
        if stone is not None and stone != digest and not allow:
            raise Conflict(f"{path} was published before and deleted; it cannot be reused with other content")
        if await catalog.put_new(self.repo.name, path, digest, size, content_type, dict(meta)):
            found = await catalog.get(self.repo.name, path)
            assert found is not None
            return Published(found, True)
        current = await catalog.get(self.repo.name, path)
        if current is not None and current.digest == digest:
            return Published(current, False)
        if not allow:
            raise Conflict(f"{path} already exists in {self.repo.name} with other content")
        await catalog.put(self.repo.name, path, digest, size, content_type, dict(meta))
        found = await catalog.get(self.repo.name, path)
        assert found is not None
        return Published(found, True)

    def overwrite_allowed(self, overwrite: bool | None = None, path: str | None = None) -> bool:
        """Whether other bytes may replace the file at `path`: `duplicates: allow` (or `deny` with
        the package or version matching duplicates_exception_regex) says yes; unset: the format's
        or the repository's own rule (allow_overwrite)."""
        rules = self.repo.retention
        if rules.duplicates == "allow":
            return True
        found = self._package_of(path) if self._package_of is not None and path is not None else None
        if rules.duplicates == "deny" and found is not None and not rules.duplicates_denied(*found):
            return True
        return self.repo.allow_overwrite if overwrite is None else overwrite

    async def publish_all(self, items: builtins.list[tuple[str, bytes, str | None, Mapping[str, Any] | None]]
                          ) -> builtins.list[HostedFile]:
        """Publish several new files all or nothing: every blob is stored first, then every record
        in one transaction, and only if none of the paths is taken (else Conflict, nothing recorded)."""
        rows = []
        for path, data, content_type, meta in items:
            await self.check_write(path, hashlib.sha256(data).hexdigest())
            digest, size = await self._services.blobs.put_bytes(data)
            rows.append((path, digest, size, content_type, {"last_modified": http_date(time.time()), **(meta or {})}))
        if not await self._services.catalog.put_all_new(self.repo.name, rows):
            raise Conflict(f"one of {', '.join(r[0] for r in rows)} already exists in {self.repo.name}")
        return [f for f in [await self.get(r[0]) for r in rows] if f is not None]

    async def update_document(self, path: str, mutate: Callable[[bytes | None], bytes | None | Awaitable[bytes | None]],
                              content_type: str | None = None, meta: Mapping[str, Any] | None = None,
                              attempts: int = 64) -> HostedFile | None:
        """Compare-and-swap a stored document: `mutate(old_bytes_or_None)` returns the new bytes
        (None: leave it as it is). Retried when a concurrent writer changed the document first,
        so concurrent updates never lose one another (index.yaml, maven-metadata.xml, …)."""
        catalog = self._services.catalog
        for _ in range(attempts):
            current = await catalog.get(self.repo.name, path)
            old = await self.read(current) if current is not None else None
            new = mutate(old)
            if not isinstance(new, (bytes, type(None))):
                new = await new
            if new is None:
                return current
            digest, size = await self._services.blobs.put_bytes(new)
            full_meta = {"last_modified": http_date(time.time()), **(meta or {})}
            if await catalog.swap(self.repo.name, path, current.digest if current else None, digest, size,
                                  content_type or (current.content_type if current else None), full_meta):
                return await catalog.get(self.repo.name, path)
        raise Conflict(f"{path} changed concurrently {attempts} times; giving up")

    async def delete(self, path: str, tombstone: bool = False) -> bool:
        """Remove the file at `path`. With `tombstone`, its digest is remembered so the path can
        never be published again with other content (package versions are immutable)."""
        await self.check_write(path, delete=True)
        return await self._services.catalog.delete(self.repo.name, path, tombstone=tombstone)

    def serve(self, request: web.Request, file: HostedFile, headers: Mapping[str, str] | None = None,
              x_cache: str | None = None) -> web.StreamResponse:
        """Answer with a stored file (Range, HEAD, ETag/304) and count it as a hosted answer."""
        self._services.pull.count(request, self.repo, "hosted")
        if request.method == "GET":
            self._services.admin.downloaded(self.repo.name, file.path)
        out = dict(headers or {})
        if x_cache:
            out["X-Cache"] = x_cache
        return respond_blob(request, file.digest, file.size, file.content_type, out or None,
                            blobs=self._services.blobs, memory=self._services.memory,
                            last_modified=file.meta.get("last_modified"))

    def count_publish(self) -> None:
        """Count one publish in this repository's metrics."""
        self._services.pull.metrics(self.repo).publishes.inc()

    async def commit(self, writes: builtins.list[Write]) -> bool:
        """Several writes in ONE transaction, all or nothing: False (nothing written) when one's
        expectation fails. `Write.expect`: None the path must be free, a digest compare-and-swap,
        ANY replace; `once` remembers the bytes as published at that path for good (see
        published_digest); `delete` removes the path. Blobs are staged first (stage()); the
        retention rule is the caller's: check_write() each path before."""
        return await self._services.catalog.commit(self.repo.name, writes)

    async def published_digest(self, path: str) -> str | None:
        """The sha256 once published at `path` for good (even if deleted since); None if never."""
        return await self._services.catalog.published_digest(self.repo.name, path)

    async def update_meta(self, path: str, meta: Mapping[str, Any]) -> bool:
        """Replace the metadata of the file at `path` (its bytes unchanged; e.g. a yank flag);
        False when there is no such file."""
        return await self._services.catalog.update_meta(self.repo.name, path, dict(meta))

    async def inspect_staged(self, staged: "Staged", inspect: Callable[[Path], T]) -> T:
        """`inspect(path)` run in a worker thread on a local file holding a staged (or stored)
        blob, for archives read with a file API (zipfile): the stored file itself, or a
        temporary copy with object storage. Nothing is read into memory here."""
        blobs = self._services.blobs

        def run() -> T:
            with blobs.local_file(staged.digest) as path:
                return inspect(path)
        return await asyncio.to_thread(run)

    async def blob_stored(self, digest: str) -> bool:
        """Whether the blob store holds the bytes of `digest` (sha256 hex)."""
        return await _blob_present(self._services.blobs, digest)

    def lock(self, name: str = "") -> AsyncContextManager[None]:
        """`async with ctx.hosted.lock(name):` an exclusive section of this repository across
        every process and node (cache/locks.py), for read-check-write sequences over several
        records that commit() alone cannot express (OCI: manifest PUT against blob reclaim)."""
        return self._services.storage.locks.hold(f"{self.repo.name}\0{name}")  # type: ignore[no-any-return]

    @property
    def uploads(self) -> RepoUploads:
        """Resumable upload sessions of this repository (cache/uploads.py): shared by every
        process and node, bytes in shared storage."""
        return RepoUploads(self._services.storage.uploads, self._services.blobs, self.repo.name)


async def _blob_present(blobs: Any, digest: str) -> bool:
    stat = getattr(blobs, "stat_async", None)
    if stat is not None:
        return await stat(digest) is not None
    return bool(blobs.exists(digest))


_DOCKER_AUTH: "weakref.WeakKeyDictionary[Any, DockerAuth]" = weakref.WeakKeyDictionary()

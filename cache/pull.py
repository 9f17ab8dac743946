"""Pull-through: answer from the store, or fetch once upstream while streaming to every client."""
from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web

from .types import RepoConfig
from depot.upstreams.auth import UpstreamAuth
from depot.upstreams.client import UpstreamClient, UpstreamError, same_origin

from . import activity
from . import flight as fl
from . import relay
from .cluster import Coordinator, Lease, LocalCoordinator
from .blobs import BlobStore, BlobWriter, DigestMismatch
from .entries import Entry, EntryIndex
from .integrity import IntegrityCheck
from .metrics import VIA_GROUP, RepoMetrics
from .policy import Action, Outcome, Stored, classify, decide, error_status
from .hot import HotPath
from .serve import MemoryCache, StreamingResponse, respond_blob

log = logging.getLogger("depot.pull")

# upstream response headers worth keeping with an entry and replaying to clients
KEEP_HEADERS = ("Content-Encoding", "Docker-Content-Digest", "Content-Disposition")


class Kind(str, enum.Enum):
    IMMUTABLE = "immutable"
    METADATA = "metadata"


class NotFound(Exception):
    """Upstream said 404/410, now (cached=False) or within negative_ttl (cached=True)."""

    def __init__(self, key: str, cached: bool = False) -> None:
        super().__init__(key)
        self.cached = cached

    @property
    def x_cache(self) -> str:
        """The X-Cache of the 404 answer: HIT when it came from the negative cache."""
        return "HIT" if self.cached else "MISS"


class UpstreamFailed(Exception):
    """Upstream failed and no stored copy can answer; status is 502 or 504."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ShortBody(Exception):
    """Fewer bytes arrived than Content-Length announced."""


@dataclass
class FetchSpec:
    repo: RepoConfig
    key: str
    url: str
    kind: Kind = Kind.IMMUTABLE
    expect_sha256: str | None = None
    expect_integrity: str | None = None   # SRI ("sha512-<b64>"), checked like expect_sha256
    expect_md5: str | None = None         # hex md5 from an index that lists no stronger digest (CRAN)
    transform: Callable[[bytes], bytes] | None = None
    request_headers: Mapping[str, str] | None = None
    keep_headers: tuple[str, ...] = ()
    content_type: str | None = None       # override the upstream's Content-Type
    # A cheaper check of an expired entry than a conditional GET (OCI: a HEAD comparing the
    # digest), run by the flight's leader so N concurrent requests cost one check. It answers
    # "fresh" (keep the entry for another TTL), "stale" (upstream failed: serve the old copy)
    # or None (changed: GET it).
    revalidate: Callable[[Entry], Awaitable[str | None]] | None = None
    # Refresh an expired metadata body that only ever grows at its end (RubyGems' /versions) by
    # asking `Range: bytes=<stored size - 1>-`: called (in a thread) with the stored body, the
    # 206 body and the answer's headers, it returns the whole new body, verified against the
    # upstream's digest headers, or None (the overlap or the digest does not match): then the
    # body is fetched whole. A 200 or 304 answer is taken as it is.
    append: Callable[[bytes, bytes, Mapping[str, str]], bytes | None] | None = None


@dataclass
class Cached:
    """The answer to open(): a stored entry, or a fetch streaming in."""

    status: str                               # HIT | MISS | STALE | REVALIDATED
    repo: RepoConfig
    entry: Entry | None = None
    stream: tuple[fl.FlightState, fl.LocalFlight | None, int] | None = field(default=None, repr=False)
    fid: str = ""
    kind: str | None = None       # of a body still streaming in (no entry yet): Kind value


class PullThrough(HotPath):
    """The engine behind every proxy repository."""

    def __init__(self, entries: EntryIndex, blobs: BlobStore, memory: MemoryCache,
                 upstream: UpstreamClient, on_stored: Callable[[int], None] | None = None,
                 cross_process: bool = True, cluster: Coordinator | None = None) -> None:
        self.entries = entries
        self.cluster: Coordinator = cluster or LocalCoordinator()
        self._relay_session: aiohttp.ClientSession | None = None
        self.blobs = blobs
        self.memory = memory
        self.upstream = upstream
        self.flights = fl.Flights(blobs.tmp, cross_process)
        self.on_stored = on_stored
        self._metrics: dict[str, RepoMetrics] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.wait_timeout = upstream.timeouts.connect + upstream.timeouts.read + 5
        self.init_hot(memory)

    def metrics(self, repo: RepoConfig) -> RepoMetrics:
        found = self._metrics.get(repo.name)
        if found is None:
            found = self._metrics[repo.name] = RepoMetrics(repo.name, repo.format)
        return found

    def count(self, request: Any, repo: RepoConfig, result: str) -> RepoMetrics:
        """Count one answer at the repository that gave it and, for a request through a group,
        as served by that group (never twice in one repository's numbers)."""
        metrics = self.metrics(repo)
        metrics.result(result)
        activity.RECORDER.download(repo.name, repo.format, request, result)
        group = request.get(VIA_GROUP) if request is not None else None
        if group is not None and group.name != repo.name:
            self.metrics(group).via(result)
            activity.RECORDER.download(group.name, group.format, request, result)
        return metrics

    def all_metrics(self) -> list[RepoMetrics]:
        return list(self._metrics.values())

    def usable(self, entry: Entry) -> bool:
        """Whether an entry's bytes are still here (a lost or evicted blob means a refetch)."""
        return self._usable(entry)

    def _usable(self, entry: Entry) -> bool:
        if entry.size <= self.memory.item_max and self.memory.get(entry.digest) is not None:
            return True
        if getattr(self.blobs, "remote", False):
            return True      # object storage: the database says it is committed (GC keeps referenced blobs)
        return os.path.exists(self.blobs.path(entry.digest))

    async def open(self, spec: FetchSpec) -> Cached:
        """Find or fetch spec.key. Raises NotFound or UpstreamFailed."""
        repo, key, now = spec.repo, spec.key, time.time()
        # with object storage several nodes share the entries: another node may have evicted
        # this one, so the database (not this process's memory) says whether it still exists
        entry = None if getattr(self.blobs, "remote", False) else self.entries.cached(repo.name, key)
        if entry is None or (entry.expires_at is not None and now >= entry.expires_at):
            entry = await self.entries.get(repo.name, key)
        lost = None
        if entry is not None and not self._usable(entry):
            await self.entries.delete(repo.name, key)
            entry, lost = None, entry
        stored = Stored(entry.expires_at, bool(entry.etag or entry.last_modified)) if entry else None
        # the negative cache is on disk (shared by workers): asked off the loop, and only on a miss
        negative = entry is None and await asyncio.to_thread(self.entries.is_negative, repo.name, key)
        action = decide(stored, negative, now)
        if action is Action.SERVE:
            return Cached("HIT", repo, entry)
        if action is Action.NEGATIVE:
            self.metrics(repo).result("negative")
            raise NotFound(key, cached=True)
        return await self._fetch(await self._pinned(spec, lost), entry)

    async def _pinned(self, spec: FetchSpec, lost: Entry | None) -> FetchSpec:
        """An immutable key is fetched again (its blob was evicted or lost) only to get the very
        bytes of its first fetch: the spec, expecting the sha256 pinned then (or the lost entry's)."""
        if spec.kind is not Kind.IMMUTABLE or spec.transform is not None:
            return spec
        pinned = await self.entries.pinned(spec.repo.name, spec.key) or (lost.digest if lost else None)
        if pinned is None or spec.expect_sha256 is None:
            return spec if pinned is None else dataclasses.replace(spec, expect_sha256=pinned)
        if spec.expect_sha256.lower() != pinned:
            raise UpstreamFailed(502, f"{spec.key} changed upstream since it was first fetched")
        return spec

    async def _fetch(self, spec: FetchSpec, stale: Entry | None) -> Cached:
        fid = fl.Flights.flight_id(spec.repo.name, spec.key)
        since = time.time()
        metrics = self.metrics(spec.repo)
        for _ in range(100):
            local = self.flights.local.get(fid)
            if local is not None:
                metrics.coalesced.inc()
                result = await self._join_local(spec, local, stale)
            else:
                lock = self.flights.try_lead(fid)
                if lock is not None:
                    result = await self._lead_cluster(spec, fid, lock, stale)
                else:
                    state = await fl.wait_remote(self.flights, fid, since, self.wait_timeout)
                    if state is None:
                        await asyncio.sleep(fl.POLL_INTERVAL)
                        continue
                    metrics.coalesced.inc()
                    result = await self._from_state(spec, fid, state, None, stale)
            if result is not None:
                return result
            # between states (e.g. the part file is committed but the entry not yet written):
            # give the leader a moment instead of spinning through every attempt at once
            await asyncio.sleep(fl.POLL_INTERVAL)
        raise UpstreamFailed(502, "could not coordinate the upstream fetch")

    async def _lead_cluster(self, spec: FetchSpec, fid: str, lock: int, stale: Entry | None) -> Cached | None:
        """This node's leader asks the cluster: lead the fetch, or relay the leading node's."""
        try:
            lease = await self.cluster.try_lead(fid)
            leader = None if lease is not None else await self.cluster.leader(fid)
        except BaseException:
            fl.release(lock)
            raise
        if lease is not None:
            return await self._lead(spec, fid, lock, stale, lease)
        if leader is None:          # between leaders: look again (the entry may be there now)
            fl.release(lock)
            return None
        self.metrics(spec.repo).coalesced.inc()
        flight = self.flights.start(fid)
        self._spawn(relay.run_relay(self, spec, flight, lock, leader))
        return await self._join_local(spec, flight, stale)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def relay_session(self) -> aiohttp.ClientSession:
        """The HTTP client for other nodes' internal endpoints (created on first use)."""
        if self._relay_session is None or self._relay_session.closed:
            self._relay_session = aiohttp.ClientSession(auto_decompress=False)
        return self._relay_session

    async def serve_flight(self, request: web.Request, fid: str) -> web.StreamResponse:
        """The internal endpoint other nodes relay this node's fetches from."""
        return await relay.serve_flight(self, request, fid)

    async def _lead(self, spec: FetchSpec, fid: str, lock: int, stale: Entry | None,
                    lease: Lease) -> Cached | None:
        if self.flights.cross_process:
            # The previous flight of this key may have just committed it and let go of the lock while
            # followers in other workers still stream its part file and read its state from the shared
            # <fid>.json. Publishing a new flight there now would make them see another generation and
            # cut their answers short ("fetch vanished"): look first, publish only to really fetch.
            fresh = await self.entries.get(spec.repo.name, spec.key)
            if fresh is not None and self._fresh(fresh):
                fl.release(lock)
                await self.cluster.release(lease)
                return Cached("HIT", spec.repo, fresh)
        flight = self.flights.start(fid)       # registered first: from here on others join it
        fresh = await self.entries.get(spec.repo.name, spec.key)   # committed meanwhile?
        if fresh is not None and self._fresh(fresh):
            self.flights.finish(flight, lock, "done")
            await self.cluster.release(lease)
            return Cached("HIT", spec.repo, fresh)
        stale = fresh if fresh is not None and self._usable(fresh) else stale
        task = asyncio.create_task(self._run_fetch(spec, flight, lock, stale, lease))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._join_local(spec, flight, stale)

    def _fresh(self, entry: Entry) -> bool:
        """A stored entry that can answer without asking upstream."""
        return (entry.expires_at is None or time.time() < entry.expires_at) and self._usable(entry)

    async def _join_local(self, spec: FetchSpec, flight: fl.LocalFlight, stale: Entry | None) -> Cached | None:
        await flight.decided.wait()
        return await self._from_state(spec, flight.fid, flight.state, flight, stale)

    async def _from_state(self, spec: FetchSpec, fid: str, state: fl.FlightState,
                          local: fl.LocalFlight | None, stale: Entry | None) -> Cached | None:
        """Turn a decided flight into an answer; None means: look again from the start."""
        repo, outcome = spec.repo, state.state
        if outcome == "streaming":
            fd = fl.open_part(self.flights, state)
            return None if fd is None else Cached("MISS", repo, stream=(state, local, fd), fid=fid,
                                                     kind=spec.kind.value)
        if outcome in ("done", "refreshed"):
            entry = await self.entries.get(repo.name, spec.key)
            if entry is None:
                return None
            return Cached("MISS" if outcome == "done" else "REVALIDATED", repo, entry)
        if outcome == "notfound":
            self.metrics(repo).result("negative")
            raise NotFound(spec.key)
        if stale is None:
            stale = await self.entries.get(repo.name, spec.key)
        if stale is not None and self._usable(stale):
            return Cached("STALE", repo, stale)
        self.metrics(repo).result("error")
        raise UpstreamFailed(state.status or 502, state.reason or "upstream failed")

    def _conditional(self, spec: FetchSpec, stale: Entry | None) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity", **(spec.request_headers or {})}
        if stale is not None:
            if stale.etag:
                headers["If-None-Match"] = stale.etag
            if stale.last_modified:
                headers["If-Modified-Since"] = stale.last_modified
        return headers

    async def _run_fetch(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int, stale: Entry | None,
                         lease: Lease) -> None:
        """The leader's task: independent of any client, so a disconnect cancels nothing."""
        try:
            await self._fetch_upstream(spec, flight, lock, stale)
        finally:
            await self.cluster.release(lease)

    async def _fetch_upstream(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int,
                              stale: Entry | None) -> None:
        metrics = self.metrics(spec.repo)
        metrics.inflight.inc()
        done = False
        try:
            if spec.revalidate is not None and stale is not None:
                done = await self._revalidated(spec, flight, lock, stale)
                if done:
                    return
            if spec.append is not None and stale is not None and stale.size > 0 and spec.transform is None:
                done = await self._appended(spec, flight, lock, stale)
                if done:
                    return
            started = time.monotonic()
            try:
                auth = spec.repo.auth if same_origin(spec.url, spec.repo.upstream) else UpstreamAuth()
                response = await self.upstream.request("GET", spec.url, self._conditional(spec, stale), auth=auth)
            except UpstreamError as exc:
                metrics.upstream_status("error")
                activity.RECORDER.error(spec.repo.name, "upstream", "error", spec.key, exc.reason)
                log.warning("upstream error repo=%s key=%s reason=%s", spec.repo.name, spec.key, exc.reason)
                outcome = classify(None, stale is not None)
                state = "stale" if outcome is Outcome.SERVE_STALE else "failed"
                self.flights.finish(flight, lock, state, status=error_status(None, exc.timed_out),
                                    reason=exc.reason)
                done = True
                return
            metrics.upstream_latency.observe(time.monotonic() - started)
            metrics.upstream_status(response.status)
            if response.status >= 500:
                activity.RECORDER.error(spec.repo.name, "upstream", response.status, spec.key,
                                        f"upstream answered {response.status} {response.reason or ''}".strip())
            async with response:
                done = await self._settle(spec, flight, lock, stale, response)
        except Exception as exc:  # any failure must still settle the flight
            log.warning("fetch failed repo=%s key=%s error=%s: %s", spec.repo.name, spec.key,
                        type(exc).__name__, exc)
            if not done:
                state = "stale" if stale is not None else "failed"
                self.flights.finish(flight, lock, state, status=502, reason=f"{type(exc).__name__}: {exc}")
        finally:
            metrics.inflight.dec()

    async def _revalidated(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int, stale: Entry) -> bool:
        """Settle the flight by the spec's own check of an expired entry; False: go on to GET."""
        assert spec.revalidate is not None
        verdict = await spec.revalidate(stale)
        if verdict == "fresh":
            await self.entries.refresh(stale.refreshed(time.time(), self._ttl(spec)))
            self.flights.finish(flight, lock, "refreshed")
        elif verdict == "stale":
            self.flights.finish(flight, lock, "stale", status=502, reason="revalidation failed")
        return verdict in ("fresh", "stale")

    async def _settle(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int, stale: Entry | None,
                      response: aiohttp.ClientResponse) -> bool:
        repo, key = spec.repo, spec.key
        outcome = classify(response.status, stale is not None)
        if outcome is Outcome.STORE:
            await self._store(spec, flight, lock, response)
        elif outcome is Outcome.REFRESH:
            assert stale is not None
            await self.entries.refresh(stale.refreshed(time.time(), self._ttl(spec)))
            self.flights.finish(flight, lock, "refreshed")
        elif outcome is Outcome.NOT_FOUND:
            if stale is not None:
                await self.entries.delete(repo.name, key)
            await asyncio.to_thread(self.entries.set_negative, repo.name, key, repo.negative_ttl, response.status)
            self.flights.finish(flight, lock, "notfound")
        else:
            state = "stale" if outcome is Outcome.SERVE_STALE else "failed"
            self.flights.finish(flight, lock, state, status=502,
                                reason=f"upstream answered {response.status} {response.reason or ''}".strip())
        return True

    def _ttl(self, spec: FetchSpec) -> float | None:
        return spec.repo.metadata_ttl if spec.kind is Kind.METADATA else None

    async def _store(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int,
                     response: aiohttp.ClientResponse) -> None:
        metrics = self.metrics(spec.repo)
        part = self.flights.part_path(flight)
        check = IntegrityCheck.parse(spec.expect_integrity, spec.expect_md5)
        writer = await asyncio.to_thread(self.blobs.writer, None, part)
        state = flight.state
        state.length = response.content_length if spec.transform is None else None
        state.content_type = spec.content_type or response.headers.get("Content-Type")
        state.headers = {h: response.headers[h] for h in KEEP_HEADERS + spec.keep_headers
                         if h in response.headers}
        if spec.transform is None:
            state.state, state.part = "streaming", part.name
            self.flights.publish(flight)
        try:
            async for chunk in response.content.iter_any():
                await asyncio.to_thread(_write, writer, check, chunk)
                metrics.upstream_bytes.inc(len(chunk))
                flight.pulse()
            if response.content_length is not None and writer.size != response.content_length:
                raise ShortBody(f"got {writer.size} of {response.content_length} bytes")
            if check is not None:
                check.verify()
            digest, size = await asyncio.to_thread(self._commit, writer, spec)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        now = time.time()
        ttl = self._ttl(spec)
        entry = Entry(spec.repo.name, spec.key, digest, size, state.content_type, state.headers,
                      response.headers.get("ETag"), response.headers.get("Last-Modified"),
                      spec.kind.value, now, None if ttl is None else now + ttl)
        await self.entries.put(entry)
        if spec.kind is Kind.IMMUTABLE and spec.transform is None:
            await self.entries.pin(spec.repo.name, spec.key, digest)
        await asyncio.to_thread(self.entries.clear_negative, spec.repo.name, spec.key)
        self.flights.finish(flight, lock, "done")
        if self.on_stored is not None:
            self.on_stored(size)

    def _commit(self, writer: BlobWriter, spec: FetchSpec) -> tuple[str, int]:
        """Verify and commit (in a thread); with a transform, store the transformed body instead."""
        if spec.transform is None:
            return writer.commit(spec.expect_sha256), writer.size
        raw_digest = writer.hasher.hexdigest()
        if spec.expect_sha256 and spec.expect_sha256.lower() != raw_digest:
            raise DigestMismatch(spec.expect_sha256.lower(), raw_digest)
        body = writer.temp_path.read_bytes()
        writer.abort()
        out = spec.transform(body)
        second = self.blobs.writer()
        try:
            second.write(out)
            return second.commit(), second.size
        except BaseException:
            second.abort()
            raise

    # ---------------------------------------------------------------- answering
    def respond(self, request: web.Request, cached: Cached,
                headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """The HTTP answer for an opened key (streams an in-flight fetch)."""
        metrics = self.count(request, cached.repo, cached.status.lower())
        if cached.stream is not None:
            state, local, fd = cached.stream
            out = {"Content-Type": state.content_type or "application/octet-stream", **state.headers,
                   "X-Cache": cached.status, **(headers or {})}
            chunks = fl.follow(self.flights, cached.fid, state, local, fd)
            return StreamingResponse(chunks, state.length, out, on_bytes=metrics.from_upstream.inc)
        entry = cached.entry
        assert entry is not None
        self.entries.touch(entry.repo, entry.key)
        out = {**entry.headers, "X-Cache": cached.status, **(headers or {})}
        if request.method != "HEAD":
            (metrics.from_cache if cached.status == "HIT" else metrics.from_upstream).inc(entry.size)
        response = respond_blob(request, entry.digest, entry.size, entry.content_type, out,
                                blobs=self.blobs, memory=self.memory, last_modified=entry.last_modified)
        if cached.status == "HIT" and not headers:       # after: a small body is in memory now
            self._remember_hot(request, entry, out)
        return response

    async def read(self, cached: Cached) -> bytes:
        """The whole body of an opened key (waits for an in-flight fetch)."""
        if cached.stream is not None:
            state, local, fd = cached.stream
            try:
                parts = [chunk async for chunk in fl.follow(self.flights, cached.fid, state, local, fd)]
            except fl.Aborted as exc:
                raise UpstreamFailed(502, str(exc)) from exc
            return b"".join(parts)
        assert cached.entry is not None
        body = self.memory.get(cached.entry.digest)
        if body is None:
            body = await self.blobs.read(cached.entry.digest)
            self.memory.put(cached.entry.digest, body)
        return body

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._relay_session is not None:
            await self._relay_session.close()

    async def _appended(self, spec: FetchSpec, flight: fl.LocalFlight, lock: int, stale: Entry) -> bool:
        """Settle the flight with a Range request for the bytes past the stored copy (see
        FetchSpec.append); False: nothing settled, go on to the whole GET."""
        assert spec.append is not None
        metrics = self.metrics(spec.repo)
        headers = {**self._conditional(spec, stale), "Range": f"bytes={stale.size - 1}-"}
        auth = spec.repo.auth if same_origin(spec.url, spec.repo.upstream) else UpstreamAuth()
        try:
            response = await self.upstream.request("GET", spec.url, headers, auth=auth)
        except UpstreamError:
            return False                     # the whole GET decides (and serves the stale copy if it fails too)
        metrics.upstream_status(response.status)
        async with response:
            if response.status != 206:
                if response.status in (416, 412) or response.status >= 500:
                    return False
                return await self._settle(spec, flight, lock, stale, response)
            tail = await response.read()
            answer_headers = dict(response.headers)
        metrics.upstream_bytes.inc(len(tail))
        try:
            old = await self.read(Cached("STALE", spec.repo, stale))
        except OSError:                      # its blob went meanwhile (evicted): fetch it whole
            return False
        body = await asyncio.to_thread(spec.append, old, tail, answer_headers)
        if body is None:
            log.info("range append refused repo=%s key=%s: fetching it whole", spec.repo.name, spec.key)
            return False
        writer = await asyncio.to_thread(self.blobs.writer)
        try:
            await asyncio.to_thread(writer.write, body)
            digest = await asyncio.to_thread(writer.commit)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        now, ttl = time.time(), self._ttl(spec)
        await self.entries.put(Entry(spec.repo.name, spec.key, digest, len(body), stale.content_type, stale.headers,
                                     answer_headers.get("ETag"), answer_headers.get("Last-Modified"),
                                     spec.kind.value, now, None if ttl is None else now + ttl))
        self.flights.finish(flight, lock, "done")
        if self.on_stored is not None:
            self.on_stored(len(body))
        return True


def _write(writer: BlobWriter, check: IntegrityCheck | None, chunk: bytes) -> None:
    """Append a chunk (in a worker thread), feeding the integrity hashers too."""
    writer.write(chunk)
    if check is not None:
        check.update(chunk)




"""The fast path for repeat hits: answers remembered per request path, Accept and Host, given
again without routing, parsing or lookups while the entry they came from is the very object this
process holds, fresh (small bodies from memory, bigger files of a local store by sendfile)."""
from __future__ import annotations

import time
from typing import Any, Mapping

from aiohttp import web
from cachetools import LRUCache

from . import activity
from .entries import Entry, EntryIndex
from .metrics import RepoMetrics
from .serve import MemoryCache, SendfileResponse, blob_headers
from .types import RepoConfig

HOT_FILES = 4096              # entries of hot_files (a few hundred bytes each)
# request headers by which a trusted proxy names another base URL than the Host's (public_base)
FORWARDED_BASE = ("X-Forwarded-Host", "X-Forwarded-Proto")


def _forwarded(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in FORWARDED_BASE)


def _hot_key(request: web.Request) -> tuple[str, str | None, str]:
    return request.path, request.headers.get("Accept"), request.host


class HotPath:
    """Mixed into PullThrough: it provides memory, blobs, entries and metrics()."""

    memory: MemoryCache
    blobs: Any
    entries: EntryIndex

    def metrics(self, repo: RepoConfig) -> RepoMetrics:
        raise NotImplementedError

    def init_hot(self, memory: MemoryCache) -> None:
        """Create the two bounded tables of remembered answers."""
        # (path, Accept, Host) -> (entry, body, headers, host_bound) of small fresh hits; see
        # hot_response(). Accept and Host are in the key because formats negotiate bodies on them
        # (host_bound: a body rebased onto the Host's URL). Bounded by the bytes it keeps alive,
        # like the memory cache whose bodies it shares.
        self.hot: LRUCache[tuple[str, str | None, str], tuple[Entry, bytes, dict[str, str], bool]] = \
            LRUCache(maxsize=memory.data.maxsize, getsizeof=lambda item: len(item[1]) + 512)
        # the same for bigger fresh hits of a local store, answered by sendfile (no bytes kept)
        self.hot_files: LRUCache[tuple[str, str | None, str], tuple[Entry, dict[str, str]]] = \
            LRUCache(maxsize=HOT_FILES)

    def _remember_hot(self, request: web.Request, entry: Entry, headers: dict[str, str]) -> None:
        body = self.memory.get(entry.digest)
        full = blob_headers(entry.digest, entry.content_type, headers, entry.last_modified)
        if body is not None:
            if not body:
                full["Content-Length"] = "0"     # as respond_bytes: a HEAD keeps the length too
            self.hot[_hot_key(request)] = (entry, body, full, False)
        elif entry.size > self.memory.item_max and not getattr(self.blobs, "remote", False):
            self.hot_files[_hot_key(request)] = (entry, full)

    def hot_response(self, request: web.Request, repo: RepoConfig) -> web.StreamResponse | None:
        """The fast path for a repeat hit: no routing, parsing or lookups; small bodies from
        memory, bigger ones of a local store by sendfile.

        Valid while the entry this process holds for the key is the very same object (not
        refreshed, replaced or forgotten), is fresh, and its bytes are still in memory (or its
        file still opens).
        """
        key = _hot_key(request)
        body: bytes | None
        item = self.hot.get(key)
        headers_in = request.headers
        if item is not None:
            entry, body, headers, host_bound = item
            if host_bound and _forwarded(headers_in):     # another base URL than the Host's
                return None
        else:
            big = self.hot_files.get(key) if self.hot_files else None
            if big is None:
                return None
            (entry, headers), body = big, None
        if ("Range" in headers_in or "If-None-Match" in headers_in or "If-Modified-Since" in headers_in
                or self.entries.memory.get((entry.repo, entry.key)) is not entry
                or (entry.expires_at is not None and time.time() >= entry.expires_at)
                or entry.repo != repo.name):
            return None
        response: web.StreamResponse
        if body is not None:
            response = web.Response(body=body, headers=headers)
        else:
            try:
                fobj = open(self.blobs.path(entry.digest), "rb", buffering=0)
            except OSError:                    # evicted: the full path fetches it again
                self.hot_files.pop(key, None)
                return None
            response = SendfileResponse(fobj, 0, entry.size, 200, headers)
        self.entries.touch(entry.repo, entry.key)
        metrics = self.metrics(repo)
        metrics.result("hit")
        metrics.hot.inc()
        if request.method != "HEAD":
            metrics.from_cache.inc(len(body) if body is not None else entry.size)
            activity.RECORDER.download(repo.name, repo.format, request, "hit")
        return response

    def remember_answer(self, request: web.Request, entry: Entry, body: bytes, headers: dict[str, str],
                        host_bound: bool = False) -> None:
        """Remember `body` (with the full headers of its 200 answer) as the hot answer to this
        request's path, Accept and Host: for answers derived from `entry` alone (a checksum of
        it; with `host_bound`, a document rebased onto the base URL of the request's Host, not
        answered hot to requests that name another base by X-Forwarded-*). Valid, as every hot
        answer, while `entry` is the very object this process holds for its key and is fresh."""
        if len(body) > self.memory.item_max or (host_bound and _forwarded(request.headers)):
            return
        if not body:
            headers = {**headers, "Content-Length": "0"}
        self.hot[_hot_key(request)] = (entry, body, headers, host_bound)

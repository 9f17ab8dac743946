"""Rendered documents kept in memory, and the public-base placeholder for rewritten metadata.

Metadata rewritten at fill time names depot's own URLs. Those depend on the base URL a client
used (Host, X-Forwarded-*, public_url), which must not be part of a cache key (one upstream fetch
per document, whatever the Host). So rewrites write BASE_PLACEHOLDER, and the answer substitutes
the request's base at serve time; the substituted body is kept here, keyed by digest and base.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable

from cachetools import LRUCache

BASE_PLACEHOLDER = "@@depot-public-base@@"
_PLACEHOLDER_BYTES = BASE_PLACEHOLDER.encode()


def rebase(body: bytes, base_url: str) -> bytes:
    """The body with every BASE_PLACEHOLDER replaced by `base_url` (no trailing slash)."""
    return body.replace(_PLACEHOLDER_BYTES, base_url.rstrip("/").encode())


class DocumentCache:
    """Rendered bodies by key, bounded by the bytes they hold (shared by every format)."""

    def __init__(self, max_bytes: int, item_max: int) -> None:
        self.item_max = item_max
        self._data: LRUCache[Hashable, bytes] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=len)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) <= self.item_max:
            with self._lock:
                self._data[key] = body

    def get_or_render(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The cached body for `key`, rendering (and keeping) it on a miss. Put everything the
        body depends on (input digests, base URL, variant) in the key."""
        found = self.get(key)
        if found is None:
            found = render()
            self.put(key, found)
        return found

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

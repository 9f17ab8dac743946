"""A node-local disk tier in front of the S3 blob store (Artifactory HA's "cache-fs").

Config `storage: {kind: s3, ..., local_cache: {path, max_size}}`. Blobs are content-addressed and
immutable, so a local copy never needs invalidating: a file at `<tier>/<ab>/<digest>` holds exactly
the bytes of that digest, or there is no file.

- Reads of a blob in the tier use the local file (the hit path sends it with sendfile, as for the
  local store). A read of a blob not in the tier is streamed from S3 as before, and the blob is
  copied to the tier in the background: one fill per digest per node (a flock slot shared by the
  node's processes), written to a temporary file, fsynced, and renamed into place only after its
  sha256 is verified, so the tier never holds a partial or wrong file. Blobs this node stores
  from a local file (proxy fills, `adopt`) are hard-linked in at once (write-through).
- Existence is never answered from the tier: `stat`/`exists` ask the bucket and every read is of a
  digest the caller found in the database (entries, catalog). A copy whose blob GC removed on
  another node is therefore never served by a request that starts after the GC; the node's own
  GC (`scan`) drops such copies and LRU eviction reclaims them otherwise.
- Bounded size: LRU by the file's mtime, refreshed at most once a minute per blob on a hit (no
  fsync, no database write per hit); the tier is scanned and trimmed to max_size after each fill.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable, Iterator

import obstore

from .blobs import HEX64
from .blobs_s3 import S3BlobStore, S3Settings

log = logging.getLogger(__name__)

TOUCH_SECONDS = 60.0          # a hit refreshes the file's mtime (its LRU age) at most this often
MAX_PENDING = 256             # fills queued per process; more are dropped (a later read asks again)
LOCK_SLOTS = 64               # flock files shared by the node's processes: one fill per digest
STALE_TEMP_SECONDS = 3600.0

# a blocking source of a blob's bytes: (size, chunks)
Source = Callable[[str], tuple[int, Iterable[bytes]]]


class DiskTier:
    """Verified local copies of remote blobs under `root`, at most `max_size` bytes in all."""

    def __init__(self, root: Path, max_size: int, source: Source) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.max_size = max_size
        self.source = source
        self._pending: set[str] = set()
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-tier")
        self.fills = 0
        self.evicted = 0
        self._drop_stale_temps()

    def path(self, digest: str) -> Path:
        if not HEX64.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    # reads --------------------------------------------------------------------------------
    def get(self, digest: str) -> Path | None:
        """The local copy of `digest`, or None. One stat per call; the file's mtime (its LRU age)
        is refreshed when older than TOUCH_SECONDS."""
        target = self.path(digest)
        try:
            mtime = os.stat(target).st_mtime
            if time.time() - mtime > TOUCH_SECONDS:
                os.utime(target)
        except FileNotFoundError:
            return None
        return target

    def want(self, digest: str) -> None:
        """Queue a background fill of `digest` (no-op when one is queued in this process)."""
        with self._guard:
            if digest in self._pending or len(self._pending) >= MAX_PENDING:
                return
            self._pending.add(digest)
        try:
            self._pool.submit(self._fill_logged, digest)
        except RuntimeError:                       # closed: the process is stopping
            with self._guard:
                self._pending.discard(digest)

    def _fill_logged(self, digest: str) -> None:
        try:
            self.fill(digest)
        except Exception:   # a failed fill leaves nothing; the blob is still served from S3
            log.warning("local cache fill of %s failed", digest, exc_info=True)
        finally:
            with self._guard:
                self._pending.discard(digest)

    # fills --------------------------------------------------------------------------------
    def fill(self, digest: str) -> bool:
        """Copy `digest` from the source into the tier (blocking); whether this call stored it."""
        target = self.path(digest)
        with self._slot(digest):
            if target.exists():
                return False
            size, chunks = self.source(digest)
            if size > self.max_size:
                return False
            stored = self._write_verified(digest, chunks, target)
        if stored:
            self.fills += 1
            self.evict()
        return stored

    @contextlib.contextmanager
    def _slot(self, digest: str) -> Iterator[None]:
        """An exclusive flock shared by the node's processes (per slot of digests)."""
        slot = zlib.crc32(digest.encode()) % LOCK_SLOTS
        fd = os.open(self.tmp / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write_verified(self, digest: str, chunks: Iterable[bytes], target: Path) -> bool:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"fill-{os.getpid()}-", suffix=".part")
        hasher = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if hasher.hexdigest() != digest:
                log.error("local cache: the bucket's copy of %s hashes to %s; not cached", digest,
                          hasher.hexdigest())
                return False
            target.parent.mkdir(exist_ok=True)
            os.rename(name, target)
            name = ""
            return True
        finally:
            if name:
                os.unlink(name)

    # size ---------------------------------------------------------------------------------
    def files(self) -> list[tuple[float, int, Path]]:
        """Every copy as (mtime, size, path)."""
        found = []
        for top in self.root.iterdir():
            if len(top.name) != 2 or not top.is_dir():
                continue
            for entry in os.scandir(top):
                if HEX64.match(entry.name):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append((st.st_mtime, st.st_size, Path(entry.path)))
        return found

    def size(self) -> int:
        return sum(size for _, size, _ in self.files())

    def evict(self) -> int:
        """Remove least recently used copies until the tier fits max_size; bytes freed."""
        files = self.files()
        total = sum(size for _, size, _ in files)
        freed = 0
        for _, size, path in sorted(files):
            if total - freed <= self.max_size:
                break
            path.unlink(missing_ok=True)
            freed += size
            self.evicted += 1
        return freed

    def keep(self, path: Path, digest: str) -> bool:
        """Take a hard link of `path`, a complete file already verified to hash to `digest`
        (write-through of a blob this node stored); whether the tier took it."""
        target = self.path(digest)
        if target.exists() or os.stat(path).st_size > self.max_size:
            return False
        link = self.tmp / f"fill-{os.getpid()}-{uuid.uuid4().hex}.part"
        try:
            os.link(path, link)
            with open(link, "rb") as handle:
                os.fsync(handle.fileno())
            target.parent.mkdir(exist_ok=True)
            os.rename(link, target)
        except OSError:          # another file system, or the file went: a later read fills it
            link.unlink(missing_ok=True)
            return False
        self.evict()
        return True

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def retain(self, live: set[str], before: float) -> int:
        """Drop copies of digests not in `live` (a bucket listing started at `before`); how many."""
        dropped = 0
        for mtime, _, path in self.files():
            if path.name not in live and mtime < before:
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def _drop_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for part in self.tmp.glob("fill-*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


async def file_chunks(handle: object, start: int, end: int | None, chunk_size: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of an open binary file as chunks, read in a thread."""
    await asyncio.to_thread(handle.seek, start)  # type: ignore[attr-defined]
    remaining = None if end is None else end - start
    while remaining is None or remaining > 0:
        size = chunk_size if remaining is None else min(chunk_size, remaining)
        chunk = await asyncio.to_thread(handle.read, size)  # type: ignore[attr-defined]
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


class TieredS3BlobStore(S3BlobStore):
    """S3BlobStore with a node-local disk tier for reads (see the module docstring)."""

    def __init__(self, root: Path, settings: S3Settings) -> None:
        super().__init__(root, settings)
        where = Path(settings.cache_path) if settings.cache_path else Path(root) / "blob-cache"
        self.tier = DiskTier(where, settings.cache_max_size, self._remote_source)

    def _remote_source(self, digest: str) -> tuple[int, Iterable[bytes]]:
        result = obstore.get(self.s3, self.key(digest))
        return int(result.meta["size"]), result.stream(min_chunk_size=1024 * 1024)

    def local_path(self, digest: str) -> Path | None:
        """The tier's copy (served with sendfile), or None and a background fill starts."""
        found = self.tier.get(digest)
        if found is None:
            self.tier.want(digest)
        return found

    async def read(self, digest: str) -> bytes:
        found = self.local_path(digest)
        if found is not None:
            with contextlib.suppress(FileNotFoundError):       # evicted meanwhile: from the bucket
                return await asyncio.to_thread(found.read_bytes)
        return await super().read(digest)

    async def read_chunks(self, digest: str, start: int = 0, end: int | None = None,
                          chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        found = self.local_path(digest)
        handle = None
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                handle = await asyncio.to_thread(open, found, "rb")
        if handle is None:
            async for chunk in super().read_chunks(digest, start, end, chunk_size):
                yield chunk
            return
        try:
            async for chunk in file_chunks(handle, start, end, chunk_size):
                yield chunk
        finally:
            handle.close()

    @contextlib.contextmanager
    def local_file(self, digest: str) -> Iterator[Path]:
        """The tier's copy, hard-linked for the caller (eviction cannot pull it away), else a copy."""
        found = self.tier.get(digest)
        if found is not None:
            private = self.tmp / f"copy-{uuid.uuid4().hex}"
            try:
                os.link(found, private)
            except OSError:         # evicted meanwhile, or the tier is on another file system
                found = None
            if found is not None:
                try:
                    yield private
                finally:
                    private.unlink(missing_ok=True)
                return
        with super().local_file(digest) as path:
            yield path

    def keep_local(self, path: Path, digest: str) -> None:
        """Write-through: the verified local copy of a blob this node just stored joins the tier."""
        self.tier.keep(path, digest)

    def adopt(self, temp_path: Path, digest: str) -> None:
        kept = self.tier.keep(Path(temp_path), digest)
        try:
            super().adopt(temp_path, digest)
        except BaseException:
            if kept:
                self.tier.remove(digest)
            raise

    def delete(self, digest: str) -> int:
        """Remove the blob from the bucket and this node's tier."""
        self.tier.remove(digest)
        return super().delete(digest)

    def scan(self) -> list[tuple[str, int, float]]:
        """Every blob in the bucket (GC); copies of blobs no longer there leave the tier."""
        started = time.time()
        found = super().scan()
        self.tier.retain({digest for digest, _, _ in found}, started)
        return found

    iter_digests = scan

    def close(self) -> None:
        self.tier.close()

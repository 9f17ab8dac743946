"""The bytes of resumable upload sessions (cache/uploads.py): numbered parts beside the blob store.

A part is what one request (or one stretch of it, see uploads.FLUSH_IDLE) added to a session.
Parts are not blobs: nothing can read them by digest, GC never sees them, and a finished
session's single part is moved into the blob store without a copy when it is already the whole
blob. Two implementations, chosen by the blob store:

* `LocalParts`  files `tmp/uploads/<session>/<part>.part` (one node; every worker sees them)
* `S3Parts`     objects `<prefix>uploads/<session>/<part>` in the bucket (every node sees them;
                the bucket's `stale_uploads` sweep removes what a dead session left)

A part's name is its start offset and a random suffix (`<start>-<hex>`): two requests racing to
append at the same offset write different parts, and only the one recorded counts.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, AsyncIterator, Protocol

READ_CHUNK = 1 << 20
MAX_AGE = 24 * 3600.0
_NAME = re.compile(r"[0-9a-f]{32}|[0-9]+-[0-9a-f]{12}")


class PartWriter(Protocol):
    """One part being written (blocking calls: use from a worker thread)."""

    sha256: Any
    size: int

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class PartStorage(Protocol):
    """Where upload parts live: written once, read back in order, moved into the blob store."""

    def writer(self, session: str, part: str) -> PartWriter: ...
    def read_chunks(self, session: str, part: str) -> AsyncIterator[bytes]: ...
    def adopt(self, session: str, part: str, sha256: str) -> None: ...
    def delete_session(self, session: str) -> None: ...


class _LocalWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.handle = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


class LocalParts:
    """Parts as files under the blob store's tmp/ (same file system: adopting is a rename)."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs
        self.root = Path(blobs.tmp) / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, session: str, part: str) -> Path:
        return self.root / _safe(session) / f"{_safe(part)}.part"

    def writer(self, session: str, part: str) -> _LocalWriter:
        return _LocalWriter(self._path(session, part))

    async def read_chunks(self, session: str, part: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(session, part), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    def adopt(self, session: str, part: str, sha256: str) -> None:
        self.blobs.adopt(self._path(session, part), sha256)

    def delete_session(self, session: str) -> None:
        shutil.rmtree(self.root / _safe(session), ignore_errors=True)

    def sweep(self, max_age: float = MAX_AGE) -> None:
        """Drop part folders untouched for `max_age` (left by sessions nobody finished)."""
        cutoff = time.time() - max_age
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue


class _S3Writer:
    def __init__(self, store: Any, key: str) -> None:
        import obstore
        self.key = key
        self.store = store
        self.upload = obstore.open_writer(store.s3, key, buffer_size=8 * 1024 * 1024, max_concurrency=2)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.upload.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.closed = True
        self.upload.close()

    def abort(self) -> None:
        try:
            if not self.closed:
                self.closed = True
                self.upload.close()
        finally:
            self.store.delete_key(self.key)


class S3Parts:
    """Parts as objects in the bucket, so a session continues on whichever node a request reaches."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs

    def _key(self, session: str, part: str) -> str:
        return f"{self.blobs.prefix}uploads/{_safe(session)}/{_safe(part)}"

    def writer(self, session: str, part: str) -> _S3Writer:
        return _S3Writer(self.blobs, self._key(session, part))

    async def read_chunks(self, session: str, part: str) -> AsyncIterator[bytes]:
        import obstore
        result = await obstore.get_async(self.blobs.s3, self._key(session, part))
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)

    def adopt(self, session: str, part: str, sha256: str) -> None:
        self.blobs.adopt_temp(self._key(session, part), sha256)

    def delete_session(self, session: str) -> None:
        import obstore
        for batch in obstore.list(self.blobs.s3, prefix=f"{self.blobs.prefix}uploads/{_safe(session)}/"):
            for meta in batch:
                self.blobs.delete_key(meta["path"])

    def sweep(self, max_age: float = MAX_AGE) -> None:
        """Left to the bucket's stale_uploads sweep (run by `depot gc`)."""


def _safe(name: str) -> str:
    """Session ids and part names are hex and digits (validated: no request string reaches a path)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not an upload part name: {name!r}")
    return name


def parts_for(blobs: Any) -> LocalParts | S3Parts:
    """The part storage that goes with a blob store."""
    return S3Parts(blobs) if getattr(blobs, "remote", False) else LocalParts(blobs)

"""Content-addressed blob store: blobs/sha256/ab/cd/<hex>, temp files in tmp/ on the same fs."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterator

HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DigestMismatch(ValueError):
    """The bytes written do not hash to the digest that was promised."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class TooLarge(ValueError):
    """More bytes than the configured limit."""


class BlobWriter:
    """Writes one blob into a temp file, hashing as it goes; commit() renames it into place.

    Synchronous: call from a worker thread (or with small writes where the cost is measured).
    """

    def __init__(self, store: "BlobStore", max_size: int | None = None,
                 path: Path | None = None) -> None:
        self.store = store
        self.max_size = max_size
        if path is None:
            # the pid in the name lets the master remove a killed worker's leftovers
            fd, name = tempfile.mkstemp(dir=store.tmp, prefix=f"blob-{os.getpid()}-", suffix=".part")
            path = Path(name)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.fd = fd
        self.temp_path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes (raises TooLarge past max_size)."""
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise TooLarge(f"more than {self.max_size} bytes")
        self.hasher.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def commit(self, expect_sha256: str | None = None) -> str:
        """fsync, verify, rename into the store; returns the hex digest. Aborts on mismatch."""
        digest = self.hasher.hexdigest()
        if expect_sha256 and expect_sha256.lower() != digest:
            self.abort()
            raise DigestMismatch(expect_sha256.lower(), digest)
        os.fsync(self.fd)
        os.close(self.fd)
        self.closed = True
        self.store.adopt(self.temp_path, digest)
        return digest

    def abort(self) -> None:
        """Drop the temp file; nothing is stored."""
        if not self.closed:
            os.close(self.fd)
            self.closed = True
        self.temp_path.unlink(missing_ok=True)


class BlobStore:
    """Blobs by sha256 under `root/blobs/sha256/ab/cd/<hex>`; `root/tmp` for partial files."""

    remote = False       # served by sendfile from local files
    redirect = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob with this hex digest lives (validated: no request string reaches the fs)."""
        if not HEX64.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.blobs / digest[:2] / digest[2:4] / digest

    def remove_temp_of(self, pid: int) -> int:
        """Delete the partial files a (dead) process left in tmp/; returns how many."""
        removed = 0
        for path in self.tmp.glob(f"blob-{int(pid)}-*.part"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def stat(self, digest: str) -> int | None:
        """Size of a stored blob, None when absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: str) -> Path | None:
        """The blob's file (for sendfile); None when absent."""
        target = self.path(digest)
        return target if target.is_file() else None

    def direct_url(self, digest: str, expires: float = 300.0) -> str | None:
        """Local blobs have no URL of their own."""
        return None

    @contextlib.contextmanager
    def local_file(self, digest: str) -> Iterator[Path]:
        """The blob as a local file to open (here: the stored file itself)."""
        yield self.path(digest)

    async def read_chunks(self, digest: str, start: int = 0, end: int | None = None,
                          chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a blob as chunks (reads in a thread)."""
        handle = await asyncio.to_thread(open, self.path(digest), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    def scan(self) -> list[tuple[str, int, float]]:
        """Every stored blob as (digest, size, mtime). Blocking."""
        return self.iter_digests()

    def writer(self, max_size: int | None = None, path: Path | None = None) -> BlobWriter:
        """A writer into a fresh temp file (or `path`, which must be under tmp/)."""
        return BlobWriter(self, max_size, path)

    def adopt(self, temp_path: Path, digest: str) -> Path:
        """Rename a complete, fsynced temp file into place (atomic; an existing blob wins)."""
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            temp_path.unlink(missing_ok=True)
        else:
            os.replace(temp_path, target)
            _fsync_dir(target.parent)
        return target

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed (0 if absent)."""
        target = self.path(digest)
        try:
            size = target.stat().st_size
            target.unlink()
        except FileNotFoundError:
            return 0
        return size

    def iter_digests(self) -> list[tuple[str, int, float]]:
        """All stored blobs as (digest, size, mtime). Blocking."""
        found = []
        for top in self.blobs.iterdir():
            for mid in top.iterdir():
                for blob in mid.iterdir():
                    if HEX64.match(blob.name):
                        st = blob.stat()
                        found.append((blob.name, st.st_size, st.st_mtime))
        return found

    async def put_bytes(self, data: bytes, expect_sha256: str | None = None) -> tuple[str, int]:
        """Store bytes (in a thread); returns (digest, size)."""
        def work() -> tuple[str, int]:
            writer = self.writer()
            try:
                writer.write(data)
            except BaseException:
                writer.abort()
                raise
            return writer.commit(expect_sha256), writer.size
        return await asyncio.to_thread(work)

    async def put_stream(self, chunks: AsyncIterator[bytes], expect_sha256: str | None = None,
                         max_size: int | None = None) -> tuple[str, int]:
        """Store a stream of chunks; nothing is stored if it fails, is too large or mismatches."""
        writer = await asyncio.to_thread(self.writer, max_size)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(writer.write, chunk)
            digest = await asyncio.to_thread(writer.commit, expect_sha256)
        except BaseException:
            writer.abort()
            raise
        return digest, writer.size

    async def read(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.path(digest).read_bytes)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Blob upload sessions of the OCI push protocol, kept on disk so every worker process sees them.

A session is `tmp/oci-uploads/<uuid>.json` (who it belongs to) and `<uuid>.part` (the bytes so
far). Chunks are appended as they stream in; finishing hashes the part file in a worker thread,
checks the digest the client promised and renames the file into the blob store. A monolithic
upload (nothing received before the final PUT) is hashed while it is written, in one pass.
Whole blobs are never held in memory.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from depot.cache.blobs import BlobStore, BlobWriter, DigestMismatch, TooLarge

UUID_RE = re.compile(r"[0-9a-f]{32}")
SESSION_MAX_AGE = 24 * 3600.0
SWEEP_INTERVAL = 600.0
READ_CHUNK = 1 << 20


class UploadUnknown(Exception):
    """No such upload session (never created, finished, cancelled or expired)."""


class RangeInvalid(Exception):
    """A chunk does not start where the upload stands."""


@dataclass(frozen=True)
class Upload:
    """One upload session."""

    id: str
    repo: str
    image: str
    part: Path

    @property
    def size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            raise UploadUnknown(self.id) from None


class Uploads:
    """Create, extend, finish and cancel upload sessions."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.dir = blobs.tmp / "oci-uploads"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._swept = 0.0

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        return self.dir / f"{upload_id}.json", self.dir / f"{upload_id}.part"

    def create(self, repo: str, image: str) -> Upload:
        """A new, empty session."""
        self._sweep()
        upload_id = uuid.uuid4().hex
        meta, part = self._paths(upload_id)
        part.touch()
        meta.write_text(json.dumps({"repo": repo, "image": image, "created": time.time()}))
        return Upload(upload_id, repo, image, part)

    def get(self, upload_id: str, repo: str, image: str) -> Upload:
        """The session, if it exists and belongs to this repository and image."""
        if not UUID_RE.fullmatch(upload_id):
            raise UploadUnknown(upload_id)
        meta, part = self._paths(upload_id)
        try:
            info = json.loads(meta.read_text())
        except (FileNotFoundError, ValueError):
            raise UploadUnknown(upload_id) from None
        if info.get("repo") != repo or info.get("image") != image or not part.exists():
            raise UploadUnknown(upload_id)
        return Upload(upload_id, repo, image, part)

    async def append(self, upload: Upload, chunks: AsyncIterator[bytes], start: int | None,
                     max_size: int) -> int:
        """Append a chunk (which must begin at `start` if given); returns the new size."""
        size = upload.size
        if start is not None and start != size:
            raise RangeInvalid(f"chunk starts at {start}, upload is at {size}")
        fd = await asyncio.to_thread(os.open, upload.part, os.O_WRONLY | os.O_APPEND)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise TooLarge(f"more than {max_size} bytes")
                await asyncio.to_thread(_write_all, fd, chunk)
        finally:
            os.close(fd)
        return size

    async def finish(self, upload: Upload, digest: str, chunks: AsyncIterator[bytes],
                     max_size: int) -> tuple[str, int]:
        """Take the last chunk, verify the whole blob against `digest` (sha256 or sha512) and
        store it; returns (sha256 hex, size)."""
        try:
            if upload.size == 0:
                result = await store_stream(self.blobs, chunks, digest, max_size)
            else:
                await self.append(upload, chunks, None, max_size)
                result = await asyncio.to_thread(self._adopt_part, upload, digest)
        except (DigestMismatch, TooLarge):
            self.cancel(upload)
            raise
        self.cancel(upload)
        return result

    def _adopt_part(self, upload: Upload, digest: str) -> tuple[str, int]:
        """Hash the part file (blocking) and rename it into the store when it matches."""
        algorithm, expected = digest.split(":", 1)
        hasher = hashlib.sha256()
        alias = hasher if algorithm == "sha256" else hashlib.new(algorithm)
        size = 0
        with open(upload.part, "rb") as fobj:
            while block := fobj.read(READ_CHUNK):
                hasher.update(block)
                if alias is not hasher:
                    alias.update(block)
                size += len(block)
            os.fsync(fobj.fileno())
        if alias.hexdigest() != expected:
            raise DigestMismatch(expected, alias.hexdigest())
        actual = hasher.hexdigest()
        self.blobs.adopt(upload.part, actual)
        return actual, size

    def cancel(self, upload: Upload) -> None:
        """Forget the session and its bytes."""
        meta, part = self._paths(upload.id)
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Drop sessions untouched for a day (at most every SWEEP_INTERVAL per process)."""
        now = time.time()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for path in self.dir.iterdir():
            try:
                if now - path.stat().st_mtime > SESSION_MAX_AGE:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                continue


async def store_stream(blobs: BlobStore, chunks: AsyncIterator[bytes], digest: str,
                       max_size: int) -> tuple[str, int]:
    """Store a blob the client names by `digest` (sha256 or sha512); returns (sha256 hex, size).

    The store is sha256-addressed: a sha512 digest is checked on a second hasher while the
    bytes stream in, and nothing is committed unless it matches."""
    algorithm, expected = digest.split(":", 1)
    if algorithm == "sha256":
        return await blobs.put_stream(chunks, expected, max_size)
    alias = hashlib.new(algorithm)
    writer = await asyncio.to_thread(blobs.writer, max_size)
    try:
        async for chunk in chunks:
            await asyncio.to_thread(_write_hashed, writer, alias, chunk)
        if alias.hexdigest() != expected:
            raise DigestMismatch(expected, alias.hexdigest())
        return await asyncio.to_thread(writer.commit), writer.size
    except BaseException:
        writer.abort()
        raise


def _write_hashed(writer: BlobWriter, alias: Any, chunk: bytes) -> None:
    writer.write(chunk)
    alias.update(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """'<start>-<end>' (optionally 'bytes ' prefixed, '/total' suffixed) -> (start, end)."""
    if not header:
        return None
    text = header.strip().removeprefix("bytes").strip().removeprefix("=").strip()
    text = text.split("/")[0]
    found = re.fullmatch(r"(\d+)-(\d+)", text)
    if not found:
        raise RangeInvalid(f"bad Content-Range {header!r}")
    start, end = int(found[1]), int(found[2])
    if end < start:
        raise RangeInvalid(f"bad Content-Range {header!r}")
    return start, end

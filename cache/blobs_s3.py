"""Content-addressed blobs in S3-compatible object storage (AWS S3, Ceph RGW, MinIO) via obstore.

Keys: `<prefix>blobs/sha256/<ab>/<hex>`, written once. A blob that fits in one part is verified
in memory and stored with a conditional create (`If-None-Match: *`), so racing writers are
harmless. A bigger one streams as a multipart upload (bounded memory: one part buffered, at most
`MAX_CONCURRENCY` parts in flight) under a unique temporary key `<prefix>uploads/<uuid>`, and is
copied to its content address once its digest is verified: Ceph 16 does not enforce
`If-None-Match` on CompleteMultipartUpload, and a temporary key never exposes a partial or
unverified body under a digest (identical bytes make a racing copy harmless). GC sweeps
temporary keys older than a day (`stale_uploads`).

obstore was chosen over aiobotocore after measuring both against Ceph RGW (bench/s3_clients.py):
it has blocking and async calls (the BlobStorage protocol has both), is not bound to one event
loop, does conditional create and presigning itself, and was faster on fills and small hits.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError
from obstore.store import S3Store

from .blobs import HEX64, DigestMismatch, TooLarge

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
MAX_CONCURRENCY = 2
STALE_UPLOAD_SECONDS = 86400.0


@dataclass(frozen=True)
class S3Settings:
    """Where the blobs live (config `storage:`; keys may come from the environment or a file)."""

    endpoint: str | None
    bucket: str
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    prefix: str = ""
    redirect: bool = False
    redirect_min_size: int = 1024 * 1024
    cache_path: str | None = None          # storage.local_cache: a node-local disk tier (cache/blob_tier.py)
    cache_max_size: int = 0                # 0: no local tier

    def store(self, bucket: str | None = None) -> S3Store:
        """An obstore S3 client for the bucket (path-style, plain HTTP allowed for loopback)."""
        options: dict[str, Any] = {}
        if self.access_key:
            options["access_key_id"] = self.access_key
            options["secret_access_key"] = self.secret_key or ""
        if self.endpoint:
            options["endpoint"] = self.endpoint
        # bounded retries: an unreachable store must fail a request (and healthz) in seconds
        retry = {"max_retries": 3, "retry_timeout": timedelta(seconds=20),
                 "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2),
                             "base": 2}}
        return S3Store(bucket or self.bucket, region=self.region, virtual_hosted_style_request=False,
                       client_options={"allow_http": True, "timeout": "300s", "connect_timeout": "5s"},
                       retry_config=retry, **options)  # type: ignore[arg-type]


class S3BlobWriter:
    """One blob being written: hashed as it goes; nothing visible under a digest before commit().

    Blocking (like BlobWriter): call from a worker thread.
    """

    def __init__(self, store: "S3BlobStore", max_size: int | None = None, path: Path | None = None) -> None:
        self.store = store
        # with `path`, a local copy grows beside the upload: the node's single flight lets other
        # clients of this node follow the part file while the fetch runs (cache/flight.py)
        self.temp_path = path
        self.local = open(path, "wb") if path is not None else None
        self.max_size = max_size
        self.hasher = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.upload: Any = None          # obstore WritableFile once past one part
        self.temp_key: str | None = None
        self.closed = False

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes (raises TooLarge past max_size)."""
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise TooLarge(f"more than {self.max_size} bytes")
        self.hasher.update(data)
        if self.local is not None:
            self.local.write(data)
            self.local.flush()
        if self.upload is None:
            self.buffer += data
            if len(self.buffer) <= PART_SIZE:
                return
            self.temp_key = self.store.temp_key()
            self.upload = obstore.open_writer(self.store.s3, self.temp_key, buffer_size=PART_SIZE,
                                              max_concurrency=MAX_CONCURRENCY)
            data, self.buffer = bytes(self.buffer), bytearray()
        self.upload.write(data)

    def commit(self, expect_sha256: str | None = None) -> str:
        """Verify, then store under the content address; returns the hex digest."""
        digest = self.hasher.hexdigest()
        if expect_sha256 and expect_sha256.lower() != digest:
            self.abort()
            raise DigestMismatch(expect_sha256.lower(), digest)
        try:
            if self.upload is None:
                self.store.put_verified(digest, bytes(self.buffer))
                self.buffer = bytearray()
            else:
                self.upload.close()
                self.closed = True
                self.store.adopt_temp(self.temp_key or "", digest)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        if self.local is not None and self.temp_path is not None:
            self.local.flush()
            self.store.keep_local(self.temp_path, digest)     # the node-local tier, if any
        self._drop_local()
        return digest

    def _drop_local(self) -> None:
        """Followers keep reading their open descriptors; the name goes."""
        if self.local is not None:
            self.local.close()
            self.local = None
            if self.temp_path is not None:
                self.temp_path.unlink(missing_ok=True)

    def abort(self) -> None:
        """Drop what was written; nothing is stored."""
        self.buffer = bytearray()
        self._drop_local()
        if self.upload is not None and self.temp_key is not None:
            try:
                if not self.closed:
                    self.upload.close()
            except Exception:  # the upload is gone either way; its temp key is swept below/by GC
                log.debug("closing an aborted upload failed", exc_info=True)
            self.store.delete_key(self.temp_key)
        self.closed = True


class S3BlobStore:
    """BlobStorage on an S3 bucket; `root/tmp` stays local (locks, flight state, part files)."""

    remote = True

    def __init__(self, root: Path, settings: S3Settings) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.redirect = settings.redirect
        self.redirect_min_size = settings.redirect_min_size
        self.s3 = settings.store()
        base = settings.prefix.strip("/")
        self.prefix = f"{base}/" if base else ""

    # keys ---------------------------------------------------------------------------------
    def key(self, digest: str) -> str:
        """The object key of a digest (validated: no request string reaches the bucket)."""
        if not HEX64.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return f"{self.prefix}blobs/sha256/{digest[:2]}/{digest}"

    def temp_key(self) -> str:
        return f"{self.prefix}uploads/{uuid.uuid4().hex}"

    # bucket -------------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket when it is missing and the credentials allow it (CreateBucket is a
        PUT on the bucket URL, signed by obstore)."""
        try:
            obstore.list_with_delimiter(self.s3, prefix=self.prefix or None)
            return
        except Exception as err:  # obstore reports a missing bucket as a generic 404
            if "NoSuchBucket" not in str(err):
                raise
        import urllib.request
        url = obstore.sign(self.s3, "PUT", "", timedelta(seconds=60))
        request = urllib.request.Request(url, method="PUT", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (signed URL)
                log.info("created bucket %s (%s)", self.settings.bucket, answer.status)
        except urllib.error.HTTPError as err:
            if err.code != 409:          # BucketAlreadyExists/OwnedByYou: a racing node made it
                raise

    def ping(self) -> None:
        """Raise when the bucket cannot be reached (healthz)."""
        obstore.list_with_delimiter(self.s3, prefix=f"{self.prefix}blobs/")

    # reads --------------------------------------------------------------------------------
    def stat(self, digest: str) -> int | None:
        """Size of a stored blob, None when absent (a HEAD)."""
        try:
            return int(obstore.head(self.s3, self.key(digest))["size"])
        except (NotFoundError, FileNotFoundError):
            return None

    async def stat_async(self, digest: str) -> int | None:
        try:
            return int((await obstore.head_async(self.s3, self.key(digest)))["size"])
        except (NotFoundError, FileNotFoundError):
            return None

    def exists(self, digest: str) -> bool:
        return self.stat(digest) is not None

    async def read(self, digest: str) -> bytes:
        result = await obstore.get_async(self.s3, self.key(digest))
        return bytes(await result.bytes_async())

    async def read_chunks(self, digest: str, start: int = 0, end: int | None = None,
                          chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Bytes [start, end) as chunks, one ranged GET streamed (no whole-blob buffering)."""
        if end is not None and end <= start:
            return
        options: Any = {}
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        result = await obstore.get_async(self.s3, self.key(digest), options=options or None)
        async for chunk in result.stream(min_chunk_size=chunk_size):
            yield bytes(chunk)

    def local_path(self, digest: str) -> Path | None:
        """Remote blobs have no local file."""
        return None

    @contextlib.contextmanager
    def local_file(self, digest: str) -> Iterator[Path]:
        """A temporary local copy of the blob (blocking; for code that must open a file)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="copy-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in obstore.get(self.s3, self.key(digest)).stream(min_chunk_size=1024 * 1024):
                    out.write(chunk)
            yield Path(name)
        finally:
            os.unlink(name)

    def adopt(self, temp_path: Path, digest: str) -> None:
        """Store a complete local file already verified to hash to `digest`; the file goes."""
        try:
            writer = self.writer()
            try:
                with open(temp_path, "rb") as handle:
                    while block := handle.read(PART_SIZE):
                        writer.write(block)
                writer.commit(digest)
            except BaseException:
                writer.abort()
                raise
        finally:
            Path(temp_path).unlink(missing_ok=True)

    def keep_local(self, path: Path, digest: str) -> None:
        """A verified local copy of a blob just stored (no local tier here: nothing to keep)."""

    def direct_url(self, digest: str, expires: float = 300.0) -> str | None:
        """A presigned GET URL valid for `expires` seconds."""
        return str(obstore.sign(self.s3, "GET", self.key(digest), timedelta(seconds=expires)))

    # writes -------------------------------------------------------------------------------
    def writer(self, max_size: int | None = None, path: Path | None = None) -> S3BlobWriter:
        """A writer; with `path` (under tmp/) it also keeps a local copy growing there."""
        return S3BlobWriter(self, max_size, path)

    def put_verified(self, digest: str, data: bytes) -> None:
        """Conditional create of a verified small blob; an existing copy wins."""
        try:
            obstore.put(self.s3, self.key(digest), data, mode="create")
        except AlreadyExistsError:
            pass

    def adopt_temp(self, temp_key: str, digest: str) -> None:
        """Copy a complete, verified temporary object to its content address, then drop it."""
        try:
            if self.stat(digest) is None:
                obstore.copy(self.s3, temp_key, self.key(digest))
        finally:
            self.delete_key(temp_key)

    def delete_key(self, key: str) -> None:
        try:
            obstore.delete(self.s3, key)
        except (NotFoundError, FileNotFoundError):
            pass

    async def put_bytes(self, data: bytes, expect_sha256: str | None = None) -> tuple[str, int]:
        """Store bytes; (digest, size). Large bytes go through the multipart writer."""
        if len(data) > PART_SIZE:
            return await self.put_stream(_once(data), expect_sha256)
        digest = hashlib.sha256(data).hexdigest()
        if expect_sha256 and expect_sha256.lower() != digest:
            raise DigestMismatch(expect_sha256.lower(), digest)
        try:
            await obstore.put_async(self.s3, self.key(digest), data, mode="create")
        except AlreadyExistsError:
            pass
        return digest, len(data)

    async def put_stream(self, chunks: AsyncIterator[bytes], expect_sha256: str | None = None,
                         max_size: int | None = None) -> tuple[str, int]:
        """Store a stream; nothing is stored if it fails, is too large or mismatches."""
        writer = self.writer(max_size)
        try:
            async for chunk in chunks:
                if writer.upload is None and len(writer.buffer) + len(chunk) <= PART_SIZE:
                    writer.write(chunk)           # in memory: no thread hop
                else:
                    await asyncio.to_thread(writer.write, chunk)
            digest = await asyncio.to_thread(writer.commit, expect_sha256)
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        return digest, writer.size

    # GC -----------------------------------------------------------------------------------
    def delete(self, digest: str) -> int:
        """Remove a blob; the bytes freed (0 when absent)."""
        size = self.stat(digest)
        if size is None:
            return 0
        self.delete_key(self.key(digest))
        return size

    def scan(self) -> list[tuple[str, int, float]]:
        """Every stored blob as (digest, size, mtime). Blocking (lists the bucket)."""
        found = []
        for batch in obstore.list(self.s3, prefix=f"{self.prefix}blobs/sha256/", chunk_size=1000):
            for meta in batch:
                name = meta["path"].rsplit("/", 1)[-1]
                if HEX64.match(name):
                    found.append((name, int(meta["size"]), meta["last_modified"].timestamp()))
        return found

    iter_digests = scan

    def stale_uploads(self, older_than: float = STALE_UPLOAD_SECONDS) -> int:
        """Delete temporary upload objects left by crashed writers; how many."""
        cutoff, removed = time.time() - older_than, 0
        for batch in obstore.list(self.s3, prefix=f"{self.prefix}uploads/", chunk_size=1000):
            for meta in batch:
                if meta["last_modified"].timestamp() < cutoff:
                    self.delete_key(meta["path"])
                    removed += 1
        return removed

    def describe(self) -> str:
        return f"s3 {self.settings.endpoint or 'aws'}/{self.settings.bucket}/{self.prefix}"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), PART_SIZE):
        yield bytes(view[i:i + PART_SIZE])

